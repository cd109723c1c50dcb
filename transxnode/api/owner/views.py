"""What the owner app shows, read from the chain: a home's slots, a car's and a station's sessions, the
authorisations issued from this node.  Integers as the API has them (micro-units, Wh); the page formats."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from consensus.chain.chain import Chain
from consensus.node import Node
from consensus.rules.charging import Authorisation
from consensus.rules import schema
from consensus.rules.keys import address_of, encode_address
from consensus.rules.schedule import first_open_slot
from consensus.rules.state import CANCELLED
from consensus.rules.transactions import BUY, SELL
from transxnode.api.views import bid_json, session_json
from transxnode.datadir.config import atomic_write

__all__ = ["home_view", "ev_view", "IssuedAuthorisations", "ByAccount",
           "authorisation_json"]

DAY_MS = 86_400_000
SESSIONS_SHOWN = 100  # a car's and a station's newest sessions the app lists (the explorer pages through all)
MAX_BACK = 288  # slots before the head a home view reads at most (3 days of 15-minute slots)


def home_view(chain: Chain, node: Node, addr: bytes, tz_minutes: int, now_ms: int) -> dict[str, Any]:
    """`addr`'s bids slot by slot, today and tomorrow by the browser's clock (`tz_minutes` east of UTC):
    each slot's clearing price, the energy traded and what it earned (sold above feed-in) or saved (bought
    below retail) against the grid's tariffs; the account's balance and escrow."""
    g, state = chain.genesis, chain.state()
    slot_ms = g.slot_seconds * 1000
    offset = tz_minutes * 60_000
    today = (now_ms + offset) // DAY_MS * DAY_MS - offset  # local midnight, in UTC ms
    first = max(1, chain.height - MAX_BACK, -(-(today - g.timestamp * 1000) // slot_ms))
    last = min(chain.height + g.bid_horizon, (today + 2 * DAY_MS - g.timestamp * 1000) // slot_ms)
    open_from = first_open_slot(g, node.next_block() - 1)
    slots = []
    for s in range(first, last + 1):
        mine = [(i, r) for i, r in state.slot_bids(s) if r.owner == addr]
        if not mine:
            continue
        cleared = s <= chain.height
        block = chain.block_at(s) if cleared else None
        trades = block.clearing.trades if block is not None else ()
        wh = sum(t.wh for t in trades)
        sold = sum(r.traded_wh for _, r in mine if r.side != BUY)
        bought = sum(r.traded_wh for _, r in mine if r.side == BUY)
        received = sum(r.amount for _, r in mine if r.side != BUY)
        paid = sum(r.amount for _, r in mine if r.side == BUY)
        slots.append({
            "slot": s, "starts": g.slot_start_ms(s),
            "status": "cleared" if cleared else ("open" if s >= open_from else "closed"),
            "clearing_price": sum(t.payment for t in trades) * 1000 // wh if wh else None,
            "bids": [bid_json(i, r) for i, r in mine if r.status != CANCELLED],
            "cancelled": sum(r.status == CANCELLED for _, r in mine),
            "sold_wh": sold, "bought_wh": bought, "received": received, "paid": paid,
            "earned": received - sold * g.feed_in // 1000, "saved": bought * g.retail // 1000 - paid,
        })
    acct = state.account(addr)
    return {"address": encode_address(addr), "balance": acct.balance, "escrowed": acct.escrowed,
            "height": chain.height, "first_open_slot": open_from, "today_starts": today, "now": now_ms,
            "grid": {"feed_in": g.feed_in, "retail": g.retail}, "slots": slots,
            "month": month_totals(chain, addr, tz_minutes, now_ms)}


MONTH_SCAN = 100_000  # history index keys a month's totals pass over at most (a solver's commits and reveals too)


def month_totals(chain: Chain, addr: bytes, tz_minutes: int, now_ms: int) -> dict[str, Any]:
    """What `addr` traded since the first of this month (the browser's): energy sold and bought, earned above
    feed-in and saved below retail.  Its history index is read from the newest end down to the month's first
    slot, and only its trades are looked up: the cost is the month's entries, never the years before it
    (at most MONTH_SCAN keys; `complete` false when the month held more)."""
    g, state = chain.genesis, chain.state()
    local = datetime.fromtimestamp(now_ms / 1000, timezone.utc) + timedelta(minutes=tz_minutes)
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    first = int(month_start.timestamp() * 1000) - tz_minutes * 60_000
    first_slot = max(0, -(-(first - g.timestamp * 1000) // (g.slot_seconds * 1000)))
    out = {"starts": first, "sold_wh": 0, "bought_wh": 0, "earned": 0, "saved": 0, "complete": True}
    prefix = schema.address_txs(addr)
    for n, (key, value) in enumerate(chain.store.items(prefix, reverse=True)):
        if schema.read_location(key[len(prefix):])[0] < first_slot:
            break
        if n >= MONTH_SCAN:
            out["complete"] = False
            break
        if value[0] != schema.HISTORY_TRADE or (rec := state.bid(value[1:])) is None:
            continue
        if rec.side == SELL:
            out["sold_wh"] += rec.traded_wh
            out["earned"] += rec.amount - rec.traded_wh * g.feed_in // 1000
        else:
            out["bought_wh"] += rec.traded_wh
            out["saved"] += rec.traded_wh * g.retail // 1000 - rec.amount
    return out


class IssuedAuthorisations:
    """The authorisations this node's app signed, one JSON line each in `path` (the node's data directory):
    the owner sees them, and which have opened a session, after a restart too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def add(self, auth: Authorisation) -> None:
        with self._lock:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps({"owner": encode_address(auth.owner_address), "hex": auth.encoded.hex()}) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def of(self, addr: bytes) -> list[Authorisation]:
        from consensus.rules.charging import decode_authorisation

        if not self.path.exists():
            return []
        owner = encode_address(addr)
        with self._lock:
            lines = self.path.read_text().splitlines()
        return [decode_authorisation(bytes.fromhex(d["hex"])) for d in map(json.loads, lines) if d["owner"] == owner]


