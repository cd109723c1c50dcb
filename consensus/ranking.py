"""How proposals for one height rank, and the commitments that make copying useless.

A proposal for block h is better when (in this order): it was committed on
chain before it was revealed; its clearing is real rather than void; its
objective (the exact, quantised Nash-bargaining log-objective) is higher;
its lottery ticket, hash(solver address, hash of block h - L), is lower.
The ticket cannot be ground: the solver's address is fixed by registration
and block h - L is on chain before the instance of h is even fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

from transxnode.codec import digest


@dataclass(frozen=True, order=True)
class Rank:
    """Smaller ranks higher (sorts first)."""

    uncommitted: bool
    void: bool
    neg_objective: int
    lottery: bytes

    def describe(self) -> str:
        kind = "void" if self.void else f"objective {-self.neg_objective}"
        return f"{'uncommitted' if self.uncommitted else 'committed'}, {kind}, ticket {self.lottery.hex()[:12]}"


def commitment(clearing_hash: bytes, solver: bytes, salt: bytes) -> bytes:
    """What a solver commits on chain before revealing: hash(solution, solver address, salt)."""
    return digest(clearing_hash + solver + salt, b"transx-commit")


def lottery_ticket(solver: bytes, reference_hash: bytes) -> bytes:
    """The tie-break among equally good proposals: hash(solver address, hash of block h - L)."""
    return digest(solver + reference_hash, b"transx-lottery")


def rank(*, committed: bool, objective: int | None, solver: bytes, reference_hash: bytes) -> Rank:
    """`objective` None means a void clearing."""
    return Rank(not committed, objective is None, -(objective or 0), lottery_ticket(solver, reference_hash))
