"""Few trades per participant: a vertex of the allocations that realise the same surpluses, window by window.

The Nash-bargaining surpluses are unique, the trades that realise them are not.  With every surplus
held, the allocations (a seller's share `x` and a buyer's share `y` of each pair's gain, within every
capacity) form a polytope; at a vertex at most one share is positive per row (a surplus, or a
capacity that binds), so at most about 1.4 trades per trading participant remain, where the float
optimum spreads 4 to 5.

A linear program over all pairs finds a vertex in 10-30 s at 10,000 participants.  Here the
participants are ordered so that trading ones are near each other (reverse Cuthill-McKee on the
trade graph) and cut into windows of `WINDOW`; each window's inside pairs are re-solved to a vertex
(HiGHS' dual simplex) with its surpluses held and its capacities less what outside pairs use, the
pairs that cross windows held as they are.  Windows are independent, so a round costs linear time
in the windows; `ROUNDS` rounds shift the cut so that crossing pairs fall inside a later window.
The objective of each window is the energy traded (most first): the surpluses are what the
bargaining fixes, the peer-to-peer energy is what a town wants of them.

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
ENERGY_SIGN = -1.0  # the windows' objective: most energy first (any objective gives a vertex)
# Above this many candidate pairs (~50,000 participants) the vertex's rounding does not certify: at 100,000
# the smoothed dual's own gap is already at the tolerance's edge (1.7e-3 a participant), and whole Wh on
# a vertex's one-sided trades add to it (certificate gap 216-307 against 145 allowed, whatever the
# windows' objective).  clear() keeps the solver's spread there.
MAX_PAIRS = 300_000


def vertex_shares(inst: Instance, pairs: Pairs, x: np.ndarray, y: np.ndarray,
                  window: int = WINDOW, rounds: int = ROUNDS) -> tuple[np.ndarray, np.ndarray]:
    """Shares (tokens per pair) realising the surpluses of `x`, `y` on fewer pairs, within the same
    capacities (a float overshoot of the input is kept, never grown)."""
    n_s = len(inst.sellers)
    n = n_s + len(inst.buyers)
    u, v = pairs.seller, pairs.buyer + n_s  # nodes: sellers, then buyers
    per_kwh = pairs.margin / 1e6  # a pair's gain in tokens per kWh it trades
    x, y = np.maximum(x, 0.0), np.maximum(y, 0.0)
    cap = np.concatenate([inst.seller_wh, inst.buyer_wh]) / 1000.0
    cap = np.maximum(cap, _use(u, v, (x + y) / per_kwh, n))
    if n <= window:
        rounds = 1  # one window holds the market: its vertex is the answer
    for r in range(rounds):
        q = (x + y) / per_kwh
        live = q * 1000.0 > _ACTIVE_WH
        where = _windows(u[live], v[live], n, window, (r * window) // rounds)
        inside = live & (where[u] == where[v])
        use = _use(u, v, q, n)
        cap = np.maximum(cap, use)  # the surplus repair's last 1e-8 kWh stays allowed (_solve_window)
        order = np.flatnonzero(inside)
        order = order[np.argsort(where[u[order]], kind="stable")]
        bounds = np.flatnonzero(np.diff(where[u[order]])) + 1
        for part in np.split(order, bounds):
            if len(part) > 1:
                _solve_window(part, u, v, per_kwh, x, y, cap, use)
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


def _solve_window(e: np.ndarray, u, v, per_kwh, x, y, cap, use) -> None:
    """Re-solve pairs `e` (inside one window) to a vertex, in place: each node's share sums held,
    its energy within its capacity less what its other pairs use.  Left as it was if the simplex fails."""
    nodes, at = np.unique(np.concatenate([u[e], v[e]]), return_inverse=True)
    m, rows = len(e), len(nodes)
    ru, rv = at[:m], at[m:]
    cols = np.arange(m)
    ones = np.ones(m)
    a_eq = sp.hstack([sp.csr_matrix((ones, (ru, cols)), shape=(rows, m)),
                      sp.csr_matrix((ones, (rv, cols)), shape=(rows, m))]).tocsr()
    b_eq = np.bincount(ru, x[e], rows) + np.bincount(rv, y[e], rows)
    w = 1.0 / per_kwh[e]
    energy = sp.csr_matrix((np.concatenate([w, w]), (np.concatenate([ru, rv]), np.concatenate([cols, cols]))),
                           shape=(rows, m))
    a_ub = sp.hstack([energy, energy]).tocsr()
    q = (x[e] + y[e]) * w
    inner = np.bincount(ru, q, rows) + np.bincount(rv, q, rows)
    room = cap[nodes] - (use[nodes] - inner)
    res = linprog(ENERGY_SIGN * np.concatenate([w, w]), A_ub=a_ub, b_ub=room, A_eq=a_eq, b_eq=b_eq, bounds=(0, None),
                  method="highs-ds")
    if res.status != 0 or res.x is None or not np.isfinite(res.x).all():
        return
    xs, ys = np.maximum(res.x[:m], 0.0), np.maximum(res.x[m:], 0.0)
    # The simplex holds each surplus to within its tolerance (1e-7 tokens), a lot for a participant whose
    # surplus is a few micro-units: give each row's remainder back on its largest share.
    for share, at in ((xs, ru), (ys, rv)):  # seller rows hold x shares only, buyer rows y shares
        off = b_eq - (np.bincount(ru, xs, rows) + np.bincount(rv, ys, rows))
        order = np.lexsort((share, at))  # by row, then share: the last of each row is its largest
        last = order[np.r_[np.flatnonzero(np.diff(at[order])), len(order) - 1]]
        share[last] = np.maximum(share[last] + off[at[last]], 0.0)
    x[e], y[e] = xs, ys