class ByAccount:
    """A JSON object per account that the app saves in `path` (by address): a home's description for the
    day plan (homes.json), whether the home agent bids hands-free (agent.json).  A put is on disk when it
    returns (written aside, fsynced, renamed over, the directory fsynced): the page says "saved"."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def get(self, address: str) -> dict[str, Any]:
        with self._lock:
            return self._all().get(address, {})

    def put(self, address: str, value: dict[str, Any]) -> None:
        with self._lock:
            doc = {**self._all(), address: value}
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            atomic_write(self.path, json.dumps(doc, indent=1))

    def _all(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise ValueError(f"{self.path} is damaged (not JSON): move it aside to start it afresh") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{self.path} is damaged (not a JSON object): move it aside to start it afresh")
        return doc


def authorisation_json(auth: Authorisation, state, now_ms: int | None = None) -> dict[str, Any]:
    session = state.session(auth.session_id)
    return {"session": auth.session_id.hex(), "owner": encode_address(address_of(auth.owner)), "ev_id": auth.ev_id,
            "max_wh": auth.max_wh, "max_price": auth.max_price, "expiry": auth.expiry,
            "valid": now_ms is None or auth.expiry > now_ms, "used": session is not None,
            "hex": auth.encoded.hex()}


def ev_view(chain: Chain, addr: bytes, issued: IssuedAuthorisations, tz_minutes: int, now_ms: int) -> dict[str, Any]:
    """The car's newest sessions (as owner), the station's (as station: today's energy and revenue, the day
    `tz_minutes` east of UTC), and the authorisations issued here that are still valid or opened a session;
    each list read from the session index's newest end (SESSIONS_SHOWN, `more_*` when there are older)."""
    g, state = chain.genesis, chain.state()
    offset = tz_minutes * 60_000
    day = (now_ms + offset) // DAY_MS * DAY_MS - offset  # the browser's midnight

    def newest(role: int, whole_day: bool) -> tuple[list[dict[str, Any]], bool]:
        """The role's newest SESSIONS_SHOWN sessions (and all of today's if `whole_day`); more: older ones."""
        rows = []
        for i, rec in chain.sessions_of(addr, (role,)):
            opened_at = g.slot_start_ms(rec.opened)
            if len(rows) >= SESSIONS_SHOWN and not (whole_day and opened_at >= day):
                return rows, True
            rows.append({**session_json(i, rec), "opened_at": opened_at})
        return rows, False

    car, more_car = newest(schema.AS_OWNER, False)
    station, more_station = newest(schema.AS_STATION, True)  # today's totals count every one of today's
    today = [r for r in station if r["opened_at"] >= day]
    auths = [authorisation_json(a, state, now_ms) for a in issued.of(addr)]
    return {"address": encode_address(addr), "car": car, "station": station[:SESSIONS_SHOWN],
            "more_car": more_car, "more_station": more_station or len(station) > SESSIONS_SHOWN,
            "shown": SESSIONS_SHOWN,
            "station_today": {"sessions": len(today), "open": sum(r["status"] == "open" for r in today),
                              "delivered_wh": sum(r["delivered_wh"] for r in today),
                              "revenue": sum(r["amount"] for r in today)},
            "authorisations": [a for a in auths if a["valid"] or a["used"]]}
