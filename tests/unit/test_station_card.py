"""The NFC plugin without processes: the card's records (records.py), device strings (device.py) and
the station's decisions (station.py) against an in-memory node."""

from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("nfc")
pytest.importorskip("ndef")


from transx_nfc.device import DeviceError, check_path, free_udp_port, open_frontend
from transx_nfc.records import KEEP_RECEIPTS, CardError, card_records, decode_card, encode_card, read_records
from transx_nfc.station import Charge, Station
from consensus.rules.charging import Receipt, authorise, session_cost, sign_receipt
from transxnode.client.node_api import ClientError
from consensus.rules.keys import generate
from consensus.rules.transactions import SessionClose, SessionOpen, decode_tx, escrow_for

PRICE = 600_000  # the stations' price: 0.6 per kWh


# ----------------------------------------------------------------------------- unit: records.py
def _auth(owner=None, nonce=7):
    return authorise(owner or generate(), chain_id="transx-dev", ev_id="WXY1234", max_wh=20_000, max_price=800_000,
                     expiry=2_000_000_000_000, nonce=nonce)


def _receipt(station, session: bytes, wh: int) -> Receipt:
    return sign_receipt(station, Receipt("transx-dev", bytes(32), session, wh, session_cost(wh, PRICE), 20, 30,
                                         1_800_000_000_000))


def test_a_card_round_trips_with_its_state_of_charge_and_newest_receipts():
    auth, station = _auth(), generate()
    receipts = [_receipt(station, _auth(nonce=n).session_id, 1000 * n) for n in range(1, 6)]
    card = decode_card(encode_card(auth, 42, receipts))
    assert card.auth == auth and card.soc == 42
    assert card.receipts == receipts[-KEEP_RECEIPTS:]
    assert all(r.signature_ok() and r.station != bytes(32) for r in card.receipts)
    bare = decode_card(encode_card(auth))
    assert (bare.auth, bare.soc, bare.receipts) == (auth, None, [])
    # A damaged receipt is dropped; the card still works.
    octets = bytearray(encode_card(auth, 42, receipts[:1]))
    at = bytes(octets).find(receipts[0].encoded)
    octets[at + len(receipts[0].encoded) - 1] ^= 1
    assert decode_card(bytes(octets)).receipts == []


def test_a_tampered_authorisation_is_refused():
    auth = _auth()
    for offset in (40, len(auth.encoded) - 1):  # the quantities, the signature
        octets = bytearray(encode_card(auth, 20))
        octets[bytes(octets).find(auth.encoded) + offset] ^= 1
        with pytest.raises(CardError, match="signature|malformed"):
            decode_card(bytes(octets))


def test_foreign_blank_and_garbage_tags_are_refused():
    import ndef

    foreign = b"".join(ndef.message_encoder([ndef.Record("urn:nfc:ext:example.com:other", "x", b"hello"),
                                             ndef.UriRecord("https://example.com")]))
    for octets in (foreign, b""):
        with pytest.raises(CardError, match="no TransX authorisation"):
            decode_card(octets)
    for octets in (b"\xff\x00\x13garbage", encode_card(_auth())[:-10]):
        with pytest.raises(CardError, match="unreadable"):
            decode_card(octets)
    records = card_records(_auth(), 20)
    assert [r.type for r in records] == ["urn:nfc:ext:transx.org:auth", "urn:nfc:ext:transx.org:soc"]


# ------------------------------------------------------------------------------ unit: device.py
def test_device_strings_nfcpy_would_trip_on_are_refused():
    with pytest.raises(DeviceError, match="service name"):
        check_path("udp:127.0.0.1:8080")  # http-alt
    with pytest.raises(DeviceError, match="out of range"):
        check_path("udp:127.0.0.1:70000")
    for path in ("udp:127.0.0.1", "udp:localhost:port", "udp"):
        with pytest.raises(DeviceError, match="udp:HOST:PORT"):
            check_path(path)
    check_path(f"udp:127.0.0.1:{free_udp_port()}")
    check_path("usb")  # not a udp device: left to nfcpy


