"""A real node process driven through the CLI and the HTTP API, as a homeowner would."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import urllib.error

import pytest

from consensus.rules.keys import decode_address
from transxnode.datadir.keystore import Keystore
from consensus.rules.transactions import BUY, SELL, Bid, Transfer, sign_tx

from node_support import PASSWORD, TRANSX, ENV, NodeProcess, transx, transx_json, transx_many, wait_for
from page_support import run_page, text_of
from consensus.rules.units import tokens


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = NodeProcess.init_dev(tmp_path_factory.mktemp("home") / "data").start()
    n.wait_height(1)
    yield n
    n.stop()


def _balance(node, address: str) -> dict:
    return node.get(f"/api/address/{address}")


def _fund(node, *addresses: str, amount: str = "100") -> None:
    for a in addresses:
        transx("wallet", "send", a, amount, *node.dd, check=True)
    wait_for(lambda: all(_balance(node, a)["balance"] > 0 for a in addresses), 30, "funding to land")


def test_wallets_bid_a_slot_clears_and_settles_against_the_meters(node):
    seller = transx_json("wallet", "new", *node.dd)["address"]
    buyer = transx_json("wallet", "new", *node.dd)["address"]
    _fund(node, seller, buyer)
    meters = {a: transx_json("meter", "register", "--address", a, *node.dd)["meter"] for a in (seller, buyer)}
    wait_for(lambda: all(_balance(node, a)["meter"] for a in meters), 30, "the meters' registration")
    listed = transx_json("wallet", "list", *node.dd)
    assert {seller, buyer} <= {r["address"] for r in listed}

    slot = node.get("/api/node")["first_open_slot"] + 15  # 1-s slots: two CLI calls (~1.6 s each, 4 s on a loaded CI)
    sell = transx_json("bid", "sell", "5kWh", "0.30", "--slot", str(slot), "--from", seller, "-y", *node.dd)
    buy = transx_json("bid", "buy", "3kWh", "0.50", "--slot", str(slot), "--zone", "1", "--from", buyer, "-y",
                      *node.dd)
    assert buy["quote"]["worst_return"] == (570000 - 500000) * 3  # retail minus the limit, on 3 kWh
    # Escrow is locked as soon as the bid is in a block: 3 kWh x 0.50; the seller's delivery collateral,
    # 5 kWh x (0.57 retail - 0.30).
    assert (buy["quote"]["locked"], sell["quote"]["locked"]) == (1_500_000, 1_350_000)
    wait_for(lambda: _balance(node, buyer)["escrowed"] == 1_500_000, 30, "the buy bid's escrow")
    wait_for(lambda: _balance(node, seller)["escrowed"] == 1_350_000, 30, "the sell bid's collateral")
    assert [b["id"] for b in transx_json("bid", "list", buyer, *node.dd)] == [buy["bid"]]

    node.wait_height(slot)
    s, b = _balance(node, seller), _balance(node, buyer)  # the clearing's, before delivery settles
    # The meters' readings for the slot land within meter_window blocks (6 s here): sent side by side,
    # with the explorer's read of the market, so a slow machine's CLI start-ups do not add up.
    look, *reads = transx_many([("explorer", "market", str(slot), "--json", *node.dd),
                                ("meter", "read", "--slot", str(slot), "--exported-wh", "2000", "--address", seller, *node.dd),
                                ("meter", "read", "--slot", str(slot), "--imported-wh", "3000", "--address", buyer, *node.dd)])
    assert all(r.returncode == 0 for r in (look, *reads)), [r.stderr for r in (look, *reads)]
    m = json.loads(look.stdout)
    assert m["status"] == "cleared"
    assert [(t["seller"], t["buyer"], t["wh"]) for t in m["trades"]] == [(sell["bid"], buy["bid"], 3000)]
    payment = m["trades"][0]["payment"]
    assert 300_000 * 3 <= payment <= 500_000 * 3 - 30_000 * 3  # within both limits, net of the zone 0->1 charge
    rows = {p["side"]: p for p in m["participants"]}
    assert rows["sell"]["return_vs_grid"] > 0 and rows["buy"]["return_vs_grid"] > 0

    fee = 1000
    # Held until delivery settles: the revenue, and the collateral of the 3 kWh sold (2 kWh unsold came back).
    collateral = 3 * (570_000 - 300_000)
    assert (s["balance"], s["escrowed"]) == (100_000_000 - 2 * fee - collateral, payment + collateral)
    assert b["balance"] == 100_000_000 - 2 * fee - rows["buy"]["amount"]
    assert rows["buy"]["amount"] == payment + 30_000 * 3000 // 1000  # payment plus the network charge
    assert b["escrowed"] == 0 and b["open_bids"] == []

    # The meters (read above): the seller delivered 2 of its 3 kWh, the buyer took all 3.
    window = node.get("/api/node")["meter_window"]
    node.wait_height(slot + window + 1)
    s = _balance(node, seller)
    short = -(-1000 * 570_000 // 1000)  # the missing kWh, bought from the grid at retail at the seller's cost
    assert (s["balance"], s["escrowed"]) == (100_000_000 - 3 * fee + payment - short, 0)
    assert s["settlements"][0]["slot"] == slot
    assert (s["settlements"][0]["shortfall_wh"], s["settlements"][0]["charge"]) == (1000, short)
    assert _balance(node, buyer)["balance"] == b["balance"] - fee  # took what it bought: nothing to settle
    d = transx_json("explorer", "market", str(slot), *node.dd)["delivery"]
    assert d["status"] == "settled" and {r["address"] for r in d["accounts"]} == {seller, buyer}
    text = transx("explorer", "address", seller, *node.dd, check=True).stdout
    # The 1 kWh short and what it cost, as a person reads them: kWh and tokens.
    assert "delivery settlements" in text and " 1.000 " in text and f" {tokens(short)} " in text, text
    _no_raw_amounts(text, short, payment, 1000)
    assert " on time " in text  # the explorer page's word for a reading in time, not "on" (issue 14, item 10)

    block = transx_json("explorer", "block", str(slot), *node.dd)
    assert block["clearing"]["traded_wh"] == 3000 and not block["clearing"]["void"]
    tx = transx_json("explorer", "tx", buy["bid"], *node.dd)
    assert tx["status"] == "included" and tx["kind"] == "bid"
    assert (tx["wh"], tx["price"], tx["fee"]) == (3000, 500_000, fee)  # --json: the API's integers
    text = transx("explorer", "tx", buy["bid"], *node.dd, check=True).stdout
    assert "3.000 kWh" in text and "0.50 tokens per kWh" in text and "0.001 tokens" in text, text
    _no_raw_amounts(text, 3000, 500_000, fee)
    funding = next(h for h in transx_json("explorer", "address", buyer, *node.dd)["history"] if h["kind"] == "transfer")
    text = transx("explorer", "tx", funding["hash"], *node.dd, check=True).stdout
    assert "100.00 tokens" in text, text
    _no_raw_amounts(text, 100_000_000, fee)
    # The web page's transaction view, run against this node's API, reads the same.
    page = text_of(run_page(f'tx("{buy["bid"]}")', api=node.api))
    assert "wh 3.000 kWh" in page and "price 0.50 tokens per kWh" in page and "fee 0.001 tokens" in page, page
    _no_raw_amounts(page, 3000, 500_000, fee)
    text = transx("explorer", "block", str(slot), *node.dd, check=True).stdout
    assert "3.000 kWh" in text and f"{tokens(payment)} tokens paid" in text, text
    _no_raw_amounts(text, payment, fee)
    hist = transx_json("explorer", "address", buyer, *node.dd)["history"]
    assert buy["bid"] in {h.get("hash") for h in hist}
    text = transx("explorer", "market", str(slot), *node.dd, check=True).stdout
    assert "trades" in text and "vs grid" in text and f" {tokens(payment)} " in text, text
    assert "delivery settled" in text and " on time " in text
    _no_raw_amounts(text, payment, 3000, rows["buy"]["amount"])
    s = _balance(node, seller)
    text = transx("wallet", "balance", seller, *node.dd, check=True).stdout
    assert f"balance   {tokens(s['balance'])} tokens" in text, text
    _no_raw_amounts(text, s["balance"])
    _no_raw_amounts(transx("explorer", "market", *node.dd, check=True).stdout, payment)
    # The block that cleared the slot is final: the node's solver is the whole voter set here, and its
    # votes, carried by the next blocks, justify and finalize (the API and the explorer say so).
    wait_for(lambda: node.get("/api/node")["finalized"]["height"] >= slot, 30, "finality of the clearing's block")
    block = node.get(f"/api/block/{slot}")
    assert block["final"] and block["justified"]
    node.wait_height(slot + 3)  # the vote for it rides in one of the next blocks (the next, unless the node lagged)
    assert any(v["target"]["height"] == slot for h in range(slot + 1, slot + 4) for v in node.get(f"/api/block/{h}")["votes"])
    assert "finality  final" in transx("explorer", "block", str(slot), *node.dd).stdout


def _no_raw_amounts(text: str, *values: int) -> None:
    """None of `values` (micro-units, Wh) shows as a bare integer: people read tokens and kWh."""
    words = set(text.replace("|", " ").split())
    for v in values:
        assert not {str(v), f"{v:,}"} & words, (v, text)


def test_a_day_of_bids_from_a_profile_file_lands_slot_by_slot(node, tmp_path):
    home = transx_json("wallet", "new", *node.dd)["address"]
    _fund(node, home)
    info = node.get("/api/node")
    profile = tmp_path / "day.csv"
    # +4, +5, +6 (a few past the first open slot: 1-s slots, and the CLI reads the market, then unlocks
    # the key before its first send), an absolute slot, and a zone of its own; blank lines are fine.
    absolute = info["first_open_slot"] + 15
    profile.write_text("slot,side,quantity,price,zone\n+4,sell,2.5kWh,0.30,\n+5,sell,3kWh,0.28,\n\n"
                       f"+6,buy,800Wh,0.50,2\n{absolute},sell,1kWh,0.25,\n")
    r = transx("bid", "profile", str(profile), "--from", home, "--zone", "1", "-y", "--json", *node.dd, check=True)
    out = json.loads(r.stdout)
    # It sells, and has no meter: it is told what that will cost, once, and the bids go anyway.
    assert r.stderr.count("warning: no meter is registered to") == 1, r.stderr
    slots = [b["slot"] for b in out["bids"]]
    first = slots[0] - 4
    assert slots == [first + 4, first + 5, first + 6, absolute] and first >= info["first_open_slot"]
    wait_for(lambda: len(_balance(node, home)["open_bids"]) + sum(
        1 for h in _balance(node, home)["history"] if h["kind"] == "bid") >= 4, 30, "the profile's bids on chain")
    mine = {b["slot"]: b for b in transx_json("bid", "list", home, *node.dd)}
    for s in slots:
        if s in mine:  # a slot may have cleared already on a fast chain
            assert (mine[s]["side"], mine[s]["zone"]) == (("buy", 2) if s == first + 6 else ("sell", 1))
    assert mine.get(first + 4, {"wh": 2_500})["wh"] == 2_500
    # A bad row sends nothing: the whole file is checked first.
    before = _balance(node, home)["pending_nonce"]
    profile.write_text('[{"slot": "+1", "side": "sell", "quantity": "2kWh", "price": "0.3"},'
                       ' {"slot": "+2", "side": "sell", "quantity": "lots", "price": "0.3"}]')
    r = transx("bid", "profile", str(profile), "-y", "--from", home, *node.dd)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "bid 2: quantity 'lots'" in r.stderr, r.stderr
    assert _balance(node, home)["pending_nonce"] == before


def test_the_home_agent_plans_a_day_from_its_forecasts_and_sends_it(node):
    home = transx_json("wallet", "new", *node.dd)["address"]
    _fund(node, home)
    # On the wall clock (--slot-hours 0) the dev chain's slots last a second, so a day of them is a minute
    # of real time and a second's energy is small: put a 1 MWp array where the sun is at its highest now,
    # with a small load.
    utc_hour = (time.time() % 86_400) / 3600
    lon = str(round(((12 - utc_hour) * 15 + 180) % 360 - 180, 3))
    info = node.get("/api/node")
    plan = transx_json("agent", "plan", "--slot-hours", "0", "--kwp", "1000", "--lon", lon, "--lat", "0",
                       "--daily-kwh", "2", "--slots", "48", *node.dd)
    assert plan["clock"]["slot_hours"] is None
    assert len(plan["pv_wh"]) == len(plan["load_wh"]) == 48
    # One slot of margin past the first open one, so the first bid has a block to spare before its gate.
    assert plan["first_slot"] > info["first_open_slot"]
    assert 170_000 <= plan["sell_limit"] <= plan["reference_price"] <= plan["buy_limit"] <= 570_000
    assert len(plan["bids"]) == 48 and plan["expected_gain"] > 0
    for b in plan["bids"]:
        k = b["slot"] - plan["first_slot"]
        surplus = plan["pv_wh"][k] - plan["load_wh"][k]
        assert b["side"] == "sell" and 0 < b["wh"] <= surplus and b["price"] == plan["sell_limit"]
    # A home whose balance cannot lock the collateral of all it could sell sends what the balance carries,
    # and says so; every bid it sends lands.
    small = transx_json("wallet", "new", *node.dd)["address"]
    _fund(node, small, amount="0.2")
    cut = transx_json("agent", "plan", "--slot-hours", "0", "--kwp", "1000", "--lon", lon, "--lat", "0",
                      "--daily-kwh", "2", "--slots", "6", "--send", "-y", "--from", small, *node.dd)
    assert cut["cut_to_funds"] and 0 < len(cut["sent"]) < 6 and all(b["side"] == "sell" for b in cut["bids"])
    wait_for(lambda: _balance(node, small)["nonce"] == len(cut["sent"]), 30, "the cut plan's bids")
    # No panels, a big evening load (local time set to 19:30 now): it buys what it expects to use, less its
    # safety margin.
    evening = str(round((19.5 - utc_hour + 12) % 24 - 12, 2))
    load = ("--slot-hours", "0", "--kwp", "0", "--daily-kwh", "10000", "--utc-offset", evening)
    plan = transx_json("agent", "plan", *load, "--slots", "4", *node.dd)
    assert [b["side"] for b in plan["bids"]] == ["buy"] * 4
    assert all(b["wh"] == int(plan["load_wh"][b["slot"] - plan["first_slot"]] * 0.9) for b in plan["bids"])
    # The chain moves on a slot a second while it sends, so the earliest slots may close meanwhile: those
    # are reported, the rest still go.
    sent = transx_json("agent", "plan", *load, "--slots", "6", "--send", "-y", "--from", home, *node.dd)
    planned = [b["slot"] for b in sent["bids"]]
    assert sent["skipped_slots"] == planned[:len(sent["skipped_slots"])] and len(sent["sent"]) > 0
    assert len(sent["sent"]) + len(sent["skipped_slots"]) == len(planned)
    wait_for(lambda: _balance(node, home)["nonce"] >= len(sent["sent"]) or
             _balance(node, home)["pending_nonce"] >= len(sent["sent"]), 30, "the agent's bids")
    assert info["grid"] == {"feed_in": 170_000, "retail": 570_000}


def test_the_agent_runs_hands_free_on_the_nodes_own_key_beside_its_solver(node):
    """The default address is the node's key, which is also the dev chain's solver: its commits are always
    pending, and the agent still bids, round after round, and leaves the solver its fees."""
    info = node.get("/api/node")
    me, start = info["address"], info["height"]
    utc_hour = (time.time() % 86_400) / 3600
    evening = str(round((19.5 - utc_hour + 12) % 24 - 12, 2))
    agent = subprocess.Popen([*TRANSX, "agent", "run", "--slot-hours", "0", "--kwp", "0", "--daily-kwh", "10000",
                              "--utc-offset", evening, "--slots", "3", *node.dd], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        def bids_on_chain() -> int:
            return sum(1 for h in _balance(node, me)["history"] if h["kind"] == "bid" and h["height"] > start)

        wait_for(lambda: bids_on_chain() >= 6, 60, "two rounds of the agent's bids on chain")
    finally:
        agent.send_signal(signal.SIGINT)
        out, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    rounds = [line for line in out.splitlines() if "bids sent" in line]
    assert len(rounds) >= 2 and "agent stopped" in out, out
    # The solver's commits, signed with the same key, kept landing while the agent bid.
    assert any(h["kind"] == "commit" and h["height"] > start for h in _balance(node, me)["history"])


def test_the_agent_plans_a_sensible_day_on_the_readmes_dev_chain_with_its_defaults(tmp_path):
    """5-second slots (`transx init --dev`): a real-time forecast is a few Wh a slot.  By default each slot
    plays half an hour of a day, and the plan says so; on the wall clock the empty plan says why and
    what to pass."""
    dev = NodeProcess.init_dev(tmp_path / "data", slot_seconds=5).start()
    try:
        dev.wait_height(1)
        r = transx("agent", "plan", *dev.dd, check=True)
        first = r.stdout.splitlines()[0]
        assert "5 s" in first and "0.5 h" in first and "--slot-hours" in first, r.stdout
        plan = transx_json("agent", "plan", *dev.dd)
        assert plan["clock"]["slot_hours"] == 0.5 and plan["why_empty"] is None
        assert len(plan["pv_wh"]) == 48 and all(w > 0 for w in plan["load_wh"])
        assert max(plan["pv_wh"]) > 1000 and sum(plan["load_wh"]) == pytest.approx(12_000, rel=0.02)  # a day
        assert {b["side"] for b in plan["bids"]} == {"buy", "sell"}
        assert transx_json("agent", "plan", "--slot-hours", "1", "--slots", "24", *dev.dd)["clock"]["slot_hours"] == 1
        # On the wall clock a slot's forecast is too small to bid: the plan says why and what to pass.
        r = transx("agent", "plan", "--slot-hours", "0", *dev.dd, check=True)
        assert "no bids" in r.stdout and "--slot-hours 0.5" in r.stdout, r.stdout
        empty = transx_json("agent", "plan", "--slot-hours", "0", *dev.dd)
        assert empty["bids"] == [] and "--slot-hours" in empty["why_empty"]
        # A home with nothing to trade is told so, and what would change it.
        r = transx("agent", "plan", "--kwp", "0", "--daily-kwh", "0", *dev.dd, check=True)
        assert "no bids" in r.stdout and "--kwp" in r.stdout, r.stdout
    finally:
        dev.stop()


def test_bids_whose_gate_closes_while_sending_are_skipped_and_the_rest_sent(node):
    from transx_cli.sending import send_bids
    from transxnode.client.node_api import ApiClient, ClientError

    me, key = _funded_wallet(node)
    gate, first = node.get("/api/node")["gate_closure"], node.get("/api/node")["first_open_slot"]
    closed = Bid(BUY, first - 2, 1000, 400_000, 0, first - 2 - gate)
    still_open = Bid(BUY, first + 20, 1000, 400_000, 0, first + 20 - gate)
    sent, skipped = send_bids(ApiClient(node.api), key, [closed, still_open])
    assert skipped == [closed.slot] and [s for s, _ in sent] == [still_open.slot]
    wait_for(lambda: _balance(node, me)["escrowed"] == 400_000, 30, "the open bid's escrow")
    # Any other refusal still stops the list: this one is beyond the bidding horizon.
    with pytest.raises(ClientError, match="slots ahead"):
        send_bids(ApiClient(node.api), key, [Bid(BUY, first + 10_000, 1000, 400_000, 0, first + 10_000)])


def test_bad_cli_input_is_one_line_and_nonzero(node):
    payee = transx_json("wallet", "new", *node.dd)["address"]
    cases = [
        (("wallet", "send", "trx1notanaddress", "1"), 2, "address"),
        (("wallet", "send", payee, "1.0000001"), 2, "6 decimals"),
        (("wallet", "send", payee, "0"), 2, "positive"),
        (("wallet", "send", payee, "-3"), 2, "amount must be positive, got -3"),
        (("bid", "buy", "-5kWh", "0.5", "-y"), 2, "quantity must be positive, got -5kWh"),
        (("bid", "sell", "5kWh", "-0.3", "-y"), 2, "price must not be negative, got -0.3"),
        (("bid", "buy", "lots", "0.5", "-y"), 2, "energy"),
        (("bid", "buy", "3", "0.5", "-y"), 2, "quantity '3' has no unit: write 3kWh or 3000Wh"),
        (("bid", "buy", "5kWh", "0.5", "--zone", "9", "-y"), 2, "zone 9"),
        (("bid", "buy", "5kWh", "0.5", "--slot", "1", "-y"), 2, "closed"),
        (("bid", "buy", "5kWh", "0.5", "--slot", "99999999", "-y"), 2, "horizon"),
        (("wallet", "send", payee, "5", "--from", payee), 1,
         "insufficient balance: 0.00 tokens, the transaction needs 5.001 tokens"),
        (("explorer", "block", "999999"), 1, "no block"),
        (("explorer", "tx", "zz"), 1, "hex"),
        (("meter", "read", "--slot", "1", "--imported-wh", "5", "--exported-wh", "5"), 2, "not both"),
        (("meter", "read", "--slot", "1", "--exported-wh", "-5"), 2, "--exported-wh"),
        (("meter", "read", "--slot", "1", "--exported-wh", "5"), 2, "no meter is registered"),
    ]
    info = node.get("/api/node")
    start, me = info["height"], info["address"]
    for (args, status, words), r in zip(cases, transx_many([(*args, *node.dd) for args, _, _ in cases])):
        assert r.returncode == status, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], (args, r.stderr)
    # Nothing was sent: the mempool's own count moves with the node's solver commits (and earlier tests'
    # bids landing), so look at what the two keys did on chain once anything pending had time to land.
    node.wait_height(node.get("/api/node")["height"] + 3)
    assert _balance(node, payee)["pending_nonce"] == 0
    sent = {h["kind"] for h in _balance(node, me)["history"] if h["height"] > start and h.get("from") == me}
    assert sent <= {"commit", "reveal"}, sent
    r = transx("node", "--datadir", str(node.datadir.parent / "nowhere"))
    assert r.returncode == 2 and "transx init" in r.stderr


def test_a_datadir_that_does_not_exist_is_one_line_never_another_nodes_answer(node, tmp_path):
    """Issue 14, item 4: a mistyped --datadir (or $TRANSX_DATADIR) is one line and exit 2, not the answer of
    whatever node listens on the default API address, nor an empty keystore; the default address serves only
    when no data directory was named."""
    missing = str(tmp_path / "no" / "such" / "dir")
    payee = transx_json("wallet", "address", *node.dd)["address"]
    runs = (("explorer", "head"), ("wallet", "balance"), ("wallet", "send", payee, "1"), ("bid", "list"),
            ("meter", "read", "--slot", "1", "--exported-wh", "5"), ("node",), ("wallet", "new"))
    for args, r in zip(runs, transx_many([(*args, "--datadir", missing) for args in runs])):
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, (args, r.stdout, r.stderr)
        assert lines[0].startswith(f"error: no data directory {missing}") and "transx init" in lines[0], (args, lines)
    assert not (tmp_path / "no").exists()  # `wallet new` did not make it either
    env_missing = {**ENV, "TRANSX_DATADIR": missing}
    r = subprocess.run([*TRANSX, "explorer", "head"], capture_output=True, text=True, env=env_missing, timeout=60)
    assert r.returncode == 2 and "$TRANSX_DATADIR" in r.stderr and missing in r.stderr, r.stderr
    # A directory that is there but holds no node is no reason to ask the default address either.
    empty = tmp_path / "empty"
    empty.mkdir()
    r = transx("explorer", "head", "--datadir", str(empty))
    assert r.returncode == 2 and "not a TransX data directory" in r.stderr and "8645" not in r.stderr, r.stderr
    # The node's own data directory, named either way, still answers.
    env_node = {**ENV, "TRANSX_DATADIR": str(node.datadir)}
    r = subprocess.run([*TRANSX, "explorer", "head", "--json"], capture_output=True, text=True, env=env_node,
                       timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["height"] >= 1, r.stderr
    assert transx_json("explorer", "head", *node.dd)["height"] >= 1


def _funded_wallet(node, amount: str = "1000") -> tuple[str, object]:
    """A wallet key of this test's own (the node key is busy with its solver's commits), funded."""
    ks = Keystore(node.datadir / "keystore")
    me = ks.create(PASSWORD)
    _fund(node, me, amount=amount)
    return me, ks.unlock(me, PASSWORD)


def test_api_refuses_hostile_input_without_changing_state(node):
    me, key = _funded_wallet(node)
    info = node.get("/api/node")
    before = _balance(node, me)
    good = sign_tx(key, chain_id=info["chain_id"], nonce=before["pending_nonce"], fee=1000,
                   body=Transfer(decode_address(me), 1))
    wrong_chain = sign_tx(key, chain_id="another-chain", nonce=before["pending_nonce"], fee=1000,
                          body=Transfer(decode_address(me), 1))
    tampered = bytearray(good.encoded)
    tampered[-1] ^= 1
    # Each refusal has a status and a reason for programs beside the message for people, and says
    # whether the node kept the transaction all the same (never, for a refusal).
    assert node.request("POST", "/api/tx", b"{not json") == (400, {"error": 'expected {"raw": "<hex of a signed '
                                                                      'transaction>"}', "reason": "malformed",
                                                             "kept": False})
    assert node.request("POST", "/api/tx", json.dumps({"raw": "zz"}).encode())[0] == 400
    assert node.request("POST", "/api/tx", b"x" * 70_000)[0] == 413
    status, err = node.submit(wrong_chain.encoded)
    assert status == 422 and "chain id" in err["error"] and err["kept"] is False
    status, err = node.submit(bytes(tampered))
    assert status == 422 and "signature" in err["error"]
    # A refusal for money says tokens to people, and gives programs the integers.
    rich = sign_tx(key, chain_id=info["chain_id"], nonce=before["pending_nonce"], fee=1000,
                   body=Transfer(decode_address(me), 10**15))
    status, err = node.submit(rich.encoded)
    assert status == 422 and err["error"] == ("insufficient balance: 1,000.00 tokens, the transaction needs "
                                              "1,000,000,000.001 tokens"), err
    assert (err["balance"], err["needs"]) == (before["balance"], 10**15 + 1000)
    status, err = node.submit(good.encoded + b"\x00")
    assert status == 400 and "trailing" in err["error"]
    assert node.request("GET", "/api/block/%C2%B2")[0] == 400  # a digit to str.isdigit, not to int()
    assert node.request("POST", "/api/tx", b"[" * 30_000)[0] == 400
    assert node.request("GET", "/api/address/trx1qqqq")[0] == 400
    assert node.request("GET", "/api/block/" + "ab" * 32)[0] == 404
    assert node.request("GET", "/api/tx/" + "ab" * 32)[0] == 404
    assert node.request("GET", "/api/nothing") == (404, {"error": "Not Found", "reason": "not_found"})
    after = _balance(node, me)
    assert after["pending_nonce"] == before["pending_nonce"]
    # The good one is accepted once; a replay of an included transaction is refused.
    status, ok = node.submit(good.encoded)
    assert status == 202 and ok["hash"] == good.hash.hex()
    assert node.submit(good.encoded)[0] == 422
    wait_for(lambda: node.get(f"/api/tx/{good.hash.hex()}")["status"] == "included", 30, "inclusion")
    status, err = node.submit(good.encoded)
    assert status == 422 and "already on chain" in err["error"] and err["reason"] == "invalid"
    # Another transaction at the used nonce: a wallet that raced someone signs again at the next one.
    again = sign_tx(key, chain_id=info["chain_id"], nonce=good.nonce, fee=1000, body=Transfer(decode_address(me), 2))
    status, err = node.submit(again.encoded)
    assert status == 422 and err["reason"] == "nonce", err

    # The explorer page and the metrics are served beside the API.
    import urllib.request

    with urllib.request.urlopen(node.api + "/", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/html") and b"TransX explorer" in r.read()
    with urllib.request.urlopen(node.api + "/metrics", timeout=10) as r:
        text = r.read().decode()
    assert "transx_height" in text and 'transx_tx_rejected_total{reason="invalid"}' in text


def _node_key(node) -> str:
    return transx_json("wallet", "address", *node.dd)["address"]


def _money(node, addresses) -> tuple[int, dict]:
    """What the accounts hold (balance, escrow, deposit), and /api/node, read at one height."""
    while True:
        info = node.get("/api/node")
        total = 0
        for a in addresses:
            acct = _balance(node, a)
            total += acct["balance"] + acct["escrowed"] + acct["solver_deposit"]
        if node.get("/api/node")["height"] == info["height"]:
            return total, info


def test_sigkill_at_any_instant_restarts_with_the_chain_intact(tmp_path):
    """Kill -9 while blocks, bids and transfers are being written; every restart finds a whole chain."""
    n = NodeProcess.init_dev(tmp_path / "data").start()
    rng = random.Random(7)
    try:
        n.wait_height(1)
        me, key = _funded_wallet(n, "100000")
        ks = Keystore(n.datadir / "keystore")
        others = [ks.create(PASSWORD) for _ in range(3)]
        addresses = [_node_key(n), me, *others]
        info = n.get("/api/node")
        for round_ in range(3):
            acct = _balance(n, me)
            nonce = acct["pending_nonce"]
            first = n.get("/api/node")["first_open_slot"]
            for k in range(12):
                body = (Transfer(decode_address(rng.choice(others)), rng.randint(1, 10**6)) if k % 3 else
                        Bid(BUY if k % 2 else SELL, first + rng.randint(0, 3), rng.randint(100, 5000),
                            rng.randint(170_000, 570_000), 0, first + 50))
                if isinstance(body, Bid) and body.side == SELL and any(
                        b["side"] == "buy" and b["slot"] == body.slot for b in acct["open_bids"]):
                    continue
                tx = sign_tx(key, chain_id=info["chain_id"], nonce=nonce, fee=1000, body=body)
                if n.submit(tx.encoded)[0] == 202:
                    nonce += 1
            seen = n.height
            wait_for(lambda: n.height > seen, 30, "a new block")
            time.sleep(rng.uniform(0, 1.0))
            seen = n.height
            n.kill()
            n.start()
            head = n.height
            assert head >= seen, f"round {round_}: restarted at {head}, below the {seen} seen before the kill"
            # A whole chain: every block present and linked to its parent.
            prev = n.get("/api/block/0")["hash"]
            for h in range(1, head + 1):
                b = n.get(f"/api/block/{h}")
                assert b["parent"] == prev, f"round {round_}: block {h} does not link to {h - 1}"
                prev = b["hash"]
            # Money is conserved: what the accounts hold plus what was burned or paid to the grid is what
            # was minted or paid by the grid.
            held, info = _money(n, addresses)
            sup = info["supply"]
            assert held + sup["burned"] + sup["grid_charged"] == sup["minted"] + sup["grid_credited"]
            assert info["supply"]["minted"] == 1_000_000_000_000 + 100_000_000 + 1_000_000 * info["height"]
        # Pending transactions survive a kill: one held back by a nonce gap is still pending after the
        # restart, and goes in once the gap is filled.
        # (A fresh key: the bulk sender above may have later nonces stuck behind a dropped bid.)
        fresh, fresh_key = _funded_wallet(n, "10")
        later = sign_tx(fresh_key, chain_id=info["chain_id"], nonce=1, fee=1000,
                        body=Transfer(decode_address(others[0]), 7))
        gap = sign_tx(fresh_key, chain_id=info["chain_id"], nonce=0, fee=1000,
                      body=Transfer(decode_address(others[1]), 7))
        status, answer = n.submit(later.encoded)
        assert status == 202, answer
        n.kill()
        n.start()
        assert n.get(f"/api/tx/{later.hash.hex()}")["status"] == "pending"
        assert n.submit(gap.encoded)[0] == 202
        wait_for(lambda: n.get(f"/api/tx/{later.hash.hex()}")["status"] == "included", 30, "the journalled tx")
        # A second node on the same data directory is refused with one line.
        r = subprocess.run([*TRANSX, "node", *n.dd], capture_output=True, text=True, timeout=60, env=ENV)
        assert r.returncode == 2
        assert r.stderr.strip().splitlines()[-1].startswith("error: another node is using the data directory")
        assert n.stop(signal.SIGINT) == 0
        assert not (n.datadir / "node.json").exists()
        assert "stopped; the store is closed" in n.log()
    finally:
        if n.proc and n.proc.poll() is None:
            n.kill()


def _pages(node, address: str, query: str = "", limit: int = 3) -> list[list[dict]]:
    """Every page of an address's history, following `next` until it is null."""
    pages, before = [], ""
    while True:
        doc = node.get(f"/api/address/{address}?limit={limit}{query}{before}")
        pages.append(doc["history"])
        if doc["next"] is None:
            return pages
        assert len(pages) < 100, "paging does not end"
        before = f"&before={doc['next']}"


