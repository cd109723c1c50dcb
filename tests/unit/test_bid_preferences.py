"""Bid preferences on the chain (issue 19, item 4): the Bid transaction's optional preferred counterparts and
energy kind, their canonical encoding (a bid without them is the bytes it always was), the bid record that
keeps them, the slot's instance that carries them to the candidate rule, a block whose clearing honours them,
and `transx bid` / the API / the explorer that show them."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import replace

import httpx
import pytest
from chain_support import Net, addr
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from consensus.rules import keys
from consensus.rules.codec import ADDRESS, DecodeError, ListOf, Optional_, Record, Tagged, Trailing, UInt
from consensus.rules.ledger import slot_market
from consensus.rules.state import BID, CLEARED
from consensus.rules.transactions import (BUY, NO_PREFERENCES, SELL, Bid, InvalidTx, Preferences, Tx, check_stateless,
                                          decode_tx, energy_kind, sign_tx)
from solver import ENERGY_KINDS, MAX_PREFER, candidate_pairs
from transx_cli import bid as bid_cli
from transx_cli.main import main
from transx_cli.tables import bids_table
from transxnode.api import views
from transxnode.api.app import make_app
from transxnode.client.node_api import ClientError
from transxnode.client.wallet import InputError, parse_preferences, quote
from transxnode.metrics import NodeMetrics

SOLAR = energy_kind("solar")
A, B, C, D = (bytes([k]) * 20 for k in (1, 2, 3, 4))
SIGNER = SigningKey(hashlib.sha256(b"old-bidder").digest())

# Encoded by the code before preferences existed (commit 8d5e0e8): a signed sell bid, and a bid record.
OLD_BID_TX = bytes.fromhex(
    "0a7472616e73782d646576da0d02c1db0b9fe45be79f0495b31ed5fa8ec4c621c05daa7ec312a6dc665f8903e80702018201c413908319017f"
    "e4cf3d54609dc331d7a6d204105d1e2371fb22a0121adfa953ee9f998144e52e4e29c355b7f6984dcb018357efe9308e652e24b273a66fe1"
    "e367ede5d5c1ca00")
OLD_BID_TX_HASH = "72d634d2d498b29afd5d8b55283f73c3b24adb5b97c7fc959679e0397594410a"
TAG_AT = 1 + len("transx-dev") + 32 + 1 + 2  # chain id, signer, nonce 3, fee 1000: then the body's tag
OLD_BID_RECORD = bytes.fromhex("000102030405060708090a0b0c0d0e0f10111213008201c41390831901e8c73e0402d00f80ea30")


def signed(prefs: Preferences = NO_PREFERENCES, side: int = SELL) -> Tx:
    return sign_tx(SIGNER, chain_id="transx-dev", nonce=3, fee=1000, body=Bid(side, 130, 2500, 410_000, 1, 127, prefs))


# ------------------------------------------------------------------ the encoding
def test_a_bid_without_preferences_is_the_bytes_it_always_was():
    old = decode_tx(OLD_BID_TX)
    assert old.body.preferences == NO_PREFERENCES and old.body == Bid(SELL, 130, 2500, 410_000, 1, 127)
    assert old.encoded == OLD_BID_TX and old.hash.hex() == OLD_BID_TX_HASH
    assert signed().encoded == OLD_BID_TX  # and a new one without preferences encodes as before
    assert OLD_BID_TX[TAG_AT] == 2  # tag 2: the bid's first tag


def test_a_bid_record_written_before_preferences_reads_as_none():
    rec = BID.decode(OLD_BID_RECORD)
    assert rec.preferences == NO_PREFERENCES and (rec.slot, rec.traded_wh, rec.amount) == (130, 2000, 800_000)
    assert BID.encode(rec) == OLD_BID_RECORD  # state hashes of chains without preferences do not move
    with_prefs = replace(rec, preferences=Preferences((A, C), SOLAR))
    assert BID.decode(BID.encode(with_prefs)) == with_prefs
    assert BID.encode(with_prefs) == OLD_BID_RECORD + bytes([2]) + A + C + bytes([SOLAR])


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(st.binary(min_size=20, max_size=20), max_size=MAX_PREFER, unique=True),
       st.integers(0, len(ENERGY_KINDS)), st.sampled_from([BUY, SELL]))
def test_a_bid_with_preferences_round_trips_under_its_own_tag(prefer, kind, side):
    tx = signed(Preferences(tuple(sorted(prefer)), kind), side)
    back = decode_tx(tx.encoded)
    assert back == tx and back.encoded == tx.encoded and back.hash == tx.hash
    assert keys.verify_signature(back.signer, back.signing_bytes, back.signature)
    assert tx.encoded[TAG_AT] == (15 if prefer or kind else 2)


def respliced(prefs: bytes) -> bytes:
    """A tag-15 bid whose preferences are the bytes `prefs` (its signature is not checked: decoding refuses first)."""
    raw = signed(Preferences((A,), SOLAR)).encoded
    tail = bytes([1]) + A + bytes([SOLAR])
    assert raw[:-64].endswith(tail)
    return raw[:-64 - len(tail)] + prefs + raw[-64:]


@pytest.mark.parametrize("prefs, why", [
    (bytes([0, 0]), "non-canonical"),  # tag 15 saying "no preferences": that is tag 2's meaning
    (bytes([2]) + B + A + bytes([0]), "increasing order"),
    (bytes([2]) + A + A + bytes([0]), "increasing order"),
    (bytes([1]) + A + bytes([len(ENERGY_KINDS) + 1]), "above"),  # no such kind
    (bytes([4]) + A + B + C + D + bytes([0]), "above 3"),  # four preferred addresses
    (bytes([1]) + A, "malformed"),  # no kind: the signature's first byte is read as one
], ids=["empty", "unsorted", "repeated", "unknown-kind", "four", "cut"])
def test_a_non_canonical_or_oversize_preference_is_an_invalid_transaction(prefs, why):
    assert decode_tx(respliced(bytes([1]) + A + bytes([SOLAR]))) is not None  # the splice itself is sound
    with pytest.raises(InvalidTx, match=why):
        decode_tx(respliced(prefs))


def test_more_than_three_preferences_cannot_be_signed_either():
    with pytest.raises(ValueError, match="more than 3"):
        signed(Preferences((A, B, C, D)))
    with pytest.raises(ValueError, match="increasing"):
        signed(Preferences((B, A)))


@pytest.mark.parametrize("tail", [bytes([0, 0]), bytes([1]) + A, bytes([0, 9])])
def test_a_bid_record_with_a_non_canonical_or_broken_extension_is_refused(tail):
    with pytest.raises(DecodeError):
        BID.decode(OLD_BID_RECORD + tail)


def test_a_bid_may_not_prefer_its_own_address():
    own = keys.address_of_key(SIGNER)
    tx = signed(Preferences(tuple(sorted((own, A)))))
    with pytest.raises(InvalidTx, match="its own address"):
        check_stateless(tx, "transx-dev", zones=3, min_fee=1000)
    check_stateless(signed(Preferences((A,))), "transx-dev", zones=3, min_fee=1000)


def test_a_trailing_extension_only_ends_a_whole_encoding():
    ext = Trailing(UInt(5), 0)
    for build in (lambda: ListOf(ext, 3), lambda: Optional_(ext), lambda: ListOf(BID, 2), lambda: Tagged({1: BID}),
                  lambda: Record(Preferences, {"prefer": ext, "kind": UInt(3)})):
        with pytest.raises(TypeError, match="trailing"):
            build()
    assert Record(Preferences, {"prefer": ListOf(ADDRESS, 3), "kind": ext}).trailing  # last: fine


# ------------------------------------------------------------------ on the chain
@pytest.fixture
def chain(tmp_path):
    n = Net(str(tmp_path / "db"), candidate_cap=1)  # one counterpart a buyer: the band leaves pairs out
    yield n
    n.close()


def market(net: Net, slot: int, without: tuple[str, ...] = ()) -> dict[str, Tx]:
    """u0 sells cheap (no kind stated), u1 dearer solar; u3 buys high, u4 lower naming u0, u5 takes only
    solar; but the bids `without`.  With one counterpart a buyer the band pairs u3-u0 and u4-u1."""
    u = net.users
    bids = {"u0": (u[0], SELL, 5_000, 200_000, NO_PREFERENCES), "u1": (u[1], SELL, 5_000, 300_000, Preferences((), SOLAR)),
            "u3": (u[3], BUY, 3_000, 500_000, NO_PREFERENCES), "u4": (u[4], BUY, 3_000, 400_000, Preferences((addr(u[0]),))),
            "u5": (u[5], BUY, 2_000, 450_000, Preferences((), SOLAR))}
    return {name: net.submit(k, Bid(side, slot, wh, price, 0, slot, prefs))
            for name, (k, side, wh, price, prefs) in bids.items() if name not in without}


def test_a_blocks_clearing_honours_a_preference_and_a_kind(chain):
    net, slot = chain, chain.next_height + chain.g.gate_closure
    bids = market(net, slot)
    net.produce_until(slot - 1)
    rec = net.state().bid(bids["u4"].hash)
    assert rec.preferences == Preferences((addr(net.users[0]),))  # the record keeps what the bid said
    done = net.produce()
    inst = done.market.instance
    traded = {(inst.sellers[t.seller].id, inst.buyers[t.buyer].id) for t in done.block.clearing.trades}
    hexes = {k: tx.hash.hex() for k, tx in bids.items()}
    assert (hexes["u0"], hexes["u4"]) in traded  # the preferred pair traded
    assert {s for s, b in traded if b == hexes["u5"]} == {hexes["u1"]}  # the solar-only buyer: solar alone
    # Without the preference the pair was no candidate: the band gave u4 the dearer seller.
    plain = replace(inst, buyers=tuple(replace(p, prefer=()) for p in inst.buyers))
    p = candidate_pairs(plain, net.g.candidate_cap)
    assert (inst.seller_index[hexes["u0"]], inst.buyer_index[hexes["u4"]]) not in set(zip(p.seller.tolist(),
                                                                                            p.buyer.tolist()))
    assert net.state().bid(bids["u4"].hash).status == CLEARED
    # What the explorer and the API show of it.
    view = views.slot_view(net.chain, slot)
    by_id = {b["id"]: b for b in view["bids"]}
    assert by_id[hexes["u4"]]["prefer"] == [keys.encode_address(addr(net.users[0]))] and by_id[hexes["u4"]]["only"] is None
    assert by_id[hexes["u5"]]["only"] == "solar" and by_id[hexes["u1"]]["energy_kind"] == "solar"
    assert "only" not in by_id[hexes["u1"]] and "energy_kind" not in by_id[hexes["u5"]]
    assert [t["preferred"] for t in view["trades"] if (t["seller"], t["buyer"]) == (hexes["u0"], hexes["u4"])] == [True]
    assert not any(t["preferred"] for t in view["trades"] if t["buyer"] != hexes["u4"])
    assert views.tx_json(bids["u5"])["only"] == "solar"
    assert views.tx_json(bids["u1"])["kind"] == "bid"  # a transaction's kind stays its own
    assert views.tx_json(bids["u1"])["energy_kind"] == "solar"


def test_the_slot_instance_carries_owners_preferences_and_kinds(chain):
    net, slot = chain, chain.next_height + chain.g.gate_closure
    bids = market(net, slot)
    net.produce()
    inst = slot_market(net.state(), slot, net.g).instance
    u4 = inst.buyers[inst.buyer_index[bids["u4"].hash.hex()]]
    assert (u4.owner, u4.prefer, u4.kind) == (addr(net.users[4]).hex(), (addr(net.users[0]).hex(),), 0)
    u1 = inst.sellers[inst.seller_index[bids["u1"].hash.hex()]]
    assert (u1.owner, u1.prefer, u1.kind) == (addr(net.users[1]).hex(), (), SOLAR)


# ------------------------------------------------------------------ transx bid, the quote, the explorer
class InProcessApi:
    """The node's real HTTP API (make_app) over a Net, called in-process: what `transx` talks to."""

    def __init__(self, net: Net) -> None:
        self.app = make_app(net.node, NodeMetrics())

    def _call(self, method: str, path: str, body: bytes | None = None):
        async def go():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://node") as c:
                return await c.request(method, path, content=body)

        r = asyncio.run(go())
        doc = r.json()
        if r.status_code >= 400:
            raise ClientError(doc["error"], r.status_code, doc.get("reason"))
        return doc

    def get(self, path: str):
        return self._call("GET", path)

    def submit(self, raw: bytes):
        return self._call("POST", "/api/tx", json.dumps({"raw": raw.hex()}).encode())


