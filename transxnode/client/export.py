"""Data out for researchers (`transx export`): a chain range as tables of bids, trades, clearings,
settlements and charging sessions, written as CSV and/or Parquet beside a schema.json.

The tables are read through a node's HTTP API (`/api/block/<height>`, `/api/market/<slot>`,
`/api/session/<id>`), not from its LevelDB store: a running node holds the store's lock, and the API's
views are the one place chain records become documents, so an export says what the explorer says.
Any `get(path) -> JSON` works as the source: an `ApiClient`, or an in-process reader over a chain
(agent/simulation.py's `chain_reader`), so the market-day simulation writes the same tables.

Integer columns are Wh, micro-units (1 token = 10^6) and micro-units per kWh, as in the API.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .wallet import InputError

Get = Callable[[str], Any]
RESEARCH_HINT = "pip install 'transx[research]'"
FORMATS = ("csv", "parquet", "both")

# table -> [(column, type, unit, what)]; the type is one of int64, float64, bool, string.
SCHEMA: dict[str, list[tuple[str, str, str, str]]] = {
    "bids": [
        ("slot", "int64", "slot", "delivery slot (= the height of the block that clears it)"),
        ("bid", "string", "hex", "bid id (the hash of the bid transaction)"),
        ("owner", "string", "address", "who placed it"),
        ("side", "string", "", "sell or buy"),
        ("wh", "int64", "Wh", "quantity offered or asked"),
        ("price", "int64", "micro-units/kWh", "limit price"),
        ("zone", "int64", "", "network zone"),
        ("included", "int64", "height", "block that included the bid"),
        ("status", "string", "", "cleared, not matched, open or closed (cancelled bids are left out)"),
        ("traded_wh", "int64", "Wh", "what the clearing gave the bid"),
        ("amount", "int64", "micro-units", "paid (buy) or earned (sell) by the clearing"),
        ("escrow", "int64", "micro-units", "escrow still held when exported"),
    ],
    "trades": [
        ("slot", "int64", "slot", "delivery slot"),
        ("seller_bid", "string", "hex", "the sell bid"),
        ("buyer_bid", "string", "hex", "the buy bid"),
        ("seller", "string", "address", "owner of the sell bid"),
        ("buyer", "string", "address", "owner of the buy bid"),
        ("seller_zone", "int64", "", "seller's network zone"),
        ("buyer_zone", "int64", "", "buyer's network zone"),
        ("wh", "int64", "Wh", "energy traded"),
        ("payment", "int64", "micro-units", "buyer to seller"),
        ("price", "int64", "micro-units/kWh", "payment per kWh, rounded down"),
        ("preferred", "bool", "", "a pair the bids' preferences asked for"),
    ],
    "clearings": [
        ("slot", "int64", "slot", "delivery slot = block height"),
        ("block", "string", "hex", "block hash"),
        ("timestamp_ms", "int64", "ms since 1970 (UTC)", "block time"),
        ("proposer", "string", "address", "the solver whose clearing won"),
        ("void", "bool", "", "cleared nothing: every escrow refunded"),
        ("bids", "int64", "", "bids in the slot (not cancelled)"),
        ("supply_wh", "int64", "Wh", "sum of sell bids"),
        ("demand_wh", "int64", "Wh", "sum of buy bids"),
        ("trades", "int64", "", "number of trades"),
        ("volume_wh", "int64", "Wh", "energy traded"),
        ("value", "int64", "micro-units", "money paid"),
        ("price", "int64", "micro-units/kWh", "volume-weighted average price (empty: no trade)"),
        ("participants", "int64", "", "bids that traded"),
        ("welfare", "int64", "micro-units", "sum of the participants' surpluses over their limit prices"),
        ("nbs_objective", "float64", "nats", "Nash-bargaining objective: sum of ln(surplus in micro-units) "
                                             "over the participants that traded (unweighted)"),
        ("certified", "bool", "", "the clearing carries the verifier's certificate, false for the uncertified "
                                  "fallback (empty: no trade, or an API that does not report it)"),
        ("final", "bool", "", "the block was final when exported"),
    ],
    "settlements": [
        ("slot", "int64", "slot", "delivery slot settled"),
        ("address", "string", "address", "account"),
        ("sold_wh", "int64", "Wh", "cleared to sell"),
        ("bought_wh", "int64", "Wh", "cleared to buy"),
        ("exported_wh", "int64", "Wh", "metered export"),
        ("imported_wh", "int64", "Wh", "metered import"),
        ("read", "bool", "", "the meter reading came in time (else the default applied)"),
        ("shortfall_wh", "int64", "Wh", "sold but not delivered"),
        ("unused_wh", "int64", "Wh", "bought but not taken"),
        ("released", "int64", "micro-units", "seller revenue released"),
        ("charge", "int64", "micro-units", "charged for the shortfall / grid"),
        ("credit", "int64", "micro-units", "credited"),
        ("unpaid", "int64", "micro-units", "what the balance could not cover"),
    ],
    "sessions": [
        ("session", "string", "hex", "session id"),
        ("opened", "int64", "height", "block that opened it"),
        ("closed", "int64", "height", "block that closed it (empty: open or expired)"),
        ("status", "string", "", "session status"),
        ("owner", "string", "address", "EV owner"),
        ("station", "string", "address", "charging station"),
        ("ev_id", "string", "", "the EV's id"),
        ("max_wh", "int64", "Wh", "authorised energy"),
        ("delivered_wh", "int64", "Wh", "energy delivered"),
        ("price", "int64", "micro-units/kWh", "agreed price"),
        ("amount", "int64", "micro-units", "paid to the station"),
        ("soc_start", "int64", "%", "state of charge at the start"),
        ("soc_end", "int64", "%", "state of charge at the end (empty: not closed)"),
    ],
}
TABLES = tuple(SCHEMA)


def check_range(first: int | None, last: int | None, head: int) -> tuple[int, int]:
    """The heights to export, 1..head by default; InputError (one line) for a range the chain does not have."""
    first = 1 if first is None else first
    last = head if last is None else last
    if first < 1:
        raise InputError(f"--from {first}: the first exportable slot is 1 (block 0 is the genesis)")
    if first > last:
        raise InputError(f"--from {first} is after --to {last}")
    if last > head:
        raise InputError(f"--to {last} is beyond the chain's head ({head})")
    return first, last


def build_tables(get: Get, first: int, last: int, progress: Callable[[str], None] | None = None
                 ) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows for slots `first`..`last`, read from `get` (an API's GET: path -> JSON), in memory
    (a simulation's or a devnet's short chain, for plots; `export_range` writes a long one as it reads)."""
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
    for chunk in read_tables(get, first, last, progress):
        for name, rows in chunk.items():
            out[name] += rows
    return out


