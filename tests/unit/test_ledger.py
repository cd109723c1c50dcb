"""The chain and the ledger through the public Chain/Node API, on a real LevelDB store.

Blocks are built by the node from real solver clears (CVXPY/Clarabel) of small
markets; tampered blocks are rebuilt from a good one, re-signed with the
proposer's key, one change each, so every rejection has exactly one cause.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace

import pytest
from chain_support import (
    CHAIN_PROPERTY,
    FEE,
    POOR_BALANCE,
    START,
    Net,
    addr,
    escrow_in_accounts,
    escrow_in_bids,
    key,
    snapshot,
    whole_db,
)
from hypothesis import example, given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from consensus.chain.chain import MAX_FUTURE_MS, BlockError, Chain
from consensus.chain.store import Store, StoreError
from consensus.proposer import solve_slot
from consensus.rules import genesis as G
from consensus.rules import keys, ledger, schema
from consensus.rules.blocks import (
    HEADER,
    Block,
    BlockClearing,
    Header,
    Multiplier,
    tx_root,
)
from consensus.rules.metering import sign_reading
from consensus.rules.state import CANCELLED, CLEARED, OPEN
from consensus.rules.transactions import (
    BUY,
    SELL,
    Bid,
    CancelBid,
    Commit,
    Evidence,
    MeterReading,
    RegisterSolver,
    Transfer,
    TxError,
    escrow_for,
)
from solver.clearing import Clearing
from solver.market import fallback
from transxnode.api.views import block_json


# ------------------------------------------------------------------ helpers
def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def market_bids(net: Net, slot: int) -> tuple[list, list]:
    """Three sellers and three buyers over the three zones, prices on both sides of the grid tariffs;
    demand exceeds supply, so sellers sell out."""
    s, b = net.users[:3], net.users[3:6]
    sells = [net.bid(s[0], SELL, slot, 3_000, 180_000, 0), net.bid(s[1], SELL, slot, 2_000, 250_000, 1),
             net.bid(s[2], SELL, slot, 1_500, 120_000, 2)]  # below feed-in: clamped up to it
    buys = [net.bid(b[0], BUY, slot, 2_500, 560_000, 0), net.bid(b[1], BUY, slot, 3_500, 480_000, 1),
            net.bid(b[2], BUY, slot, 2_000, 650_000, 2)]  # above retail: clamped down to it
    return sells, buys


def money_ok(net: Net) -> tuple[int, int]:
    """Money is conserved (the grid counted); returns (money held, minted by genesis and block rewards)."""
    held, total = ledger.money_in_state(net.state())
    assert held == total
    assert escrow_in_accounts(net.state()) == escrow_in_bids(net.state())
    return held, net.state().totals().minted


def genesis_supply(g) -> int:
    return sum(v for _, v in g.balances) + sum(v for _, v in g.solvers)


# ------------------------------------------------------- money conservation
N_USERS = 5
user = st.integers(0, N_USERS - 1)
OTHER_OPS = st.one_of(
    st.tuples(st.just("transfer"), user, st.integers(0, N_USERS), st.integers(1, 10**9)),
    st.tuples(st.just("cancel"), user, st.integers(0, 7)),
    st.tuples(st.just("register"), user, st.sampled_from([10**8, 10**7])),
    st.tuples(st.just("commit"), st.integers(1, 3)),
    st.tuples(st.just("meter"), user, st.integers(0, 5_000), st.booleans()),
    st.tuples(st.just("block")),
)


@st.composite
def op_sequences(draw) -> list[tuple]:
    """Rounds of bids from users 0..k-1 (side (user + flip) % 2, so both sides show up) for one of the next
    open slots, each followed by other transactions and blocks."""
    ops: list[tuple] = []
    for _ in range(draw(st.integers(1, 3))):
        offset = draw(st.integers(0, 2))
        for u in range(draw(st.integers(2, N_USERS))):
            ops.append(("bid", u, draw(st.integers(0, 1)), offset, draw(st.integers(500, 6_000)),
                        draw(st.integers(0, 300_000)), draw(st.integers(0, 2))))
        ops += draw(st.lists(OTHER_OPS, max_size=5))
    return ops


# A dense market cleared mid-sequence, with a cancel, a transfer and a registration around it.
DENSE = [("bid", 0, 1, 0, 3_000, 50_000, 0), ("bid", 1, 1, 0, 2_000, 20_000, 1),
         ("bid", 2, 1, 0, 1_000, 90_000, 1), ("bid", 3, 1, 0, 4_000, 60_000, 2),
         ("bid", 4, 0, 1, 1_000, 10_000, 0), ("cancel", 4, 0), ("transfer", 1, 5, 10**6),
         ("register", 2, 10**8), ("block",), ("commit", 2), ("block",), ("meter", 0, 700, True), ("block",),
         ("meter", 1, 2_500, True), ("meter", 3, 0, False)]


@CHAIN_PROPERTY
@given(op_sequences())
@example(DENSE)
def test_money_is_conserved_and_only_block_rewards_mint(ops):
    """Through bids, clearings, delivery settlement and every other kind of transaction, money is only
    minted by block rewards and only moves between accounts, escrow, deposits, burns and the grid."""
    with tempfile.TemporaryDirectory() as d:
        net = Net(d + "/db", n_users=N_USERS)
        try:
            g = net.g
            _, minted = money_ok(net)
            assert minted == genesis_supply(g)
            bids: dict[int, list[bytes]] = {}
            last_slot = 0

            def produce():
                nonlocal minted
                net.produce()
                _, now_minted = money_ok(net)
                assert now_minted == minted + g.block_reward
                minted = now_minted

            for op in ops:
                kind, args = op[0], op[1:]
                try:
                    if kind == "transfer":
                        u, to, amount = args
                        dest = addr(net.stranger) if to == N_USERS else addr(net.users[to])
                        net.submit(net.users[u], Transfer(dest, amount))
                    elif kind == "bid":
                        u, flip, offset, wh, margin, zone = args
                        side = (u + flip) % 2
                        slot = net.next_height + g.gate_closure + offset
                        price = 100_000 + margin if side == SELL else 650_000 - margin
                        tx = net.bid(net.users[u], side, slot, wh, price, zone)
                        bids.setdefault(u, []).append(tx.hash)
                        last_slot = max(last_slot, slot)
                    elif kind == "cancel":
                        u, k = args
                        if bids.get(u):
                            net.submit(net.users[u], CancelBid(bids[u][k % len(bids[u])]))
                    elif kind == "register":
                        u, deposit = args
                        net.submit(net.users[u], RegisterSolver(deposit))
                    elif kind == "commit":
                        net.submit(net.solver_key, Commit(net.next_height + args[0], bytes(32)))
                    elif kind == "meter":  # a reading for the last delivered slot (registering the meter first)
                        u, wh, exported = args
                        if net.state().meter_key(addr(net.users[u])) is None:
                            net.register_meter(net.users[u])
                            produce()
                        reading = net.reading(net.users[u], net.height, **{"exported_wh" if exported else
                                                                           "imported_wh": wh})
                        net.submit(net.users[u], reading)
                    else:
                        produce()
                except TxError:
                    pass  # refused: conservation must hold all the same
            while net.height < last_slot + g.meter_window + 1 or len(net.node.mempool):
                produce()
            state = net.state()
            assert escrow_in_accounts(state) == 0  # every slot with bids has cleared and settled
            for u, ids in bids.items():
                for bid_id in ids:
                    rec = state.bid(bid_id)
                    assert rec is None or rec.status in (CANCELLED, CLEARED)
        finally:
            net.close()


# ----------------------------------------------------------- apply / revert
def test_connect_then_revert_restores_the_exact_prior_state(net):
    g, L = net.g, net.g.gate_closure
    slot = net.next_height + L
    market_bids(net, slot)
    later = net.bid(net.users[0], BUY, slot + L, 1_000, 400_000)
    net.register_meter(net.users[4])
    net.produce_until(slot - 1)
    stranger = addr(net.stranger)
    # The next block settles a real clearing and carries one of every kind of transaction.
    txs = [
        net.submit(net.users[1], Transfer(stranger, 123_456)),
        net.bid(net.users[2], SELL, net.next_height + L, 700, 200_000, 1),
        net.submit(net.users[0], CancelBid(later.hash)),
        net.submit(net.users[3], RegisterSolver(g.solver_deposit)),
        net.submit(net.solver_key, Commit(net.next_height + 1, b"\x05" * 32)),
        net.submit(net.users[4], net.reading(net.users[4], slot - 2, exported_wh=4_200)),
        net.register_meter(net.users[5]),
    ]
    before = snapshot(net.store)
    head = net.chain.head
    market, pairs = net.chain.market(slot)
    solution = solve_slot(market, pairs, g)
    assert solution.clearing.trades and not solution.clearing.void
    candidates = net.node.mempool.select(g.max_block_txs, net.node.chain_nonce)
    block, rejected = net.chain.build_block(net.solver_key, solution.clearing, candidates, net.now())
    assert not rejected and sorted(block.txs, key=lambda t: t.hash) == sorted(txs, key=lambda t: t.hash)
    net.chain.connect(block, net.now())
    after = snapshot(net.store)
    assert after != before
    assert net.state().account(stranger).balance == 123_456

    assert net.chain.revert_head() == block
    assert net.chain.head == head and net.chain.height == slot - 1
    assert snapshot(net.store) == before
    assert net.chain.tx(txs[0].hash) is None
    assert net.state().account(stranger).balance == 0
    assert net.state().bid(later.hash).status == OPEN

    net.chain.connect(block, net.now())
    assert snapshot(net.store) == after
    assert net.chain.head == block.header
    assert net.chain.tx(txs[0].hash) == (txs[0], slot, list(block.txs).index(txs[0]))


def test_reverting_several_blocks_then_reconnecting_them_is_exact(net):
    L = net.g.gate_closure
    start = snapshot(net.store)
    slot = net.next_height + L
    market_bids(net, slot)
    done = net.produce_until(slot)
    assert done[-1].block.clearing.trades
    end = snapshot(net.store)
    for _ in done:
        net.chain.revert_head()
    assert net.chain.height == 0
    assert snapshot(net.store) == start
    with pytest.raises(BlockError, match="genesis block cannot be reverted"):
        net.chain.revert_head()
    for c in done:
        net.chain.connect(c.block, net.now(c.block.height))
    assert snapshot(net.store) == end


# --------------------------------------------------------------- settlement
def test_cleared_slot_pays_sellers_from_buyer_escrow_and_beats_the_grid(net):
    g, L = net.g, net.g.gate_closure
    slot = net.next_height + L
    sells, buys = market_bids(net, slot)
    net.produce_until(slot - 1)
    owners = net.users[:6]
    before = {addr(k): net.account(k) for k in owners}
    burned_before = net.state().totals().burned
    for tx in buys:
        assert net.state().bid(tx.hash).escrow == escrow_for(tx.body.wh, min(tx.body.price, net.g.retail))
    for tx in sells:  # a seller's collateral: the worst shortfall charge (retail) less its limit
        assert net.state().bid(tx.hash).escrow == escrow_for(tx.body.wh, g.retail - tx.body.price) > 0

    done = net.produce()
    trades = done.block.clearing.trades
    inst = done.market.instance
    assert len(trades) >= 3
    got: dict[str, list[int]] = {}
    fees = 0
    for t in trades:
        s, b = inst.sellers[t.seller], inst.buyers[t.buyer]
        fee = g.network_charge[s.zone][b.zone] * t.wh // 1000
        fees += fee
        got.setdefault(s.id, [0, 0])
        got.setdefault(b.id, [0, 0])
        got[s.id][0] += t.wh
        got[s.id][1] += t.payment
        got[b.id][0] += t.wh
        got[b.id][1] += t.payment + fee

    state = net.state()
    paid = received = 0
    for tx in sells + buys:
        rec = state.bid(tx.hash)
        wh, amount = got.get(tx.hash.hex(), [0, 0])
        collateral = escrow_for(wh, g.retail - tx.body.price) if tx.body.side == SELL else 0
        assert (rec.status, rec.escrow, rec.traded_wh, rec.amount) == (CLEARED, collateral, wh, amount)
        old, new = before[tx.sender], state.account(tx.sender)
        if tx.body.side == SELL:
            received += amount
            assert wh == tx.body.wh  # demand exceeds supply: every seller sells out
            # Revenue and the collateral of what was sold are held until delivery settles
            # (test_settlement.py); with them the worst charge, all of it from the grid, is covered.
            assert (new.balance, new.escrowed) == (old.balance, old.escrowed + amount)
            assert amount + collateral >= ceil_div(g.retail * wh, 1000)
            assert amount >= g.feed_in * wh // 1000  # no worse than selling to the grid
            assert amount * 1000 >= max(tx.body.price, g.feed_in) * wh  # and never below its limit
        else:
            paid += amount
            escrow = escrow_for(tx.body.wh, min(tx.body.price, g.retail))
            assert new.balance == old.balance + escrow - amount  # the unspent escrow came back
            assert new.escrowed == old.escrowed - escrow == 0
            assert amount <= ceil_div(g.retail * wh, 1000)  # no worse than buying from the grid
            assert amount * 1000 <= min(tx.body.price, g.retail) * wh
    assert received > 0
    assert paid == received + fees
    assert state.totals().burned == burned_before + fees  # no network operator: charges are burned
    money_ok(net)


def test_void_clearing_refunds_every_escrow(net):
    L = net.g.gate_closure
    slot = net.next_height + L
    sells, buys = market_bids(net, slot)
    net.produce_until(slot - 1)
    before = {addr(k): net.account(k) for k in net.users[:6]}
    block, _ = net.chain.build_block(net.solver_key, BlockClearing(void=True), [], net.now())
    net.chain.connect(block, net.now())
    for tx in sells + buys:
        rec = net.state().bid(tx.hash)
        assert (rec.status, rec.escrow, rec.traded_wh, rec.amount) == (CLEARED, 0, 0, 0)
        old = before[tx.sender]
        assert net.state().account(tx.sender) == replace(old, balance=old.balance + old.escrowed, escrowed=0)
    money_ok(net)


# ------------------------------------------------------ stateful rejections
def assert_refused(net: Net, tx, match: str, ledger_match: str | None = "", reason: str = "invalid") -> None:
    """`tx` is refused by the node with a message matching `match` and the given `TxError.reason`, and
    by the ledger (on an overlay, `ledger_match`, default the same; None to skip) without writing
    anything; nothing changes."""
    db, pool = whole_db(net.store), dict(net.node.mempool.by_hash)
    with pytest.raises(TxError, match=match) as refused:
        net.node.submit_tx(tx)
    assert refused.value.reason == reason
    assert whole_db(net.store) == db
    assert net.node.mempool.by_hash == pool
    if ledger_match is not None:
        overlay = net.state()
        with pytest.raises(TxError, match=ledger_match or match):
            ledger.apply_tx(overlay, tx, net.next_height, net.g)
        assert overlay.writes == {}


def assert_applies(net: Net, tx) -> None:
    """The control: `tx` would go into the next block (checked on an overlay, nothing kept)."""
    assert ledger.apply_tx(net.state(), tx, net.next_height, net.g) == tx.fee


def test_replayed_nonce_is_refused(net):
    u0, u1 = net.users[:2]
    tx = net.submit(u0, Transfer(addr(u1), 5))
    net.produce()
    assert net.chain.tx(tx.hash)[1] == 1
    assert_refused(net, tx, "^already on chain$", ledger_match="^nonce 0 is not the account's next nonce 1$")
    other = net.tx(u0, Transfer(addr(u1), 6), nonce=0)
    assert_refused(net, other, r"^nonce 0 was already used \(the account is at 1\)$",
                   ledger_match="^nonce 0 is not the account's next nonce 1$", reason="nonce")


def test_future_nonce_waits_in_the_mempool_until_the_gap_fills(net):
    u0, u1 = net.users[:2]
    later = net.tx(u0, Transfer(addr(u1), 7), nonce=1)
    net.node.submit_tx(later)  # admitted without a trial: its predecessor is unknown
    assert later.hash in net.node.mempool
    assert net.node.mempool.select(100, net.node.chain_nonce) == []
    assert net.node.mempool.next_nonce(addr(u0), 0) == 0
    net.produce()
    assert net.chain.tx(later.hash) is None and later.hash in net.node.mempool
    first = net.submit(u0, Transfer(addr(u1), 6))
    assert first.nonce == 0
    assert net.node.mempool.select(100, net.node.chain_nonce) == [first, later]
    done = net.produce()
    assert list(done.block.txs) == [first, later]
    assert net.account(u0).nonce == 2 and len(net.node.mempool) == 0
    assert net.account(u1).balance == 10**12 + 13


# ------------------------------------------------------------- nonce spaces
def test_a_wallet_tx_and_a_consensus_tx_of_one_account_land_in_one_block_at_the_same_nonce(net):
    """The node's own key bids from a wallet while its solver commits: each counts its own nonces, so
    the commit neither takes the wallet's nonce nor is refused for it, and both land in one block."""
    solver = net.solver_key
    net.produce_until(2)
    n, L, C = net.next_height, net.g.gate_closure, net.g.commit_window
    bid = net.bid(solver, BUY, n + L, 1_000, 300_000)
    commit = net.submit(solver, Commit(n + C, b"\x07" * 32))
    transfer = net.submit(solver, Transfer(addr(net.users[0]), 5))
    assert (bid.nonce, commit.nonce, transfer.nonce) == (0, 0, 1)
    assert net.next_nonce(solver) == 2  # what a wallet is told: the pending commit took none of its nonces
    done = net.produce()
    assert set(done.block.txs) == {bid, commit, transfer}
    acct = net.account(solver)
    assert (acct.nonce, acct.consensus_nonce) == (2, 1)
    assert net.state().get(schema.commit(n + C, addr(solver)))[:32] == b"\x07" * 32
    assert net.state().bid(bid.hash).status == OPEN


