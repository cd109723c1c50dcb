"""`transx bid`: buy and sell bids, a day's profile, cancel, list."""

from __future__ import annotations

import sys

import click

from .plugin_api import AmountCommand
from .plugin_api import fail, tokens, kwh, table, datadir_option, password_option, api_option, json_option, node_client, guard, format_price, emit, default_address, unlock, fetch_account
from .sending import send_bids
from .sending import warn_without_meter
from .tables import bids_table


@click.group()
def bid() -> None:
    """Buy and sell energy for future slots: buy, sell, cancel, list."""


def _bid_options(fn):
    for opt in reversed([
        click.argument("quantity"),
        click.argument("price"),
        click.option("--slot", type=click.IntRange(0, 2**63 - 1), help="Delivery slot (default: the first one still open)."),
        click.option("--zone", type=click.IntRange(0, 255), default=0, show_default=True, help="Your network zone."),
        click.option("--expiry", type=click.IntRange(0, 2**63 - 1), help="Last block height that may include the bid "
                     "(default: the slot's gate closure)."),
        click.option("--from", "sender", help="Address that bids (default: the default address)."),
        click.option("--fee", help="Fee in tokens (default: the network's minimum)."),
        click.option("-y", "--yes", is_flag=True, help="Sign without asking."),
        datadir_option, api_option, password_option, json_option,
    ]):
        fn = opt(fn)
    return fn


_KINDS = "solar, wind or hydro"  # solver.instance.ENERGY_KINDS (not imported here: the CLI starts without numpy)
_PREFER = click.option(
    "--prefer", "prefer", multiple=True, metavar="ADDRESS",
    help="Prefer trading with this address's bids (repeatable, at most 3): a pair with them is a candidate first, "
         "within the bid's usual number of counterparts; it trades if the clearing finds it worthwhile.")


@bid.command("buy", cls=AmountCommand)
@_bid_options
@_PREFER
@click.option("--only", "kind", metavar="KIND", help=f"Take only energy of this kind ({_KINDS}): the bid is paired "
              "with no seller of another kind or of none stated.")
def bid_buy(**kw) -> None:
    """Buy QUANTITY (5kWh or 800Wh: a unit is required) at most at PRICE tokens per kWh; the most you pay
    is held in escrow."""
    _bid(0, **kw)


@bid.command("sell", cls=AmountCommand)
@_bid_options
@_PREFER
@click.option("--kind", "kind", metavar="KIND", help=f"The kind of energy you sell ({_KINDS}), for buyers who take "
              "only that kind (stated by you: the chain does not check it).")
def bid_sell(**kw) -> None:
    """Sell QUANTITY (5kWh or 800Wh: a unit is required) at least at PRICE tokens per kWh."""
    _bid(1, **kw)


@guard
def _bid(side, quantity, price, slot, zone, expiry, sender, fee, yes, datadir, api, password_file, as_json,
         prefer=(), kind=None) -> None:
    from solver.instance import MAX_PRICE
    from consensus.rules.keys import decode_address
    from consensus.rules.transactions import Bid
    from transxnode.client.wallet import parse_energy, parse_preferences, parse_tokens, quote, send

    wh = parse_energy(quantity)
    limit = parse_tokens(price, "price", allow_zero=True)
    if limit > MAX_PRICE:
        fail(f"price {price} is above the most a bid may name ({format_price(MAX_PRICE)} tokens per kWh)")
    own = decode_address(sender or default_address(datadir)) if prefer else None
    preferences = parse_preferences(side, prefer, kind, own=own)
    client = node_client(api, datadir)
    market = client.get("/api/market")
    info = client.get("/api/node")
    slot = market["first_open_slot"] if slot is None else slot
    if slot < market["first_open_slot"]:
        fail(f"slot {slot} is closed for bids (gate closure); the first open slot is {market['first_open_slot']}")
    if slot > market["height"] + info["bid_horizon"]:
        fail(f"slot {slot} is beyond the bidding horizon ({info['bid_horizon']} slots past height {market['height']})")
    if zone >= info["zones"]:
        fail(f"zone {zone} does not exist (this network has zones 0..{info['zones'] - 1})")
    q = quote(side, wh, limit, market, preferences,
              client.get(f"/api/market/{slot}") if preferences.prefer or (side == 0 and preferences.kind) else None)
    address = sender or default_address(datadir)
    if side == 1:
        warn_without_meter(client, address)
    if not as_json:
        verb = "buy" if side == 0 else "sell"
        click.echo(f"{verb} {kwh(wh)} kWh in slot {slot} at {'most' if side == 0 else 'least'} "
                   f"{format_price(limit)} tokens per kWh (grid {'retail' if side == 0 else 'feed-in'} "
                   f"{format_price(q.grid_price)})")
        click.echo(f"  expected: {format_price(q.expected_price)} tokens per kWh ({q.basis}), "
                   f"return against the grid {tokens(q.expected_return)} tokens")
        click.echo(f"  at your limit: return against the grid {tokens(q.worst_return)} tokens")
        click.echo(f"  locked now: {tokens(q.locked)} tokens " + (
            "(escrow; what does not clear comes back when the slot clears)" if side == 0 else
            "(delivery collateral: what does not clear comes back when the slot clears, the rest once "
            "the meters settle it)"))
        for line in _preference_lines(q):
            click.echo(f"  {line}")
    if not yes and sys.stdin.isatty() and not as_json:
        click.confirm("sign and send?", abort=True)
    body = Bid(side=side, slot=slot, wh=wh, price=limit, zone=zone,
               expiry=slot - info["gate_closure"] if expiry is None else expiry, preferences=preferences)
    fee_micro = None if fee is None else parse_tokens(fee, "fee", allow_zero=True)
    out = send(client, unlock(datadir, address, password_file), body, fee_micro)
    out.update(bid=out["hash"], slot=slot, quote=q.to_json())
    emit(out, as_json, lambda d: f"bid {d['bid']} sent (pending; it clears in slot {slot})")


