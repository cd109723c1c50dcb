"""Delivery settlement: a slot's trades against its meters, on a real chain (LevelDB, the real solver).

The rule (settlement.py): each account bears its own deviation.  A seller's shortfall is bought
from the grid at the retail tariff at its cost; a buyer's unused energy is credited at the feed-in
tariff; a missing reading is never better than a true one.  Money is conserved with the grid
counted as the one party outside the chain.
"""

from __future__ import annotations

import pytest
from chain_support import CHAIN_PROPERTY, Net, addr, snapshot
from hypothesis import given
from hypothesis import strategies as st

from consensus.rules import genesis as G
from transxnode.api import views
from consensus.rules.settlement import assess
from consensus.rules.state import Reading
from consensus.rules.transactions import BUY, SELL, TxError

from test_ledger import ceil_div, market_bids, money_ok

g = G.genesis_from_json(G.dev_genesis([], [], slot_seconds=1, start=0))


# -------------------------------------------------------------------------------- the arithmetic
wh = st.integers(0, 10**7)
reading = st.none() | st.builds(Reading, wh, wh, st.just(1))


@CHAIN_PROPERTY
@given(cleared=wh, side=st.sampled_from([SELL, BUY]), reading=reading, truth=st.builds(Reading, wh, wh, st.just(1)))
def test_each_account_pays_for_its_own_deviation_and_a_missing_reading_never_pays_better(cleared, side, reading,
                                                                                         truth):
    sold, bought = (cleared, 0) if side == SELL else (0, cleared)
    s = assess(sold, bought, reading, g)
    net_export = (s.exported_wh - s.imported_wh)
    assert 0 <= s.shortfall_wh <= sold and 0 <= s.unused_wh <= bought
    assert s.shortfall_wh == (max(0, sold - net_export) if sold else 0)
    assert s.unused_wh == (min(bought, max(0, net_export + bought)) if bought else 0)
    assert s.charge == ceil_div(s.shortfall_wh * g.retail, 1000) and s.credit == s.unused_wh * g.feed_in // 1000
    assert s.read == (reading is not None)
    # Staying silent is never better than any true reading.
    told, silent = assess(sold, bought, truth, g), assess(sold, bought, None, g)
    assert told.credit - told.charge >= silent.credit - silent.charge
    # Delivering what was sold, or taking what was bought, settles at zero.
    exact = Reading(0, sold, 1) if side == SELL else Reading(bought, 0, 1)
    assert (assess(sold, bought, exact, g).charge, assess(sold, bought, exact, g).credit) == (0, 0)


