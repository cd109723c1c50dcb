"""`transx export` against a real dev node: a slot with a bid that clears, exported, read back with pandas."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from consensus.rules.keys import decode_address
from consensus.rules.transactions import BUY, SELL, Bid, Transfer, sign_tx
from transxnode.datadir.keystore import Keystore

from node_support import PASSWORD, NodeProcess, transx, transx_many, wait_for


@pytest.fixture(scope="module")
def cleared(tmp_path_factory):
    """A dev node on which a sell bid (5 kWh at 0.30) and a buy bid (3 kWh at 0.50) cleared in one slot;
    yields (node, slot, the slot's market document).  (Its settlement, meter_window blocks later, is
    tests/unit/test_export.py's: waiting for it here would double this test's time.)"""
    node = NodeProcess.init_dev(tmp_path_factory.mktemp("export") / "data").start()
    try:
        node.wait_height(1)
        info = node.get("/api/node")
        ks = Keystore(node.datadir / "keystore")
        funder = ks.unlock(info["address"], PASSWORD)
        seller, buyer = ks.create(PASSWORD), ks.create(PASSWORD)
        nonce = node.get(f"/api/address/{info['address']}")["pending_nonce"]
        for k, to in enumerate((seller, buyer)):
            tx = sign_tx(funder, chain_id=info["chain_id"], nonce=nonce + k, fee=1000,
                         body=Transfer(decode_address(to), 100_000_000))
            assert node.submit(tx.encoded)[0] == 202
        wait_for(lambda: all(node.get(f"/api/address/{a}")["balance"] for a in (seller, buyer)), 30, "funding")
        keys = {who: ks.unlock(who, PASSWORD) for who in (seller, buyer)}  # before the slot is chosen: slow
        slot = node.get("/api/node")["first_open_slot"] + 6
        for who, side, wh, price in ((seller, SELL, 5000, 300_000), (buyer, BUY, 3000, 500_000)):
            tx = sign_tx(keys[who], chain_id=info["chain_id"], nonce=0, fee=1000,
                         body=Bid(side, slot, wh, price, 0, slot))
            assert node.submit(tx.encoded)[0] == 202
        node.wait_height(slot)
        yield node, slot, node.get(f"/api/market/{slot}")
    finally:
        node.stop()


def test_export_of_a_range_loads_into_pandas_with_the_trade_in_wh_and_price(cleared, tmp_path):
    node, slot, market = cleared
    assert len(market["trades"]) == 1, market  # the setup cleared: one trade, the buyer's 3 kWh
    trade = market["trades"][0]
    last = node.height
    r = transx("export", "--from", "1", "--to", str(last), "--out", str(tmp_path / "out"), *node.dd)
    assert r.returncode == 0, r.stderr
    assert f"slots 1..{last}: 2 bids, 1 trades, 3.000 kWh" in r.stdout, r.stdout

    trades = pd.read_parquet(tmp_path / "out" / "trades.parquet")
    assert trades[["slot", "wh", "payment", "price"]].values.tolist() == [
        [slot, 3000, trade["payment"], trade["price"]]]
    assert 300_000 <= trades["price"][0] <= 500_000
    # The CSV holds the same rows, with the same types where no cell is empty.
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "trades.csv"), trades)

    clearings = pd.read_parquet(tmp_path / "out" / "clearings.parquet").set_index("slot")
    assert list(clearings.index) == list(range(1, last + 1))
    row = clearings.loc[slot]
    assert (row["volume_wh"], row["supply_wh"], row["demand_wh"], row["participants"]) == (3000, 5000, 3000, 2)
    assert row["price"] == trade["price"] and row["welfare"] > 0
    assert clearings["volume_wh"].sum() == 3000  # nothing else traded
    bids = pd.read_csv(tmp_path / "out" / "bids.csv")
    assert sorted(bids[["side", "wh", "price", "traded_wh"]].values.tolist()) == [
        ["buy", 3000, 500_000, 3000], ["sell", 5000, 300_000, 3000]]
    schema = json.loads((tmp_path / "out" / "schema.json").read_text())
    units = {c["name"]: c["unit"] for c in schema["tables"]["trades"]["columns"]}
    assert (units["wh"], units["payment"], units["price"]) == ("Wh", "micro-units", "micro-units/kWh")
    assert schema["about"]["to"] == last and schema["tables"]["trades"]["rows"] == 1


def test_export_refuses_bad_ranges_and_outputs_in_one_line(cleared, tmp_path):
    node, _, _ = cleared
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    head = node.height
    runs = transx_many([
        ("export", "--from", "5", "--to", "3", "--out", str(tmp_path / "x"), *node.dd),
        ("export", "--from", "1", "--to", str(head + 10_000), "--out", str(tmp_path / "y"), *node.dd),
        ("export", "--out", str(blocker / "sub"), *node.dd),
        ("devnet", "--dir", str(tmp_path / "dn"), "--export", str(blocker / "sub")),  # refused before it starts
    ])
    for r, said in zip(runs, ("--from 5 is after --to 3", "beyond the chain's head", "cannot write to",
                              "cannot write to")):
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and said in r.stderr, r.stderr
    assert not any((tmp_path / d).exists() for d in ("x", "y", "dn"))


def test_a_devnet_writes_its_chain_when_it_stops(tmp_path):
    r = transx("devnet", "--dir", str(tmp_path / "dn"), "--nodes", "1", "--homes", "2", "--slot-seconds", "1",
               "--slots", "3", "--export", str(tmp_path / "out"), timeout=120)
    assert r.returncode == 0, r.stderr
    schema = json.loads((tmp_path / "out" / "schema.json").read_text())
    head = schema["about"]["to"]
    assert schema["about"]["source"] == "transx devnet" and head >= 3
    assert f"exported slots 1..{head}" in r.stdout
    clearings = pd.read_parquet(tmp_path / "out" / "clearings.parquet")
    assert clearings["slot"].tolist() == list(range(1, head + 1))
    assert (tmp_path / "out" / "market.png").stat().st_size > 0 and (tmp_path / "out" / "supply_demand.png").exists()
