"""The wallet side of the CLI: amounts as people write them, quotes, signing and sending.

Keys never leave the machine: a transaction is signed here and only its
bytes go to the node's API.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Sequence

from solver.instance import MAX_PREFER

from .node_api import ApiClient, ClientError
from consensus.rules.keys import AddressError, address_of_key, decode_address, encode_address
from consensus.rules.transactions import BUY, NO_PREFERENCES, SELL, Body, Preferences, bid_lock, energy_kind, sign_tx


class InputError(ValueError):
    """An amount, quantity or price a person typed is not valid; one line."""


def parse_tokens(text: str, what: str = "amount", allow_zero: bool = False) -> int:
    """'12.5' tokens -> 12_500_000 micro-units, exactly; at most 6 decimals."""
    try:
        d = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise InputError(f"{what} {text!r} is not a number of tokens (e.g. 12.5)") from None
    if not d.is_finite():
        raise InputError(f"{what} {text!r} is not a number of tokens (e.g. 12.5)")
    if d < 0 or (d == 0 and not allow_zero):
        raise InputError(f"{what} must {'not be negative' if allow_zero else 'be positive'}, got {text.strip()}")
    micro = d * 1_000_000
    if micro != micro.to_integral_value():
        raise InputError(f"{what} {text!r} has more than 6 decimals (the smallest unit is 0.000001)")
    if micro > 2**62:
        raise InputError(f"{what} {text!r} is too large")
    return int(micro)


_ENERGY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(wh|kwh|mwh)?\s*$", re.IGNORECASE)


def parse_energy(text: str) -> int:
    """'5kWh', '2.5 kwh', '800Wh' -> whole Wh.  A bare number is refused: '3' could be 3 Wh or 3 kWh."""
    if text.strip().startswith("-"):
        raise InputError(f"quantity must be positive, got {text.strip()}")
    m = _ENERGY.match(text)
    if not m:
        raise InputError(f"quantity {text!r} is not an energy (e.g. 5kWh or 800Wh)")
    if m.group(2) is None:
        n = Decimal(m.group(1))
        raise InputError(f"quantity {text!r} has no unit: write {n}kWh or {_plain(n * 1000)}Wh")
    scale = {"wh": 1, "kwh": 1000, "mwh": 1_000_000}[m.group(2).lower()]
    wh = Decimal(m.group(1)) * scale
    if wh != wh.to_integral_value() or wh < 1 or wh > 10**9:
        raise InputError(f"quantity {text!r} must be a whole number of Wh from 1 Wh to 1 GWh")
    return int(wh)


def _plain(d: Decimal) -> str:
    """A Decimal without exponent or trailing zeros: 3000, 500, 0.5."""
    s = f"{d:f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


KIND_OPTION = {BUY: "--only", SELL: "--kind"}  # how `transx bid` names a bid's energy kind, by side


def parse_preferences(side: int, prefer: Sequence[str] = (), kind: str | None = None,
                      own: bytes | None = None) -> Preferences:
    """A bid's preferences from what a person typed: `prefer`, the addresses whose bids it prefers (at most
    MAX_PREFER, a repeat counted once, not `own`, the bidding address); `kind`, a seller's kind of energy
    or the only kind a buyer takes, by name.  InputError names the option and what is wrong."""
    addrs = set()
    for text in prefer:
        try:
            addrs.add(decode_address(text.strip()))
        except AddressError as e:
            raise InputError(f"--prefer: {e}") from None
    if len(addrs) > MAX_PREFER:
        raise InputError(f"--prefer names {len(addrs)} addresses; a bid prefers at most {MAX_PREFER}")
    if own is not None and own in addrs:
        raise InputError("--prefer names the bidding address itself")
    code = 0
    if kind is not None:
        try:
            code = energy_kind(kind.strip().lower())
        except ValueError as e:
            raise InputError(f"{KIND_OPTION[side]}: {e}") from None
    return Preferences(tuple(sorted(addrs)), code)


@dataclass(frozen=True)
class Quote:
    """What a bid is expected to bring against the grid-only outcome, before it is signed."""

    side: str
    wh: int
    limit: int  # micro-units per kWh
    grid_price: int  # retail for a buyer, feed-in for a seller
    expected_price: int
    expected_return: int  # micro-units, if fully cleared at the expected price
    worst_return: int  # micro-units, if fully cleared at the limit
    basis: str
    locked: int  # micro-units locked while it is open: a buy's escrow, a sell's delivery collateral
    preferences: Preferences = NO_PREFERENCES
    preferred_open: int | None = None  # the preferred addresses' open bids on the other side in the slot so far
    kind_offered_wh: int | None = None  # a buyer taking one kind: Wh its sellers offer in the slot so far

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "preferences"}
        return {**out, **self.preferences.to_json(BUY if self.side == "buy" else SELL)}


def quote(side: int, wh: int, limit: int, market: dict[str, Any], preferences: Preferences = NO_PREFERENCES,
          slot_view: dict[str, Any] | None = None) -> Quote:
    """Expected and worst-case return vs the grid, from the recent cleared prices (or the grid midpoint); with
    the slot's market so far (`slot_view`, /api/market/<slot>), what of the bid's preferences it holds."""
    feed_in, retail = market["grid"]["feed_in"], market["grid"]["retail"]
    recent = market.get("average_price")
    basis = "recent cleared slots' average price" if recent else "midpoint of the grid tariffs (no recent trades)"
    expected = recent if recent else (feed_in + retail) // 2
    locked = bid_lock(side, wh, limit, retail)
    seen: dict[str, int | None] = {"preferred_open": None, "kind_offered_wh": None}
    if slot_view is not None:
        other = [b for b in slot_view["bids"] if b["side"] != ("buy" if side == BUY else "sell") and b["status"] == "open"]
        named = {encode_address(a) for a in preferences.prefer}
        if named:
            seen["preferred_open"] = sum(b["owner"] in named for b in other)
        if side == BUY and preferences.kind:
            seen["kind_offered_wh"] = sum(b["wh"] for b in other if b.get("energy_kind") == preferences.kind_name())
    if side == BUY:
        expected = min(expected, limit)
        return Quote("buy", wh, limit, retail, expected, (retail - expected) * wh // 1000,
                     (retail - min(limit, retail)) * wh // 1000, basis, locked, preferences, **seen)
    expected = max(expected, limit)
    return Quote("sell", wh, limit, feed_in, expected, (expected - feed_in) * wh // 1000,
                 (max(limit, feed_in) - feed_in) * wh // 1000, basis, locked, preferences, **seen)


SEND_ATTEMPTS = 8  # the node's own solver may take the key's next nonce between our read and our submit


def send(client: ApiClient, key, body: Body, fee: int | None = None) -> dict[str, Any]:
    """Sign `body` with `key` at the account's next nonce and submit it; returns the node's answer.

    The node itself may use the same key (its solver commits): if it took the nonce first, sign again
    with the next one."""
    info = client.get("/api/node")
    for attempt in range(SEND_ATTEMPTS):
        acct = client.get(f"/api/address/{_bech32(key)}?limit=1")  # the account, not its history
        tx = sign_tx(key, chain_id=info["chain_id"], nonce=acct["pending_nonce"],
                     fee=info["min_fee"] if fee is None else fee, body=body)
        try:
            answer = client.submit(tx.encoded)
        except ClientError as e:
            if attempt < SEND_ATTEMPTS - 1 and e.reason == "nonce":
                time.sleep(0.05 * attempt)  # a block may be landing: let the pending nonce settle
                continue
            raise
        return {**answer, "nonce": tx.nonce, "fee": tx.fee}
    raise AssertionError("unreachable")  # pragma: no cover


def _bech32(key) -> str:
    return encode_address(address_of_key(key))