def read_tables(get: Get, first: int, last: int, progress: Callable[[str], None] | None = None,
                chunk: int = 500) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """The tables' rows for slots `first`..`last`, `chunk` slots at a time, then the sessions those slots
    opened or closed (by id only until then: what is held is a chunk of rows, not the range)."""
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
    sessions: dict[str, None] = {}
    for slot in range(first, last + 1):
        block, market = get(f"/api/block/{slot}"), get(f"/api/market/{slot}")
        _slot_rows(out, block, market)
        for tx in block.get("txs", []):
            if tx.get("kind") in ("session_open", "session_close"):
                sessions.setdefault(tx["session"], None)
        if progress is not None and (slot - first) % 50 == 49:
            progress(f"read {slot - first + 1} of {last - first + 1} slots")
        if (slot - first) % chunk == chunk - 1:
            yield out
            out = {t: [] for t in TABLES}
    ids = list(sessions)
    for i in range(0, len(ids), chunk):
        out["sessions"] += [_session_row(get(f"/api/session/{sid}")) for sid in ids[i:i + chunk]]
        yield out
        out = {t: [] for t in TABLES}
    if any(out.values()):
        yield out


def export_range(get: Get, first: int, last: int, out: str | Path, fmt: str, about: dict[str, Any],
                 progress: Callable[[str], None] | None = None, chunk: int = 500) -> dict[str, int]:
    """Slots `first`..`last` written to `out` as they are read (`TableWriter`): an export of years holds a
    chunk of slots in memory, not the years.  Returns each table's row count and the range's traded
    volume (Wh) and value (micro-units)."""
    writer = TableWriter(out, fmt)
    totals = {"volume_wh": 0, "value": 0}
    try:
        for rows in read_tables(get, first, last, progress, chunk):
            writer.add(rows)
            totals["volume_wh"] += sum(r["volume_wh"] for r in rows["clearings"])
            totals["value"] += sum(r["value"] for r in rows["clearings"])
    except BaseException:
        writer.abort()
        raise
    writer.close(about)
    return {**writer.rows, **totals}