def test_a_consensus_tx_cannot_take_a_wallet_nonce_nor_a_wallet_tx_a_consensus_nonce(net):
    solver, u0 = net.solver_key, net.users[0]
    net.produce_until(2)
    for amount in (1, 2):
        net.submit(solver, Transfer(addr(u0), amount))
    net.produce()
    assert (net.account(solver).nonce, net.account(solver).consensus_nonce) == (2, 0)
    n, C = net.next_height, net.g.commit_window
    # A commit signed at the wallet's next nonce: not the consensus sequence's next, so no block takes
    # it; the pool keeps it behind the consensus gap, where it holds nothing of the wallet's.
    stray = net.tx(solver, Commit(n + C, bytes(32)), nonce=2)
    with pytest.raises(TxError, match="^nonce 2 is not the account's next consensus nonce 0$"):
        ledger.apply_tx(net.state(), stray, n, net.g)
    net.node.submit_tx(stray)
    assert net.next_nonce(solver) == 2
    wallet = net.submit(solver, Transfer(addr(u0), 3))
    assert wallet.nonce == 2
    # A transfer at the consensus sequence's next nonce (0) is a used wallet nonce.
    assert_refused(net, net.tx(solver, Transfer(addr(u0), 4), nonce=0),
                   r"^nonce 0 was already used \(the account is at 2\)$",
                   ledger_match="^nonce 0 is not the account's next nonce 2$", reason="nonce")
    done = net.produce()
    assert list(done.block.txs) == [wallet]
    assert (net.account(solver).nonce, net.account(solver).consensus_nonce) == (3, 0)
    # The commit at consensus nonce 0 lands beside the wallet's next, and moves only its own sequence.
    commit = net.submit(solver, Commit(net.next_height + 1, b"\x01" * 32))
    later = net.submit(solver, Transfer(addr(u0), 5))
    assert (commit.nonce, later.nonce) == (0, 3)
    assert set(net.produce().block.txs) == {commit, later}
    assert (net.account(solver).nonce, net.account(solver).consensus_nonce) == (4, 1)