def _entry_id(h: dict) -> tuple:
    return h["height"], h["kind"], h.get("hash") or h.get("bid") or h.get("session") or h.get("slot")


def test_explorer_address_lists_an_ev_owners_sessions_trades_and_settlements_page_by_page(node):
    from consensus.rules.charging import authorise
    from consensus.rules.transactions import SessionClose, SessionOpen

    ks = Keystore(node.datadir / "keystore")
    owner, station, seller = (ks.create(PASSWORD) for _ in range(3))
    _fund(node, owner, station, seller)
    owner_key, station_key = ks.unlock(owner, PASSWORD), ks.unlock(station, PASSWORD)
    info = node.get("/api/node")

    # The owner buys 1 kWh in a slot of its own, and charges its EV four times at the station, which
    # signs every session transaction: the owner sends none of them.
    slot = info["first_open_slot"] + 15  # 1-s slots: two CLI calls (~4 s each on a loaded CI)
    transx_json("bid", "sell", "1kWh", "0.30", "--slot", str(slot), "--from", seller, "-y", *node.dd)
    buy = transx_json("bid", "buy", "1kWh", "0.50", "--slot", str(slot), "--from", owner, "-y", *node.dd)
    auths = [authorise(owner_key, chain_id=info["chain_id"], ev_id="EV-9", max_wh=20_000, max_price=600_000,
                       expiry=int(time.time() * 1000) + 600_000, nonce=n) for n in range(4)]
    sent = [sign_tx(station_key, chain_id=info["chain_id"], nonce=n, fee=1000, body=SessionOpen(a, 500_000, 30))
            for n, a in enumerate(auths)]
    sent += [sign_tx(station_key, chain_id=info["chain_id"], nonce=4 + n, fee=1000,
                     body=SessionClose(a.session_id, 2_000 * (n + 1), 60)) for n, a in enumerate(auths)]
    for t in sent[:4]:
        assert node.submit(t.encoded)[0] == 202
    wait_for(lambda: all(node.get(f"/api/tx/{t.hash.hex()}")["status"] == "included" for t in sent[:4]), 30,
             "the sessions to open")
    for t in sent[4:]:
        assert node.submit(t.encoded)[0] == 202
    wait_for(lambda: all(node.get(f"/api/tx/{t.hash.hex()}")["status"] == "included" for t in sent[4:]), 30,
             "the sessions to close")
    node.wait_height(slot + info["meter_window"] + 1)  # the slot is cleared and its delivery settled

    doc = node.get(f"/api/address/{owner}?limit=100")
    hist = doc["history"]
    assert doc["next"] is None
    kinds = [h["kind"] for h in hist]
    assert kinds.count("session_open") == 4 and kinds.count("session_close") == 4, kinds
    assert {h["hash"] for h in hist if h["kind"].startswith("session_")} == {t.hash.hex() for t in sent}
    paid = [h["amount"] for h in hist if h["kind"] == "session_close"]
    assert sorted(paid) == [1_000_000, 2_000_000, 3_000_000, 4_000_000]  # 2, 4, 6, 8 kWh at 0.50
    (trade,) = [h for h in hist if h["kind"] == "trade"]
    assert (trade["bid"], trade["height"], trade["traded_wh"], trade["status"]) == (buy["bid"], slot, 1000, "cleared")
    assert trade["amount"] > 0
    (settled,) = [h for h in hist if h["kind"] == "settlement"]
    assert (settled["slot"], settled["bought_wh"], settled["height"]) == (slot, 1000, slot + info["meter_window"] + 1)
    assert [h["height"] for h in hist] == sorted((h["height"] for h in hist), reverse=True)  # newest first
    assert doc["balance"] == 100_000_000 - 1000 - trade["amount"] - sum(paid)  # every change is in the history

    # Page by page: the same entries in the same order, none twice, and the last page says there is no next.
    pages = _pages(node, owner)
    assert all(0 < len(p) <= 3 for p in pages) and len(pages) >= 4
    assert [_entry_id(h) for p in pages for h in p] == [_entry_id(h) for h in hist]
    # A height alone is a cursor too: everything in blocks below it.
    below = node.get(f"/api/address/{owner}?limit=100&before={slot}")["history"]
    assert below == [h for h in hist if h["height"] < slot]

    # The node's own key, a solver: commits and reveals in nearly every block, and the transfers that
    # funded the wallets, which the consensus filter shows.
    me = info["address"]
    assert {"commit", "reveal"} & {h["kind"] for h in node.get(f"/api/address/{me}?limit=20")["history"]}
    quiet = node.get(f"/api/address/{me}?limit=200&consensus=0")["history"]
    assert quiet and not {"commit", "reveal"} & {h["kind"] for h in quiet}
    assert {owner, station, seller} <= {h.get("to") for h in quiet if h["kind"] == "transfer"}
    for bad in ("limit=0", "limit=x", "before=abc", "before=1.2.3", "consensus=2"):
        status, err = node.request("GET", f"/api/address/{owner}?{bad}")
        assert (status, err["reason"]) == (400, "malformed"), (bad, err)

    # The CLI pages the same way, in tokens and kWh for people, integers for scripts.
    first = transx_json("explorer", "address", owner, "--limit", "2", "--no-consensus", *node.dd)
    assert [_entry_id(h) for h in first["history"]] == [_entry_id(h) for h in hist[:2]]
    second = transx_json("explorer", "address", owner, "--limit", "2", "--before", first["next"], *node.dd)
    assert [_entry_id(h) for h in second["history"]] == [_entry_id(h) for h in hist[2:4]]
    text = transx("explorer", "address", owner, "--limit", "20", *node.dd, check=True).stdout
    assert "session_close" in text and "kWh" in text and "trade" in text and "settlement" in text, text
    text = transx("explorer", "address", owner, "--limit", "2", *node.dd, check=True).stdout
    assert f"--before {first['next']}" in text, text
    with urllib.request.urlopen(node.api + "/", timeout=10) as r:
        page = r.read().decode()
    assert "next page" in page and "consensus" in page


