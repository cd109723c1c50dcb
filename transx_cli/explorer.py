"""`transx explorer`: blocks, transactions, addresses and markets from a node's API."""

from __future__ import annotations

import click

from .plugin_api import tokens, kwh, table, datadir_option, api_option, json_option, node_client, guard, format_price, emit
from .tables import bids_table, preferences_text
from .tables import settlements_table


@click.group()
def explorer() -> None:
    """Read the chain: head, block, tx, address, market."""


def _block_text(b) -> str:
    import datetime

    ts = datetime.datetime.fromtimestamp(b["timestamp"] / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"block {b['height']}  {b['hash']}", f"  time      {ts} UTC", f"  parent    {b['parent']}",
             f"  proposer  {b['proposer']}"]
    if "final" in b:
        lines.append(f"  finality  {'final' if b['final'] else 'justified' if b['justified'] else 'pending'}"
                     + "".join(f"; carries {v['signers']} votes {v['source']['height']} -> {v['target']['height']}"
                               for v in b.get("votes", [])))
    elif "finalized" in b:
        lines.append(f"  final     up to block {b['finalized']['height']}")
    if "txs" in b and isinstance(b["txs"], list):
        c = b["clearing"]
        lines += [f"  clearing  slot {c['slot']}: {len(c['trades'])} trades, {kwh(c['traded_wh'])} kWh, "
                  f"{tokens(c['value'])} tokens paid" + ("  (void: no certified clearing)" if c["void"] else "")]
        lines += [f"  txs       {len(b['txs'])}"]
        if b["txs"]:
            lines += ["", table(["tx", "kind", "from", "fee"],
                                 [[t["hash"][:16], t["kind"], t["from"], tokens(t["fee"])] for t in b["txs"]], 20)]
    return "\n".join(lines)


@explorer.command("head")
@datadir_option
@api_option
@json_option
@guard
def explorer_head(datadir, api, as_json) -> None:
    """The chain head."""
    emit(node_client(api, datadir).get("/api/head"), as_json, _block_text)


@explorer.command("blocks")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True, help="Blocks per page.")
@click.option("--before", help="Start below this cursor (a page's 'next') or block height.")
@datadir_option
@api_option
@json_option
@guard
def explorer_blocks(limit, before, datadir, api, as_json) -> None:
    """Block headers, newest first, a page at a time."""
    from urllib.parse import urlencode

    page = node_client(api, datadir).get("/api/blocks?" + urlencode({"limit": limit, **({"before": before} if before else {})}))

    def text(p) -> str:
        out = [table(["height", "hash", "txs", "trades", "kWh", "proposer"],
                     [[b["height"], b["hash"][:16], b["txs"], f"{b['trades']}{' (void)' if b['void'] else ''}",
                       kwh(b["traded_wh"]), b["proposer"] or "genesis"] for b in p["blocks"]])]
        if "next" in p:
            out.append(f"next page: transx explorer blocks --before {p['next']}" + (f" --limit {limit}" if limit != 20 else ""))
        return "\n".join(out)

    emit(page, as_json, text)


@explorer.command("block")
@click.argument("ref")
@datadir_option
@api_option
@json_option
@guard
def explorer_block(ref, datadir, api, as_json) -> None:
    """A block by height or hash, with its transactions and clearing."""
    emit(node_client(api, datadir).get(f"/api/block/{ref}"), as_json, _block_text)


@explorer.command("tx")
@click.argument("tx_hash")
@datadir_option
@api_option
@json_option
@guard
def explorer_tx(tx_hash, datadir, api, as_json) -> None:
    """A transaction by hash (included or pending)."""
    t = node_client(api, datadir).get(f"/api/tx/{tx_hash}")
    emit(t, as_json, lambda t: "\n".join(f"{k:<12}{_tx_field(k, v)}" for k, v in t.items()
                                          if v is not None and v != []))  # a bid's unset preferences


# A transaction's fields that are money or energy (transxnode/api/views.py tx_json); the explorer page's
# txField reads them the same way.
_MONEY = {"fee", "amount", "deposit"}
_PRICES = {"price"}
_ENERGY = {"wh", "max_wh", "imported_wh", "exported_wh", "delivered_wh"}


def _tx_field(key: str, value) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, int) and not isinstance(value, bool):
        if key in _MONEY:
            return f"{tokens(value)} tokens"
        if key in _PRICES:
            return f"{format_price(value)} tokens per kWh"
        if key in _ENERGY:
            return f"{kwh(value)} kWh"
    return str(value)


def _history_details(h, me: str) -> str:
    """One entry of `me`'s history for people: tokens and kWh."""
    k = h["kind"]
    if k == "transfer":
        if h["to"] == me and h["from"] != me:
            return f"{tokens(h['amount'])} tokens from {h['from']}"
        return f"{tokens(h['amount'])} tokens to {h['to']}"
    if k == "bid":
        prefs = preferences_text(h)
        return (f"{h['side']} {h['wh'] / 1000:,.3f} kWh at {format_price(h['price'])}/kWh in slot {h['slot']}"
                + (f" ({prefs})" if prefs else ""))
    if k == "trade":
        if not h["traded_wh"]:
            return f"{h['side']} bid of {h['wh'] / 1000:,.3f} kWh in slot {h['slot']} not matched: refunded"
        return (f"{'sold' if h['side'] == 'sell' else 'bought'} {h['traded_wh'] / 1000:,.3f} kWh in slot {h['slot']}"
                f" for {tokens(h['amount'])} tokens")
    if k == "settlement":
        return (f"slot {h['slot']} settled: short {h['shortfall_wh'] / 1000:,.3f} kWh, unused "
                f"{h['unused_wh'] / 1000:,.3f} kWh, charge {tokens(h['charge'])}, credit {tokens(h['credit'])}")
    if k == "session_open":
        return (f"charging {h['ev_id']} of {h['owner']}: up to {h['max_wh'] / 1000:,.3f} kWh at "
                f"{format_price(h['price'])}/kWh")
    if k == "session_close":
        paid = f", {tokens(h['amount'])} tokens paid" if "amount" in h else ""
        return f"session {h['session'][:16]} closed: {h['delivered_wh'] / 1000:,.3f} kWh delivered{paid}"
    if k == "session_expired":
        return f"session {h['session'][:16]} of {h['ev_id']} expired unclosed: nothing paid"
    if k in ("commit", "reveal"):
        return f"for block {h['target_height']}"
    if k == "meter":
        return f"reading of slot {h['slot']}: {h['exported_wh'] / 1000:,.3f} kWh out, {h['imported_wh'] / 1000:,.3f} kWh in"
    return ""