@pytest.fixture
def cli(chain, monkeypatch):
    """`transx` against the chain's node in-process; `--from` names the user whose key signs."""
    api = InProcessApi(chain)
    monkeypatch.setattr(bid_cli, "node_client", lambda api_url, datadir: api)
    signers = {keys.encode_address(addr(k)): k for k in chain.users}
    monkeypatch.setattr(bid_cli, "unlock", lambda datadir, address, password_file: signers[address])

    def run(*args: str):
        return CliRunner().invoke(main, ["bid", *args], env={"TRANSX_DATADIR": None, "TRANSX_PASSWORD": None})

    return run


def test_transx_bid_sends_preferences_the_clearing_honours_and_quotes_them(chain, cli):
    net, slot = chain, chain.next_height + chain.g.gate_closure + 1
    bids = market(net, slot, without=("u4",))
    net.produce()  # the others' bids on chain: the quote sees them
    u = {k: keys.encode_address(addr(net.users[k])) for k in range(6)}
    r = cli("buy", "3kWh", "0.4", "--slot", str(slot), "--from", u[4], "--prefer", u[0], "--prefer", u[0],
            "--json", "-y")  # a repeated address counts once
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    q = out["quote"]
    assert (q["prefer"], q["only"], q["preferred_open"], q["kind_offered_wh"]) == ([u[0]], None, 1, None)
    tx = net.node.mempool.get(bytes.fromhex(out["bid"]))
    assert tx.body.preferences == Preferences((addr(net.users[0]),))
    net.produce_until(slot - 1)
    done = net.produce()
    inst = done.market.instance
    traded = {(inst.sellers[t.seller].id, inst.buyers[t.buyer].id) for t in done.block.clearing.trades}
    assert (bids["u0"].hash.hex(), out["bid"]) in traded