def test_a_consensus_tx_that_fails_in_its_block_takes_no_wallet_tx_with_it(net):
    """Two accounts report one equivocation; the better-paying report goes first, so the other fails in
    the block.  When reports and transfers shared one nonce sequence, the failed report's sender's
    next transfer failed with it (a nonce behind) and was dropped from the mempool: lost, though it
    was admitted.  Now the report counts the consensus nonce, and the transfer lands."""
    u0, u1 = net.users[:2]
    net.produce_until(2)
    first = Header(net.next_height, net.chain.head.hash, 1, bytes(32), bytes(32), bytes(32),
                   bytes(32)).signed(net.solver_key)
    evidence = Evidence(HEADER.encode(first), HEADER.encode(replace(first, timestamp=2).signed(net.solver_key)))
    winner = net.submit(u1, evidence, fee=2 * FEE)
    loser = net.submit(u0, evidence)
    transfer = net.submit(u0, Transfer(addr(u1), 5))
    done = net.produce()
    assert winner in done.block.txs and loser not in done.block.txs
    assert transfer in done.block.txs
    assert net.state().solver(addr(net.solver_key)) is None  # slashed once


def test_a_bid_only_a_block_already_being_built_could_take_is_refused_not_dropped(net):
    """Once block n's slot has begun (by the engine's clock) its proposals are built: a bid whose last
    block is n would be admitted, reported sent, and dropped when n lands.  It is refused instead."""
    u0 = net.users[0]
    net.produce_until(2)
    n, L = net.next_height, net.g.gate_closure
    net.node.now_ms = net.now(n) - 1
    assert net.node.next_block() == n
    early = net.bid(u0, BUY, n + L, 1_000, 300_000)
    net.node.now_ms = net.now(n)
    assert net.node.next_block() == n + 1
    with pytest.raises(TxError, match=f"^slot {n + L} closed for bids at height {n}") as refused:
        net.bid(u0, BUY, n + L, 2_000, 300_000)
    assert refused.value.reason == "gate_closed"
    gapped = net.tx(u0, Bid(BUY, n + L, 3_000, 300_000, 0, n + L), nonce=net.next_nonce(u0) + 1)
    with pytest.raises(TxError, match=f"^slot {n + L} closed for bids at height {n} .* is {n + 1}$") as refused:
        net.node.submit_tx(gapped)  # behind a gap: not tried on the ledger, refused all the same
    assert refused.value.reason == "gate_closed"
    later = net.bid(u0, BUY, n + L + 1, 1_000, 300_000)
    assert set(net.produce().block.txs) == {early, later}