def test_opening_a_missing_reader_names_the_device():
    for path in ("usb", "usb:001:099"):
        with pytest.raises(DeviceError, match=re.escape(repr(path))) as e:
            open_frontend(path)
        assert "libusb" in str(e.value)


# ---------------------------------------------------------------------- unit: the station itself
CHAIN_ID = "transx-dev"


class _Node:
    """The part of the node's API a station uses, in memory: a chain that admits every transaction.
    `fail` names a path that raises ClientError (the node stops answering mid-check); info=None: no node."""

    def __init__(self, info: dict | None = None, balance: int = 10**9, fail: str | None = None) -> None:
        self.info = {"chain_id": CHAIN_ID, "behind_slots": 0, "min_fee": 1000} if info is None else info
        self.balance, self.fail, self.txs, self.sessions = balance, fail, [], set()

    def get(self, path: str):
        if self.info == {} or (self.fail and path.startswith(self.fail)):
            raise ClientError("no node answers at http://127.0.0.1:1 (refused)")
        if path == "/api/node":
            return self.info
        if path.startswith("/api/session/"):
            if path.rsplit("/", 1)[1] in self.sessions:
                return {"status": "open"}
            raise ClientError(f"no session {path.rsplit('/', 1)[1]}", 404, "not_found")
        if path.startswith("/api/address/"):
            return {"balance": self.balance, "pending_nonce": len(self.txs)}
        raise AssertionError(f"the station should not have asked for {path}")

    def submit(self, raw: bytes) -> dict:
        tx = decode_tx(raw)
        self.txs.append(tx)
        if isinstance(tx.body, SessionOpen):
            self.sessions.add(tx.body.auth.session_id.hex())
        return {"hash": tx.hash.hex()}


def _station(node: _Node, said: list, now: list | None = None) -> Station:
    return Station(node, generate(), price=PRICE, power_w=50_000, min_seconds=3, speed=60, say=said.append,
                   clock=(lambda: now[0]) if now is not None else time.monotonic)


def _count(st: Station, outcome: str) -> float:
    return st.metrics.registry.get_sample_value("transx_station_taps_total", {"outcome": outcome}) or 0


@pytest.mark.parametrize("node, outcome, words", [
    (_Node({"chain_id": CHAIN_ID, "behind_slots": 5, "min_fee": 1000}), "not_synced", "not synced (5 slots behind)"),
    (_Node({}), "node_unreachable", "cannot reach the node"),
    (_Node(fail="/api/address/"), "node_unreachable", "cannot check the card with the node"),
    (_Node(fail="/api/session/"), "node_unreachable", "cannot check the authorisation with the node"),
    (_Node({"chain_id": "elsewhere", "behind_slots": 0, "min_fee": 1000}), "foreign_network",
     "for network 'transx-dev'"),
    (_Node(balance=escrow_for(20_000, PRICE) - 1), "insufficient_balance", "does not cover 20 kWh"),
], ids=["not synced", "no node", "node gone mid-check", "node gone at the nonce check", "foreign network", "poor"])
def test_a_station_refuses_with_one_line_while_its_node_cannot_vouch_for_the_card(node, outcome, words):
    said = []
    st = _station(node, said)
    assert st.on_card(decode_card(encode_card(_auth(), 20))) is None
    assert st.charge is None and node.txs == []
    assert len(said) == 1 and said[0].startswith("charger stays off: ") and words in said[0], said
    assert _count(st, outcome) == 1
    assert st.metrics.registry.get_sample_value("transx_station_charging") == 0


