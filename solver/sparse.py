"""Few trades per participant: a sparse allocation with the same surpluses.

The Nash-bargaining surpluses are unique, the trades that realise them are not:
solvers (the smoothed dual above all) spread each participant over many
near-equivalent pairs, 4 to 5 trades per trading participant at 10,000.  With
every surplus held fixed, the allocations form a polytope whose vertices use at
most 2 x (sellers + buyers) pairs.  `sparsify` moves the float optimum towards
such a vertex by combinatorial steps, each keeping every surplus exactly (in
floats) and every capacity:

1. **Payments** (energy held): on a cycle of pairs whose gain both sides share,
   money pushed around the cycle changes no one's surplus; it is pushed until a
   pair's split reaches a limit (one side gets all its gain).  Afterwards the
   shared pairs form a forest.
2. **Energy** (prices held): a pair that gives all its gain to one side is, for
   the other side, surplus-neutral.  Two such pairs of one participant, or of
   two participants joined by shared pairs, trade energy for energy at equal
   surplus until one of them empties, within every capacity.

Each step empties a trade or ends a shared split, so the steps are at most the
trades; each costs the length of a tree path.  The objective and certificate
are those of the input (the surpluses are the same); rounding then runs on
fewer pairs.  Floats only: the verifier decides whether the result is valid.

Not yet a vertex: a pair touching three rows (a one-sided pair between two
participants at capacity) joins no tree, so the moves through it are not
found.  At 10,000 participants the float trades fall from 50,398 to about
30,000 where a vertex would have about 14,000 (HiGHS, 10-30 s).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .instance import Instance
from .pairs import Pairs

_ACTIVE_WH = 1e-6  # a pair trading less than this many Wh (float) is no trade
_ONE_SIDED = 1e-9  # a split giving one side less than this share of the gain gives it nothing
# Energy passes: with the energy rows of participants at capacity (their energy held exactly), then
# without (a move may only lower it), twice: each finds moves the other cannot, and a tree rebuilt on
# fewer pairs finds more.  Trades after rounding at 10,000 participants: 43,524 without the step, 32,216
# after one pair of passes, 29,611 after two (2.4 s), 28,607 after three (3.4 s).
ENERGY_PASSES = (True, False) * 2
_NEAR_CAP = 1e-6  # a participant within this share of its capacity is at it (its energy is held)


def sparsify(inst: Instance, pairs: Pairs, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shares (tokens per pair) realising the same surpluses as `x`, `y` on fewer pairs."""
    g = pairs.margin / 1e6  # tokens per kWh
    x = np.maximum(x, 0.0)
    y = np.maximum(y, 0.0)
    gain = x + y
    q = gain / g  # kWh
    live = q * 1000.0 > _ACTIVE_WH
    x = np.where(live, x, 0.0)
    y = np.where(live, y, 0.0)
    gain = x + y
    q = np.where(live, q, 0.0)
    # Near-one-sided splits become one-sided (a surplus moves by at most 1e-9 of a pair's gain).
    to_buyer = live & (x <= _ONE_SIDED * gain)
    to_seller = live & ~to_buyer & (y <= _ONE_SIDED * gain)
    x = np.where(to_buyer, 0.0, np.where(to_seller, gain, x))
    a = _State(inst, pairs, q, x, gain)
    a.payments()
    for rows in ENERGY_PASSES:
        a.energy(rows)
    xs, gain = a.x, a.gain
    return xs, gain - xs