def test_insufficient_balance_for_fee_and_escrow_is_refused(net):
    poor, slot = net.poor, net.next_height + net.g.gate_closure
    price = (POOR_BALANCE - FEE) * 1000 // 1_000  # 1000 Wh at this price escrows everything but the fee
    assert_applies(net, net.tx(poor, Bid(BUY, slot, 1_000, price, 0, slot)))
    assert_refused(net, net.tx(poor, Bid(BUY, slot, 1_000, price + 1, 0, slot)),
                   "^insufficient balance: 0.02 tokens, the transaction needs 0.020001 tokens$")
    assert_applies(net, net.tx(poor, Transfer(addr(net.stranger), POOR_BALANCE - FEE)))
    assert_refused(net, net.tx(poor, Transfer(addr(net.stranger), POOR_BALANCE - FEE + 1)), "^insufficient balance")
    assert_refused(net, net.tx(net.stranger, Transfer(addr(poor), 1)),
                   "^insufficient balance: 0.00 tokens, the transaction needs 0.001001 tokens$")
    with pytest.raises(TxError) as refused:  # tokens for people, integers for programs (the API's error JSON)
        ledger.apply_tx(net.state(), net.tx(net.stranger, Transfer(addr(poor), 1)), net.next_height, net.g)
    assert refused.value.fields == {"balance": 0, "needs": FEE + 1}


