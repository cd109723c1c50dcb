"""Small markets that rounding cannot certify: search the integer allocations near the float optimum.

In a market of a few pairs at the edges of what an instance admits (a 590 Wh seller and four buyers,
one with 484 times the others' weight; bench/extreme_markets.py), the optimum gives some participants
one or two Wh, and whole Wh and micro-units move their surpluses so far that no rounding of the float
solution certifies.  A certified clearing often still exists nearby (seed 62: 584/2/2/2 Wh where the
optimum is 585.2/2.4/1.2/1.2).  `search_small` tries energy vectors around the optimum, most likely
first (everyone rounded down, then up, then one pair at a time moved), splits each pair's gain so that
every surplus lands as near its float optimum as whole micro-units allow (bounded least squares,
weighted by bargaining weight), certifies, and keeps the first the exact verifier accepts.  Bounded
by `MAX_TRIES` and a time budget: a slot still has its fallback.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import numpy as np
from scipy.optimize import lsq_linear

from .certificate import certify
from .instance import Instance
from .pairs import Pairs
from .relaxation import Relaxation
from .rounding import surpluses

MAX_PAIRS = 32  # larger markets round well: the search is for the few-pair extremes
MAX_TRIES = 3000
BUDGET_SECONDS = 5.0


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
        pay = _split(inst, pairs, q, per_kwh, u_star, w_star, a, net)
        U, W = surpluses(inst, pairs, q, pay, a, net)
        if (U[sellers] <= 0).any() or (W[buyers] <= 0).any():
            continue
        lam, mu, _ = certify(inst, pairs, U, W, rel.lam, rel.mu)
        got = verify_clearing(q, pay, lam, mu)
        if got[1].ok:
            return got
    return None


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
