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

Preferences (a bid's preferred counterparts and kind of energy; `Participant.owner`, `.prefer`,
`.kind`).  A buyer that takes only one kind (`kind` > 0 on a buyer) gets no pair with a seller of
another kind or of none: buyers are grouped by the kind they take, and each group's band runs over
the sellers of that kind alone (ranks and anchors within the group; the group that takes any kind
runs over all sellers), and the cover passes such a buyer over for other sellers.  A pair is
*preferred* when either side names the other's owner in its `prefer`.  A preference reaches the
named owner's first `PREFER_BIDS` bids on the other side (its sellers cheapest first, its buyers
highest limit first, ties by index), and a preferred pair passes the same tests as every pair: the
kind, a positive margin, `MIN_PAIR_GAIN`.  Preferred pairs join the band's, and when each buyer,
then each seller, keeps its limited number of counterparts, the preferred go first (best margins
first among them, then among the others).  No limit moves: a buyer keeps at most min(cap, one per
100 Wh) pairs of the band and its preferences together, plus at most `COVER_EXTRA` from the cover
(min(cap + COVER_EXTRA, one per 100 Wh) in all); a seller keeps at most one per 100 Wh (the cover
only gives a pair to a seller that has none).  So a preferred pair may displace a band pair of a
better margin, never add one beyond the limits; and an instance without preferences or kinds gets
exactly the pairs it got before they existed.  The preferred pairs looked at number at most
MAX_PREFER x PREFER_BIDS per participant that names owners.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .instance import Instance

DEFAULT_CAP = 16
MIN_PAIR_GAIN = 10**5  # nano-units (1/1000 micro-unit): 0.0001 token, 100 micro-units
MIN_TRADE_WH = 100
COVER_EXTRA = 4  # pairs a buyer may take beyond the band to cover left-out sellers (`_cover_sellers`)
PREFER_BIDS = 4  # bids of one named owner (on the other side) that a preference reaches


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
    if n_s == 0 or n_b == 0:
        return Pairs(_EMPTY, _EMPTY, _EMPTY)
    s, bb, m = _band(inst, cap)  # each buyer's limit of its band pairs
    pref = np.zeros(len(s), dtype=bool)
    if inst.has_preferences:
        s, bb, m, pref = _add_preferred(inst, s, bb, m)
        # Per buyer again: preferred first, then best margins, ties to the lower seller index; its limit.
        limit_b = np.minimum(_counterpart_limit(inst.buyer_wh), cap)
        by_buyer = np.lexsort((s, _priority(bb, pref, m)))
        kept = by_buyer[_rank_within(bb[by_buyer]) < limit_b[bb[by_buyer]]]
        s, bb, m, pref = s[kept], bb[kept], m[kept], pref[kept]
    # Per seller: the same order and limit, ties to the lower buyer.
    by_seller = np.lexsort((bb, _priority(s, pref, m)))
    kept = by_seller[_rank_within(s[by_seller]) < _counterpart_limit(inst.seller_wh)[s[by_seller]]]
    s, bb, m = s[kept], bb[kept], m[kept]
    s, bb, m = _cover_sellers(inst, s, bb, m, cap)
    idx = np.lexsort((s, bb))
    return Pairs(s[idx].copy(), bb[idx].copy(), m[idx].copy())


_EMPTY = np.zeros(0, dtype=np.int64)


def _priority(who: np.ndarray, pref: np.ndarray, m: np.ndarray) -> np.ndarray:
    """One int64 key per pair that orders by participant `who`, then preferred first, then best margin
    (0 < m <= MAX_PRICE < 2^31, who < MAX_PER_SIDE = 2^21: 53 bits)."""
    return (who << 32) | ((~pref).astype(np.int64) << 31) | ((1 << 31) - 1 - m)


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """Each entry's position among the entries with its key (`keys` sorted)."""
    return np.arange(len(keys)) - np.searchsorted(keys, keys, side="left")