def test_explorer_market_says_a_bid_no_trade_took_was_not_matched(node):
    buyer, _ = _funded_wallet(node, amount="10")
    # 10 one-second slots of margin: a CLI process under load took over 4 s to send it (a CI failure)
    slot = node.get("/api/node")["first_open_slot"] + 10
    bid = transx_json("bid", "buy", "1kWh", "0.000001", "--slot", str(slot), "--from", buyer, "-y", *node.dd)
    node.wait_height(slot)
    m = node.get(f"/api/market/{slot}")
    (mine,) = [b for b in m["bids"] if b["id"] == bid["bid"]]
    assert (mine["status"], mine["traded_wh"]) == ("not matched", 0)
    assert "not matched" in transx("explorer", "market", str(slot), *node.dd, check=True).stdout
    status, err = node.request("GET", "/api/market/abc")
    assert status == 400 and err["error"] == "a slot is a non-negative integer", err


def test_a_flood_of_wallet_bids_on_the_nodes_own_key_beside_its_solver_loses_none(tmp_path):
    """Issue 14: a bid reported as sent vanished.  The node's own key bids and pays from a wallet while
    its solver commits every round with the same key: ~80 transactions, at every moment of the slot,
    bids for the first open slot (the CLI's default) and transfers, through the wallet's `send` (what
    every CLI command uses) and a few `transx bid buy` runs.  Each one the node accepted lands in a
    block; each one it did not was refused with a reason (a bid whose slot closed while it was sent);
    the solver's commits keep landing beside them (often at the same nonce number: their own)."""
    from transxnode.client.node_api import ApiClient, ClientError
    from transxnode.client.wallet import send

    n = NodeProcess.init_dev(tmp_path / "data").start()
    try:
        n.wait_height(2)
        info = n.get("/api/node")
        me, start = info["address"], info["height"]
        key = Keystore(n.datadir / "keystore").unlock(me, PASSWORD)
        payee = decode_address(Keystore(n.datadir / "keystore").create(PASSWORD))
        client = ApiClient(n.api)
        rng = random.Random(14)
        accepted, refused = [], []
        for i in range(80):
            if i % 20 == 19:  # the issue's own command
                r = transx("bid", "buy", "1kWh", "5", "-y", "--json", *n.dd)
                if r.returncode == 0:
                    accepted.append(json.loads(r.stdout)["bid"])
                else:
                    refused.append(r.stderr.strip())
                continue
            first = client.get("/api/market")["first_open_slot"]
            body = (Bid(BUY, first, 100 + i, 200_000, 0, first - info["gate_closure"]) if i % 2 else
                    Transfer(payee, 1 + i))
            try:
                accepted.append(send(client, key, body)["hash"])
            except ClientError as e:
                assert e.reason == "gate_closed", e  # a nonce refusal is retried by `send`, never seen here
                refused.append(str(e))
            time.sleep(rng.uniform(0, 0.15))
        end = n.height

        def fate(h: str) -> str:
            try:
                return n.get(f"/api/tx/{h}")["status"]
            except urllib.error.HTTPError:
                return "lost"

        def settled() -> bool:
            return all(fate(h) == "included" for h in accepted) or n.height > end + 8

        wait_for(settled, 60, "the accepted transactions to land")
        lost = [h for h in accepted if fate(h) != "included"]
        assert not lost, f"{len(lost)} of {len(accepted)} accepted transactions never landed ({len(refused)} refused)"
        assert len(accepted) >= 60, refused  # most were sent: only a bid sent as its slot closed is refused
        # The solver committed beside them, in its own nonce sequence.
        mine = [t for h in range(start + 1, n.height + 1) for t in n.get(f"/api/block/{h}")["txs"] if t["from"] == me]
        commits = [t for t in mine if t["kind"] == "commit"]
        assert len(commits) >= (end - start) // 2, f"{len(commits)} commits in {end - start} rounds"
        wallet = [t for t in mine if t["kind"] in ("bid", "transfer")]
        assert set(accepted) <= {t["hash"] for t in wallet}
        assert {t["nonce"] for t in commits} & {t["nonce"] for t in wallet}  # one number, two sequences
    finally:
        if n.proc and n.proc.poll() is None:
            n.stop()
