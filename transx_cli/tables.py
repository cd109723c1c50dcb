"""Tables of bids and settlements, shared by `transx bid` and `transx explorer`."""

from __future__ import annotations

from .plugin_api import tokens, kwh, table, format_price


def settlements_table(rows, first: str) -> str:
    return table([first, "sold kWh", "bought kWh", "out kWh", "in kWh", "reading", "short kWh", "unused kWh", "charge",
                   "credit", "unpaid"],
                  [[r[first], kwh(r["sold_wh"]), kwh(r["bought_wh"]), kwh(r["exported_wh"]),
                    kwh(r["imported_wh"]), r["reading"], kwh(r["shortfall_wh"]),
                    kwh(r["unused_wh"]), tokens(r["charge"]), tokens(r["credit"]), tokens(r["unpaid"])]
                   for r in rows], 20)


def bids_table(bids) -> str:
    """The API's bids; a column of their preferences when any has some."""
    prefs = [preferences_text(b) for b in bids]
    extra = ["preferences"] if any(prefs) else []
    return table(["bid", "side", "slot", "kWh", "price/kWh", "zone", "escrow", "status"] + extra,
                  [[b["id"][:16], b["side"], b["slot"], kwh(b["wh"]), format_price(b["price"]), b["zone"],
                    tokens(b["escrow"]), b["status"]] + ([p] if extra else []) for b, p in zip(bids, prefs)])


def preferences_text(b) -> str:
    """A bid's preferences (the API's "prefer", "energy_kind" or "only") in a few words: 'only solar; prefers trx1...'."""
    parts = [f"{b['energy_kind']} energy"] if b.get("energy_kind") else []
    parts += [f"only {b['only']}"] if b.get("only") else []
    if b.get("prefer"):
        parts.append("prefers " + ", ".join(b["prefer"]))
    return "; ".join(parts)