def test_bid_after_gate_closure_beyond_horizon_or_expired_is_refused(net):
    net.produce_until(2)
    g, u0, n = net.g, net.users[0], net.next_height
    L, H = g.gate_closure, g.bid_horizon
    assert_applies(net, net.tx(u0, Bid(SELL, n + L, 1_000, 200_000, 0, n)))
    assert_refused(net, net.tx(u0, Bid(SELL, n + L - 1, 1_000, 200_000, 0, n)),
                   f"^slot {n + L - 1} closed for bids at height {n - 1} .*the chain is at height {n}$",
                   reason="gate_closed")
    assert_applies(net, net.tx(u0, Bid(SELL, n + H, 1_000, 200_000, 0, n + H)))
    assert_refused(net, net.tx(u0, Bid(SELL, n + H + 1, 1_000, 200_000, 0, n + H)),
                   f"^slot {n + H + 1} is more than {H} slots ahead of height {n}$")
    assert_refused(net, net.tx(u0, Bid(SELL, n + L, 1_000, 200_000, 0, n - 1)), f"^bid expired at height {n - 1}$")


def test_opposite_side_bid_of_one_address_in_one_slot_is_refused(net):
    u0, u1 = net.users[:2]
    slot = net.next_height + net.g.gate_closure + 1
    net.bid(u0, SELL, slot, 1_000, 200_000)
    net.produce()
    assert_refused(net, net.tx(u0, Bid(BUY, slot, 1_000, 400_000, 0, slot)),
                   f"^this address already has an open sell bid for slot {slot}: one side per slot")
    assert_applies(net, net.tx(u0, Bid(SELL, slot, 500, 210_000, 0, slot)))  # same side: fine
    assert_applies(net, net.tx(u0, Bid(BUY, slot + 1, 1_000, 400_000, 0, slot + 1)))  # other slot: fine
    # the rule also holds against the sender's own pending transactions
    net.bid(u1, BUY, slot, 1_000, 400_000)
    assert_refused(net, net.tx(u1, Bid(SELL, slot, 1_000, 200_000, 0, slot)),
                   f"^this address already has an open buy bid for slot {slot}", ledger_match=None)


def test_cancel_of_someone_elses_bid_or_after_gate_closure_is_refused(net):
    u0, u1 = net.users[:2]
    L = net.g.gate_closure
    slot = net.next_height + L + 1
    bid = net.bid(u0, BUY, slot, 2_000, 400_000)
    net.produce()  # height slot - L - 1: the slot still takes bids and cancels in the next block
    assert_refused(net, net.tx(u1, CancelBid(bid.hash)), f"^no bid {bid.hash.hex()} of this address$")
    assert_refused(net, net.tx(u1, CancelBid(bytes(32))), "^no bid 0{64} of this address$")
    assert_applies(net, net.tx(u0, CancelBid(bid.hash)))
    net.produce()  # height slot - L: closed
    assert_refused(net, net.tx(u0, CancelBid(bid.hash)),
                   f"^slot {slot} closed at height {slot - L}: its bids are final$")
    assert net.state().bid(bid.hash).status == OPEN
    assert net.account(u0).escrowed == escrow_for(2_000, 400_000)


def test_cancel_returns_the_escrow_and_cannot_repeat(net):
    u0 = net.users[0]
    slot = net.next_height + net.g.gate_closure + 2
    bid = net.bid(u0, BUY, slot, 2_000, 400_000)
    net.produce()
    assert net.account(u0).escrowed == 800_000
    net.submit(u0, CancelBid(bid.hash))
    net.produce()
    acct = net.account(u0)
    assert (acct.balance, acct.escrowed) == (10**12 - 2 * FEE, 0)
    assert net.state().bid(bid.hash).status == CANCELLED
    assert_refused(net, net.tx(u0, CancelBid(bid.hash)), f"^bid {bid.hash.hex()} is already cancelled$", reason="ended")


def test_commit_by_a_non_solver_or_outside_its_window_is_refused(net):
    net.produce_until(3)
    n, C = net.next_height, net.g.commit_window
    solver, u0 = net.solver_key, net.users[0]
    assert_refused(net, net.tx(u0, Commit(n + 1, bytes(32))), "^only registered solvers commit solutions$")
    for h in (n + 1, n + C):
        assert_applies(net, net.tx(solver, Commit(h, bytes(32))))
    for h in (n, n - 1, n + C + 3):
        assert_refused(net, net.tx(solver, Commit(h, bytes(32))),
                       f"^a commit for height {h} belongs in blocks {h - C}..{h - 1}; this is height {n}$")
    # One or two blocks early: the rule refuses it in block n, the node holds it for its window (below).
    with pytest.raises(TxError, match="belongs in blocks"):
        ledger.apply_tx(net.state(), net.tx(solver, Commit(n + C + 1, bytes(32))), n, net.g)
    net.submit(solver, Commit(n + C, bytes(32)))
    net.produce()  # height n + C is still ahead, its window still open
    assert_refused(net, net.tx(solver, Commit(n + C, b"\x01" * 32)),
                   f"^this solver already committed for height {n + C}$")