@explorer.command("address")
@click.argument("address")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
              help="History entries per page.")
@click.option("--before", help="Start the history below this cursor (a page's 'next') or block height.")
@click.option("--no-consensus", "no_consensus", is_flag=True, help="Leave the solver's commits and reveals out.")
@datadir_option
@api_option
@json_option
@guard
def explorer_address(address, limit, before, no_consensus, datadir, api, as_json) -> None:
    """An address: balance, escrow, open bids, settlements and a page of its history (transactions, charging
    sessions, trades, settlements), newest first."""
    from urllib.parse import urlencode

    query = {"limit": limit, **({"before": before} if before else {}), **({"consensus": 0} if no_consensus else {})}
    a = node_client(api, datadir).get(f"/api/address/{address}?{urlencode(query)}")

    def text(a) -> str:
        out = [f"address   {a['address']}", f"balance   {tokens(a['balance'])} tokens",
               f"escrowed  {tokens(a['escrowed'])} tokens", f"nonce     {a['nonce']}"]
        if a["solver_deposit"]:
            out.append(f"solver    deposit {tokens(a['solver_deposit'])} tokens")
        out.append(f"meter     {a['meter'][:16] + '...' if a['meter'] else 'none registered'}")
        if a["open_bids"]:
            out += ["", bids_table(a["open_bids"])]
        if a["settlements"]:
            out += ["", "delivery settlements (newest first):", settlements_table(a["settlements"], "slot")]
        if a["history"]:
            out += ["", "history (newest first):", table(
                ["height", "kind", "tx", "details", "fee"],
                [[h["height"], h["kind"], h["hash"][:16] if "hash" in h else "",
                  _history_details(h, a["address"]), tokens(h["fee"]) if h.get("from") == a["address"] else ""]
                 for h in a["history"]])]
        if a["next"]:
            flags = (f" --limit {limit}" if limit != 50 else "") + (" --no-consensus" if no_consensus else "")
            out.append(f"next page: transx explorer address {a['address']} --before {a['next']}{flags}")
        return "\n".join(out)

    emit(a, as_json, text)


@explorer.command("market")
@click.argument("slot", required=False, type=click.IntRange(0))
@click.option("--before", help="Without SLOT: the slots below this cursor (a page's 'next') or slot.")
@datadir_option
@api_option
@json_option
@guard
def explorer_market(slot, before, datadir, api, as_json) -> None:
    """A slot's market (bids, trades, prices, returns against the grid); without SLOT, recent slots."""
    from urllib.parse import quote

    client = node_client(api, datadir)
    if slot is None:
        m = client.get("/api/market" + (f"?before={quote(before)}" if before else ""))
        emit(m, as_json, lambda m: f"first open slot {m['first_open_slot']}, recent average price "
              f"{format_price(m['average_price'])} tokens per kWh\n\n" + table(
                  ["slot", "trades", "kWh", "value", "price/kWh"],
                  [[r["slot"], r["trades"], kwh(r["traded_wh"]), tokens(r["value"]),
                    format_price(r["average_price"])] for r in reversed(m["recent"])])
              + (f"\nnext page: transx explorer market --before {m['next']}" if "next" in m else ""))
        return
    m = client.get(f"/api/market/{slot}")

    def text(m) -> str:
        out = [f"slot {m['slot']} ({m['status']}): {len(m['bids'])} bids"]
        if m["trades"]:
            out[0] += (f", {len(m['trades'])} trades, {kwh(m['traded_wh'])} kWh at "
                       f"{format_price(m['average_price'])} tokens per kWh on average")
            out += ["", table(["seller bid", "buyer bid", "kWh", "payment", "price/kWh", "preferred"],
                               [[t["seller"][:16], t["buyer"][:16], kwh(t["wh"]), tokens(t["payment"]),
                                 format_price(t["price"]), "yes" if t.get("preferred") else ""]
                                for t in m["trades"]], 20)]
            out += ["", table(["bid", "owner", "side", "kWh", "amount", "vs grid"],
                               [[p["bid"][:16], p["owner"], p["side"], kwh(p["wh"]), tokens(p["amount"]),
                                 tokens(p["return_vs_grid"])] for p in m["participants"] if p["wh"]], 20)]
        if m["bids"] and (not m["trades"] or any(preferences_text(b) for b in m["bids"])):
            out += ["", bids_table(m["bids"])]  # once cleared, the bids only for their preferences
        d = m.get("delivery")
        if d and d["status"] == "settled":
            out += ["", f"delivery settled at block {d['settled_at']}:", settlements_table(d["accounts"], "address")]
        elif d:
            out += ["", f"delivery: {d['status']}, {len(d['readings'])} readings so far; settles at block "
                        f"{d['settles_at']}"]
        return "\n".join(out)

    emit(m, as_json, text)


COMMANDS = [explorer]
