"""The canonical binary encoding, transaction signatures and addresses.

Round trips are properties over every body kind and over blocks; rejections
are built byte by byte (with the codec's own field writers for the parts that
stay valid), each next to a control that the same construction decodes when
the one wrong byte is put right.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from solver.clearing import MAX_MULTIPLIER
from solver.instance import MAX_PRICE, MAX_WH
from consensus.rules import keys
from consensus.rules.blocks import BLOCK, CLEARING, HEADER, Block, BlockClearing, Header, Multiplier, TradeRow, tx_root
from consensus.rules.codec import U64, DecodeError, Text, UInt
from consensus.rules.transactions import BUY, MAX_AMOUNT, MAX_TX_BYTES, SELL, TX, Bid, CancelBid, Commit, MeterReading, RegisterMeter, RegisterSolver, Transfer, Tx, TxError, check_stateless, decode_tx, sign_tx

FAST = settings(max_examples=60, deadline=None, database=None)
CHAIN_ID = "transx-dev"
ZONES = 3
MIN_FEE = 1_000
U64_MAX = 2**64 - 1
ALICE = SigningKey(bytes(range(32)))

# ---------------------------------------------------------------- strategies
u64 = st.integers(0, U64_MAX)
b20 = st.binary(min_size=20, max_size=20)
b32 = st.binary(min_size=32, max_size=32)
amounts = st.integers(1, MAX_AMOUNT)
bodies = st.one_of(
    st.builds(Transfer, b20, amounts),
    st.builds(Bid, st.integers(0, 1), u64, st.integers(1, MAX_WH), st.integers(0, MAX_PRICE), st.integers(0, 255), u64),
    st.builds(CancelBid, b32),
    st.builds(RegisterSolver, amounts),
    st.builds(Commit, u64, b32),
    st.builds(MeterReading, u64, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.binary(min_size=64, max_size=64)),
    st.builds(RegisterMeter, b32),
)
chain_ids = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation, min_size=1, max_size=32)
signing_keys = b32.map(SigningKey)


@st.composite
def signed_txs(draw) -> Tx:
    return sign_tx(draw(signing_keys), chain_id=draw(chain_ids), nonce=draw(u64), fee=draw(st.integers(0, MAX_AMOUNT)),
                   body=draw(bodies))


@st.composite
def clearings(draw) -> BlockClearing:
    idx = st.integers(0, 2**22)
    pairs = sorted(draw(st.sets(st.tuples(idx, idx), max_size=6)))
    trades = tuple(TradeRow(s, b, draw(st.integers(1, 10**12)), draw(st.integers(0, 10**15))) for s, b in pairs)

    def mults():
        return tuple(Multiplier(i, draw(st.integers(1, MAX_MULTIPLIER)))
                     for i in sorted(draw(st.sets(idx, max_size=5))))

    return BlockClearing(trades, mults(), mults(), draw(st.booleans()))


headers = st.builds(Header, u64, b32, u64, b32, b32, b32, b32, st.binary(min_size=64, max_size=64))


@st.composite
def blocks(draw) -> Block:
    txs = tuple(draw(st.lists(signed_txs(), max_size=3)))
    return Block(draw(headers), txs, draw(clearings()))


def tx_of(body, *, nonce: int = 0, fee: int = MIN_FEE, chain_id: str = CHAIN_ID, k: SigningKey = ALICE) -> Tx:
    return sign_tx(k, chain_id=chain_id, nonce=nonce, fee=fee, body=body)


# ---------------------------------------------------------------- round trips
@FAST
@given(signed_txs())
def test_signed_transaction_round_trips_canonically(tx):
    raw = tx.encoded
    back = decode_tx(raw)
    assert back == tx
    assert type(back.body) is type(tx.body)
    assert back.encoded == raw
    assert back.hash == tx.hash
    assert keys.verify_signature(back.signer, back.signing_bytes, back.signature)


@pytest.mark.parametrize("body", [
    Transfer(bytes(range(20)), 1), Bid(SELL, 7, 1, 0, 2, 9), CancelBid(bytes(32)), RegisterSolver(MAX_AMOUNT),
    Commit(U64_MAX, b"\xff" * 32), MeterReading(3, 0, 2**32 - 1, b"\x05" * 64), RegisterMeter(b"\x01" * 32)])
def test_each_body_kind_round_trips_at_its_edges(body):
    tx = tx_of(body, nonce=U64_MAX, fee=MAX_AMOUNT)
    assert decode_tx(tx.encoded) == tx


@FAST
@given(blocks())
def test_block_header_and_clearing_round_trip_canonically(block):
    for codec, value in ((BLOCK, block), (HEADER, block.header), (CLEARING, block.clearing)):
        raw = codec.encode(value)
        back = codec.decode(raw)
        assert back == value
        assert codec.encode(back) == raw
    assert BLOCK.decode(block.encoded).hash == block.hash


def test_header_hash_ignores_signature_but_covers_every_other_field():
    from dataclasses import replace

    signed = Header(5, bytes(32), 1, bytes(32), bytes(32), bytes(32), keys.public_key(ALICE)).signed(ALICE)
    assert signed.signature_ok()
    assert replace(signed, signature=b"\x01" * 64).hash == signed.hash
    for field, value in (("height", 6), ("parent", b"\x01" * 32), ("timestamp", 2), ("state_hash", b"\x01" * 32),
                         ("tx_root", b"\x01" * 32), ("clearing_hash", b"\x01" * 32),
                         ("proposer", keys.public_key(SigningKey(b"\x05" * 32)))):
        changed = replace(signed, **{field: value})
        assert changed.hash != signed.hash
        assert not changed.signature_ok()


def test_header_signed_by_a_key_other_than_its_proposer_field_verifies():
    unsigned = Header(5, bytes(32), 1, bytes(32), bytes(32), bytes(32), bytes(32))  # proposer not filled in yet
    signed = unsigned.signed(ALICE)
    assert signed.proposer == keys.public_key(ALICE)
    assert signed.signature_ok()


# ---------------------------------------------------------------- rejections
SAMPLE_TXS = [
    tx_of(Transfer(bytes(range(20)), 300)),
    tx_of(Bid(BUY, 130, 2_500, 410_000, 1, 140), nonce=128),
    tx_of(CancelBid(bytes(range(32)))),
    tx_of(RegisterSolver(10**8)),
    tx_of(Commit(99, b"\x07" * 32)),
    tx_of(MeterReading(4, 1_234, 0)),
]
SAMPLE_BLOCK = Block(
    Header(3, b"\x01" * 32, 1_700_000_003_000, b"\x02" * 32, tx_root(SAMPLE_TXS[:2]), b"\x03" * 32,
           keys.public_key(ALICE)).signed(ALICE),
    tuple(SAMPLE_TXS[:2]),
    BlockClearing((TradeRow(0, 1, 500, 90_000), TradeRow(1, 0, 700, 200_000)), (Multiplier(0, 5),), (Multiplier(1, 9),)),
)


@pytest.mark.parametrize("tx", SAMPLE_TXS, ids=lambda t: t.kind)
def test_transaction_with_trailing_bytes_or_truncated_anywhere_is_rejected(tx):
    raw = tx.encoded
    assert decode_tx(raw) == tx
    for extra in (b"\x00", b"\x01", raw[:5]):
        with pytest.raises(TxError, match="trailing bytes"):
            decode_tx(raw + extra)
    for n in range(len(raw)):
        with pytest.raises(TxError, match="malformed transaction"):
            decode_tx(raw[:n])


def test_block_with_trailing_bytes_or_truncated_anywhere_is_rejected():
    raw = SAMPLE_BLOCK.encoded
    assert BLOCK.decode(raw) == SAMPLE_BLOCK
    with pytest.raises(DecodeError, match="trailing"):
        BLOCK.decode(raw + b"\x00")
    for n in range(len(raw)):
        with pytest.raises(DecodeError):
            BLOCK.decode(raw[:n])


# A transaction written field by field with loose (any u64) integers, so a test
# can put a value or form on the wire that the strict writers refuse to produce.
def _v(n: int) -> bytes:
    return U64.encode(n)


def _raw_tx(tag: int, fields: bytes, *, nonce: bytes = _v(0), fee: bytes = _v(MIN_FEE),
            chain_id: bytes = b"\x0a" + CHAIN_ID.encode(), signature: bytes = bytes(64)) -> bytes:
    return chain_id + keys.public_key(ALICE) + nonce + fee + _v(tag) + fields + signature


def _raw_bid(side=BUY, slot=130, wh=2_500, price=410_000, zone=1, expiry=140) -> bytes:
    return _raw_tx(2, b"".join(_v(x) for x in (side, slot, wh, price, zone, expiry)))


def test_loose_writer_matches_the_codec():
    """The control every byte-level rejection below relies on."""
    tx = tx_of(Bid(BUY, 130, 2_500, 410_000, 1, 140))
    assert _raw_bid()[:-64] == tx.encoded[:-64]
    assert decode_tx(_raw_bid()).body == tx.body


@pytest.mark.parametrize("value,padded", [
    (0, b"\x80\x00"), (0, b"\x80\x80\x00"), (5, b"\x85\x00"), (300, b"\xac\x82\x00"), (127, b"\xff\x00"),
])
def test_non_minimal_varints_are_rejected(value, padded):
    assert decode_tx(_raw_tx(3, bytes(32), nonce=_v(value))).nonce == value
    with pytest.raises(TxError, match="non-canonical integer"):
        decode_tx(_raw_tx(3, bytes(32), nonce=padded))
    assert UInt().decode(_v(value)) == value
    with pytest.raises(DecodeError, match="non-canonical"):
        UInt().decode(padded)


def test_integer_past_64_bits_is_rejected():
    assert U64.decode(b"\xff" * 9 + b"\x01") == U64_MAX
    for raw in (b"\x80" * 9 + b"\x02", b"\xff" * 10 + b"\x01"):
        with pytest.raises(DecodeError, match="out of range|above"):
            U64.decode(raw)


@pytest.mark.parametrize("field,bad", [
    ("wh", 0), ("wh", MAX_WH + 1), ("side", 2), ("price", MAX_PRICE + 1), ("zone", 256),
])
def test_bid_field_out_of_range_is_rejected(field, bad):
    good = {"wh": MAX_WH, "side": SELL, "price": MAX_PRICE, "zone": 255}[field]
    assert getattr(decode_tx(_raw_bid(**{field: good})).body, field) == good
    with pytest.raises(TxError, match="malformed transaction: .*(above|below)"):
        decode_tx(_raw_bid(**{field: bad}))


@pytest.mark.parametrize("tag,fields", [
    (1, bytes(20) + _v(0)),  # transfer of nothing
    (1, bytes(20) + _v(MAX_AMOUNT + 1)),
    (4, _v(0)),  # solver deposit of nothing
    (6, _v(1) + _v(2**32) + _v(0)),  # meter import past u32
])
def test_other_fields_out_of_range_are_rejected(tag, fields):
    with pytest.raises(TxError, match="(above|below)"):
        decode_tx(_raw_tx(tag, fields))


def test_fee_above_max_amount_is_rejected():
    assert decode_tx(_raw_tx(3, bytes(32), fee=_v(MAX_AMOUNT))).fee == MAX_AMOUNT
    with pytest.raises(TxError, match="above"):
        decode_tx(_raw_tx(3, bytes(32), fee=_v(MAX_AMOUNT + 1)))


@pytest.mark.parametrize("tag", [0, 16, 200, U64_MAX])
def test_unknown_type_tag_is_rejected(tag):
    with pytest.raises(TxError, match=f"unknown type tag {tag}"):
        decode_tx(_raw_tx(tag, bytes(32)))


@pytest.mark.parametrize("chain_id", [b"transx\x01dev", b"transx dev", b"transx\x7fdev", b"transx\xc3\xa9", b"",
                                      b"a" * 33])
def test_chain_id_that_is_not_printable_ascii_is_rejected(chain_id):
    assert decode_tx(_raw_tx(3, bytes(32), chain_id=_v(10) + b"transx-dev")).chain_id == "transx-dev"
    with pytest.raises(TxError, match="printable ASCII|above"):
        decode_tx(_raw_tx(3, bytes(32), chain_id=_v(len(chain_id)) + chain_id))
    with pytest.raises(ValueError):
        Text(32, min_len=1).encode(chain_id.decode("latin-1"))


def test_bool_byte_other_than_0_or_1_is_rejected():
    raw = CLEARING.encode(BlockClearing(void=True))
    assert raw[-1] == 1 and CLEARING.decode(raw).void
    for b in (2, 0x80, 0xFF):
        with pytest.raises(DecodeError, match="a bool is 0 or 1"):
            CLEARING.decode(raw[:-1] + bytes([b]))


def _raw_clearing(trades, lam=(), mu=()) -> bytes:
    out = _v(len(trades)) + b"".join(b"".join(_v(x) for x in t) for t in trades)
    for m in (lam, mu):
        out += _v(len(m)) + b"".join(_v(i) + _v(v) for i, v in m)
    return out + b"\x00"


@pytest.mark.parametrize("trades,lam,mu", [
    ([(1, 0, 5, 9), (0, 3, 5, 9)], (), ()),  # seller order
    ([(0, 3, 5, 9), (0, 1, 5, 9)], (), ()),  # buyer order within a seller
    ([(0, 1, 5, 9), (0, 1, 6, 9)], (), ()),  # the same pair twice
    ([], [(2, 1), (1, 1)], ()),
    ([], [(1, 1), (1, 2)], ()),
    ([], (), [(4, 1), (4, 1)]),
])
def test_clearing_with_unsorted_or_duplicate_entries_is_rejected(trades, lam, mu):
    ok = _raw_clearing(sorted({t[:2]: t for t in trades}.values()), sorted(dict(lam).items()),
                       sorted(dict(mu).items()))
    CLEARING.decode(ok)
    with pytest.raises(DecodeError, match="strictly increasing"):
        CLEARING.decode(_raw_clearing(trades, lam, mu))


def test_clearing_with_zero_multiplier_or_zero_trade_is_rejected():
    with pytest.raises(DecodeError, match="below 1"):
        CLEARING.decode(_raw_clearing([], [(0, 0)]))
    with pytest.raises(DecodeError, match="below 1"):
        CLEARING.decode(_raw_clearing([(0, 0, 0, 5)]))


def test_oversize_transaction_is_rejected_before_parsing():
    raw = SAMPLE_TXS[1].encoded
    with pytest.raises(TxError, match=f"{MAX_TX_BYTES + 1} bytes, the limit is {MAX_TX_BYTES}"):
        decode_tx(raw + bytes(MAX_TX_BYTES + 1 - len(raw)))
    with pytest.raises(TxError, match="limit"):
        decode_tx(bytes(10_000))


@st.composite
def mangled(draw) -> bytes:
    raw = bytearray(draw(st.sampled_from(SAMPLE_TXS)).encoded)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 2))
        pos = draw(st.integers(0, len(raw)))
        if op == 0 and pos < len(raw):
            raw[pos] = draw(st.integers(0, 255))
        elif op == 1:
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        else:
            del raw[pos:pos + draw(st.integers(1, 3))]
    return bytes(raw)


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(st.binary(max_size=300), mangled()))
def test_any_bytes_decode_only_as_their_own_canonical_encoding(raw):
    try:
        tx = decode_tx(raw)
    except TxError:
        return
    assert tx.encoded == raw


# ---------------------------------------------------------------- signatures
def check(tx: Tx) -> None:
    check_stateless(tx, CHAIN_ID, ZONES, MIN_FEE)


@pytest.mark.parametrize("tx", SAMPLE_TXS, ids=lambda t: t.kind)
def test_properly_signed_transaction_passes_stateless_checks(tx):
    check(tx)
    check(decode_tx(tx.encoded))


@FAST
@given(st.sampled_from(SAMPLE_TXS), st.integers(0, 64 * 8 - 1))
def test_any_flipped_signature_bit_is_rejected(tx, bit):
    sig = bytearray(tx.signature)
    sig[bit // 8] ^= 1 << (bit % 8)
    forged = decode_tx(tx.encoded[:-64] + bytes(sig))
    with pytest.raises(TxError, match="^bad signature$"):
        check(forged)


@pytest.mark.parametrize("change", ["fee", "nonce", "body", "signer"])
def test_changed_field_under_the_old_signature_is_rejected(change):
    from dataclasses import replace

    tx = SAMPLE_TXS[1]
    changed = {
        "fee": lambda: replace(tx, fee=tx.fee + 1),
        "nonce": lambda: replace(tx, nonce=tx.nonce + 1),
        "body": lambda: replace(tx, body=replace(tx.body, price=tx.body.price + 1)),
        "signer": lambda: replace(tx, signer=keys.public_key(SigningKey(b"\x09" * 32))),
    }[change]()
    forged = decode_tx(TX.encode(changed))  # re-encoded, the old signature kept
    assert forged.signature == tx.signature
    with pytest.raises(TxError, match="^bad signature$"):
        check(forged)


def test_wrong_chain_id_is_rejected_even_when_properly_signed():
    tx = tx_of(Transfer(bytes(20), 5), chain_id="transx-main")
    check_stateless(tx, "transx-main", ZONES, MIN_FEE)
    with pytest.raises(TxError, match="wrong chain id 'transx-main' \\(this network is 'transx-dev'\\)"):
        check(tx)


def test_fee_below_minimum_is_rejected():
    check(tx_of(Transfer(bytes(20), 5), fee=MIN_FEE))
    with pytest.raises(TxError, match="fee 0.000999 tokens is below the minimum 0.001 tokens"):
        check(tx_of(Transfer(bytes(20), 5), fee=MIN_FEE - 1))


def test_bid_in_a_zone_the_network_lacks_is_rejected():
    check(tx_of(Bid(SELL, 10, 100, 200_000, ZONES - 1, 10)))
    for zone in (ZONES, 255):
        with pytest.raises(TxError, match=f"zone {zone} does not exist \\(this network has {ZONES}\\)"):
            check(tx_of(Bid(SELL, 10, 100, 200_000, zone, 10)))


def test_meter_reading_with_both_import_and_export_is_rejected():
    with pytest.raises(TxError, match="either an import or an export"):
        check(tx_of(MeterReading(3, 10, 20)))


# ---------------------------------------------------------------- addresses
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


@FAST
@given(b20)
def test_address_round_trips(raw):
    text = keys.encode_address(raw)
    assert text.startswith("trx1")
    assert keys.decode_address(text) == raw
    assert keys.decode_address(text.upper()) == raw


def test_every_single_character_change_is_rejected():
    text = keys.encode_address(keys.address_of_key(ALICE))
    tried = 0
    for pos in range(len("trx1"), len(text)):
        for c in BECH32:
            if c == text[pos]:
                continue
            typo = text[:pos] + c + text[pos + 1:]
            with pytest.raises(keys.AddressError):
                keys.decode_address(typo)
            tried += 1
    assert tried == (len(text) - 4) * 31
    for typo in (text[:-1], text + "q", text[:10] + text[11:], text[:6] + text[7] + text[6] + text[8:]):
        if typo != text:
            with pytest.raises(keys.AddressError):
                keys.decode_address(typo)


def test_wrong_prefix_or_length_is_rejected():
    import bech32

    raw = keys.address_of_key(ALICE)
    data = bech32.convertbits(raw, 8, 5)
    for hrp in ("bc", "tr", "trxx", "xrt"):
        with pytest.raises(keys.AddressError, match="not a TransX address"):
            keys.decode_address(bech32.bech32_encode(hrp, data))
    for n in (19, 21, 32):
        with pytest.raises(keys.AddressError, match="not a TransX address"):
            keys.decode_address(bech32.bech32_encode("trx", bech32.convertbits(bytes(n), 8, 5)))
    text = keys.encode_address(raw)
    with pytest.raises(keys.AddressError):
        keys.decode_address(text[:5] + text[5:].upper())  # mixed case
    with pytest.raises(keys.AddressError):
        keys.decode_address("trz1" + text[4:])


def test_merkle_root_binds_the_number_of_transactions():
    """[a, b, c] and [a, b, c, c] build the same tree; the root differs because it commits to the count."""
    from consensus.rules.blocks import merkle_root

    a, b, c = (bytes([k]) * 32 for k in (1, 2, 3))
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])
    assert merkle_root([a, b, c]) == merkle_root([a, b, c])
