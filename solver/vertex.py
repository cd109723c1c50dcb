"""Few trades per participant: a vertex of the feasible allocations nearest the float surpluses, window by window.

The Nash-bargaining surpluses are unique, the trades that realise them are not.  With every
capacity held and each participant paid at most its float surplus, the allocations (a seller's share
`x` and a buyer's share `y` of each pair's gain) form a polytope; at a vertex at most one share is
positive per binding row (a surplus, or a capacity), so about 1.2-1.7 trades per trading participant
remain, where the float optimum spreads 4 to 6.

The vertex chosen pays the participants as much of their float surpluses as the true capacities
allow, each surplus weighted by its bargaining weight over its float value (the objective's slope at
the optimum).  The smoothed dual's allocation overshoots capacities (by up to 18% of a participant's
at 100,000 participants); rounding used to scale such pairs down, which left their partners short of
capacities they had filled at the optimum, and the certificate pays a multiplier on every unused Wh
of a participant whose capacity is priced.  Fitting within the true capacities here instead keeps the
partners full: at 100,000 participants the certified gap fell from 136 to 84 nats (145 allowed).

A linear program over all pairs finds a vertex in 10-30 s at 10,000 participants.  Here the
participants are ordered so that trading ones are near each other (reverse Cuthill-McKee on the
trade graph) and cut into windows of `WINDOW`; each window's inside pairs are re-solved to a vertex
(HiGHS' dual simplex), each participant paid at most its float surplus less what its outside pairs
pay it, within its capacity less what they use; the pairs that cross windows are held as they are.
Windows are independent, so a round costs linear time in the windows; `ROUNDS` rounds shift the cut
so that crossing pairs fall inside a later window.

Floats only, like the solver's: rounding and the exact verifier decide what is valid.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog
from scipy.sparse.csgraph import reverse_cuthill_mckee

from .instance import Instance
from .pairs import Pairs

WINDOW = 1000  # participants a window: 0.1-0.6 s of simplex each at 10,000 participants
ROUNDS = 4  # cuts shifted by WINDOW / ROUNDS each round
_ACTIVE_WH = 1e-6  # a pair trading less than this many Wh (float) is no trade


def vertex_shares(inst: Instance, pairs: Pairs, x: np.ndarray, y: np.ndarray,
                  window: int = WINDOW, rounds: int = ROUNDS) -> tuple[np.ndarray, np.ndarray]:
    """Shares (tokens per pair) on fewer pairs, within every capacity, paying each participant at most
    its surplus under `x`, `y` and as much of it as the capacities allow."""
    n_s = len(inst.sellers)
    n = n_s + len(inst.buyers)
    u, v = pairs.seller, pairs.buyer + n_s  # nodes: sellers, then buyers
    per_kwh = pairs.margin / 1e6  # a pair's gain in tokens per kWh it trades
    x, y = np.maximum(x, 0.0), np.maximum(y, 0.0)
    cap = np.concatenate([inst.seller_wh, inst.buyer_wh]) / 1000.0
    target = np.concatenate([np.bincount(pairs.seller, x, n_s), np.bincount(pairs.buyer, y, n - n_s)])
    weight = np.concatenate([inst.seller_weight, inst.buyer_weight]).astype(float)
    worth = np.divide(weight, target, out=np.zeros(n), where=target > 0)  # d(beta log s)/ds at the optimum
    if n <= window:
        rounds = 1  # one window holds the market: its vertex is the answer
    for r in range(rounds):
        q = (x + y) / per_kwh
        live = q * 1000.0 > _ACTIVE_WH
        where = _windows(u[live], v[live], n, window, (r * window) // rounds)
        inside = live & (where[u] == where[v])
        use = _use(u, v, q, n)
        paid = np.bincount(u, x, n) + np.bincount(v, y, n)
        order = np.flatnonzero(inside)
        order = order[np.argsort(where[u[order]], kind="stable")]
        bounds = np.flatnonzero(np.diff(where[u[order]])) + 1
        for part in np.split(order, bounds):
            if len(part):
                _solve_window(part, u, v, per_kwh, x, y, cap, use, target, paid, worth)
    return x, y


def _use(u: np.ndarray, v: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    """Each node's energy (kWh) over the pairs."""
    return np.bincount(u, q, n) + np.bincount(v, q, n)


def _windows(u: np.ndarray, v: np.ndarray, n: int, window: int, offset: int) -> np.ndarray:
    """Each node's window: consecutive runs of `window` nodes in reverse Cuthill-McKee order of the
    trade graph (its bandwidth is small, so few pairs cross), the cut shifted by `offset`."""
    ones = np.ones(len(u))
    g = sp.coo_matrix((ones, (u, v)), shape=(n, n)).tocsr()
    perm = reverse_cuthill_mckee((g + g.T).tocsr(), symmetric_mode=True)
    pos = np.empty(n, dtype=np.int64)
    pos[perm] = np.arange(n)
    return (pos + offset) // window


def _solve_window(e: np.ndarray, u, v, per_kwh, x, y, cap, use, target, paid, worth) -> None:
    """Re-solve pairs `e` (inside one window) to a vertex, in place: each node paid at most its float
    surplus less what its other pairs pay it, its energy within its capacity less what they use, the
    weighted relative surpluses highest.  Left as it was if the simplex fails."""
    nodes, at = np.unique(np.concatenate([u[e], v[e]]), return_inverse=True)
    m, rows = len(e), len(nodes)
    ru, rv = at[:m], at[m:]
    cols = np.arange(m)
    ones = np.ones(m)
    shares = sp.hstack([sp.csr_matrix((ones, (ru, cols)), shape=(rows, m)),
                        sp.csr_matrix((ones, (rv, cols)), shape=(rows, m))])
    w = 1.0 / per_kwh[e]
    energy = sp.csr_matrix((np.concatenate([w, w]), (np.concatenate([ru, rv]), np.concatenate([cols, cols]))),
                           shape=(rows, m))
    q = (x[e] + y[e]) * w
    inner_use = np.bincount(ru, q, rows) + np.bincount(rv, q, rows)
    inner_paid = np.bincount(ru, x[e], rows) + np.bincount(rv, y[e], rows)
    due = np.maximum(target[nodes] - (paid[nodes] - inner_paid), 0.0)
    room = np.maximum(cap[nodes] - (use[nodes] - inner_use), 0.0)
    res = linprog(-np.concatenate([worth[nodes][ru], worth[nodes][rv]]),
                  A_ub=sp.vstack([shares, sp.hstack([energy, energy])]).tocsr(), b_ub=np.concatenate([due, room]),
                  bounds=(0, None), method="highs-ds")
    if res.status != 0 or res.x is None or not np.isfinite(res.x).all():
        return
    x[e], y[e] = np.maximum(res.x[:m], 0.0), np.maximum(res.x[m:], 0.0)