def test_a_station_opens_refuses_other_cards_while_busy_and_closes_with_a_signed_receipt():
    node, said, now = _Node(), [], [100.0]
    st = _station(node, said, now)
    auth, other = _auth(nonce=1), _auth(nonce=2)
    assert st.on_card(decode_card(encode_card(auth, 20))) is None
    assert st.charge is not None and "charger ENABLED for WXY1234" in said[-1]
    assert [type(t.body) for t in node.txs] == [SessionOpen] and node.txs[0].body.price == PRICE
    assert st.on_card(decode_card(encode_card(other, 50))) is None  # another EV while charging
    assert said[-1] == "charger stays off: this charger is in use by another EV" and _count(st, "busy") == 1
    now[0] += 1  # the same card again too soon: a double tap, not a stop
    assert st.on_card(decode_card(encode_card(auth, 20))) is None and st.charge is not None
    now[0] += 2.75  # 3.75 s at 50 kW, 60 times faster: 3.125 kWh
    records = st.on_card(decode_card(encode_card(auth, 20)))
    assert st.charge is None and isinstance(node.txs[-1].body, SessionClose)
    assert (node.txs[-1].body.delivered_wh, node.txs[-1].body.soc_end) == (3_125, 25)
    card = read_records(records)
    assert card.auth == auth and card.soc == 20 and len(card.receipts) == 1
    r = card.receipts[0]  # read_records checked its signature
    assert r.signature_ok() and r.station == node.txs[0].signer and r.session == auth.session_id
    assert (r.delivered_wh, r.amount, r.soc_start, r.soc_end, r.chain_id) == (3_125, 1_875_000, 20, 25, CHAIN_ID)
    assert "charger stopped (tap): 3.125 kWh, 1.8750 paid, state of charge 20% -> 25%" in said[-1]
    assert _count(st, "opened") == _count(st, "closed") == 1
    # The card left before the receipt was written: the next tap of that card writes it, and charges nothing.
    again = st.on_card(decode_card(encode_card(auth, 25)))
    assert read_records(again).receipts == [r] and "writing the receipt" in said[-1] and len(node.txs) == 2
    # The same card once more, receipt on it: its authorisation is spent.
    assert st.on_card(decode_card(encode_card(auth, 25, [r]))) is None
    assert "already used" in said[-1] and _count(st, "replayed") == 1 and len(node.txs) == 2


def test_a_station_whose_session_the_chain_already_ended_stops_retrying():
    class Expired(_Node):
        def submit(self, raw: bytes) -> dict:
            if isinstance(decode_tx(raw).body, SessionClose):
                raise ClientError("session 55c3 is already expired (not closed within 48 slots)", 422, "ended")
            return super().submit(raw)

    node, said, now = Expired(), [], [100.0]
    st = _station(node, said, now)
    assert st.on_card(decode_card(encode_card(_auth(nonce=9), 20))) is None and st.charge is not None
    now[0] += 10
    assert st.stop("stop command") is None
    assert st.charge is None and st.metrics.registry.get_sample_value("transx_station_charging") == 0
    assert "the chain had already ended the session" in said[-1] and "expired" in said[-1]
    # A node that merely did not answer is retried: the charge stays on record.
    flaky, said2 = _Node(fail="/api/node"), []
    st2 = _station(flaky, said2, now)
    st2.charge = Charge(_auth(nonce=10), 20, now[0])
    assert st2.stop("stop command") is None and st2.charge is not None and "will retry" in said2[-1]



def test_a_station_delivers_a_receipt_to_a_full_card_and_knows_it_there():
    # The card already holds the newest KEEP_RECEIPTS receipts (issue 14): the waiting receipt still goes on as
    # the newest, and the next tap (a renewed authorisation, as the phone app signs) finds it and charges.
    node, said, now = _Node(), [], [100.0]
    st = _station(node, said, now)
    old = [_receipt(generate(), _auth(nonce=n).session_id, 1000 * n) for n in range(20, 20 + KEEP_RECEIPTS)]
    owner = generate()
    auth = _auth(owner, nonce=1)
    assert st.on_card(decode_card(encode_card(auth, 20, old))) is None and st.charge is not None
    now[0] += 10
    r = st.stop("stop command")  # no tap: the receipt waits for the card
    card = read_records(st.on_card(decode_card(encode_card(auth, 20, old))))
    assert card.receipts == old[1:] + [r] and "writing the receipt" in said[-1]
    renewed = _auth(owner, nonce=2)
    assert st.on_card(decode_card(encode_card(renewed, r.soc_end, card.receipts))) is None
    assert st.charge is not None and st.charge.session == renewed.session_id and st.waiting_receipts == {}
    assert _count(st, "opened") == 2 and _count(st, "replayed") == 0
