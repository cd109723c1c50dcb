"""The mempool on its own: ordering, replacement, the bound, pruning; real signed transactions."""

from __future__ import annotations

import pytest
from chain_support import addr, key
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.mempool import Mempool
from consensus.rules.transactions import BUY, CONSENSUS, SELL, WALLET, Bid, Commit, Transfer, TxError, sign_tx

CHAIN_ID = "transx-dev"
L = 3  # dev_genesis gate closure
SENDERS = [key(f"mempool-sender{i}") for i in range(6)]
A, B, C, D = SENDERS[:4]
TO = addr(key("mempool-recipient"))


def tx(k, nonce: int, fee: int, body=None):
    return sign_tx(k, chain_id=CHAIN_ID, nonce=nonce, fee=fee, body=body or Transfer(TO, 1 + nonce))


def bid(k, nonce: int, slot: int, expiry: int, fee: int = 1_000):
    return tx(k, nonce, fee, Bid(SELL if nonce % 2 else BUY, slot, 1_000, 300_000, 0, expiry))


def nonces(chain: dict | None = None):
    """The chain's next nonce by (sender, space): `chain` maps a sender to its wallet nonce, or
    (sender, space) to that space's."""
    chain = chain or {}
    return lambda sender, space=WALLET: chain.get((sender, space), chain.get(sender, 0) if space == WALLET else 0)


def filled(*txs, chain: dict | None = None, **kw) -> Mempool:
    pool = Mempool(**kw)
    for t in txs:
        pool.add(t, nonces(chain)(t.sender, t.space))
    return pool


# ------------------------------------------------------------------ select
def test_select_takes_the_highest_fee_across_senders_and_nonce_order_within_one():
    a0, a1 = tx(A, 0, 5_000), tx(A, 1, 1_000)
    b0 = tx(B, 0, 3_000)
    c0, c1 = tx(C, 0, 2_000), tx(C, 1, 9_000)  # c1 pays most but must wait for c0
    pool = filled(a1, c1, b0, a0, c0)  # arrival order does not matter
    assert pool.select(10, nonces()) == [a0, b0, c0, c1, a1]
    assert pool.select(3, nonces()) == [a0, b0, c0]
    assert pool.select(0, nonces()) == []
    assert len(pool) == 5  # select does not remove


def test_select_starts_at_the_chain_nonce_and_stops_at_a_gap():
    pool = filled(tx(A, 3, 1_000), tx(A, 4, 1_000), tx(A, 6, 50_000), tx(B, 0, 2_000), chain={addr(A): 3})
    chain = nonces({addr(A): 3})
    assert [(t.sender, t.nonce) for t in pool.select(10, chain)] == [(addr(B), 0), (addr(A), 3), (addr(A), 4)]
    # once the chain has moved past nonce 3, only 4 is next; nothing before the chain nonce is offered
    assert [t.nonce for t in pool.select(10, nonces({addr(A): 4, addr(B): 1}))] == [4]
    assert pool.select(10, nonces({addr(A): 5, addr(B): 1})) == []


queues = st.dictionaries(st.integers(0, 5), st.lists(st.integers(1_000, 1_006), min_size=1, max_size=4), min_size=1)


@settings(max_examples=60, deadline=None, database=None)
@given(queues, st.integers(0, 12))
def test_select_is_greedy_by_fee_and_keeps_each_senders_nonce_order(queue_fees, limit):
    pool = Mempool()
    for s, fees in queue_fees.items():
        for n, fee in enumerate(fees):
            pool.add(tx(SENDERS[s], n, fee), 0)
    out = pool.select(limit, nonces())
    total = sum(len(f) for f in queue_fees.values())
    assert len(out) == min(limit, total)
    next_of = {addr(SENDERS[s]): 0 for s in queue_fees}
    for t in out:
        assert t.nonce == next_of[t.sender]  # each sender's transactions in nonce order, no gap
        # and no other sender's waiting transaction paid more
        for s, fees in queue_fees.items():
            a = addr(SENDERS[s])
            if next_of[a] < len(fees):
                assert t.fee >= fees[next_of[a]]
        next_of[t.sender] += 1


# ------------------------------------------------------------- replacement
def test_replacement_needs_a_strictly_higher_fee():
    old = tx(A, 0, 2_000)
    pool = filled(old, tx(A, 1, 1_000))
    for fee in (1_000, 2_000):
        with pytest.raises(TxError, match="^a transaction with nonce 0 is already pending; replace it with a higher fee$"):
            pool.add(tx(A, 0, fee, Transfer(TO, 777)), 0)
    assert pool.get(old.hash) == old
    new = tx(A, 0, 2_001, Transfer(TO, 777))
    assert pool.add(new, 0) == old
    assert old.hash not in pool and new.hash in pool and len(pool) == 2
    assert [t.hash for t in pool.pending(addr(A))] == [new.hash, tx(A, 1, 1_000).hash]
    assert pool.select(5, nonces())[0] == new


