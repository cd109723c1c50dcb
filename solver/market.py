"""Clear one slot: candidate pairs -> program -> integer clearing -> certificate.

`clear` is what a node's solver calls; its result has already passed the
same exact verifier every other node runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import numpy as np

from .certificate import certify
from .clearing import Clearing, Trade
from .instance import Instance
from .fallback import fallback_arrays
from .pairs import DEFAULT_CAP, Pairs, candidate_pairs
from .relaxation import Relaxation, SolverError
from .rounding import LIFTS, round_clearing, surpluses
from .small import MAX_PAIRS as SMALL_MAX_PAIRS, search_small
from .vertex import vertex_shares
from .verifier import DEFAULT_QUANTUM, DEFAULT_TOLERANCE, Verdict, verify

SOLVERS = ("auto", "clarabel", "scs", "dual")
DEFAULT_SOLVER = "auto"
# "auto": Clarabel (interior point, the best objective) while it is quick,
# the smoothed dual above this many candidate pairs (~1,250 participants),
# where Clarabel's time grows super-linearly.  README, "Solver benchmark".
AUTO_DUAL_ABOVE = 10_000


@dataclass
class ClearResult:
    clearing: Clearing
    verdict: Verdict
    pairs: int
    timings: dict[str, float] = field(default_factory=dict)
    certificate_method: str = ""
    status: str = ""


def clear(
    inst: Instance,
    *,
    cap: int = DEFAULT_CAP,
    solver: str = DEFAULT_SOLVER,
    eps: float | None = None,
    time_limit: float | None = None,
    tolerance: Fraction = DEFAULT_TOLERANCE,
    quantum: Decimal = DEFAULT_QUANTUM,
    pairs: Pairs | None = None,
    progress: Callable[[str], None] | None = None,
    sparse: bool = True,
) -> ClearResult:
    """Compute a certified clearing of `inst`.

    An instance without a tradable pair clears empty.  A solver failure, or a
    result that does not verify, raises `SolverError`: never an empty market.
    `progress`, if given, is told each stage as it starts (large solves take
    minutes).  `sparse` first tries the float surpluses on fewer pairs, within
    the true capacities (solver/vertex.py), then the solver's own spread.  A slot that no way of
    rounding certifies is the proposer's to give the fallback (`fallback`).
    """
    say = progress or (lambda _msg: None)
    t = {}
    t0 = time.perf_counter()
    if pairs is None:
        pairs = candidate_pairs(inst, cap)
    t["pairs"] = time.perf_counter() - t0
    if not len(pairs):
        empty = Clearing(inst.slot, ())
        v = verify(inst, empty, pairs=pairs, tolerance=tolerance, quantum=quantum)
        return ClearResult(empty, v, 0, t, "none needed", "no tradable pair")
    say(f"solving the Nash-bargaining program over {len(pairs):,} candidate pairs ({solver})")
    rel = float_solve(inst, pairs, solver, eps=eps, time_limit=time_limit)
    t["compile"], t["solve"] = rel.compile_s, rel.solve_s
    say(f"solved in {rel.solve_s:.1f}s; rounding to Wh and micro-units")
    failures = []
    shares = []
    if sparse:
        say("moving the allocation onto fewer pairs")
        t1 = time.perf_counter()
        try:
            xs, ys = vertex_shares(inst, pairs, rel.x, rel.y)
        except (ArithmeticError, ValueError, IndexError, KeyError) as e:  # a bug there costs trades, not the slot
            say(f"the sparse step failed ({type(e).__name__}: {e}); rounding the solver's own allocation")
        else:
            if np.isfinite(xs).all() and np.isfinite(ys).all():
                shares.append((xs, ys))
        t["sparse"] = time.perf_counter() - t1
    shares.append((rel.x, rel.y))
    # The first shares and way of rounding whose clearing verifies (the first, nearly always).
    rounded = []  # their energies: where a search near the optimum starts
    for (x, y), lift in ((xy, lift) for xy in shares for lift in LIFTS):
        t1 = time.perf_counter()
        ic = round_clearing(inst, pairs, x, y, lift)
        rounded.append(ic.wh)
        t2 = time.perf_counter()
        t["round"] = t.get("round", 0.0) + t2 - t1
        if (ic.seller_surplus[pairs.seller] <= 0).any() or (ic.buyer_surplus[pairs.buyer] <= 0).any():
            failures.append("rounding left a participant that can trade without surplus")
            continue
        say("certifying: multipliers for the rounded surpluses")
        Lam, Mu, method = certify(inst, pairs, ic.seller_surplus, ic.buyer_surplus, rel.lam, rel.mu)
        t3 = time.perf_counter()
        t["certify"] = t.get("certify", 0.0) + t3 - t2
        clearing = build_clearing(inst, pairs, ic.wh, ic.payment, Lam, Mu)
        say("verifying exactly")
        v = verify(inst, clearing, pairs=pairs, tolerance=tolerance, quantum=quantum)
        t["verify"] = t.get("verify", 0.0) + time.perf_counter() - t3
        if v.ok:
            return ClearResult(clearing, v, len(pairs), t, method, rel.status)
        failures.append(v.reason)
    if len(pairs) <= SMALL_MAX_PAIRS:  # a few-pair extreme market: whole Wh near the optimum, one by one
        say("no rounding certifies: searching the integer allocations near the optimum")
        t1 = time.perf_counter()

        def verified(wh, pay, lam, mu):
            clearing = build_clearing(inst, pairs, wh, pay, lam, mu)
            return clearing, verify(inst, clearing, pairs=pairs, tolerance=tolerance, quantum=quantum)

        found = search_small(inst, pairs, rel, verified, starts=rounded)
        t["search"] = time.perf_counter() - t1
        if found is not None:
            return ClearResult(found[0], found[1], len(pairs), t, "search near the optimum", rel.status)
    raise SolverError(f"the solution ({rel.status}) did not verify: {failures[0]}")


def fallback(
    inst: Instance,
    pairs: Pairs,
    *,
    tolerance: Fraction = DEFAULT_TOLERANCE,
    quantum: Decimal = DEFAULT_QUANTUM,
) -> ClearResult:
    """The fallback clearing (solver/fallback.py), with the best multipliers for it when they certify it
    (then it is an ordinary certified clearing), else with none: valid as the chain's one uncertified
    clearing.  What a solver proposes when no method certifies."""
    t0 = time.perf_counter()
    q, pay = fallback_arrays(inst, pairs)
    U, W = surpluses(inst, pairs, q, pay)
    try:
        Lam, Mu, method = certify(inst, pairs, U, W)
    except SolverError:
        Lam, Mu, method = [], [], "none"
    v = None
    for lam, mu in ((Lam, Mu), ([], [])):
        clearing = build_clearing(inst, pairs, q, pay, lam, mu)
        v = verify(inst, clearing, pairs=pairs, tolerance=tolerance, quantum=quantum, require_certificate=False)
        if v.ok and (v.certified or not (lam or mu)):
            return ClearResult(clearing, v, len(pairs), {"fallback": time.perf_counter() - t0},
                               method if v.certified else "none: the fallback", "fallback")
    raise SolverError(f"the fallback clearing is invalid: {v.reason}")  # the candidate rule's promise broken: a bug


def float_solve(
    inst: Instance, pairs: Pairs, solver: str, *, eps: float | None = None, time_limit: float | None = None
) -> Relaxation:
    """The program's float optimum by the named method (see SOLVERS)."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if solver == "auto":
        solver = "dual" if len(pairs) > AUTO_DUAL_ABOVE else "clarabel"
    if solver == "dual":
        from .smoothed_dual import solve_smoothed_dual

        return solve_smoothed_dual(inst, pairs, time_limit=time_limit)
    from .program import solve_relaxation  # imports CVXPY: only when used

    return solve_relaxation(inst, pairs, solver, eps=eps, time_limit=time_limit)


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
