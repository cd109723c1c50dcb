"""How proposals for one height rank, and the commitments that make copying useless.

A proposal for block h is better when (in this order): it was committed on chain before it was
revealed; its clearing is real rather than void; its clearing is certified (the verifier's
multipliers bound its distance from the optimum) rather than the uncertified fallback; its objective
is in a higher *rank step*; its lottery ticket is lower.  The fallback (solver/fallback.py: 100 Wh on
every candidate pair, fixed by the bids alone) is valid without a certificate so that a slot with a
candidate pair never has to clear void; a solver proposes it when no method certifies, and any
certified clearing beats it.

The rank step is what the verifier's certificate can tell apart: a valid clearing is within
`tolerance * weight` nats of the optimum (solver/verifier.py), so two clearings whose objectives
differ by less than that are equally good as far as anyone can prove, and the difference is
numerical polishing, not useful work.  Objectives are therefore compared in whole steps of
`tolerance * weight` (`rank_step`, in the verifier's quanta of 10^-quantum_exp nats), and the
lottery decides within a step; a clearing better by a step or more still wins.

The ticket is a verifiable random function's output (beacon.py): the proposer's BLS signature,
with the vote key it registered, over the chained beacon of the parent block and the height.  It
is unique, so the proposer cannot choose among several; nobody can compute it without the key, so
nobody knows who will win before the proposals are out; and nothing a proposer chooses (bids, a
timestamp, the order of transactions) enters the beacon, so it cannot be ground.  A proposer with
no vote key registered draws the worst ticket.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import digest

NO_TICKET = b"\xff" * 32  # the lottery value of a proposer without a vote key: it loses every tie


@dataclass(frozen=True, order=True)
class Rank:
    """Smaller ranks higher (sorts first)."""

    uncommitted: bool
    void: bool
    uncertified: bool
    neg_step: int  # minus the objective's rank step
    lottery: bytes

    def describe(self) -> str:
        kind = "void" if self.void else f"{'uncertified, ' if self.uncertified else ''}objective step {-self.neg_step}"
        return f"{'uncommitted' if self.uncommitted else 'committed'}, {kind}, ticket {self.lottery.hex()[:12]}"


def commitment(clearing_hash: bytes, solver: bytes, salt: bytes) -> bytes:
    """What a solver commits on chain before revealing: hash(solution, solver address, salt)."""
    return digest(clearing_hash + solver + salt, b"transx-commit")


def rank_step(tolerance_ppm: int, weight: int, quantum_exp: int) -> int:
    """The verifier's tolerance for a clearing of total bargaining weight `weight`, in objective quanta
    (10^-quantum_exp nats): tolerance_ppm / 10^6 * weight * 10^quantum_exp, at least 1."""
    return max(1, tolerance_ppm * weight * 10**quantum_exp // 10**6)


def rank(*, committed: bool, objective: int | None, step: int, lottery: bytes, certified: bool = True) -> Rank:
    """`objective` None means a void clearing; `step` from `rank_step`; `lottery` the ticket's value;
    `certified` the verifier's word on a real clearing."""
    return Rank(not committed, objective is None, objective is not None and not certified,
                -((objective or 0) // step), lottery)