class _State:
    """Pairs as Python lists (fast scalar access), nodes: sellers then buyers."""

    def __init__(self, inst: Instance, pairs: Pairs, q, x, gain) -> None:
        n_s, n_b = len(inst.sellers), len(inst.buyers)
        self.n = n_s + n_b
        self.u = pairs.seller.tolist()
        self.v = (pairs.buyer + n_s).tolist()
        self.g = (pairs.margin / 1e6).tolist()
        self.q = q.tolist()
        self.xl = x.tolist()
        self.gl = gain.tolist()
        use = np.bincount(pairs.seller, q, n_s).tolist() + np.bincount(pairs.buyer, q, n_b).tolist()
        cap = (inst.seller_wh / 1000.0).tolist() + (inst.buyer_wh / 1000.0).tolist()
        self.energy_use = use
        self.cap = [max(c, e) for c, e in zip(cap, use)]  # a float overshoot stays allowed, never grows
        self.parent: list[tuple[int, int] | None] = [None] * self.n  # (parent node, pair)

    # ---- results
    @property
    def x(self) -> np.ndarray:
        return np.array(self.xl)

    @property
    def gain(self) -> np.ndarray:
        return np.array(self.gl)

    def shared(self, e: int) -> bool:
        return self.q[e] > 0 and 0.0 < self.xl[e] < self.gl[e]

    # ---- step 1: payments
    def payments(self) -> None:
        """Push money around cycles of shared pairs until they form a forest (`parent`)."""
        adj: list[list[int]] = [[] for _ in range(self.n)]
        for e in range(len(self.q)):
            if self.shared(e):
                adj[self.u[e]].append(e)
                adj[self.v[e]].append(e)
        in_tree = _forest(dict(enumerate(adj)), lambda e: (self.u[e], self.v[e]), self.parent)
        for e in range(len(self.q)):
            if e not in in_tree and self.shared(e):
                self._cancel_money_cycle(e)

    def _up(self, k: int) -> list[tuple[int, int]]:
        """(node, pair to its parent) from `k` to its root."""
        out = []
        while self.parent[k] is not None:
            p, e = self.parent[k]
            out.append((k, e))
            k = p
        out.append((k, -1))
        return out

    def _path(self, a: int, b: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int] | None:
        """Tree paths a -> lca and b -> lca as (node, pair to its parent) steps, and the lca; None
        when a and b are in different trees."""
        up_a = self._up(a)
        index = {k: i for i, (k, _) in enumerate(up_a)}
        path_b = []
        k = b
        while k not in index:
            if self.parent[k] is None:
                return None
            p, e = self.parent[k]
            path_b.append((k, e))
            k = p
        return up_a[: index[k]], path_b, k

    def _cancel_money_cycle(self, e0: int) -> None:
        u, v = self.u[e0], self.v[e0]
        paths = self._path(u, v)
        if paths is None:  # joins two trees: it is a tree pair now
            _reroot(self.parent, u)
            self.parent[u] = (v, e0)
            return
        up_u, up_v, _ = paths
        # Around the cycle e0, v..lca, lca..u the seller's share changes with alternating signs.
        cycle = [e0] + [e for _, e in up_v] + [e for _, e in reversed(up_u)]
        best = None
        for direction in (1.0, -1.0):
            t, at = float("inf"), -1
            for k, e in enumerate(cycle):
                s = direction if k % 2 == 0 else -direction
                room = self.gl[e] - self.xl[e] if s > 0 else self.xl[e]
                if room < t:
                    t, at = room, k
            if best is None or (at == 0 and best[2] != 0) or (t < best[0] and (at == 0) == (best[2] == 0)):
                best = (t, direction, at)
        t, direction, at = best
        for k, e in enumerate(cycle):
            s = direction if k % 2 == 0 else -direction
            self.xl[e] = min(max(self.xl[e] + s * t, 0.0), self.gl[e])
        hit = cycle[at]
        self.xl[hit] = self.gl[hit] if (direction if at % 2 == 0 else -direction) > 0 else 0.0
        if at == 0:
            return
        # A tree pair left the shared set: e0 takes its place (the cut side is re-rooted at e0's end).
        side_u = any(e == hit for _, e in up_u)
        near, far = (u, v) if side_u else (v, u)
        _cut(self.parent, (self.u[hit], self.v[hit]), hit)
        _reroot(self.parent, near)
        self.parent[near] = (far, e0)

    # ---- step 2: energy
    def _columns(self, with_rows: bool) -> None:
        """Each live pair's rows, prices held: (row, surplus per kWh) for the sides its gain reaches,
        (n + node, 1) for the energy of a side at its capacity."""
        n = self.n
        self.energy_rows = with_rows
        self.tight = [self.energy_use[k] >= self.cap[k] * (1 - _NEAR_CAP) for k in range(n)]
        self.rows: dict[int, list[tuple[int, float]]] = {}
        for e in range(len(self.q)):
            if self.q[e] <= 0:
                continue
            share = self.xl[e] / self.gl[e]
            r = []
            if share > 0:
                r.append((self.u[e], self.g[e] * share))
            if share < 1:
                r.append((self.v[e], self.g[e] * (1.0 - share)))
            if self.energy_rows:
                for k in (self.u[e], self.v[e]):
                    if self.tight[k]:
                        r.append((n + k, 1.0))
            self.rows[e] = r

    def energy(self, with_rows: bool) -> None:
        """Trade energy between pairs at equal surpluses until the pairs are (nearly) a vertex.

        The rows (each participant's surplus, the energy of those at capacity) and the pairs
        touching two of them form a forest.  In each tree one more pair is its *basis*: pushed by
        one kWh and balanced row by row up the tree, it leaves a non-zero amount at the root, so it
        can absorb any amount there.  Any further pair, pushed and balanced up the tree, is absorbed
        by the basis: a direction that keeps every row, followed until some pair empties.
        """
        self._columns(with_rows)
        n2 = 2 * self.n
        self.rparent: list[tuple[int, int] | None] = [None] * n2
        adj: dict[int, list[int]] = {}
        for e, r in self.rows.items():
            if len(r) == 2:
                adj.setdefault(r[0][0], []).append(e)
                adj.setdefault(r[1][0], []).append(e)
        tree = _forest(adj, lambda e: (self.rows[e][0][0], self.rows[e][1][0]), self.rparent)
        self.basis: dict[int, int] = {}  # tree root -> its basis pair
        for e in list(self.rows):
            if e not in tree and self.q[e] > 0:
                self._push(e)

    def _coef_at(self, e: int, row: int) -> float:
        for r, c in self.rows[e]:
            if r == row:
                return c
        return 0.0

    def _balance(self, X: int, d: dict[int, float], scale: float) -> tuple[int, float] | None:
        """Add `scale` x (X pushed by one kWh, balanced up the tree) to `d`; returns the tree's
        root and what is left there, or None when X's rows are in different trees."""
        d[X] = d.get(X, 0.0) + scale
        root, left = None, 0.0
        for row, c in self.rows[X]:
            amount = c * scale
            r = row
            while self.rparent[r] is not None:
                p, e = self.rparent[r]
                step = -amount / self._coef_at(e, r)
                d[e] = d.get(e, 0.0) + step
                amount = self._coef_at(e, p) * step
                r = p
            if root is not None and r != root:
                return None
            root, left = r, left + amount
        return root, left

    def _push(self, X: int) -> None:
        d: dict[int, float] = {}
        got = self._balance(X, d, 1.0)
        if got is None:
            return
        root, left = got
        scale = max(c for _, c in self.rows[X])
        B = self.basis.get(root)
        probe: dict[int, float] = {}
        at_b = self._balance(B, probe, 1.0) if B is not None and self.q[B] > 0 else None
        if at_b is None or at_b[0] != root or abs(at_b[1]) <= 1e-9 * max(c for _, c in self.rows[B]):
            if abs(left) > 1e-9 * scale:
                self.basis[root] = X  # the tree's basis now
            return
        for e, de in probe.items():
            d[e] = d.get(e, 0.0) - de * left / at_b[1]
        delta: dict[int, float] = {}
        for e, de in d.items():
            for k in (self.u[e], self.v[e]):
                delta[k] = delta.get(k, 0.0) + de
        best = None
        for direction in (1.0, -1.0):
            t, at = float("inf"), None
            for e, de in d.items():
                s = de * direction
                if s < 0 and self.q[e] / -s < t:
                    t, at = self.q[e] / -s, e
            for k, dk in delta.items():
                s = dk * direction
                if s > 0 and not (self.energy_rows and self.tight[k]):
                    room = max(self.cap[k] - self.energy_use[k], 0.0) / s
                    if room < t:
                        t, at = room, None
            if at is not None and (best is None or t < best[0]):
                best = (t, direction, at)
        if best is None:
            return  # a capacity stops it either way: the pair stays
        t, direction, at = best
        for e, de in d.items():
            self._set_q(e, 0.0 if e == at else max(self.q[e] + de * direction * t, 0.0))
        if at == X:
            return
        if at == B:
            self.basis[root] = X
            return
        # A tree pair emptied: the part below it is cut off; X rejoins it where it can.
        child = _cut(self.rparent, [r for r, _ in self.rows[at]], at)
        below = [r for r, _ in self.rows[X] if _root(self.rparent, r) == child]
        if len(self.rows[X]) == 2 and len(below) == 1:
            r0 = below[0]
            other = next(r for r, _ in self.rows[X] if r != r0)
            _reroot(self.rparent, r0)
            self.rparent[r0] = (other, X)

    def _set_q(self, e: int, new: float) -> None:
        d = new - self.q[e]
        self.energy_use[self.u[e]] += d
        self.energy_use[self.v[e]] += d
        share = self.xl[e] / self.gl[e] if self.gl[e] > 0 else 0.0
        self.q[e] = new
        self.gl[e] = self.g[e] * new
        self.xl[e] = share * self.gl[e]


