"""How proposals for one height rank, and the commitments that make copying useless.

A proposal for block h is better when (in this order): it was committed on
chain before it was revealed; its clearing is real rather than void; its
objective (the exact, quantised Nash-bargaining log-objective) is higher;
its lottery ticket, hash(solver address, seed), is lower, where the seed is
the height and the exact objective of block h - L (Chain.lottery_seed).  The
ticket cannot be ground: a solver's address is fixed by registration before
the seed exists, and the seed is the market's best objective, not a hash its
proposer could re-draw by changing a timestamp or an order of transactions.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import digest


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


def lottery_ticket(solver: bytes, seed: bytes) -> bytes:
    """The tie-break among equally good proposals: hash(solver address, the height's seed)."""
    return digest(solver + seed, b"transx-lottery")


def rank(*, committed: bool, objective: int | None, solver: bytes, seed: bytes) -> Rank:
    """`objective` None means a void clearing."""
    return Rank(not committed, objective is None, -(objective or 0), lottery_ticket(solver, seed))