def test_duplicate_used_and_far_ahead_nonces_are_refused():
    t = tx(A, 2, 1_000)
    pool = filled(t, chain={addr(A): 2}, max_per_sender=4)
    with pytest.raises(TxError, match="^already in the mempool$"):
        pool.add(t, 2)
    with pytest.raises(TxError, match=r"^nonce 1 was already used \(the account is at 2\)$"):
        pool.add(tx(A, 1, 9_000), 2)
    pool.add(tx(A, 5, 1_000), 2)  # 2 + 4 - 1: the last nonce a sender may queue
    with pytest.raises(TxError, match="^nonce 6 is too far ahead of the account's 2$"):
        pool.add(tx(A, 6, 1_000), 2)
    assert len(pool) == 2


# ------------------------------------------------------------ bound, eviction
def test_full_pool_evicts_the_cheapest_tail_or_refuses():
    a0, a1 = tx(A, 0, 500), tx(A, 1, 5_000)  # a0 is the cheapest, but not a tail: a1 depends on it
    b0 = tx(B, 0, 1_000)
    c0 = tx(C, 0, 3_000)
    pool = filled(a0, a1, b0, c0, max_size=4)
    with pytest.raises(TxError, match="^mempool full: the fee must beat 0.001 tokens$"):
        pool.add(tx(D, 0, 1_000), 0)
    assert len(pool) == 4
    newcomer = tx(D, 0, 1_001)
    assert pool.add(newcomer, 0) == b0  # the cheapest tail
    assert len(pool) == 4 and b0.hash not in pool and a0.hash in pool and newcomer.hash in pool
    e0 = tx(SENDERS[4], 0, 4_000)
    assert pool.add(e0, 0) == newcomer
    assert pool.add(tx(B, 0, 4_500), 0) == c0
    assert len(pool) == 4 and a0.hash in pool
    assert [t.fee for t in pool.select(10, nonces())] == [4_500, 4_000, 500, 5_000]


def test_replacement_in_a_full_pool_evicts_nobody():
    pool = filled(tx(A, 0, 1_000), tx(B, 0, 2_000), max_size=2)
    assert pool.add(tx(B, 0, 2_500), 0) == tx(B, 0, 2_000)
    assert tx(A, 0, 1_000).hash in pool and len(pool) == 2


def test_eviction_never_strands_the_newcomer_behind_a_gap():
    pool = filled(tx(A, 0, 1_000), tx(B, 0, 5_000), max_size=2)
    try:
        pool.add(tx(A, 1, 2_000), 0)  # A's nonce 0 is the cheapest tail
    except TxError:
        pass  # refusing is fine
    assert len(pool.select(10, nonces())) == len(pool)  # everything held can be mined


# --------------------------------------------------------------------- prune
def test_prune_drops_used_nonces_and_expired_or_closed_bids():
    next_height = 10
    used = tx(A, 0, 1_000)
    keep_a = tx(A, 1, 1_000)
    open_bid = bid(B, 0, slot=next_height + L, expiry=next_height)  # the last slot still open, expiring now
    closed = bid(C, 0, slot=next_height + L - 1, expiry=next_height + 5)
    expired = bid(D, 0, slot=next_height + L + 5, expiry=next_height - 1)
    later = tx(D, 1, 1_000)
    pool = filled(used, keep_a, open_bid, closed, expired, later)
    gone = pool.prune(next_height, nonces({addr(A): 1}), L)
    assert {t.hash for t in gone} == {used.hash, closed.hash, expired.hash}
    assert {h for h in pool.by_hash} == {keep_a.hash, open_bid.hash, later.hash}
    assert pool.pending(addr(A)) == [keep_a] and pool.pending(addr(C)) == []
    assert pool.prune(next_height, nonces({addr(A): 1}), L) == []  # nothing left to drop
    assert {t.hash for t in pool.prune(next_height + 1, nonces({addr(A): 2}), L)} == {keep_a.hash, open_bid.hash}


# ----------------------------------------------------------------- next_nonce
def test_next_nonce_skips_contiguous_pending_transactions_only():
    a1 = tx(A, 1, 1_000)
    pool = filled(tx(A, 0, 1_000), a1, tx(A, 3, 1_000), tx(B, 5, 1_000), chain={addr(B): 5})
    assert pool.next_nonce(addr(A), 0) == 2
    assert pool.next_nonce(addr(A), 2) == 2
    assert pool.next_nonce(addr(A), 3) == 4
    assert pool.next_nonce(addr(B), 5) == 6
    assert pool.next_nonce(addr(C), 7) == 7
    pool.remove(a1)
    assert pool.next_nonce(addr(A), 0) == 1