def test_the_quote_says_what_the_slot_holds_of_the_preferences(chain, cli):
    net, slot = chain, chain.next_height + chain.g.gate_closure + 1
    market(net, slot)
    net.produce()
    u = {k: keys.encode_address(addr(net.users[k])) for k in range(6)}
    r = cli("buy", "1kWh", "0.42", "--slot", str(slot), "--from", u[2], "--only", "Solar", "--prefer", u[1], "-y")
    assert r.exit_code == 0, r.output
    assert f"  prefers: {u[1]} (1 of their sell bids open in this slot so far)" in r.stdout
    assert "  only solar energy (5.000 kWh of it on offer in this slot so far): no pair with any other seller" in r.stdout
    r = cli("sell", "1kWh", "0.25", "--slot", str(slot + 1), "--from", u[2], "--kind", "wind", "--json", "-y")
    assert r.exit_code == 0, r.output
    q = json.loads(r.stdout)["quote"]
    assert (q["energy_kind"], q["prefer"], q["preferred_open"]) == ("wind", [], None) and "only" not in q
    assert "  energy: wind (buyers who take only wind energy can be paired with it)" in cli(
        "sell", "1kWh", "0.25", "--slot", str(slot + 1), "--from", u[3], "--kind", "wind", "-y").stdout