def _band(inst: Instance, cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The band's pairs (seller, buyer, margin), flat: for each group of buyers by the kind they take (module
    doc), each buyer's windows, the pairs that pass `MIN_PAIR_GAIN`, its limit of them by best margin."""
    a, b, charge = inst.seller_limit, inst.buyer_limit, inst.charge_matrix
    limit_b = np.minimum(_counterpart_limit(inst.buyer_wh), cap)
    out_s, out_b, out_m = [], [], []
    for takes in np.unique(inst.buyer_kind).tolist():
        group = np.flatnonzero(inst.buyer_kind == takes)  # canonical order
        # Buyer rank within the group: highest limit first, ties by canonical index.
        rank = np.empty(len(group), dtype=np.int64)
        rank[np.lexsort((group, -b[group]))] = np.arange(len(group), dtype=np.int64)
        b_g, zone_g, wh_g = b[group], inst.buyer_zone[group], inst.buyer_wh[group]
        cols_s, cols_m = [], []
        for zs in range(len(charge)):
            offered = inst.seller_zone == zs
            if takes:
                offered &= inst.seller_kind == takes
            members = np.flatnonzero(offered)
            if len(members) == 0:
                continue
            members = members[np.lexsort((members, a[members]))]  # cheapest first
            c = charge[zs, zone_g]  # network charge from zs to each buyer
            # Sellers a buyer can trade with form a prefix: a < b - c.
            tradable = np.searchsorted(a[members], b_g - c, side="left")
            anchor = rank * len(members) // len(group)
            width = min(cap, len(members))
            start = np.maximum(np.minimum(anchor, tradable - width), 0)
            pos = start[:, None] + np.arange(width, dtype=np.int64)[None, :]
            sel = members[np.minimum(pos, len(members) - 1)]
            marg = (b_g - c)[:, None] - a[sel]
            reach = np.minimum(np.minimum(inst.seller_wh[sel], wh_g[:, None]), MIN_TRADE_WH)
            ok = (pos < tradable[:, None]) & (marg * reach >= MIN_PAIR_GAIN)
            cols_s.append(np.where(ok, sel, -1))
            cols_m.append(np.where(ok, marg, 0))
        if not cols_s:
            continue
        sel, marg = np.concatenate(cols_s, axis=1), np.concatenate(cols_m, axis=1)
        # Per buyer: best margins first, ties to the lower seller index, invalid last; keep at most its limit.
        key = np.where(sel >= 0, -marg * (1 << 22) + sel, np.iinfo(np.int64).max)
        keep = np.argsort(key, axis=1, kind="stable")
        sel, marg = np.take_along_axis(sel, keep, axis=1), np.take_along_axis(marg, keep, axis=1)
        ok = (sel >= 0) & (np.arange(sel.shape[1])[None, :] < limit_b[group][:, None])
        out_s.append(sel[ok])
        out_b.append(np.broadcast_to(group[:, None], sel.shape)[ok])
        out_m.append(marg[ok])
    if not out_s:
        return _EMPTY, _EMPTY, _EMPTY
    return np.concatenate(out_s), np.concatenate(out_b), np.concatenate(out_m)