# --------------------------------------------------------------- nonce spaces
def commit(k, nonce: int, height: int = 20, fee: int = 1_000):
    return tx(k, nonce, fee, Commit(height, bytes([nonce]) * 32))


def test_a_senders_wallet_and_consensus_transactions_queue_apart_and_both_go_in():
    """The node's solver commits with the key a wallet bids with: each counts its own nonces, so a
    commit and a bid both at nonce 0 are both pending and both offered for one block."""
    w0, w1, c0 = tx(A, 0, 1_000), tx(A, 1, 1_000), commit(A, 0)
    pool = filled(w0, c0, w1)
    assert (w0.space, c0.space) == (WALLET, CONSENSUS)
    assert pool.next_nonce(addr(A), 0) == 2 and pool.next_nonce(addr(A), 0, WALLET) == 2
    assert pool.next_nonce(addr(A), 0, CONSENSUS) == 1
    assert pool.pending(addr(A)) == [w0, w1, c0]
    assert pool.pending(addr(A), WALLET) == [w0, w1] and pool.pending(addr(A), CONSENSUS) == [c0]
    assert set(pool.select(10, nonces())) == {w0, w1, c0}
    # A wallet transaction paying more at the commit's nonce replaces nothing of the consensus queue
    # (it was refused as a duplicate nonce, or displaced the commit, when they shared one sequence).
    with pytest.raises(TxError, match="^a transaction with nonce 0 is already pending"):
        pool.add(tx(A, 0, 1_000, Transfer(TO, 99)), 0)
    assert pool.add(tx(A, 0, 5_000, Transfer(TO, 99)), 0) == w0
    assert c0.hash in pool and pool.pending(addr(A), CONSENSUS) == [c0]
    # The chain moving one space on prunes that space only.
    gone = pool.prune(5, nonces({(addr(A), CONSENSUS): 1}), L)
    assert gone == [c0] and pool.pending(addr(A), WALLET)[1:] == [w1]


def test_a_consensus_transaction_never_takes_or_fills_a_wallet_nonce():
    """A commit at nonce 0 does not close the wallet's gap at nonce 0, and a wallet transaction at the
    consensus queue's next nonce does not fill the consensus gap: each waits for its own."""
    w1, c1 = tx(A, 1, 1_000), commit(A, 1)
    pool = filled(w1, c1)  # both behind a gap at 0
    assert pool.select(10, nonces()) == []
    pool.add(commit(A, 0), 0)
    assert pool.next_nonce(addr(A), 0, WALLET) == 0  # the wallet's next is still 0
    assert [t.space for t in pool.select(10, nonces())] == [CONSENSUS, CONSENSUS]
    pool.add(tx(A, 0, 1_000), 0)
    assert len(pool.select(10, nonces())) == 4
    # At the chain's nonces (wallet 0, consensus 2), only the wallet queue is offered.
    assert [t.nonce for t in pool.select(10, nonces({(addr(A), CONSENSUS): 2}))] == [0, 1]
    assert all(t.space == WALLET for t in pool.select(10, nonces({(addr(A), CONSENSUS): 2})))


def test_removing_an_equal_copy_forgets_the_transaction_everywhere():
    from consensus.rules.transactions import decode_tx

    t = tx(A, 0, 1_000)
    pool = filled(t)
    pool.remove(decode_tx(t.encoded))  # the same transaction, as a received block carries it
    assert t.hash not in pool and len(pool) == 0
    assert pool.select(10, nonces()) == [] and pool.pending(addr(A)) == []


def test_a_held_transaction_stops_its_own_queue_only():
    """`held` (a commit whose window has not opened) keeps it and its queue's later nonces out of the
    block; other queues go on."""
    c0, c1 = tx(A, 0, 1_000, Commit(20, b"\x01" * 32)), tx(A, 1, 1_000, Commit(21, b"\x02" * 32))
    w0 = tx(B, 0, 1_000)
    pool = filled(c0, c1, w0)
    assert pool.select(10, nonces(), held=lambda t: isinstance(t.body, Commit) and t.body.height == 20) == [w0]
    assert set(pool.select(10, nonces(), held=lambda t: isinstance(t.body, Commit) and t.body.height == 21)) == {
        c0, w0}
    assert set(pool.select(10, nonces(), held=lambda t: False)) == {c0, c1, w0}