@pytest.mark.parametrize("extra, message", [
    (["--prefer", "nonsense"], "--prefer: not a TransX address"),
    (["--prefer", "trx1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"], "--prefer: bad address checksum"),
    (["--only", "coal"], "--only: unknown energy kind 'coal' (one of solar, wind, hydro)"),
    (["--prefer", "{u2}"], "--prefer names the bidding address itself"),
    (["--prefer", "{u0}", "--prefer", "{u1}", "--prefer", "{u3}", "--prefer", "{u4}"],
     "--prefer names 4 addresses; a bid prefers at most 3"),
])
def test_a_bad_preference_is_one_line_and_a_non_zero_exit(chain, cli, extra, message):
    u = {f"u{k}": keys.encode_address(addr(chain.users[k])) for k in range(6)}
    r = cli("buy", "1kWh", "0.42", "--from", u["u2"], *[a.format(**u) for a in extra], "-y")
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {message}") and r.stderr.count("\n") == 1, r.stderr
    assert len(chain.node.mempool) == 0


def test_a_seller_names_a_kind_a_buyer_the_only_kind():
    r = CliRunner().invoke(main, ["bid", "sell", "1kWh", "0.2", "--only", "solar"])
    assert r.exit_code == 2 and "No such option '--only'" in r.stderr
    assert all(k in bid_cli._KINDS for k in ENERGY_KINDS)  # the help names every kind the chain knows
    assert parse_preferences(SELL, [], "hydro") == Preferences((), ENERGY_KINDS.index("hydro") + 1)
    with pytest.raises(InputError, match="^--kind: unknown energy kind"):
        parse_preferences(SELL, [], "coal")


