"""The fallback clearing: the one valid clearing every slot with a candidate pair has.

min(100 Wh, both capacities) on every candidate pair (the candidate rule makes that fit every
capacity: a participant has at most one pair per 100 Wh of its capacity), each paid halfway between
the two limits in whole micro-units (the rule's minimum pair gain leaves room for a payment both
sides gain by).  It is fixed by the instance alone, so the chain can accept it without a certificate
and a proposer has no choice in it: a slot no method certifies trades this rather than nothing, and
any certified clearing beats it (consensus/rules/ranking.py).  Integers only.
"""

from __future__ import annotations

import numpy as np

from .clearing import Trade
from .instance import Instance
from .pairs import MIN_TRADE_WH, Pairs


def fallback_arrays(inst: Instance, pairs: Pairs) -> tuple[np.ndarray, np.ndarray]:
    """Wh and payment (micro-units) per candidate pair."""
    q = np.minimum(np.minimum(inst.seller_wh[pairs.seller], inst.buyer_wh[pairs.buyer]), MIN_TRADE_WH)
    a = inst.seller_limit[pairs.seller]
    net = inst.net_limit(pairs.seller, pairs.buyer)
    lo = (a * q) // 1000 + 1  # the seller gains: above its limit
    hi = -((-net * q) // 1000) - 1  # the buyer gains: below its own
    return q, (lo + hi) // 2


def fallback_trades(inst: Instance, pairs: Pairs) -> tuple[Trade, ...]:
    """The fallback's trades, sorted as a `Clearing` sorts them."""
    q, pay = fallback_arrays(inst, pairs)
    return tuple(sorted(
        Trade(inst.sellers[int(s)].id, inst.buyers[int(b)].id, int(w), int(p))
        for s, b, w, p in zip(pairs.seller.tolist(), pairs.buyer.tolist(), q.tolist(), pay.tolist())
    ))