def test_meter_readings_that_are_early_late_duplicate_or_not_from_the_registered_meter_are_refused(net):
    u0, u1 = net.users[0], net.users[1]
    net.produce_until(2)
    n = net.next_height
    assert_refused(net, net.tx(u0, net.reading(u0, n - 1, 100)),
                   r"^no meter is registered to this address \(`transx meter register`\)$")
    net.register_meter(u0)
    net.produce()
    n = net.next_height
    assert_refused(net, net.tx(u0, net.reading(u0, n, 100)), f"^slot {n} has not been delivered yet \\(height {n}\\)$")
    assert_refused(net, net.tx(u0, net.reading(u0, n + 5, 100)), "has not been delivered yet")
    # Signed by another meter, signed for another account, altered after signing, unsigned:
    forged = [net.reading(u1, n - 1, 100), replace(net.reading(u0, n - 1, 100), imported_wh=10),
              MeterReading(n - 1, 100, 0)]
    alien = SigningKey(bytes(32))
    forged.append(sign_reading(alien, chain_id=net.g.chain_id, account=addr(u0), slot=n - 1, imported_wh=100))
    for r in forged:
        assert_refused(net, net.tx(u0, r), "^the reading is not signed by the meter registered to this address$")
    net.submit(u0, net.reading(u0, n - 1, 100))
    net.produce()
    assert_refused(net, net.tx(u0, net.reading(u0, n - 1, 0, 50)), f"^a reading for slot {n - 1} is already on chain$")
    assert_applies(net, net.tx(u0, net.reading(u0, n, 0, 50)))
    # The window: slot s's readings belong in blocks s+1 .. s+W.
    W = net.g.meter_window
    net.produce_until(n + W)
    assert_applies(net, net.tx(u0, net.reading(u0, n + 1, 7)))
    net.produce()
    assert_refused(net, net.tx(u0, net.reading(u0, n + 1, 7)),
                   f"^readings for slot {n + 1} closed at height {n + 1 + W} \\(meter window {W} slots\\); "
                   f"the chain is at height {n + W + 2}$")


def test_register_solver_below_the_deposit_is_refused(net):
    u0, g = net.users[0], net.g
    assert_refused(net, net.tx(u0, RegisterSolver(g.solver_deposit - 1)),
                   "^a solver's deposit is at least 100.00 tokens$")
    assert_applies(net, net.tx(net.solver_key, RegisterSolver(1)))  # a top-up of a registered solver


def test_replacement_transaction_gets_the_same_stateful_checks(net):
    u0 = net.users[0]
    slot = net.next_height + net.g.gate_closure
    good = net.bid(u0, BUY, slot, 1_000, 300_000)
    closed = net.tx(u0, Bid(BUY, slot - 1, 1_000, 300_000, 0, slot), nonce=0, fee=2 * FEE)
    try:
        with pytest.raises(TxError, match="closed for bids"):
            net.node.submit_tx(closed)
    finally:
        # What the user loses today: the valid bid was displaced, the builder then drops the replacement.
        if closed.hash in net.node.mempool:
            assert good.hash not in net.node.mempool
            assert net.produce().block.txs == ()


# -------------------------------------------------------- block validation
@pytest.fixture(scope="module")
def pending(tmp_path_factory):
    """A chain at height slot - 1 and a good block for `slot` (a real clearing plus two transactions)."""
    n = Net(str(tmp_path_factory.mktemp("blocks") / "db"))
    slot = n.next_height + n.g.gate_closure
    market_bids(n, slot)
    n.produce_until(slot - 1)
    n.submit(n.users[0], Transfer(addr(n.stranger), 1_000))
    n.submit(n.users[1], Transfer(addr(n.stranger), 2_000))
    market, pairs = n.chain.market(slot)
    clearing = solve_slot(market, pairs, n.g).clearing
    assert clearing.trades and clearing.lam and clearing.mu
    block, rejected = n.chain.build_block(n.solver_key, clearing, n.node.mempool.select(100, n.node.chain_nonce),
                                          n.now())
    assert not rejected and len(block.txs) == 2
    yield n, block
    n.close()


def resign(net: Net, block: Block, **header) -> Block:
    return replace(block, header=replace(block.header, **header).signed(net.solver_key))


def with_clearing(net: Net, block: Block, clearing: BlockClearing) -> Block:
    return Block(replace(block.header, clearing_hash=clearing.hash).signed(net.solver_key), block.txs, clearing)


def oversell(net: Net, block: Block) -> Block:
    """One seller's trades sum to 1 Wh more than it offered."""
    c, inst = block.clearing, net.chain.market(block.height)[0].instance
    t = c.trades[0]
    sold = sum(x.wh for x in c.trades if x.seller == t.seller)
    extra = inst.sellers[t.seller].wh - sold + 1
    bumped = replace(t, wh=t.wh + extra, payment=t.payment + ceil_div(extra * inst.sellers[t.seller].price, 1000))
    return with_clearing(net, block, replace(c, trades=(bumped,) + c.trades[1:]))


def forged_multiplier(net: Net, block: Block) -> Block:
    c = block.clearing
    return with_clearing(net, block, replace(c, lam=(Multiplier(c.lam[0].index, 1),) + c.lam[1:]))


def flipped_signature(net: Net, block: Block) -> Block:
    sig = bytearray(block.header.signature)
    sig[10] ^= 0x04
    return replace(block, header=replace(block.header, signature=bytes(sig)))


def bad_tx_inside(net: Net, block: Block) -> Block:
    """A replay of the first transaction appended (the header's tx root updated and re-signed)."""
    txs = block.txs + block.txs[:1]
    return replace(resign(net, block, tx_root=tx_root(txs)), txs=txs)


def proposer_not_solver(net: Net, block: Block) -> Block:
    return net.chain.build_block(net.users[0], block.clearing, list(block.txs), block.header.timestamp)[0]