def _add_preferred(inst: Instance, s: np.ndarray, bb: np.ndarray, m: np.ndarray):
    """The band's pairs and the preferred pairs that pass the tests, each pair once, with whether each is
    preferred (module doc)."""
    owners = sorted({p.owner for p in inst.sellers + inst.buyers if p.owner})
    code = {o: k for k, o in enumerate(owners)}
    s_owner = np.array([code.get(p.owner, -1) for p in inst.sellers], dtype=np.int64)
    b_owner = np.array([code.get(p.owner, -1) for p in inst.buyers], dtype=np.int64)
    # A buyer's preferences reach sellers, cheapest first; a seller's reach buyers, highest limit first.
    pb1, ps1 = _reached(inst.buyers, code, s_owner, inst.seller_limit)
    ps2, pb2 = _reached(inst.sellers, code, b_owner, -inst.buyer_limit)
    ps, pb = np.concatenate([ps1, ps2]), np.concatenate([pb1, pb2])
    takes = inst.buyer_kind[pb]
    pm = inst.net_limit(ps, pb) - inst.seller_limit[ps]
    reach = np.minimum(np.minimum(inst.seller_wh[ps], inst.buyer_wh[pb]), MIN_TRADE_WH)
    ok = ((takes == 0) | (inst.seller_kind[ps] == takes)) & (pm * reach >= MIN_PAIR_GAIN)
    pref = np.concatenate([np.zeros(len(s), dtype=bool), np.ones(int(ok.sum()), dtype=bool)])
    s, bb, m = np.concatenate([s, ps[ok]]), np.concatenate([bb, pb[ok]]), np.concatenate([m, pm[ok]])
    # Each pair once, as preferred if it is.
    order = np.lexsort((~pref, s, bb))
    first = np.ones(len(order), dtype=bool)
    first[1:] = (bb[order][1:] != bb[order][:-1]) | (s[order][1:] != s[order][:-1])
    keep = order[first]
    return s[keep], bb[keep], m[keep], pref[keep]


def _reached(naming, code: dict[str, int], owner_of: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(participant of `naming`, counterpart) for each counterpart a preference of `naming` reaches: the
    first PREFER_BIDS of the named owner's counterparts (`owner_of`: their owner codes, -1 none) in the
    order of `key`, ties by index."""
    who, named = [], []
    for k, p in enumerate(naming):
        for o in p.prefer:
            if o in code:
                who.append(k)
                named.append(code[o])
    if not who:
        return _EMPTY, _EMPTY
    who_a, named_a = np.array(who, dtype=np.int64), np.array(named, dtype=np.int64)
    has = np.flatnonzero(owner_of >= 0)
    ids = has[np.lexsort((has, key[has], owner_of[has]))]  # by owner, then best first
    first = np.searchsorted(owner_of[ids], named_a, side="left")
    count = np.minimum(np.searchsorted(owner_of[ids], named_a, side="right") - first, PREFER_BIDS)
    rep = np.repeat(np.arange(len(who_a)), count)
    offset = np.arange(len(rep)) - np.repeat(np.cumsum(count) - count, count)
    return who_a[rep], ids[first[rep] + offset]


def _cover_sellers(inst: Instance, s: np.ndarray, bb: np.ndarray, m: np.ndarray, cap: int):
    """Give each seller the band left out, but some buyer could trade with, one pair: its best buyer
    with room (of the buyers that take its kind of energy).  The band anchors the highest buyers at the cheapest sellers, so sellers above every
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
    # Per seller zone and kind: the buyers that take that kind (any kind, or only it), by net limit, highest first.
    order: dict[tuple[int, int], np.ndarray] = {}
    nxt: dict[tuple[int, int], int] = {}
    add_s, add_b, add_m = [], [], []
    uncovered = np.flatnonzero(~covered)
    for i in uncovered[np.lexsort((uncovered, -a[uncovered]))].tolist():
        z = int(inst.seller_zone[i])
        zk = (z, int(inst.seller_kind[i]))
        if zk not in order:
            net = b - charge[z, inst.buyer_zone]
            ranked = np.lexsort((np.arange(n_b), -net))
            takes = inst.buyer_kind[ranked]
            order[zk] = ranked[(takes == 0) | (takes == zk[1])]
            nxt[zk] = 0
        ranked, k = order[zk], nxt[zk]
        while k < len(ranked) and (extra[ranked[k]] >= COVER_EXTRA or room[ranked[k]] <= 0):
            k += 1  # a buyer that is full stays full: later sellers skip it too
        nxt[zk] = k
        if k == len(ranked):
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