def test_the_quote_without_the_slot_and_the_tables_show_preferences():
    prefs = Preferences((A,), SOLAR)
    q = quote(BUY, 1000, 400_000, {"grid": {"feed_in": 170_000, "retail": 570_000}}, prefs).to_json()
    assert (q["prefer"], q["only"], q["preferred_open"]) == ([keys.encode_address(A)], "solar", None)
    row = {"id": "ab" * 32, "side": "buy", "slot": 5, "wh": 1000, "price": 400_000, "zone": 0, "escrow": 1,
           "status": "open"}
    assert "preferences" not in bids_table([{**row, "prefer": [], "only": None}])
    text = bids_table([{**row, "prefer": [keys.encode_address(A)], "only": "solar"}])
    assert f"only solar; prefers {keys.encode_address(A)}" in text


def test_the_explorer_page_shows_preferences():
    from page_support import run_page, text_of

    bid = {"id": "ab" * 32, "owner": "trx1owner", "side": "buy", "slot": 5, "wh": 1000, "price": 400_000, "zone": 0,
           "escrow": 1, "status": "open", "traded_wh": 0, "amount": 0, "prefer": ["trx1friend"], "only": "solar"}
    plain = {**bid, "id": "cd" * 32, "prefer": [], "only": None}
    sell = {**plain, "side": "sell", "only": None, "energy_kind": "wind"}
    tx = {"hash": "ef" * 32, "kind": "bid", "from": "trx1from", "nonce": 0, "fee": 1000, **bid}
    out = run_page(f"Promise.all([bidTable({json.dumps([bid, plain])}), bidTable({json.dumps([plain])}), "
                   f"details({json.dumps(tx)}), bidTable({json.dumps([sell])}), tx('{tx['hash']}')])",
                   docs={f"tx/{tx['hash']}": tx})
    assert "only solar; prefers trx1friend" in text_of(out[0]) and "preferences" in text_of(out[0])
    assert "preferences" not in text_of(out[1])
    assert text_of(out[2]).endswith("zone 0; only solar; prefers trx1friend")
    assert "wind energy" in text_of(out[3])
    assert "prefer trx1friend" in text_of(out[4]) and "only solar" in text_of(out[4])
