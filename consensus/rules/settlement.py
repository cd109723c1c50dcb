"""Delivery settlement: each account's trades of a slot against what its meter measured.

Block s + W + 1 (W = genesis.meter_window) settles slot s before its transactions, for every
account that traded in slot s.  With c = Wh sold - Wh bought (cleared) and a = Wh exported -
Wh imported (its meter's reading, carried in blocks s+1 .. s+W):

- a seller (c > 0) that delivered less, shortfall = min(c, c - a) Wh: its buyers were served by
  the grid instead, so the seller pays the grid that energy at the retail tariff;
- a buyer (c < 0) that took less, unused = min(-c, a - c) Wh: the energy it bought flowed on
  into the grid, which pays the buyer for it at the feed-in tariff.

Each account bears its own deviation and nobody else's: no settlement depends on another
account's meter, so a buyer cannot lose because a seller's meter was late, and the other way
round.  A missing reading is never better than a true one: a seller is taken to have delivered
nothing, a buyer to have taken everything.  Energy beyond the cleared quantities is the grid's
business (net metering, the retail bill), not the chain's.

A seller's revenue is held (escrowed) from the clearing until this settlement, with the delivery
collateral of what it sold (transactions.bid_lock: the Wh at retail less its limit): the charge
comes out of them first, then out of the balance.  Revenue plus collateral cover the worst charge,
so `unpaid` (what none of them covers) stays zero unless rounding leaves a micro-unit.  Charges
are rounded up and credits down, to the micro-unit.  The grid is outside the chain: what is paid
to it and by it is counted in the totals (`grid_charged`, `grid_credited`), so money is conserved:
balances + escrow + deposits + burned + grid_charged == minted + grid_credited.
"""

from __future__ import annotations

from dataclasses import replace

from .genesis import Genesis
from .state import CLEARED, Reading, Settlement, StateOverlay
from .transactions import SELL


def settled_slot(height: int, g: Genesis) -> int:
    """The slot block `height` settles (below 1: none)."""
    return height - g.meter_window - 1


def assess(sold: int, bought: int, reading: Reading | None, g: Genesis) -> Settlement:
    """An account's settlement of one slot before its held revenue and its balance are considered."""
    c = sold - bought
    if reading is None:  # the default is never better than the truth
        exported, imported = (0, 0) if c > 0 else (0, max(0, -c))
    else:
        exported, imported = reading.exported_wh, reading.imported_wh
    a = exported - imported
    shortfall = min(c, max(0, c - a)) if c > 0 else 0
    unused = min(-c, max(0, a - c)) if c < 0 else 0
    return Settlement(sold_wh=sold, bought_wh=bought, exported_wh=exported, imported_wh=imported,
                      read=reading is not None, shortfall_wh=shortfall, unused_wh=unused, released=0,
                      charge=-(-shortfall * g.retail // 1000), credit=unused * g.feed_in // 1000)


def settle_delivery(state: StateOverlay, height: int, g: Genesis) -> None:
    """Settle the slot block `height` settles: release held revenue and collateral, charge shortfalls,
    credit unused energy."""
    slot = settled_slot(height, g)
    if slot < 1:
        return
    traded: dict[bytes, list[int]] = {}  # owner -> [sold Wh, bought Wh, held revenue and collateral]
    for bid_id, rec in state.slot_bids(slot):
        if rec.status == CLEARED and rec.traded_wh:
            t = traded.setdefault(rec.owner, [0, 0, 0])
            if rec.side == SELL:
                t[0] += rec.traded_wh
                t[2] += rec.amount + rec.escrow
                if rec.escrow:
                    state.set_bid(bid_id, replace(rec, escrow=0))
            else:
                t[1] += rec.traded_wh
    charged = credited = 0
    for owner in sorted(traded):
        sold, bought, held = traded[owner]
        s = assess(sold, bought, state.reading(slot, owner), g)
        acct = state.account(owner)
        available = acct.balance + held
        paid = min(s.charge, available)
        state.set_account(owner, replace(acct, balance=available - paid + s.credit, escrowed=acct.escrowed - held))
        state.set_settlement(slot, owner, replace(s, released=held, unpaid=s.charge - paid))
        charged += paid
        credited += s.credit
    if charged or credited:
        t = state.totals()
        state.set_totals(replace(t, grid_charged=t.grid_charged + charged, grid_credited=t.grid_credited + credited))


__all__ = ["assess", "settle_delivery", "settled_slot"]
