"""A day's bids from a file: one row per slot, as `transx bid profile FILE` reads it.

CSV with a header row, or JSON (a list of objects, or {"bids": [...]}), with the fields
``slot, side, quantity, price`` and optionally ``zone``:

    slot,side,quantity,price
    +0,sell,2.5kWh,0.30
    +1,sell,3kWh,0.28
    1460,buy,800Wh,0.50

A slot is a number, or ``+N``: N slots after the first slot still open for bids.  Quantities
and prices are written as on the command line (`transx bid buy 5kWh 0.50`).  Every row is
checked before anything is signed, so a bad row sends nothing.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from consensus.rules.transactions import SIDES, Bid
from .wallet import InputError, parse_energy, parse_tokens

FIELDS = ("slot", "side", "quantity", "price")
MAX_ROWS = 10_000


@dataclass(frozen=True)
class ProfileBid:
    slot: int  # absolute
    side: int
    wh: int
    price: int  # micro-units per kWh
    zone: int

    def to_bid(self, gate_closure: int) -> Bid:
        """The bid transaction's body, valid until its slot's gate closes."""
        return Bid(self.side, self.slot, self.wh, self.price, self.zone, self.slot - gate_closure)


def parse_profile(text: str, *, first_open: int, last_allowed: int, zones: int, default_zone: int = 0,
                  name: str = "profile") -> list[ProfileBid]:
    """The bids of a profile (JSON if it starts with `[` or `{`, else CSV), checked against the slots
    still open (`first_open` .. `last_allowed`); raises `InputError` naming the row."""
    rows = _json_rows(text, name) if text.lstrip()[:1] in ("[", "{") else _csv_rows(text, name)
    if not rows:
        raise InputError(f"{name}: no bids in it")
    if len(rows) > MAX_ROWS:
        raise InputError(f"{name}: {len(rows)} rows, at most {MAX_ROWS}")
    bids: list[ProfileBid] = []
    sides: dict[int, int] = {}
    for where, row in rows:
        try:
            b = _bid(row, first_open, last_allowed, zones, default_zone)
        except InputError as e:
            raise InputError(f"{name}, {where}: {e}") from None
        if sides.setdefault(b.slot, b.side) != b.side:
            raise InputError(f"{name}, {where}: slot {b.slot} has both a buy and a sell (one side per slot)")
        bids.append(b)
    return bids


def _bid(row: dict, first_open: int, last_allowed: int, zones: int, default_zone: int) -> ProfileBid:
    missing = [f for f in FIELDS if str(row.get(f, "")).strip() == ""]
    if missing:
        raise InputError(f"missing {', '.join(missing)}")
    slot_text = str(row["slot"]).strip()
    try:
        slot = first_open + int(slot_text[1:]) if slot_text.startswith("+") else int(slot_text)
    except ValueError:
        raise InputError(f"slot {slot_text!r} is not a slot number or +N") from None
    if slot < first_open:
        raise InputError(f"slot {slot} is closed for bids (the first open slot is {first_open})")
    if slot > last_allowed:
        raise InputError(f"slot {slot} is beyond the bidding horizon (the last is {last_allowed})")
    side = SIDES.get(str(row["side"]).strip().lower())
    if side is None:
        raise InputError(f"side {row['side']!r} is not buy or sell")
    zone_text = str(row.get("zone", "")).strip()
    try:
        zone = int(zone_text) if zone_text else default_zone
    except ValueError:
        raise InputError(f"zone {zone_text!r} is not a number") from None
    if not 0 <= zone < zones:
        raise InputError(f"zone {zone} does not exist (this network has zones 0..{zones - 1})")
    from solver.instance import MAX_PRICE

    price = parse_tokens(str(row["price"]), "price", allow_zero=True)
    if price > MAX_PRICE:
        raise InputError(f"price {row['price']} is above the most a bid may name")
    return ProfileBid(slot, side, parse_energy(str(row["quantity"])), price, zone)


def _csv_rows(text: str, name: str) -> list[tuple[str, dict]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not set(FIELDS) <= set(header):
        raise InputError(f"{name}: the CSV header must name {', '.join(FIELDS)} (and optionally zone); "
                         f"it has {', '.join(header) or 'nothing'}")
    reader.fieldnames = header
    return [(f"line {reader.line_num}", row) for row in reader if any((v or "").strip() for v in row.values())]


def _json_rows(text: str, name: str) -> list[tuple[str, dict]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{name}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(doc, dict):
        doc = doc.get("bids")
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise InputError(f"{name}: JSON must be a list of bids (objects) or {{\"bids\": [...]}}")
    return [(f"bid {i + 1}", r) for i, r in enumerate(doc)]


__all__ = ["ProfileBid", "parse_profile"]
