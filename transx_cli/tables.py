"""Tables of bids and settlements, shared by `transx bid` and `transx explorer`."""

from __future__ import annotations

from .plugin_api import tokens, table, format_price


def settlements_table(rows, first: str) -> str:
    return table([first, "sold Wh", "bought Wh", "out Wh", "in Wh", "reading", "short Wh", "unused Wh", "charge",
                   "credit", "unpaid"],
                  [[r[first], f"{r['sold_wh']:,}", f"{r['bought_wh']:,}", f"{r['exported_wh']:,}",
                    f"{r['imported_wh']:,}", r["reading"], f"{r['shortfall_wh']:,}",
                    f"{r['unused_wh']:,}", tokens(r["charge"]), tokens(r["credit"]), tokens(r["unpaid"])]
                   for r in rows], 20)


def bids_table(bids) -> str:
    return table(["bid", "side", "slot", "kWh", "price/kWh", "zone", "escrow", "status"],
                  [[b["id"][:16], b["side"], b["slot"], f"{b['wh'] / 1000:,.3f}", format_price(b["price"]), b["zone"],
                    tokens(b["escrow"]), b["status"]] for b in bids])