def _root(parent: list[tuple[int, int] | None], k: int) -> int:
    while parent[k] is not None:
        k = parent[k][0]
    return k


def _cut(parent: list[tuple[int, int] | None], ends, e: int) -> int:
    """Remove tree pair `e` (between the nodes `ends`); returns the end it hung from, now a root."""
    child = next(k for k in ends if parent[k] is not None and parent[k][1] == e)
    parent[child] = None
    return child


def _reroot(parent: list[tuple[int, int] | None], k: int) -> None:
    """Make `k` the root of its tree by reversing the (parent, pair) pointers above it."""
    prev: tuple[int, int] | None = None
    while True:
        up = parent[k]
        parent[k] = prev
        if up is None:
            return
        p, e = up
        prev = (k, e)
        k = p


def _forest(adj: dict[int, list[int]], ends, parent: list[tuple[int, int] | None]) -> set[int]:
    """A breadth-first spanning forest of the graph `adj` (node -> pairs; `ends(pair)` its two
    nodes), written into `parent`; returns the pairs in it.  Breadth first keeps the trees shallow,
    and every move walks a tree path."""
    seen: set[int] = set()
    tree = set()
    for start in sorted(adj):
        if start in seen or not adj[start]:
            continue
        seen.add(start)
        queue = deque([start])
        while queue:
            k = queue.popleft()
            for e in adj[k]:
                a, b = ends(e)
                o = b if a == k else a
                if o not in seen:
                    seen.add(o)
                    parent[o] = (k, e)
                    tree.add(e)
                    queue.append(o)
    return tree
