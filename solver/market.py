"""Clear one slot: candidate pairs -> program -> integer clearing -> certificate.

`clear` is what a node's solver calls; its result has already passed the
same exact verifier every other node runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import numpy as np

from .certificate import certify
from .clearing import Clearing, Trade
from .instance import Instance
from .pairs import DEFAULT_CAP, Pairs, candidate_pairs
from .program import SolverError, solve_relaxation
from .rounding import round_clearing
from .support import entering, initial_working_set, pricing, subset
from .verifier import DEFAULT_QUANTUM, DEFAULT_TOLERANCE, Verdict, verify


MAX_ROUNDS = 25
PRICE_IN = 1e-6  # relative reduced cost above which a pair joins the working set


@dataclass
class ClearResult:
    clearing: Clearing
    verdict: Verdict
    pairs: int
    timings: dict[str, float] = field(default_factory=dict)
    certificate_method: str = ""
    status: str = ""
    rounds: int = 0  # column-generation rounds (program solves)
    working_pairs: int = 0  # pairs in the last program solved


def clear(
    inst: Instance,
    *,
    cap: int = DEFAULT_CAP,
    solver: str = "scs",
    eps: float | None = None,
    time_limit: float | None = None,
    tolerance: Fraction = DEFAULT_TOLERANCE,
    quantum: Decimal = DEFAULT_QUANTUM,
    pairs: Pairs | None = None,
) -> ClearResult:
    """Compute a certified clearing of `inst`.

    An instance without a tradable pair clears empty.  A solver failure, or a
    result that does not verify, raises `SolverError`: never an empty market.
    """
    t = {}
    t0 = time.perf_counter()
    if pairs is None:
        pairs = candidate_pairs(inst, cap)
    t["pairs"] = time.perf_counter() - t0
    if not len(pairs):
        empty = Clearing(inst.slot, ())
        v = verify(inst, empty, pairs=pairs, tolerance=tolerance, quantum=quantum)
        return ClearResult(empty, v, 0, t, "none needed", "no tradable pair")
    working = initial_working_set(inst, pairs)
    t["compile"] = t["solve"] = t["pricing"] = 0.0
    rounds = 0
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    while True:
        rounds += 1
        left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
        rel = solve_relaxation(inst, subset(pairs, working), solver, eps=eps, time_limit=left)
        t["compile"] += rel.compile_s
        t["solve"] += rel.solve_s
        tp = time.perf_counter()
        gain = pricing(inst, pairs, working, rel.x, rel.y, rel.lam, rel.mu)
        enter = entering(pairs, working, gain, PRICE_IN)
        t["pricing"] += time.perf_counter() - tp
        if not enter.any() or rounds >= MAX_ROUNDS:
            break
        if deadline is not None and time.perf_counter() > deadline:
            raise SolverError(f"{solver} ran out of its {time_limit:g}s before the working set settled")
        working |= enter
    x = np.zeros(len(pairs))
    y = np.zeros(len(pairs))
    x[working], y[working] = rel.x, rel.y
    t1 = time.perf_counter()
    ic = round_clearing(inst, pairs, x, y)
    t2 = time.perf_counter()
    t["round"] = t2 - t1
    Lam, Mu, method = certify(inst, pairs, ic.seller_surplus, ic.buyer_surplus, rel.lam, rel.mu)
    t3 = time.perf_counter()
    t["certify"] = t3 - t2
    clearing = build_clearing(inst, pairs, ic.wh, ic.payment, Lam, Mu)
    t4 = time.perf_counter()
    v = verify(inst, clearing, pairs=pairs, tolerance=tolerance, quantum=quantum)
    t["verify"] = time.perf_counter() - t4
    if not v.ok:
        raise SolverError(f"{solver}'s solution did not verify: {v.reason}")
    return ClearResult(clearing, v, len(pairs), t, method, rel.status, rounds, int(working.sum()))


def build_clearing(inst: Instance, pairs: Pairs, wh, payment, Lam: list[int], Mu: list[int]) -> Clearing:
    """The clearing document from per-pair arrays and multiplier numerators."""
    trades = tuple(
        Trade(inst.sellers[int(pairs.seller[e])].id, inst.buyers[int(pairs.buyer[e])].id, int(wh[e]), int(payment[e]))
        for e in np.flatnonzero(wh > 0).tolist()
    )
    return Clearing(
        slot=inst.slot,
        trades=trades,
        lam={p.id: v for p, v in zip(inst.sellers, Lam) if v},
        mu={p.id: v for p, v in zip(inst.buyers, Mu) if v},
    )
