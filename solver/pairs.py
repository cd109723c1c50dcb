"""Which (seller, buyer) pairs may trade in a slot: the candidate rule.

A pair can trade when its margin ``buyer limit - seller limit - network
charge`` is positive.  To keep the program sparse each buyer gets at most
`cap` candidate sellers.  Taking every buyer's best margins would hand all
buyers the same few cheapest sellers, so the rule is an assortative band:
buyers ranked by limit (highest first) are anchored at the same quantile of
each zone's sellers ranked by limit (cheapest first), and each buyer takes a
window of `cap` sellers there, slid down to stay within the sellers it can
trade with.  With several zones the best `cap` margins of the windows win.
The band leaves out sellers above every lower buyer's limit; each such seller
that some buyer can trade with then gets its best buyer with room, a buyer
taking at most `COVER_EXTRA` of them (`_cover_sellers`).

Two rules make sure a feasible clearing always exists in which everyone
with a candidate pair gains something, as validity requires (whether the
solver's clearing then certifies within the tolerance is its own quality).  A participant has at most one
candidate counterpart per `MIN_TRADE_WH` (100 Wh) of its capacity, at least
one, best margins first (sellers too).  And a pair is a candidate only if
``margin * min(S_i, D_j, 100 Wh)`` is at least `MIN_PAIR_GAIN` (0.0001 token).
Then trading min(100 Wh, S_i, D_j) on every candidate pair fits every
capacity, and each such trade has a gain that whole micro-units can split
so both sides gain: without these rules one 10 Wh seller with twenty
possible buyers admits no valid clearing at all.

Consensus-critical: integer arithmetic only, ties broken by canonical index,
so every node derives the same pairs from the same instance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .instance import Instance

DEFAULT_CAP = 16
MIN_PAIR_GAIN = 10**5  # nano-units (1/1000 micro-unit): 0.0001 token, 100 micro-units
MIN_TRADE_WH = 100
COVER_EXTRA = 4  # pairs a buyer may take beyond the band to cover left-out sellers (`_cover_sellers`)


@dataclass(frozen=True)
class Pairs:
    """Candidate pairs, sorted by (buyer, seller); margins in micro-units/kWh."""

    seller: np.ndarray
    buyer: np.ndarray
    margin: np.ndarray

    def __len__(self) -> int:
        return len(self.seller)


def candidate_pairs(inst: Instance, cap: int = DEFAULT_CAP) -> Pairs:
    """The tradable pairs the clearing of `inst` may use (see module doc)."""
    if cap < 1:
        raise ValueError("cap must be at least 1")
    n_s, n_b = len(inst.sellers), len(inst.buyers)
    empty = np.zeros(0, dtype=np.int64)
    if n_s == 0 or n_b == 0:
        return Pairs(empty, empty, empty)
    a, b = inst.seller_limit, inst.buyer_limit
    charge = inst.charge_matrix
    # Buyer rank: highest limit first, ties by canonical index.
    order = np.lexsort((np.arange(n_b), -b))
    rank = np.empty(n_b, dtype=np.int64)
    rank[order] = np.arange(n_b, dtype=np.int64)

    cols_s, cols_m = [], []
    for zs in range(len(charge)):
        members = np.flatnonzero(inst.seller_zone == zs)
        if len(members) == 0:
            continue
        members = members[np.lexsort((members, a[members]))]  # cheapest first
        a_sorted = a[members]
        c = charge[zs, inst.buyer_zone]  # network charge from zs to each buyer
        # Sellers a buyer can trade with form a prefix: a < b - c.
        tradable = np.searchsorted(a_sorted, b - c, side="left")
        anchor = rank * len(members) // n_b
        width = min(cap, len(members))
        start = np.maximum(np.minimum(anchor, tradable - width), 0)
        pos = start[:, None] + np.arange(width, dtype=np.int64)[None, :]
        ok = pos < tradable[:, None]
        sel = np.where(ok, members[np.minimum(pos, len(members) - 1)], -1)
        marg = np.where(ok, (b - c)[:, None] - a[np.maximum(sel, 0)], 0)
        reach = np.minimum(np.minimum(inst.seller_wh[np.maximum(sel, 0)], inst.buyer_wh[:, None]), MIN_TRADE_WH)
        sel = np.where(marg * reach >= MIN_PAIR_GAIN, sel, -1)
        cols_s.append(sel)
        cols_m.append(marg)
    if not cols_s:
        return Pairs(empty, empty, empty)
    sel = np.concatenate(cols_s, axis=1)
    marg = np.concatenate(cols_m, axis=1)
    # Per buyer: best margins first, ties to the lower seller index, invalid
    # last; keep at most its limit.
    key = np.where(sel >= 0, -marg * (1 << 22) + sel, np.iinfo(np.int64).max)
    keep = np.argsort(key, axis=1, kind="stable")
    sel = np.take_along_axis(sel, keep, axis=1)
    marg = np.take_along_axis(marg, keep, axis=1)
    limit_b = np.minimum(_counterpart_limit(inst.buyer_wh), cap)
    sel = np.where(np.arange(sel.shape[1])[None, :] < limit_b[:, None], sel, -1)
    buyer = np.broadcast_to(np.arange(n_b, dtype=np.int64)[:, None], sel.shape)
    valid = sel >= 0
    s, bb, m = sel[valid], buyer[valid], marg[valid]
    # Per seller: the same limit, best margins first, ties to the lower buyer.
    by_seller = np.lexsort((bb, -m, s))
    s_sorted = s[by_seller]
    rank = np.arange(len(s_sorted)) - np.searchsorted(s_sorted, s_sorted, side="left")
    kept = by_seller[rank < _counterpart_limit(inst.seller_wh)[s_sorted]]
    s, bb, m = s[kept], bb[kept], m[kept]
    s, bb, m = _cover_sellers(inst, s, bb, m, cap)
    idx = np.lexsort((s, bb))
    return Pairs(s[idx].copy(), bb[idx].copy(), m[idx].copy())


def _cover_sellers(inst: Instance, s: np.ndarray, bb: np.ndarray, m: np.ndarray, cap: int):
    """Give each seller the band left out, but some buyer could trade with, one pair: its best buyer
    with room.  The band anchors the highest buyers at the cheapest sellers, so sellers above every
    lower buyer's limit fell outside every window (35-46% of generated sellers).  Sellers go most
    expensive first (fewest buyers can take them); each buyer takes at most `COVER_EXTRA` such
    pairs, and never more than its counterpart limit (the 100 Wh rule stands).  Deterministic:
    integer keys, ties to the lower index."""
    n_s, n_b = len(inst.sellers), len(inst.buyers)
    covered = np.zeros(n_s, dtype=bool)
    covered[s] = True
    if covered.all():
        return s, bb, m
    a, b, charge = inst.seller_limit, inst.buyer_limit, inst.charge_matrix
    count = np.bincount(bb, minlength=n_b).astype(np.int64)
    room = np.minimum(_counterpart_limit(inst.buyer_wh), cap + COVER_EXTRA) - count
    extra = np.zeros(n_b, dtype=np.int64)
    order: dict[int, np.ndarray] = {}  # per seller zone: buyers by net limit, highest first
    nxt: dict[int, int] = {}
    add_s, add_b, add_m = [], [], []
    uncovered = np.flatnonzero(~covered)
    for i in uncovered[np.lexsort((uncovered, -a[uncovered]))].tolist():
        z = int(inst.seller_zone[i])
        if z not in order:
            net = b - charge[z, inst.buyer_zone]
            order[z] = np.lexsort((np.arange(n_b), -net))
            nxt[z] = 0
        ranked, k = order[z], nxt[z]
        while k < n_b and (extra[ranked[k]] >= COVER_EXTRA or room[ranked[k]] <= 0):
            k += 1  # a buyer that is full stays full: later sellers skip it too
        nxt[z] = k
        if k == n_b:
            continue
        j = int(ranked[k])
        margin = int(b[j] - charge[z, inst.buyer_zone[j]] - a[i])
        if margin <= 0 or margin * min(int(inst.seller_wh[i]), int(inst.buyer_wh[j]), MIN_TRADE_WH) < MIN_PAIR_GAIN:
            continue  # its best buyer with room cannot: later ones have lower margins (one of more Wh might
            # pass the minimum gain where this one's few Wh do not; such a seller rarely stays out)
        add_s.append(i)
        add_b.append(j)
        add_m.append(margin)
        extra[j] += 1
        room[j] -= 1
    if not add_s:
        return s, bb, m
    return (np.concatenate([s, np.array(add_s, dtype=np.int64)]), np.concatenate([bb, np.array(add_b, dtype=np.int64)]),
            np.concatenate([m, np.array(add_m, dtype=np.int64)]))


def _counterpart_limit(wh: np.ndarray) -> np.ndarray:
    """At most one candidate counterpart per MIN_TRADE_WH of capacity (at least one)."""
    return np.maximum(wh // MIN_TRADE_WH, 1)
