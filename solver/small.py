"""Small markets that rounding cannot certify: search the integer allocations near the float optimum.

In a market of a few pairs at the edges of what an instance admits (a 590 Wh seller and four buyers,
one with 484 times the others' weight; bench/extreme_markets.py), the optimum gives some participants
one or two Wh, and whole Wh and micro-units move their surpluses so far that no rounding of the float
solution certifies.  A certified clearing often still exists nearby (seed 62: 584/2/2/2 Wh where the
optimum is 585.2/2.4/1.2/1.2).

The certificate is tight only if every surplus is near its float optimum: a small seller whose
surplus falls short raises the price of every large buyer it shares a pair with, and that price is
paid on the buyer's whole capacity.  So `search_small` first asks which whole Wh let every
participant still be paid its float surplus (within a relative slack, tried from tight to loose): a
mixed-integer program (HiGHS) over the energies and each pair's split of its gain, the weighted log
surpluses approximated by tangents.  Then it tries energy vectors around the optimum, most likely
first (everyone rounded down, then up, then one pair at a time moved), each pair's gain split so that
every surplus lands as near its float optimum as whole micro-units allow (bounded least squares,
weighted by bargaining weight).  Each is certified and the first the exact verifier accepts is kept.
Bounded by `MAX_TRIES` and a time budget: a slot still has its fallback.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
from scipy.optimize import lsq_linear

from .certificate import certify
from .instance import Instance
from .pairs import Pairs
from .relaxation import Relaxation
from .rounding import surpluses

MAX_PAIRS = 32  # larger markets round well: the search is for the few-pair extremes
MAX_TRIES = 3000
BUDGET_SECONDS = 5.0
SLACKS = (1e-4, 1e-3, 1e-2, 0.1)  # how far below its float surplus a participant may be paid, tried in turn
# The mixed-integer program's energies stay within 3 Wh, and the energy worth this share of the larger of
# the two sides' float surpluses, of the float optimum's, and each solve within MILP_SECONDS: the
# optimum is near, and a small window keeps HiGHS' search small.
WINDOW_SHARE = 0.5
MILP_SECONDS = 0.5
# Tangents of log r at these surplus ratios r (paid / float optimum): the program's concave objective.
_TANGENTS = 1 + np.array([-0.1, -0.03, -0.01, -3e-3, -1e-3, -1e-4, 0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1])


def search_small(inst: Instance, pairs: Pairs, rel: Relaxation, verify_clearing, starts=(),
                 budget: float = BUDGET_SECONDS, max_tries: int = MAX_TRIES):
    """The first (clearing, verdict) near `rel` that `verify_clearing(wh, pay, lam, mu)` accepts, or None.
    `verify_clearing` builds and exactly verifies a clearing (solver/market.py); `starts`: energy vectors
    to try first (the roundings', whose own payments did not certify)."""
    if not 0 < len(pairs) <= MAX_PAIRS:
        return None
    n_s, n_b = len(inst.sellers), len(inst.buyers)
    per_kwh = pairs.margin / 1e6
    x0, y0 = np.maximum(rel.x, 0.0), np.maximum(rel.y, 0.0)
    u_star, w_star = np.bincount(pairs.seller, x0, n_s), np.bincount(pairs.buyer, y0, n_b)
    q_float = (x0 + y0) / per_kwh * 1000.0
    a = inst.seller_limit[pairs.seller]
    net = inst.net_limit(pairs.seller, pairs.buyer)
    sellers, buyers = np.unique(pairs.seller), np.unique(pairs.buyer)
    deadline = time.perf_counter() + budget

    def attempt(q, pay):
        U, W = surpluses(inst, pairs, q, pay, a, net)
        if (U[sellers] <= 0).any() or (W[buyers] <= 0).any():
            return None
        lam, mu, _ = certify(inst, pairs, U, W, rel.lam, rel.mu)
        got = verify_clearing(q, pay, lam, mu)
        return got if got[1].ok else None

    for slack in SLACKS:
        reached = _reach(inst, pairs, per_kwh, u_star, w_star, q_float, slack)
        if reached is not None:
            q, x = reached
            pay = np.clip(np.rint(a * q / 1000.0 + x * 1e6).astype(np.int64), (a * q + 999) // 1000, (net * q) // 1000)
            got = attempt(q, pay)
            if got is not None:
                return got
        if time.perf_counter() > deadline:
            return None
    seen: set[bytes] = set()
    for tries, q in enumerate(itertools.chain((np.asarray(s, dtype=np.int64) for s in starts),
                                              _candidates(q_float))):
        if tries >= max_tries or time.perf_counter() > deadline:
            return None
        key = q.tobytes()
        if key in seen:
            continue
        seen.add(key)
        if (np.bincount(pairs.seller, q, n_s) > inst.seller_wh).any() or \
                (np.bincount(pairs.buyer, q, n_b) > inst.buyer_wh).any():
            continue
        got = attempt(q, _split(inst, pairs, q, per_kwh, u_star, w_star, a, net))
        if got is not None:
            return got
    return None


def _reach(inst, pairs, per_kwh, u_star, w_star, q_float, slack: float):
    """Whole Wh per pair, and each pair's seller share of its gain (tokens), at which every participant is
    paid at least (1 - `slack`) of its float surplus, capacities held, and the weighted log surpluses
    (tangent approximation) highest; None if there are none near the optimum or HiGHS finds none in time.

    Variables: energies q (integers), seller shares x, buyer shares y, and each participant's log
    surplus ratio z; x + y is each pair's gain at q."""
    m = len(pairs)
    sellers, buyers = np.unique(pairs.seller), np.unique(pairs.buyer)
    k = len(sellers) + len(buyers)
    e = np.arange(m)
    u_star, w_star = np.maximum(u_star, 1e-12), np.maximum(w_star, 1e-12)
    sell = sp.csr_matrix((np.ones(m), (np.searchsorted(sellers, pairs.seller), e)), shape=(len(sellers), m))
    buy = sp.csr_matrix((np.ones(m), (np.searchsorted(buyers, pairs.buyer), e)), shape=(len(buyers), m))
    zs, zb, zk = sp.csr_matrix((len(sellers), m)), sp.csr_matrix((len(buyers), m)), sp.csr_matrix((m, k))
    energy = sp.vstack([sp.hstack([sell, zs, zs]), sp.hstack([buy, zb, zb])])
    ratio = sp.vstack([sp.hstack([zs, sp.diags(1.0 / u_star[sellers]) @ sell, zs]),  # paid / float surplus
                       sp.hstack([zb, zb, sp.diags(1.0 / w_star[buyers]) @ buy])])
    rows = sp.vstack([
        sp.hstack([-sp.diags(per_kwh / 1000.0), sp.identity(m), sp.identity(m), zk]),  # x + y = gain
        sp.hstack([energy, sp.csr_matrix((k, k))]),  # capacities
        sp.hstack([ratio, sp.csr_matrix((k, k))]),  # paid at least 1 - slack of the float surplus
        sp.vstack([sp.hstack([-ratio / t, sp.identity(k)]) for t in _TANGENTS]),  # z <= log t + (r - t) / t
    ])
    capacity = np.concatenate([inst.seller_wh[sellers], inst.buyer_wh[buyers]]).astype(float)
    row_lo = np.concatenate([np.zeros(m), np.zeros(k), np.full(k, 1.0 - slack), np.full(k * len(_TANGENTS), -np.inf)])
    row_hi = np.concatenate([np.zeros(m), capacity, np.full(k, np.inf), np.repeat(np.log(_TANGENTS) - 1.0, k)])
    cap = np.minimum(inst.seller_wh[pairs.seller], inst.buyer_wh[pairs.buyer]).astype(float)
    reach = WINDOW_SHARE * np.maximum(u_star[pairs.seller], w_star[pairs.buyer]) / (per_kwh / 1000.0) + 3
    col_lo = np.concatenate([np.maximum(np.floor(q_float - reach), 0), np.zeros(2 * m), np.full(k, -np.inf)])
    col_hi = np.concatenate([np.minimum(np.ceil(q_float + reach), cap), np.full(2 * m + k, np.inf)])
    weights = np.concatenate([inst.seller_weight[sellers], inst.buyer_weight[buyers]]).astype(float)
    x = _milp(np.concatenate([np.zeros(3 * m), -weights]), rows.tocsc(), row_lo, row_hi, col_lo, col_hi, m)
    if x is None or not np.isfinite(x).all():
        return None
    return np.rint(x[:m]).astype(np.int64), np.maximum(x[m:2 * m], 0.0)


def _milp(cost, a, row_lo, row_hi, col_lo, col_hi, integers: int) -> np.ndarray | None:
    """min cost.x, row_lo <= a x <= row_hi, col_lo <= x <= col_hi, the first `integers` columns whole:
    HiGHS (highspy), silent, within MILP_SECONDS; the best solution found, or None.

    highspy's `_Highs`, not its `Highs`: the wrapper's constructor logs HiGHS' banner to stdout before any
    option can turn logging off (HiGHS issue 2749), which would corrupt `transx solve --json`."""
    import highspy

    h = highspy._Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", MILP_SECONDS)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, _finite(col_lo), _finite(col_hi)
    lp.row_lower_, lp.row_upper_ = _finite(row_lo), _finite(row_hi)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
    lp.integrality_ = [highspy.HighsVarType.kInteger] * integers + [highspy.HighsVarType.kContinuous] * (a.shape[1] - integers)
    h.passModel(lp)
    h.run()
    if h.getInfo().primal_solution_status != 2:  # 2: a feasible solution (optimal, or the best by the time limit)
        return None
    return np.asarray(h.getSolution().col_value)


def _finite(v: np.ndarray) -> np.ndarray:
    """HiGHS' infinity for numpy's."""
    import highspy

    return np.clip(v, -highspy.kHighsInf, highspy.kHighsInf)


def _candidates(q_float: np.ndarray) -> Iterator[np.ndarray]:
    """Energy vectors (Wh) near the float optimum, the likeliest first: all rounded down (by 0 to 2) or up,
    then one pair moved from the nearest rounding, then two, then every mix of floor-1 .. ceil+1."""
    base = np.floor(q_float).astype(np.int64)
    nearest = np.rint(q_float).astype(np.int64)
    for d in (0, -1, 1, -2, 2):
        yield np.maximum(base + d, 0)
    yield nearest
    n = len(q_float)
    for k in (1, 2):
        for idx in itertools.combinations(range(n), k):
            for steps in itertools.product((-1, 1, -2, 2), repeat=k):
                q = nearest.copy()
                q[list(idx)] += steps
                yield np.maximum(q, 0)
    for deltas in itertools.product((-1, 0, 1, 2), repeat=n):
        yield np.maximum(base + np.array(deltas), 0)


def _split(inst, pairs, q, per_kwh, u_star, w_star, a, net) -> np.ndarray:
    """Payments (micro-units) splitting each pair's gain at `q` so that each surplus is as near its float
    optimum as it can be, relative to it and weighted by bargaining weight; within both limits."""
    n_s = len(inst.sellers)
    gain = per_kwh * q / 1000.0  # tokens
    rows, cols = len(u_star) + len(w_star), len(q)
    m = np.zeros((rows, cols))
    e = np.arange(cols)
    us, wb = np.maximum(u_star, 1e-12), np.maximum(w_star, 1e-12)
    m[pairs.seller, e] = 1.0 / us[pairs.seller]
    m[n_s + pairs.buyer, e] = -1.0 / wb[pairs.buyer]
    b = np.concatenate([np.ones(len(u_star)), 1.0 - np.bincount(pairs.buyer, gain, len(w_star)) / wb])
    w = np.sqrt(np.concatenate([inst.seller_weight, inst.buyer_weight]).astype(float))
    x = lsq_linear(m * w[:, None], b * w, bounds=(np.zeros(cols), np.maximum(gain, 1e-15))).x
    pay = np.rint(a * q / 1000.0 + x * 1e6).astype(np.int64)
    return np.clip(pay, (a * q + 999) // 1000, (net * q) // 1000)