def _preference_lines(q) -> list[str]:
    """What the quote says of a bid's preferences, for people."""
    doc = q.to_json()
    other = "sell" if q.side == "buy" else "buy"
    lines = []
    if doc["prefer"]:
        seen = "" if q.preferred_open is None else f" ({q.preferred_open} of their {other} bids open in this slot so far)"
        lines.append(f"prefers: {', '.join(doc['prefer'])}{seen}: candidates first, within the bid's usual "
                     "number of counterparts")
    if doc.get("only"):
        seen = "" if q.kind_offered_wh is None else f" ({kwh(q.kind_offered_wh)} kWh of it on offer in this slot so far)"
        lines.append(f"only {doc['only']} energy{seen}: no pair with any other seller")
    if doc.get("energy_kind"):
        kind = doc["energy_kind"]
        lines.append(f"energy: {kind} (buyers who take only {kind} energy can be paired with it)")
    return lines


@bid.command("profile")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--zone", type=click.IntRange(0, 255), default=0, show_default=True,
              help="Your network zone, for rows that name none.")
@click.option("--from", "sender", help="Address that bids (default: the default address).")
@click.option("-y", "--yes", is_flag=True, help="Sign without asking.")
@datadir_option
@api_option
@password_option
@json_option
@guard
def bid_profile(file, zone, sender, yes, datadir, api, password_file, as_json) -> None:
    """Bid a whole day (or any run of slots) from FILE: CSV with a header `slot,side,quantity,price[,zone]`
    or JSON (a list of such objects); a slot is a number or +N (N slots after the first open one).
    Every row is checked before anything is signed."""
    from transxnode.client.profile import parse_profile

    text = click.open_file(file).read()
    client = node_client(api, datadir)
    market, info = client.get("/api/market"), client.get("/api/node")
    bids = parse_profile(text, first_open=market["first_open_slot"], last_allowed=market["height"] +
                         info["bid_horizon"], zones=info["zones"], default_zone=zone, name=file)
    if not as_json:
        click.echo(table(["slot", "side", "kWh", "price/kWh", "zone"],
                          [[b.slot, "buy" if b.side == 0 else "sell", kwh(b.wh), format_price(b.price), b.zone]
                           for b in bids], 60))
    if not yes and sys.stdin.isatty() and not as_json:
        click.confirm(f"sign and send these {len(bids)} bids?", abort=True)
    address = sender or default_address(datadir)
    if any(b.side == 1 for b in bids):
        warn_without_meter(client, address)
    sent, skipped = send_bids(client, unlock(datadir, address, password_file),
                               [b.to_bid(info["gate_closure"]) for b in bids])
    emit({"bids": [{"bid": h, "slot": s} for s, h in sent], "skipped_slots": skipped}, as_json,
          lambda d: f"{len(sent)} bids sent (pending)" + (f", slots {sent[0][0]}..{max(s for s, _ in sent)}" if sent else ""))


@bid.command("cancel")
@click.argument("bid_id")
@click.option("--from", "sender", help="The bid's owner (default: the default address).")
@datadir_option
@api_option
@password_option
@json_option
@guard
def bid_cancel(bid_id, sender, datadir, api, password_file, as_json) -> None:
    """Cancel an open bid before its slot's gate closure; its escrow comes back."""
    from consensus.rules.transactions import CancelBid
    from transxnode.client.wallet import send

    try:
        raw = bytes.fromhex(bid_id)
        assert len(raw) == 32
    except (ValueError, AssertionError):
        fail("a bid id is 64 hex characters (the bid transaction's hash)")
    out = send(node_client(api, datadir), unlock(datadir, sender, password_file), CancelBid(raw))
    emit(out, as_json, lambda d: f"cancel sent: transaction {d['hash']} (pending)")


@bid.command("list")
@click.argument("address", required=False)
@datadir_option
@api_option
@json_option
@guard
def bid_list(address, datadir, api, as_json) -> None:
    """Open bids of ADDRESS (default: the default address)."""
    bids = fetch_account(address, datadir, api, history=1)["open_bids"]
    emit(bids, as_json, lambda bs: bids_table(bs) if bs else "no open bids")


COMMANDS = [bid]