TAMPERS = {
    "wrong parent": (lambda n, b: resign(n, b, parent=b"\x01" * 32), "does not extend the head"),
    "wrong height": (lambda n, b: resign(n, b, height=b.height + 1), "does not extend the head"),
    "flipped signature bit": (flipped_signature, "^bad proposer signature$"),
    "signature by another key": (
        lambda n, b: replace(b, header=replace(b.header, signature=keys.sign(key("mallory"), b.header.signing_bytes()))),
        "^bad proposer signature$"),
    "state hash": (lambda n, b: resign(n, b, state_hash=b"\x07" * 32), "^state hash does not match$"),
    "tx root": (lambda n, b: resign(n, b, tx_root=tx_root(b.txs[:1])), "^transaction root does not match$"),
    "transaction dropped": (lambda n, b: replace(b, txs=b.txs[:1]), "^transaction root does not match$"),
    "clearing swapped": (lambda n, b: replace(b, clearing=BlockClearing(void=True)), "^clearing hash does not match$"),
    "seller oversold by 1 Wh": (oversell, r"^clearing of slot \d+ is invalid: .*seller .* sells \d+ Wh of \d+"),
    "forged multiplier": (forged_multiplier, r"^clearing of slot \d+ is invalid: "),
    "replayed transaction": (bad_tx_inside, r"^a transaction appears twice$"),
    "proposer not a solver": (proposer_not_solver, "^the proposer is not a registered solver$"),
    "stamped before its slot": (lambda n, b: resign(n, b, timestamp=n.now() - 1), "stamped before its slot starts"),
    "stamped in the future": (
        lambda n, b: n.chain.build_block(n.solver_key, b.clearing, list(b.txs), n.now() + MAX_FUTURE_MS + 1)[0],
        "^block is stamped in the future$"),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_invalid_block_is_rejected_and_nothing_is_written(pending, tamper):
    net, good = pending
    make, message = TAMPERS[tamper]
    bad = make(net, good)
    assert bad != good
    db, head = whole_db(net.store), net.chain.head
    with pytest.raises(BlockError, match=message):
        net.chain.connect(bad, net.now())
    assert net.chain.head == head
    assert whole_db(net.store) == db


def test_the_fallback_clearing_connects_uncertified_ranked_below_the_certified_one(pending):
    """The one clearing valid without a certificate (solver/fallback.py) makes a block; the solver's
    certified clearing of the same slot outranks it."""
    net, good = pending
    market, pairs = net.chain.market(good.height)
    plain = fallback(market.instance, pairs).clearing
    clearing = BlockClearing.from_clearing(market.instance, Clearing(plain.slot, plain.trades))
    block = net.chain.build_block(net.solver_key, clearing, list(good.txs), good.header.timestamp)[0]
    ours, theirs = net.chain.rank(good), net.chain.rank(block)
    assert not ours.uncertified and theirs.uncertified and ours < theirs
    net.chain.connect(block, net.now())
    assert net.chain.head == block.header
    assert block_json(net.chain, block)["clearing"]["certified"] is False  # what the API and exports say
    net.chain.revert_head()
    net.chain.connect(good, net.now())
    assert block_json(net.chain, good)["clearing"]["certified"] is True
    net.chain.revert_head()


def test_the_untampered_block_connects(pending):
    """The control for the tampers: the good block, and one stamped at the edge of the future window."""
    net, good = pending
    for block, now in ((good, net.now()),
                       (net.chain.build_block(net.solver_key, good.clearing, list(good.txs), net.now() + MAX_FUTURE_MS)[0],
                        net.now())):
        before = snapshot(net.store)
        net.chain.connect(block, now)
        assert net.chain.head == block.header
        net.chain.revert_head()
        assert snapshot(net.store) == before


# ----------------------------------------------------------------- datadir
@pytest.mark.parametrize("edit", [{"chain_id": "transx-other"}, {"block_reward": 2_000_000}])
def test_datadir_of_another_network_is_refused_and_reopening_keeps_the_head(tmp_path, edit):
    path = str(tmp_path / "db")
    net = Net(path)
    sent = net.submit(net.users[0], Transfer(addr(net.stranger), 99))
    net.produce_until(2)
    head, state = net.chain.head, snapshot(net.store)
    net.close()

    doc = G.dev_genesis([addr(k) for k in net.users] + [addr(net.solver_key)], [addr(net.solver_key)],
                        slot_seconds=1, start=START)
    doc["balances"][keys.encode_address(addr(net.poor))] = POOR_BALANCE
    same = G.genesis_from_json(doc)
    assert same.hash == net.g.hash
    doc.update(edit)
    other = G.genesis_from_json(doc)

    store = Store(path)
    try:
        with pytest.raises(StoreError, match="belongs to another network"):
            Chain(store, other)
        chain = Chain(store, same)
        assert chain.head == head and chain.height == 2
        assert snapshot(store) == state
        assert chain.tx(sent.hash) == (sent, 1, 0)
    finally:
        store.close()


# ------------------------------------------------------------ abuse limits
def test_nothing_free_sits_in_the_mempool(net):
    """A sender must afford every transaction it has pending, gapped ones included; behind a gap it may
    queue only a few, and they expire: an unfunded key cannot fill the pool."""
    stranger = net.stranger
    with pytest.raises(TxError, match="insufficient balance"):
        net.submit(stranger, Transfer(addr(net.users[0]), 1), nonce=5)
    poor = net.poor
    net.submit(poor, Transfer(addr(net.users[0]), 1_000), nonce=1)  # behind a gap, but affordable
    with pytest.raises(TxError, match="with 1 pending, the transactions need"):
        net.submit(poor, Transfer(addr(net.users[0]), POOR_BALANCE), nonce=2)
    u = net.users[0]
    from consensus.mempool import GAP_TTL, MAX_GAP

    for n in range(1, MAX_GAP + 1):
        net.submit(u, Transfer(addr(net.users[1]), 1), nonce=n)
    with pytest.raises(TxError, match="too far past the sender's next nonce"):
        net.submit(u, Transfer(addr(net.users[1]), 1), nonce=MAX_GAP + 1)
    gapped = len(net.node.mempool)
    net.produce_until(net.height + GAP_TTL + 1)
    assert len(net.node.mempool) == 0 < gapped  # expired, never mined


def test_a_slot_holds_at_most_max_bids_per_slot_per_side(tmp_path):
    n = Net(str(tmp_path / "db"), max_bids_per_slot=2)
    try:
        slot = n.next_height + n.g.gate_closure + 1
        n.bid(n.users[0], SELL, slot, 1_000, 200_000)
        n.bid(n.users[1], SELL, slot, 1_000, 200_000)
        n.bid(n.users[2], BUY, slot, 1_000, 400_000)  # the other side has its own count
        n.bid(n.users[4], SELL, slot, 1_000, 200_000)  # admitted, but the block has room for two sells only
        done = n.produce()
        assert len(done.block.txs) == 3 and len(n.node.mempool) == 0
        with pytest.raises(TxError, match=f"slot {slot} is full: it holds 2 sell bids"):
            n.bid(n.users[3], SELL, slot, 1_000, 200_000)
        n.bid(n.users[3], SELL, slot + 1, 1_000, 200_000)  # another slot is not full
    finally:
        n.close()


def test_a_solver_withdraws_and_gets_its_deposit_back_after_the_delay(net):
    u = net.users[0]
    g = net.g
    net.submit(u, RegisterSolver(g.solver_deposit))
    net.produce()
    before = net.account(u).balance
    assert net.state().solver(addr(u)).deposit == g.solver_deposit
    from consensus.rules.transactions import WithdrawSolver

    net.submit(u, WithdrawSolver())
    done = net.produce()
    exit_at = done.block.height + g.withdrawal_delay
    assert net.state().solver(addr(u)).exit_at == exit_at
    with pytest.raises(TxError, match="already withdrawing"):
        net.submit(u, WithdrawSolver())
    h = net.next_height  # while it withdraws it proposes nothing (it could equivocate at its exit and escape)
    market, pairs = net.chain.market(h)
    late, _ = net.chain.build_block(u, solve_slot(market, pairs, g).clearing, [], net.now(h))
    with pytest.raises(BlockError, match="withdrawing"):
        net.chain.connect(late, net.now(h))
    with pytest.raises(BlockError, match="below height 1"):
        net.chain.offer(replace(late, header=replace(late.header, height=0)), net.now(h))
    net.produce_until(exit_at - 1)
    assert net.state().solver(addr(u)) is not None  # still bonded (and slashable) during the delay
    net.produce()
    assert net.state().solver(addr(u)) is None
    assert net.account(u).balance == before - FEE + g.solver_deposit
    held, minted = ledger.money_in_state(net.state())
    assert held == minted


def test_a_new_solver_cannot_propose_before_its_lottery_reference_block_is_unknown_to_it(net):
    """Registered at height r, a solver may propose block h only when r < h - L: it could not have
    chosen its key knowing hash(block h - L), so it cannot grind the lottery."""
    u = net.users[0]
    net.submit(u, RegisterSolver(net.g.solver_deposit))
    r = net.produce().block.height
    h = net.next_height
    market, pairs = net.chain.market(h)
    early, _ = net.chain.build_block(u, solve_slot(market, pairs, net.g).clearing, [], net.now(h))
    with pytest.raises(BlockError, match=f"registered at height {r}: too late to propose block {h}"):
        net.chain.connect(early, net.now(h))
    net.produce_until(r + net.g.gate_closure)
    h = net.next_height
    market, pairs = net.chain.market(h)
    ok, _ = net.chain.build_block(u, solve_slot(market, pairs, net.g).clearing, [], net.now(h))
    net.chain.connect(ok, net.now(h))
    assert net.chain.head.hash == ok.hash


def test_a_commit_gossiped_a_block_before_its_window_is_held_for_it_not_refused(net):
    """A peer one block ahead sends a commit whose window opens after our next block: we hold it (a
    refused commit is never sent again, and its honest solver loses the round) and put it in the first
    block of its window, not before."""
    solver = net.solver_key
    net.produce_until(2)
    n, C = net.next_height, net.g.commit_window
    early = net.submit(solver, Commit(n + C + 1, b"\x09" * 32))  # its window is n+1 .. n+C
    assert early.hash in net.node.mempool
    assert early not in net.produce().block.txs  # block n: not yet
    assert early in net.produce().block.txs  # block n+1: the first of its window
    with pytest.raises(TxError, match="belongs in blocks"):  # too early by more than the margin: refused
        net.submit(solver, Commit(net.next_height + C + 3, bytes(32)))


def test_a_commit_far_ahead_that_slipped_in_behind_a_nonce_gap_is_not_held_for_ever(net):
    """Behind a gap a transaction is not tried; a commit whose window opens far ahead must not then sit
    at the head of its sender's queue for ever, blocking it: it is offered, refused and dropped."""
    solver = net.solver_key
    net.produce_until(2)
    n = net.state().account(addr(solver)).consensus_nonce
    far = net.node.submit_tx(net.tx(solver, Commit(2**40, bytes(32)), nonce=n + 1)).tx  # behind the gap: untried
    net.submit(solver, Commit(net.next_height + 1, b"\x03" * 32))  # fills the gap (nonce n)
    later = net.node.submit_tx(net.tx(solver, Commit(net.next_height + 2, b"\x04" * 32), nonce=n + 2)).tx
    net.produce()
    net.produce()
    assert far.hash not in net.node.mempool
    assert later.hash not in net.node.mempool or net.state().get(schema.commit(later.body.height, addr(solver)))
