"""EV charging sessions on chain: the authorisation's rules, what the owner pays, what the station gets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from chain_support import FEE, Net, addr, escrow_in_accounts, escrow_in_bids, key, snapshot
from consensus.rules import ledger
from consensus.rules.charging import AUTHORISATION, AuthError, Receipt, authorise, decode_authorisation, decode_receipt, session_cost, sign_receipt
from consensus.rules.state import SESSION_CLOSED, SESSION_EXPIRED, SESSION_OPEN
from consensus.rules.transactions import InvalidTx, SessionClose, SessionOpen, TxError, escrow_for

PRICE = 600_000  # micro-units per kWh


def _auth(net, owner, *, max_wh=30_000, max_price=700_000, nonce=1, expiry=None, chain_id=None):
    return authorise(owner, chain_id=chain_id or net.g.chain_id, ev_id="WXY-1234", max_wh=max_wh, max_price=max_price,
                     expiry=net.now(net.height + 100) if expiry is None else expiry, nonce=nonce)


def test_authorisation_round_trips_and_a_tampered_one_is_refused():
    owner = key("owner")
    auth = authorise(owner, chain_id="c", ev_id="EV", max_wh=10_000, max_price=500_000, expiry=10**12, nonce=7)
    assert decode_authorisation(auth.encoded) == auth
    for i in (20, 40, len(auth.encoded) - 1):  # the owner key, the quantities, the signature
        bad = bytearray(auth.encoded)
        bad[i] ^= 1
        with pytest.raises(AuthError):
            decode_authorisation(bytes(bad))
    with pytest.raises(AuthError, match="malformed"):
        decode_authorisation(auth.encoded + b"\x00")
    station = key("station")
    receipt = sign_receipt(station, Receipt("c", bytes(32), auth.session_id, 8_000, 4_000_000, 20, 80, 10**12))
    assert decode_receipt(receipt.encoded) == receipt
    bad = bytearray(receipt.encoded)
    bad[-70] ^= 1
    with pytest.raises(AuthError):
        decode_receipt(bytes(bad))


def test_a_session_locks_the_most_it_may_cost_and_pays_for_what_was_delivered(net):
    owner, station = net.users[0], net.users[1]
    auth = _auth(net, owner)
    before_owner, before_station = net.account(owner), net.account(station)
    net.submit(station, SessionOpen(auth, PRICE, 20))
    net.produce()
    escrow = escrow_for(30_000, PRICE)
    assert net.account(owner).balance == before_owner.balance - escrow
    assert net.account(owner).escrowed == escrow
    rec = net.state().session(auth.session_id)
    assert rec.status == SESSION_OPEN and rec.station == addr(station) and rec.owner == addr(owner)
    net.submit(station, SessionClose(auth.session_id, 12_345, 85))
    net.produce()
    paid = session_cost(12_345, PRICE)
    assert paid == 7_407_000
    assert net.account(owner).balance == before_owner.balance - paid and net.account(owner).escrowed == 0
    assert net.account(station).balance == before_station.balance - 2 * FEE + paid
    rec = net.state().session(auth.session_id)
    assert (rec.status, rec.delivered_wh, rec.amount, rec.soc_end) == (SESSION_CLOSED, 12_345, paid, 85)
    assert [i for i, _ in net.chain.sessions_of(addr(owner))] == [auth.session_id]
    assert [i for i, _ in net.chain.sessions_of(addr(station))] == [auth.session_id]


def test_the_chain_refuses_replayed_expired_overpriced_and_unpayable_authorisations(net):
    owner, station, other = net.users[0], net.users[1], net.users[2]
    auth = _auth(net, owner)
    net.submit(station, SessionOpen(auth, PRICE, 20))
    net.produce()
    with pytest.raises(TxError, match="already used"):
        net.submit(other, SessionOpen(auth, PRICE, 20))  # a replay, even at another station
    with pytest.raises(TxError, match="expired"):
        net.submit(station, SessionOpen(_auth(net, owner, nonce=2, expiry=net.now(net.height) - 1), PRICE, 20))
    with pytest.raises(TxError, match="^the station's price 0.60 is above the authorised 0.599999 tokens per kWh$"):
        net.submit(station, SessionOpen(_auth(net, owner, nonce=3, max_price=PRICE - 1), PRICE, 20))
    with pytest.raises(TxError, match="^the EV owner's balance 0.02 tokens does not cover 600.00 tokens for 1,000.000 kWh "
                                      "at 0.60 tokens per kWh$"):
        net.submit(station, SessionOpen(_auth(net, net.poor, nonce=4, max_wh=1_000_000), PRICE, 20))
    with pytest.raises(InvalidTx, match="for chain"):
        net.submit(station, SessionOpen(_auth(net, owner, nonce=5, chain_id="elsewhere"), PRICE, 20))
    forged = AUTHORISATION.decode(_auth(net, owner, nonce=6).encoded[:-64] + bytes(64))
    with pytest.raises(InvalidTx, match="signature"):
        net.submit(station, SessionOpen(forged, PRICE, 20))


def test_only_the_opening_station_closes_once_within_the_authorised_energy(net):
    owner, station, other = net.users[0], net.users[1], net.users[2]
    auth = _auth(net, owner, max_wh=10_000)
    net.submit(station, SessionOpen(auth, PRICE, 20))
    net.produce()
    with pytest.raises(TxError, match="opened by this station"):
        net.submit(other, SessionClose(auth.session_id, 1_000, 30))
    with pytest.raises(TxError, match="^10.001 kWh delivered is more than the authorised 10.000 kWh$"):
        net.submit(station, SessionClose(auth.session_id, 10_001, 30))
    net.submit(station, SessionClose(auth.session_id, 10_000, 90))
    net.produce()
    with pytest.raises(TxError, match="already closed"):
        net.submit(station, SessionClose(auth.session_id, 0, 90))


@settings(max_examples=40, deadline=None)
@given(max_wh=st.integers(1, 1_000_000), price=st.integers(1, 2_000_000), frac=st.fractions(0, 1),
       same=st.booleans())
def test_sessions_conserve_money(tmp_path_factory, max_wh, price, frac, same):
    net = Net(str(tmp_path_factory.mktemp("s") / "db"))
    try:
        owner = net.users[0]
        station = owner if same else net.users[1]
        auth = _auth(net, owner, max_wh=max_wh, max_price=price)
        minted = ledger.money_in_state(net.state())[1]
        net.submit(station, SessionOpen(auth, price, 10))
        net.produce()
        held, total = ledger.money_in_state(net.state())
        assert held == total
        assert escrow_in_accounts(net.state()) - escrow_in_bids(net.state()) == escrow_for(max_wh, price)
        delivered = int(max_wh * frac)
        net.submit(station, SessionClose(auth.session_id, delivered, 50))
        net.produce()
        held, total = ledger.money_in_state(net.state())
        assert held == total and total > minted  # only block rewards were added
        assert escrow_in_accounts(net.state()) == escrow_in_bids(net.state())
    finally:
        net.close()


def test_a_session_its_station_never_closes_expires_and_the_owner_gets_the_escrow_back(net):
    owner, station = net.users[0], net.users[1]
    T = net.g.session_timeout
    auth = _auth(net, owner, expiry=net.now(net.height + 10 * T))
    before = net.account(owner)
    net.submit(station, SessionOpen(auth, PRICE, 20))
    opened = net.produce().block.height
    escrow = escrow_for(30_000, PRICE)
    assert net.account(owner).escrowed == escrow
    net.produce_until(opened + T - 1)
    assert net.state().session(auth.session_id).status == SESSION_OPEN  # the last block it may be closed in is next
    pre = snapshot(net.store)
    expiring = net.produce()  # block opened + T
    rec = net.state().session(auth.session_id)
    assert (rec.status, rec.closed, rec.escrow, rec.delivered_wh, rec.amount) == (SESSION_EXPIRED, opened + T, 0, 0, 0)
    assert net.account(owner) == before  # every micro-unit back, nothing paid
    with pytest.raises(TxError, match=f"already expired \\(not closed within {T} slots\\)"):
        net.submit(station, SessionClose(auth.session_id, 5_000, 60))
    held, total = ledger.money_in_state(net.state())
    assert held == total and escrow_in_accounts(net.state()) == escrow_in_bids(net.state())
    # The expiry is undone exactly by a reorg, and happens again on the way back.
    after = snapshot(net.store)
    net.chain.revert_head()
    assert snapshot(net.store) == pre
    net.chain.connect(expiring.block, net.now(expiring.block.height))
    assert snapshot(net.store) == after


def test_a_session_closed_in_time_does_not_expire_later(net):
    owner, station = net.users[0], net.users[1]
    T = net.g.session_timeout
    auth = _auth(net, owner, expiry=net.now(net.height + 10 * T))
    net.submit(station, SessionOpen(auth, PRICE, 20))
    opened = net.produce().block.height
    net.submit(station, SessionClose(auth.session_id, 2_000, 30))
    net.produce()
    owner_then = net.account(owner)
    net.produce_until(opened + T + 1)
    rec = net.state().session(auth.session_id)
    assert (rec.status, rec.amount) == (SESSION_CLOSED, session_cost(2_000, PRICE))
    assert net.account(owner) == owner_then
    assert list(net.state().items(b"sk")) == []  # no deadline left behind


def test_an_owners_history_lists_the_sessions_its_station_sent_and_a_revert_takes_them_out(tmp_path):
    from transxnode.api import views

    net = Net(str(tmp_path / "db"), session_timeout=2)
    try:
        owner, station = net.users[0], net.users[1]
        closed, expires = _auth(net, owner, nonce=1), _auth(net, owner, nonce=2)
        net.submit(station, SessionOpen(closed, PRICE, 20))
        net.submit(station, SessionOpen(expires, PRICE, 20))
        opened = net.produce().block.height
        net.submit(station, SessionClose(closed.session_id, 1_000, 30))
        net.produce()
        pre = snapshot(net.store)
        expiring = net.produce()  # block opened + 2: the session left open expires

        def history(k, **kw):
            return views.address_history(net.chain, addr(k), 50, **kw)

        rows, after = history(owner)
        assert after is None
        assert [(h["kind"], h["height"]) for h in rows] == [
            ("session_expired", opened + 2), ("session_close", opened + 1), ("session_open", opened),
            ("session_open", opened)]
        assert rows[0]["session"] == expires.session_id.hex() and rows[1]["amount"] == session_cost(1_000, PRICE)
        assert [h["kind"] for h in history(station)[0]] == [h["kind"] for h in rows]  # it sent them
        # Paging: one entry a page, down to the oldest; "h.n" is the n-th entry of block h; "h" all below it.
        assert views.address_history(net.chain, addr(owner), 1)[1] == f"{opened + 2}.0"
        assert [h["kind"] for h in history(owner, before=(opened + 1, 0))[0]] == ["session_open"] * 2
        assert history(owner, before=(opened, 1))[0] == [rows[3]]
        # The entries go with the block that made them, and come back with it.
        done = snapshot(net.store)
        net.chain.revert_head()
        assert snapshot(net.store) == pre
        assert [h["kind"] for h in history(owner)[0]][0] == "session_close"
        net.chain.connect(expiring.block, net.now(expiring.block.height))
        assert snapshot(net.store) == done
    finally:
        net.close()