# ------------------------------------------------------------------------------- on a real chain
def test_a_slot_settles_against_its_meters_w_blocks_after_delivery(net):
    W, L = net.g.meter_window, net.g.gate_closure
    sellers, buyers = net.users[:3], net.users[3:6]
    for k in sellers + buyers:
        net.register_meter(k)
    slot = net.next_height + L
    sells, buys = market_bids(net, slot)
    net.produce_until(slot)
    state = net.state()
    traded = {tx.sender: state.bid(tx.hash).traded_wh for tx in sells + buys}
    revenue = {tx.sender: state.bid(tx.hash).amount for tx in sells}
    collateral = {tx.sender: ceil_div(traded[tx.sender] * (net.g.retail - tx.body.price), 1000) for tx in sells}
    assert all(traded[addr(k)] > 0 for k in sellers) and sum(traded[addr(k)] for k in buyers) > 0
    # Sellers' revenue, and the collateral of what they sold, are held until the delivery settles.
    for k in sellers:
        a = addr(k)
        assert net.account(k).escrowed == revenue[a] + collateral[a] and revenue[a] > 0 and collateral[a] > 0
    s0, s1, s2 = sellers
    b0, b1, b2 = buyers
    # s0 delivers it all and more, s1 half, s2 sends no reading; b0 takes it all, b1 1,000 Wh less,
    # b2 sends no reading.
    delivered = {s0: traded[addr(s0)] + 500, s1: traded[addr(s1)] // 2}
    taken = {b0: traded[addr(b0)], b1: max(0, traded[addr(b1)] - 1_000)}
    for k, e in delivered.items():
        net.submit(k, net.reading(k, slot, exported_wh=e))
    for k, i in taken.items():
        net.submit(k, net.reading(k, slot, imported_wh=i))
    net.produce_until(slot + W)
    assert net.state().settlements_of_slot(slot) == []  # not yet: the window is still open
    view = views.delivery_view(net.chain, slot)
    assert view["status"] == "awaiting readings" and len(view["readings"]) == 4 and view["settles_at"] == slot + W + 1
    before = {addr(k): net.account(k) for k in sellers + buyers}
    totals_before = net.state().totals()
    pre_settle = snapshot(net.store)

    settling = net.produce()  # block slot + W + 1 settles the slot
    state = net.state()
    rows = dict(state.settlements_of_slot(slot))
    assert set(rows) == {addr(k) for k in sellers + buyers if traded[addr(k)]}
    shortfall = {s0: 0, s1: traded[addr(s1)] - delivered[s1], s2: traded[addr(s2)]}
    unused = {b0: 0, b1: traded[addr(b1)] - taken[b1], b2: 0}
    for k in sellers:
        a, r = addr(k), rows[addr(k)]
        charge = ceil_div(shortfall[k] * net.g.retail, 1000)
        held = revenue[a] + collateral[a]
        assert (r.sold_wh, r.shortfall_wh, r.charge, r.released, r.unpaid) == (traded[a], shortfall[k], charge,
                                                                             held, 0)
        assert r.read == (k is not s2)
        old, new = before[a], state.account(a)
        assert new.escrowed == old.escrowed - held == 0
        assert new.balance == old.balance + held - charge
    for k in buyers:
        a, r = addr(k), rows.get(addr(k))
        if r is None:
            continue
        credit = unused[k] * net.g.feed_in // 1000
        assert (r.bought_wh, r.unused_wh, r.credit, r.charge) == (traded[a], unused[k], credit, 0)
        assert state.account(a).balance == before[a].balance + credit
    assert rows[addr(s2)].exported_wh == 0 and rows[addr(b2)].imported_wh == traded[addr(b2)]  # the defaults
    t = state.totals()
    assert t.grid_charged - totals_before.grid_charged == sum(ceil_div(v * net.g.retail, 1000) for v in shortfall.values())
    assert t.grid_credited - totals_before.grid_credited == sum(v * net.g.feed_in // 1000 for v in unused.values())
    money_ok(net)
    # What the explorer and the wallet show.
    view = views.delivery_view(net.chain, slot)
    assert view["status"] == "settled" and view["settled_at"] == slot + W + 1
    mine = views.address_view(net.chain, addr(s1), 0)["settlements"]
    assert mine[0]["slot"] == slot and mine[0]["shortfall_wh"] == shortfall[s1]
    assert views.address_view(net.chain, addr(s1), 0)["meter"] is not None
    # A reorg undoes the settlement exactly, and the block settles the same again.
    after = snapshot(net.store)
    assert net.chain.revert_head() == settling.block
    assert snapshot(net.store) == pre_settle
    net.chain.connect(settling.block, net.now(settling.block.height))
    assert snapshot(net.store) == after


def test_a_seller_must_cover_its_worst_shortfall_and_then_it_is_always_paid(tmp_path):
    net = Net(str(tmp_path / "db"))
    try:
        poor, buyer = net.poor, net.users[3]
        slot = net.next_height + net.g.gate_closure
        # Collateral: every Wh bought from the grid at retail, less the limit the revenue brings at least.
        need = ceil_div(4_000 * (net.g.retail - 180_000), 1000)
        assert net.account(poor).balance < need
        with pytest.raises(TxError, match="insufficient balance"):
            net.bid(poor, SELL, slot, 4_000, 180_000)
        wh = (net.account(poor).balance - net.g.min_fee) * 1000 // (net.g.retail - 180_000)
        bid = net.bid(poor, SELL, slot, wh, 180_000)
        net.bid(buyer, BUY, slot, wh, 500_000)
        net.produce_until(slot + net.g.meter_window)
        assert net.state().bid(bid.hash).traded_wh == wh
        net.produce()  # settles the slot; no reading: a full shortfall
        (r,) = [r for a, r in net.state().settlements_of_slot(slot) if a == addr(poor)]
        assert r.shortfall_wh == r.sold_wh == wh and r.charge == ceil_div(wh * net.g.retail, 1000)
        assert r.unpaid == 0 and r.released >= r.charge  # the grid is paid in full
        assert net.state().totals().grid_charged == r.charge
        assert net.account(poor).escrowed == 0
        money_ok(net)
    finally:
        net.close()