def _slot_rows(out: dict[str, list[dict[str, Any]]], block: dict[str, Any], market: dict[str, Any]) -> None:
    slot = market["slot"]
    bids = {b["id"]: b for b in market["bids"]}
    for b in market["bids"]:
        out["bids"].append({"slot": slot, "bid": b["id"], "owner": b["owner"], "side": b["side"], "wh": b["wh"],
                            "price": b["price"], "zone": b["zone"], "included": b["included"], "status": b["status"],
                            "traded_wh": b["traded_wh"], "amount": b["amount"], "escrow": b["escrow"]})
    for t in market["trades"]:
        s, b = bids[t["seller"]], bids[t["buyer"]]
        out["trades"].append({"slot": slot, "seller_bid": t["seller"], "buyer_bid": t["buyer"], "seller": s["owner"],
                              "buyer": b["owner"], "seller_zone": s["zone"], "buyer_zone": b["zone"], "wh": t["wh"],
                              "payment": t["payment"], "price": t["price"], "preferred": bool(t.get("preferred"))})
    traders = [p for p in market.get("participants", []) if p["wh"]]
    positive = [p["surplus"] for p in traders if p["surplus"] > 0]
    clearing = block.get("clearing", {})
    out["clearings"].append({
        "slot": slot, "block": block["hash"], "timestamp_ms": block["timestamp"], "proposer": block["proposer"],
        "void": bool(clearing.get("void")), "bids": len(bids),
        "supply_wh": sum(b["wh"] for b in market["bids"] if b["side"] == "sell"),
        "demand_wh": sum(b["wh"] for b in market["bids"] if b["side"] == "buy"),
        "trades": len(market["trades"]), "volume_wh": market.get("traded_wh", 0), "value": market.get("value", 0),
        "price": market.get("average_price"), "participants": len(traders),
        "welfare": sum(p["surplus"] for p in traders),
        "nbs_objective": sum(math.log(s) for s in positive) if positive else None,
        "certified": clearing.get("certified"), "final": block.get("final"),
    })
    delivery = market.get("delivery") or {}
    if delivery.get("status") == "settled":
        for a in delivery["accounts"]:
            out["settlements"].append({"slot": slot, "address": a["address"], **{
                k: a[k] for k in ("sold_wh", "bought_wh", "exported_wh", "imported_wh", "shortfall_wh", "unused_wh",
                                  "released", "charge", "credit", "unpaid")}, "read": a["reading"] == "on time"})


def _session_row(s: dict[str, Any]) -> dict[str, Any]:
    return {k: s.get(k) for k, *_ in SCHEMA["sessions"]} | {"ev_id": str(s.get("ev_id"))}


# ------------------------------------------------------------------------------------------------ writing
def check_format(fmt: str) -> None:
    """InputError naming the extra to install when Parquet is asked for without pyarrow."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt != "csv":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError(f"--format {fmt} needs pyarrow: {RESEARCH_HINT}") from None


def prepare_dir(out: str | Path) -> Path:
    """The output directory, created if missing; InputError (one line) if it cannot be written."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".transx-export-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InputError(f"cannot write to {path}: {e.strerror or e}") from None
    return path


def write_tables(tables: dict[str, list[dict[str, Any]]], out: str | Path, fmt: str = "both",
                 about: dict[str, Any] | None = None) -> list[Path]:
    """`tables` as <name>.csv and/or <name>.parquet in `out`, and schema.json (columns, types, units, and
    `about`: where the data came from).  Returns the files written."""
    writer = TableWriter(out, fmt, tuple(tables))
    try:
        writer.add(tables)
    except BaseException:
        writer.abort()
        raise
    return writer.close(about)


