"""`transx export`'s tables (transxnode/client/export.py) built from a real chain through the API's
views, written as CSV and Parquet and read back with pandas."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from agent.simulation import chain_reader
from chain_support import addr, net  # noqa: F401  (the fixture)
from consensus.rules import keys
from consensus.rules.charging import authorise, session_cost
from consensus.rules.transactions import BUY, SELL, SessionClose, SessionOpen
from transxnode.client import export as ex
from transxnode.client.wallet import InputError


@pytest.fixture
def settled(net):  # noqa: F811
    """Two sellers and two buyers bid one slot; one seller reads its meter; the slot settles.  Meanwhile
    an EV (users[4]) charges 12,345 Wh at a station (users[5]) at 0.60 a kWh."""
    s0, s1, b0, b1, ev, station = net.users[:6]
    auth = authorise(ev, chain_id=net.g.chain_id, ev_id="WXY-1234", max_wh=30_000, max_price=700_000,
                     expiry=net.now(net.height + 100), nonce=1)
    net.submit(station, SessionOpen(auth, 600_000, 20))
    net.register_meter(s0)
    slot = net.next_height + net.g.gate_closure
    net.bid(s0, SELL, slot, 4_000, 200_000)
    net.bid(s1, SELL, slot, 2_000, 250_000, zone=1)
    net.bid(b0, BUY, slot, 3_000, 500_000)
    net.bid(b1, BUY, slot, 2_500, 450_000, zone=1)
    net.produce_until(slot)
    net.submit(station, SessionClose(auth.session_id, 12_345, 85))
    net.submit(s0, net.reading(s0, slot, exported_wh=net.state().bid(_bid_of(net, s0, slot)).traded_wh))
    net.produce_until(slot + net.g.meter_window + 1)
    return net, slot


def _bid_of(net, k, slot):  # noqa: F811
    return next(i for i, r in net.state().slot_bids(slot) if r.owner == addr(k))


def test_tables_hold_every_bid_trade_clearing_and_settlement_of_the_range(settled):
    net, slot = settled  # noqa: F811
    t = ex.build_tables(chain_reader(net.chain), 1, net.height)
    assert [r["slot"] for r in t["clearings"]] == list(range(1, net.height + 1))
    assert sorted((b["side"], b["wh"], b["price"]) for b in t["bids"]) == [
        ("buy", 2_500, 450_000), ("buy", 3_000, 500_000), ("sell", 2_000, 250_000), ("sell", 4_000, 200_000)]
    block = net.chain.block_at(slot)
    assert sorted((r["wh"], r["payment"]) for r in t["trades"]) == sorted((x.wh, x.payment)
                                                                          for x in block.clearing.trades)
    owners = {keys.encode_address(addr(k)) for k in net.users[:4]}
    assert all(r["seller"] in owners and r["buyer"] in owners and r["slot"] == slot for r in t["trades"])
    c = t["clearings"][slot - 1]
    volume = sum(x.wh for x in block.clearing.trades)
    assert (c["volume_wh"], c["supply_wh"], c["demand_wh"], c["bids"]) == (volume, 6_000, 5_500, 4)
    assert c["value"] == sum(x.payment for x in block.clearing.trades) and c["price"] == c["value"] * 1000 // volume
    assert c["participants"] == sum(1 for b in t["bids"] if b["traded_wh"]) and c["welfare"] > 0
    assert c["certified"] is True and t["clearings"][0]["certified"] is None  # a slot without trades: no verdict
    assert sum(r["volume_wh"] for r in t["clearings"]) == volume  # no other slot traded
    # Every account that traded settles once; only s0 sent its reading.
    rows = {r["address"]: r for r in t["settlements"] if r["slot"] == slot}
    assert set(rows) == {r["owner"] for r in t["bids"] if r["traded_wh"]}
    assert [a for a, r in rows.items() if r["read"]] == [keys.encode_address(addr(net.users[0]))]
    assert sum(r["sold_wh"] for r in rows.values()) == sum(r["bought_wh"] for r in rows.values()) == volume
    [session] = t["sessions"]
    assert (session["owner"], session["station"]) == tuple(keys.encode_address(addr(k)) for k in net.users[4:6])
    assert (session["delivered_wh"], session["amount"], session["status"], session["soc_end"]) == (
        12_345, session_cost(12_345, 600_000), "closed", 85) and session["opened"] < session["closed"]


def test_parquet_and_csv_give_the_same_rows_and_the_schema_gives_units(settled, tmp_path):
    net, slot = settled  # noqa: F811
    t = ex.build_tables(chain_reader(net.chain), 1, net.height)
    files = ex.write_tables(t, tmp_path / "out", "both", {"from": 1})
    assert {f.name for f in files} == {f"{n}.{e}" for n in ex.TABLES for e in ("csv", "parquet")} | {"schema.json"}
    for name in ("bids", "trades", "settlements", "sessions"):
        pq, csv = pd.read_parquet(tmp_path / "out" / f"{name}.parquet"), pd.read_csv(tmp_path / "out" / f"{name}.csv")
        assert len(pq) == len(t[name]) > 0
        pd.testing.assert_frame_equal(pq, csv, check_dtype=True)
    pq = pd.read_parquet(tmp_path / "out" / "clearings.parquet")
    csv = pd.read_csv(tmp_path / "out" / "clearings.csv")
    assert pq["volume_wh"].tolist() == csv["volume_wh"].tolist() == [r["volume_wh"] for r in t["clearings"]]
    assert pq["price"].isna().sum() == len(pq) - 1 and pq["price"][slot - 1] == csv["price"][slot - 1]
    schema = json.loads((tmp_path / "out" / "schema.json").read_text())
    cols = {c["name"]: c for c in schema["tables"]["trades"]["columns"]}
    assert (cols["wh"]["unit"], cols["price"]["unit"], cols["payment"]["type"]) == ("Wh", "micro-units/kWh", "int64")
    assert schema["tables"]["clearings"]["rows"] == net.height and schema["about"] == {"from": 1}
    import pyarrow.parquet as papq

    assert papq.read_schema(tmp_path / "out" / "trades.parquet").field("wh").metadata[b"unit"] == b"Wh"


def test_bad_ranges_formats_and_directories_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="--from 5 is after --to 3"):
        ex.check_range(5, 3, 10)
    with pytest.raises(InputError, match=r"--to 11 is beyond the chain's head \(10\)"):
        ex.check_range(1, 11, 10)
    with pytest.raises(InputError, match="first exportable slot is 1"):
        ex.check_range(0, 3, 10)
    assert ex.check_range(None, None, 10) == (1, 10)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="cannot write to"):
        ex.prepare_dir(tmp_path / "file" / "out")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    with pytest.raises(InputError, match=r"pip install 'transx\[research\]'"):
        ex.check_format("parquet")
    ex.check_format("csv")  # CSV needs nothing more
    written = ex.write_tables({"trades": []}, tmp_path / "csv-only", "csv")
    assert [f.name for f in written] == ["trades.csv", "schema.json"]
    assert pd.read_csv(written[0]).columns.tolist() == [c for c, *_ in ex.SCHEMA["trades"]]


def test_an_export_written_as_it_is_read_holds_a_chunk_and_writes_the_same_tables(settled, tmp_path):
    net, slot = settled  # noqa: F811
    get = chain_reader(net.chain)
    whole = ex.build_tables(get, 1, net.height)
    chunks = list(ex.read_tables(get, 1, net.height, chunk=2))
    assert max(len(c["clearings"]) for c in chunks) == 2 and len(chunks) > net.height // 2
    n = ex.export_range(get, 1, net.height, tmp_path / "streamed", "both", {"from": 1}, chunk=2)
    ex.write_tables(whole, tmp_path / "whole", "both", {"from": 1})
    for name in ex.TABLES:
        assert (tmp_path / "streamed" / f"{name}.csv").read_text() == (tmp_path / "whole" / f"{name}.csv").read_text()
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "streamed" / f"{name}.parquet"),
                                      pd.read_parquet(tmp_path / "whole" / f"{name}.parquet"))
        assert n[name] == len(whole[name])
    assert n["volume_wh"] == sum(r["volume_wh"] for r in whole["clearings"]) > 0
    assert (tmp_path / "streamed" / "schema.json").read_text() == (tmp_path / "whole" / "schema.json").read_text()


def test_an_export_that_fails_half_way_leaves_no_schema_json(settled, tmp_path):
    net, slot = settled  # noqa: F811
    read = chain_reader(net.chain)

    def failing(path):
        if path == f"/api/market/{slot}":
            raise OSError("the node went away")
        return read(path)
    ex.export_range(read, 1, 2, tmp_path / "out", "both", {"from": 1})  # an earlier export in the same place
    with pytest.raises(OSError, match="went away"):
        ex.export_range(failing, 1, net.height, tmp_path / "out", "both", {"from": 1}, chunk=2)
    assert (tmp_path / "out" / "bids.csv").exists() and not (tmp_path / "out" / "schema.json").exists()
