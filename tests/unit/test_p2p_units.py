"""The p2p layer's sans-IO parts, without a network: gossip framing, peer scores and bans, sync requests.

These are the rules a node applies to every byte a peer sends it, so each test states what an operator
relies on: a malformed batch is refused (never half-read), a misbehaving peer is banned after a few
offences and forgiven when the ban ends, honest peers are not banned for rare mistakes, floods are cut.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import framing, scoring, sync
from p2p.framing import FramingError
from p2p.scoring import PeerBook

FAST = settings(max_examples=200, deadline=None, database=None)

items_st = st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=40)


# ------------------------------------------------------------------ framing
@FAST
@given(items_st)
def test_framing_round_trip(items):
    packed = framing.pack(items)
    assert framing.unpack(packed, max_item=300, max_items=40) == items
    # Limits are inclusive: the largest item and the item count themselves are allowed.
    assert framing.unpack(packed, max_item=max(map(len, items)), max_items=len(items)) == items


def test_framing_multi_byte_length_prefix():
    items = [b"a" * 127, b"b" * 128, b"c" * 16_384, b"d"]
    packed = framing.pack(items)
    assert packed[:1] == b"\x7f" and packed[128:130] == b"\x80\x01"  # 127 fits one byte, 128 needs two
    assert framing.unpack(packed, 20_000, 10) == items


@FAST
@given(items_st, st.data())
def test_framing_truncated_batch_is_refused(items, data):
    """A message cut anywhere inside its last item (its length prefix or its bytes) is refused whole:
    the node never takes the items before the cut as if the batch were complete."""
    packed = framing.pack(items)
    last = len(framing.pack(items[-1:]))
    cut = data.draw(st.integers(len(packed) - last + 1, len(packed) - 1))
    with pytest.raises(FramingError):
        framing.unpack(packed[:cut], 300, 40)


@pytest.mark.parametrize("data", [
    b"\x80",  # a length prefix that never ends
    b"\x03ab",  # an item shorter than its prefix says
    b"\x01a\x82",  # a good item, then a cut prefix
])
def test_framing_truncated_examples(data):
    with pytest.raises(FramingError):
        framing.unpack(data, 100, 10)


def test_framing_overlong_length_prefix_is_refused():
    # Six continuation bytes: more than the 35 bits any real length needs, refused before reading on.
    with pytest.raises(FramingError, match="length prefix"):
        framing.unpack(b"\xff" * 6 + b"\x01" + b"x" * 10, 1 << 40, 10)
    # An endless run of continuation bytes is refused too (no unbounded loop on a hostile message).
    with pytest.raises(FramingError):
        framing.unpack(b"\x80" * 100_000, 1 << 40, 10)


def test_framing_zero_length_item_is_refused():
    with pytest.raises(FramingError):
        framing.unpack(b"\x00", 100, 10)
    with pytest.raises(FramingError):
        framing.unpack(framing.pack([b"a", b"", b"b"]), 100, 10)


def test_framing_oversize_item_is_refused():
    assert framing.unpack(framing.pack([b"x" * 1024]), 1024, 1) == [b"x" * 1024]
    with pytest.raises(FramingError, match="1025 bytes"):
        framing.unpack(framing.pack([b"x" * 1025]), 1024, 1)
    # The declared size alone is enough: a prefix claiming 1 GB is refused without waiting for the bytes.
    with pytest.raises(FramingError, match="limit"):
        framing.unpack(b"\x80\x80\x80\x80\x04", 1024, 1)


def test_framing_too_many_items_is_refused():
    assert len(framing.unpack(framing.pack([b"a"] * 3), 10, 3)) == 3
    with pytest.raises(FramingError, match="more than 3 items"):
        framing.unpack(framing.pack([b"a"] * 4), 10, 3)
    # A single-item topic (proposals, blocks) refuses a batch of two.
    with pytest.raises(FramingError):
        framing.unpack(framing.pack([b"block one", b"block two"]), 1000, 1)


def test_framing_empty_message_is_refused():
    with pytest.raises(FramingError, match="empty"):
        framing.unpack(b"", 100, 10)


@FAST
@given(st.binary(max_size=600))
def test_framing_any_bytes_give_items_within_limits_or_a_framing_error(data):
    """Whatever a peer sends, unpack either refuses it with FramingError (which the node turns into a
    penalty) or returns 1..max_items non-empty items of at most max_item bytes, taken from the message."""
    try:
        items = framing.unpack(data, 64, 8)
    except FramingError:
        return
    assert 1 <= len(items) <= 8
    assert all(1 <= len(i) <= 64 for i in items)
    assert sum(map(len, items)) + len(items) <= len(data)
    assert all(i in data for i in items)


# ------------------------------------------------------------------ scoring
def _book(**kw) -> PeerBook:
    return PeerBook(rates={"tx": 10.0, "block": 2.0}, **kw)


def _offences_to_ban(book: PeerBook) -> int:
    return math.ceil(-book.ban_below / scoring.INVALID)


def test_invalid_messages_ban_a_peer_after_enough_points():
    book = _book()
    n = _offences_to_ban(book)
    assert n == 5  # -100 at 20 points each: a handful of invalid messages, not one
    for i in range(n - 1):
        assert book.penalise("mallory", scoring.INVALID, now=10.0) is False, i
        assert not book.is_banned("mallory", 10.0)
    assert book.penalise("mallory", scoring.INVALID, now=10.0) is True  # the caller disconnects now
    assert book.is_banned("mallory", 10.0)
    assert book.banned["mallory"] == pytest.approx(10.0 + book.ban_seconds)
    # The ban is reported once: further offences do not ask for another disconnect.
    assert book.penalise("mallory", scoring.INVALID, now=11.0) is False
    assert book.is_banned("mallory", 11.0)
    # Other peers are untouched.
    assert not book.is_banned("alice", 10.0) and book.score("alice", 10.0) == 0.0


def test_ban_expires_after_ban_seconds_and_the_peer_starts_afresh():
    book = _book(ban_seconds=600.0)
    for _ in range(_offences_to_ban(book)):
        banned = book.penalise("mallory", scoring.INVALID, now=0.0)
    assert banned
    assert book.is_banned("mallory", 599.9)
    assert not book.is_banned("mallory", 600.0)
    assert "mallory" not in book.banned
    assert book.score("mallory", 600.0) == 0.0  # not the decayed remains of -100
    # A fresh start: one more invalid message is one offence, not a new ban.
    assert book.penalise("mallory", scoring.INVALID, now=601.0) is False
    assert not book.is_banned("mallory", 601.0)
    assert book.score("mallory", 601.0) == pytest.approx(-scoring.INVALID)


def test_scores_decay_with_half_life():
    book = _book(half_life=60.0)
    book.penalise("p", 40.0, now=0.0)
    assert book.score("p", 0.0) == pytest.approx(-40.0)
    assert book.score("p", 60.0) == pytest.approx(-20.0)
    assert book.score("p", 180.0) == pytest.approx(-5.0)
    # Reading a score does not change it: asking twice at one time gives the same number.
    assert book.score("p", 180.0) == pytest.approx(-5.0)


def test_rare_mistakes_never_add_up_to_a_ban():
    """An honest peer relaying one invalid message a minute (a bug elsewhere, say) is never banned:
    with a 60 s half-life its score settles near -40."""
    book = _book(half_life=60.0)
    for minute in range(120):
        assert book.penalise("honest", scoring.INVALID, now=minute * 60.0) is False
    assert not book.is_banned("honest", 120 * 60.0)
    assert book.score("honest", 119 * 60.0) == pytest.approx(-40.0, abs=0.01)


def test_invalid_messages_in_quick_succession_ban_despite_decay():
    """Decay must not let a fast attacker escape: six offences a tenth of a second apart ban."""
    book = _book()
    results = [book.penalise("mallory", scoring.INVALID, now=i * 0.1) for i in range(6)]
    assert results.count(True) == 1  # banned by the fifth or sixth, and the ban reported once
    assert book.is_banned("mallory", 0.6)


def test_good_messages_earn_back_a_little_up_to_a_cap():
    book = _book(max_score=20.0)
    book.penalise("p", scoring.INVALID, now=0.0)
    book.reward("p", now=0.0)
    assert book.score("p", 0.0) == pytest.approx(-scoring.INVALID + scoring.GOOD)
    for _ in range(10_000):
        book.reward("p", now=0.0)
    assert book.score("p", 0.0) == pytest.approx(20.0)


def test_rate_limit_allows_a_burst_then_refuses_and_penalises():
    book = _book(burst_seconds=2.0)  # tx: 10 items/s -> a burst of 20
    assert book.allow("p", "tx", 15, now=0.0)
    assert book.allow("p", "tx", 5, now=0.0)
    assert book.score("p", 0.0) == 0.0  # within the limit: no penalty
    assert not book.allow("p", "tx", 1, now=0.0)
    assert book.score("p", 0.0) == pytest.approx(-scoring.FLOOD)
    # The bucket refills at the rate: 0.5 s later there are 5 items' worth.
    assert book.allow("p", "tx", 5, now=0.5)
    assert not book.allow("p", "tx", 1, now=0.5)
    # Never more than the burst, however long the peer was quiet.
    assert not book.allow("p", "tx", 21, now=1000.0)
    assert book.allow("p", "tx", 20, now=1000.0)


def test_refused_batch_does_not_drain_the_bucket():
    book = _book()
    assert book.allow("p", "tx", 17, now=0.0)
    assert not book.allow("p", "tx", 4, now=0.0)  # 3 left: the batch of 4 is refused whole ...
    assert book.allow("p", "tx", 3, now=0.0)  # ... and the 3 are still there


def test_rate_limits_are_per_peer_and_per_topic_kind():
    book = _book()
    assert book.allow("p", "tx", 20, now=0.0)
    assert not book.allow("p", "tx", 1, now=0.0)
    assert book.allow("p", "block", 4, now=0.0)  # block: 2/s -> burst of 4, its own bucket
    assert not book.allow("p", "block", 1, now=0.0)
    assert book.allow("q", "tx", 20, now=0.0)  # another peer has its own buckets
    # A kind without a configured rate gets the default of 10/s.
    assert book.allow("p", "other", 20, now=0.0)
    assert not book.allow("p", "other", 1, now=0.0)


def test_flood_leads_to_a_ban():
    book = _book()
    assert book.allow("flooder", "tx", 20, now=0.0)
    refusals = 0
    while True:
        assert not book.allow("flooder", "tx", 1, now=0.0)
        refusals += 1
        if book.flooded("flooder", now=0.0):
            break
        assert refusals < 1000, "a flood never earned a ban"
    assert refusals == math.ceil(-book.ban_below / scoring.FLOOD)
    assert book.is_banned("flooder", 0.0)
    assert not book.flooded("flooder", now=0.0)  # the ban is reported once


def test_a_peer_within_its_rate_is_never_banned():
    book = _book()
    for i in range(10_000):  # 10 items/s exactly, for 1000 s
        assert book.allow("steady", "tx", 1, now=i * 0.1), i
    assert book.score("steady", 1000.0) == 0.0


def test_forget_drops_faded_peers_but_keeps_bans():
    book = _book(half_life=1.0, ban_seconds=10_000.0)
    book.penalise("faded", scoring.INVALID, now=0.0)
    for _ in range(_offences_to_ban(book)):
        book.penalise("banned", scoring.INVALID, now=0.0)
    book.forget(now=100.0)
    assert "faded" not in book.peers
    assert book.is_banned("banned", 100.0)


# --------------------------------------------------------------------- sync
@FAST
@given(st.sampled_from([sync.HEADERS, sync.BLOCKS]), st.integers(0, 2**64 - 1), st.integers(1, sync.MAX_RANGE))
def test_sync_range_request_round_trip(kind, start, count):
    req = sync.Request(kind, start, count)
    assert sync.decode_request(req.encode()) == req


@FAST
@given(st.binary(min_size=32, max_size=32))
def test_sync_block_request_round_trip(h):
    req = sync.Request(sync.BLOCK, hash=h)
    assert sync.decode_request(req.encode()) == req


def test_sync_status_request_round_trip():
    assert sync.decode_request(sync.Request(sync.STATUS).encode()) == sync.Request(sync.STATUS)


@pytest.mark.parametrize("raw", [
    b"",
    b"X",  # unknown kind
    b"S\x00",  # status with trailing bytes
    b"W" + b"h" * 31,  # block hash too short
    b"W" + b"h" * 33,  # too long
    b"H" + struct.pack(">QI", 1, 0),  # zero count
    b"B" + struct.pack(">QI", 1, sync.MAX_RANGE + 1),  # more than one answer may hold
    b"B" + struct.pack(">QI", 1, 2**32 - 1),
    b"H" + struct.pack(">QI", 1, 5)[:-1],  # truncated
    b"H" + struct.pack(">QI", 1, 5) + b"\x00",  # trailing byte
    b"h" + struct.pack(">QI", 1, 5),  # kinds are case-sensitive
])
def test_sync_malformed_requests_are_refused(raw):
    with pytest.raises(sync.SyncError):
        sync.decode_request(raw)


class _Source:
    def __init__(self) -> None:
        self.chain = [b"block-%d" % h for h in range(1, 11)]

    def status(self):
        return len(self.chain), b"\x11" * 32

    def headers(self, start, count):
        return [b"hdr" + c for c in self.chain[start - 1:start - 1 + count]]

    def blocks(self, start, count, max_bytes):
        return self.chain[start - 1:start - 1 + count]

    def block(self, block_hash):
        return self.chain[0] if block_hash == b"\x01" * 32 else None


def test_sync_answers_decode_to_what_the_source_holds():
    src = _Source()
    assert sync.decode_status(sync.answer(src, sync.Request(sync.STATUS).encode(), 1 << 20)) == (10, b"\x11" * 32)
    raw = sync.answer(src, sync.Request(sync.BLOCKS, 3, 4).encode(), 1 << 20)
    assert sync.decode_items(raw, 100, 4) == [b"block-3", b"block-4", b"block-5", b"block-6"]
    raw = sync.answer(src, sync.Request(sync.HEADERS, 9, 5).encode(), 1 << 20)
    assert sync.decode_items(raw, 100) == [b"hdrblock-9", b"hdrblock-10"]
    assert sync.decode_items(sync.answer(src, sync.Request(sync.BLOCK, hash=b"\x01" * 32).encode(), 1 << 20),
                             100, 1) == [b"block-1"]
    assert sync.decode_items(sync.answer(src, sync.Request(sync.BLOCK, hash=b"\x02" * 32).encode(), 1 << 20),
                             100, 1) == []  # not found: an empty answer, not an error
    with pytest.raises(sync.SyncError):
        sync.answer(src, b"H" + struct.pack(">QI", 1, 0), 1 << 20)


@pytest.mark.parametrize("raw", [b"", b"\x00" * 39, b"\x00" * 41])
def test_sync_malformed_status_answer_is_refused(raw):
    with pytest.raises(sync.SyncError):
        sync.decode_status(raw)


def test_sync_malformed_item_answers_raise_sync_error_not_framing_error():
    with pytest.raises(sync.SyncError):
        sync.decode_items(b"\x05abc", 100)  # truncated
    with pytest.raises(sync.SyncError):
        sync.decode_items(framing.pack([b"x" * 101]), 100)  # an item over the caller's limit
    with pytest.raises(sync.SyncError):
        sync.decode_items(framing.pack([b"a", b"b", b"c"]), 100, max_items=2)  # more than asked for