class TableWriter:
    """Tables written as their rows come: CSV rows appended, a Parquet row group per `add`, schema.json
    (with the row counts) at `close`.  Every file exists from the start, with its columns."""

    def __init__(self, out: str | Path, fmt: str = "both", tables: tuple[str, ...] = TABLES) -> None:
        check_format(fmt)
        self.path = prepare_dir(out)
        (self.path / "schema.json").unlink(missing_ok=True)  # a previous export's: written again at close
        self.rows = {name: 0 for name in tables}
        self.files: list[Path] = []
        self._csv: dict[str, tuple[Any, Any]] = {}
        self._parquet: dict[str, Any] = {}
        for name in tables:
            cols = SCHEMA[name]
            if fmt in ("csv", "both"):
                file = self.path / f"{name}.csv"
                f = open(file, "w", newline="")
                w = csv.writer(f)
                w.writerow([c for c, *_ in cols])
                self._csv[name] = (f, w)
                self.files.append(file)
            if fmt in ("parquet", "both"):
                import pyarrow.parquet as pq

                file = self.path / f"{name}.parquet"
                self._parquet[name] = pq.ParquetWriter(file, _arrow_schema(cols))
                self.files.append(file)

    def add(self, tables: dict[str, list[dict[str, Any]]]) -> None:
        """Append each table's rows."""
        for name, rows in tables.items():
            cols = SCHEMA[name]
            if not rows:
                continue
            self.rows[name] += len(rows)
            if name in self._csv:
                w = self._csv[name][1]
                for r in rows:
                    w.writerow(["" if r.get(c) is None else _csv_cell(r[c], t) for c, t, *_ in cols])
            if name in self._parquet:
                import pyarrow as pa

                writer = self._parquet[name]
                writer.write_table(pa.Table.from_pydict({c: [r.get(c) for r in rows] for c, *_ in cols},
                                                        schema=writer.schema))

    def abort(self) -> None:
        """Close the files without schema.json: an export that failed half-way does not look whole."""
        for f, _ in self._csv.values():
            f.close()
        for writer in self._parquet.values():
            writer.close()
        self._csv, self._parquet = {}, {}

    def close(self, about: dict[str, Any] | None = None) -> list[Path]:
        """Close the files and write schema.json; returns every file written."""
        self.abort()
        doc = {"about": about or {}, "units": {"Wh": "watt-hours", "micro-units": "10^-6 token",
                                               "micro-units/kWh": "10^-6 token per kWh"},
               "tables": {n: {"rows": self.rows[n],
                              "columns": [{"name": c, "type": t, "unit": u, "description": d}
                                          for c, t, u, d in SCHEMA[n]]}
                          for n in self.rows}}
        (self.path / "schema.json").write_text(json.dumps(doc, indent=1) + "\n")
        return [*self.files, self.path / "schema.json"]


def _csv_cell(v: Any, kind: str) -> Any:
    return ("true" if v else "false") if kind == "bool" else repr(float(v)) if kind == "float64" else v


def _arrow_schema(cols):
    import pyarrow as pa

    types = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string()}
    return pa.schema([pa.field(c, types[t], metadata={"unit": u, "description": d}) for c, t, u, d in cols])


# ------------------------------------------------------------------------------------------------- plots
def plot_market(tables: dict[str, list[dict[str, Any]]], out: str | Path, slot: int | None = None) -> list[Path]:
    """market.png (price and volume per slot) and supply_demand.png (the supply and demand curves of
    `slot`, by default the slot that traded most), from the tables.  Needs matplotlib (Agg backend)."""
    try:
        import matplotlib
    except ImportError:
        raise InputError(f"plots need matplotlib: {RESEARCH_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = prepare_dir(out)
    rows = tables["clearings"]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar([r["slot"] for r in rows], [r["volume_wh"] / 1000 for r in rows], color="tab:blue", alpha=0.6)
    ax.set_xlabel("slot")
    ax.set_ylabel("volume (kWh)", color="tab:blue")
    ax2 = ax.twinx()
    priced = [r for r in rows if r["price"] is not None]
    ax2.plot([r["slot"] for r in priced], [r["price"] / 1e6 for r in priced], "o-", color="tab:red")
    ax2.set_ylabel("price (tokens/kWh)", color="tab:red")
    ax.set_title("Price and volume per slot")
    fig.tight_layout()
    fig.savefig(path / "market.png", dpi=100)
    plt.close(fig)
    if slot is None:
        slot = max(rows, key=lambda r: r["volume_wh"])["slot"] if rows else None
    bids = [b for b in tables["bids"] if b["slot"] == slot]
    fig, ax = plt.subplots(figsize=(6, 4))
    for side, order, color in (("sell", False, "tab:green"), ("buy", True, "tab:orange")):
        xs, ys, total = [0.0], [], 0
        for b in sorted((b for b in bids if b["side"] == side), key=lambda b: b["price"], reverse=order):
            total += b["wh"]
            xs.append(total / 1000)
            ys.append(b["price"] / 1e6)
        if ys:
            ax.step(xs, ys + ys[-1:], where="post", color=color, label="supply" if side == "sell" else "demand")
    price = next((r["price"] for r in rows if r["slot"] == slot), None)
    if price is not None:
        ax.axhline(price / 1e6, color="grey", linestyle="--", label="clearing price")
    ax.set_xlabel("cumulative kWh")
    ax.set_ylabel("limit price (tokens/kWh)")
    ax.set_title(f"Supply and demand, slot {slot}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path / "supply_demand.png", dpi=100)
    plt.close(fig)
    return [path / "market.png", path / "supply_demand.png"]


__all__ = ["FORMATS", "RESEARCH_HINT", "SCHEMA", "TABLES", "TableWriter", "build_tables", "check_format",
           "check_range", "export_range", "plot_market", "prepare_dir", "read_tables", "write_tables"]
