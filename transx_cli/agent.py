"""`transx agent`: the home agent plans and posts a home's bids from its forecast."""

from __future__ import annotations

import sys

import click

from .plugin_api import tokens, kwh, table, datadir_option, password_option, api_option, json_option, node_client, guard, format_price, emit, default_address, unlock
from .sending import send_bids
from .sending import warn_without_meter


@click.group()
def agent() -> None:
    """The home agent: forecast the day, plan bids within the price band, send them, learn."""


def _agent_options(fn):
    for opt in reversed([
        click.option("--kwp", type=click.FloatRange(0, 1000), default=5.0, show_default=True,
                     help="PV array peak power (0: no panels)."),
        click.option("--tilt", type=click.FloatRange(0, 90), default=10.0, show_default=True),
        click.option("--azimuth", type=click.FloatRange(0, 360), default=180.0, show_default=True,
                     help="Degrees from north the panels face."),
        click.option("--lat", type=click.FloatRange(-90, 90), default=3.139, show_default=True),
        click.option("--lon", type=click.FloatRange(-180, 180), default=101.687, show_default=True),
        click.option("--utc-offset", type=click.FloatRange(-12, 14), default=8.0, show_default=True,
                     help="Local time's offset from UTC, for the load profile."),
        click.option("--daily-kwh", type=click.FloatRange(0, 10_000), default=12.0, show_default=True,
                     help="What the home uses in a day."),
        click.option("--battery-kwh", type=click.FloatRange(0, 1000), default=0.0, show_default=True),
        click.option("--battery-soc", type=click.FloatRange(0, 100), default=50.0, show_default=True,
                     help="The battery's state of charge now, percent."),
        click.option("--cloudiness", type=click.FloatRange(0, 1), default=0.3, show_default=True,
                     help="Expected cloud cover, 0..1."),
        click.option("--slots", type=click.IntRange(1, 1000), default=48, show_default=True,
                     help="How many slots ahead to plan."),
        click.option("--slot-hours", type=click.FloatRange(0, 24), default=None,
                     help="Hours of a day each slot plays in the forecast, from 07:00 local time on the chain's "
                          "first day (default: 0.5 where slots last under 5 minutes, as on a dev chain; else the "
                          "wall clock).  0: the wall clock, each slot its own length."),
        click.option("--zone", type=click.IntRange(0, 255), default=0, show_default=True),
        click.option("--from", "sender", help="Address that bids (default: the default address)."),
        datadir_option, api_option, password_option,
    ]):
        fn = opt(fn)
    return fn


def _home_agent(kwp, tilt, azimuth, lat, lon, utc_offset, daily_kwh, battery_kwh, battery_soc, cloudiness):
    from agent.forecast import Site
    from agent.home import HomeAgent
    from agent.strategy import Battery

    battery = Battery(capacity_wh=int(battery_kwh * 1000), soc_wh=int(battery_kwh * 10 * battery_soc)) \
        if battery_kwh else None
    site = Site(latitude=lat, longitude=lon, kwp=kwp, tilt=tilt, azimuth=azimuth) if kwp else None
    return HomeAgent(site, daily_kwh, battery, cloudiness=cloudiness, utc_offset=utc_offset)


FEE_RESERVE = 20  # fees the agent leaves unlocked: a solver sharing the key needs them for commits and reveals


def _lockable(acct: dict, info: dict) -> int:
    """What the agent may lock in bids: the balance less the fees of what is pending and a reserve."""
    return max(0, acct["balance"] - (acct["pending_nonce"] - acct["nonce"] + FEE_RESERVE) * info["min_fee"])


def _clock(info: dict, slot_hours: float | None, utc_offset: float) -> tuple[tuple[int, int] | None, str | None]:
    """The clock the plan forecasts on (agent.home.played_clock), and the line that says so when it is not
    the wall clock."""
    from agent.home import DAY_STARTS_HOUR, played_clock

    clock = played_clock(info, slot_hours, utc_offset)
    if clock is None:
        return None, None
    hours, per_day = clock[1] / 3600, 86_400 / clock[1]
    what = (f"slots here last {info['slot_seconds']} s, too short to forecast in real time: each" if slot_hours is None
            else "each slot")
    return clock, (f"{what} plays {hours:g} h of a day from {DAY_STARTS_HOUR:02d}:00 (UTC{utc_offset:+g}) on the "
                   f"chain's first day, {per_day:g} slots a day (--slot-hours H sets the hours, 0 the wall clock)")


def _why_empty(plan, info: dict, clock, home) -> str | None:
    """Why a plan holds no bids, and what to pass: None when it holds some."""
    from agent.home import ACCELERATE_BELOW
    from agent.strategy import MIN_BID_WH

    if plan.bids:
        return None
    if plan.cut_to_funds:
        return ("no bids: the balance can lock none of them (buy escrow, sell collateral, fees); fund the address "
                "(`transx wallet send`)")
    net = [pv - load for pv, load in zip(plan.pv_wh, plan.load_wh)]
    k = max(range(len(net)), key=lambda i: abs(net[i]))
    largest = (f"the largest is a {kwh(abs(net[k]))} kWh {'surplus' if net[k] > 0 else 'deficit'} in slot "
               f"{plan.first_slot + k}" if net[k] else "PV and load are zero in every slot")
    why = (f"no bids: no slot's surplus or deficit reaches the {kwh(MIN_BID_WH)} kWh a bid is worth after the "
           f"battery and the {home.strategy.margin:.0%} safety margin ({largest})")
    if clock is None and info["slot_seconds"] < ACCELERATE_BELOW:
        return (f"{why}; slots here last {info['slot_seconds']} s: pass --slot-hours 0.5 to forecast each as half "
                "an hour of a day")
    return f"{why}; pass a larger --kwp or --daily-kwh, a smaller --battery-kwh, or more --slots"


def _slot_start_ms(clock, info: dict, slot: int) -> int:
    """When a slot starts on the plan's clock (the genesis timing on the wall clock)."""
    zero_ms, seconds = clock or (info["genesis_time"] * 1000, info["slot_seconds"])
    return zero_ms + slot * seconds * 1000


def _slot_time(clock, info: dict, slot: int, utc_offset: float) -> str:
    """The local time a slot starts on the plan's clock."""
    import datetime

    t = datetime.datetime.fromtimestamp(_slot_start_ms(clock, info, slot) / 1000 + utc_offset * 3600,
                                        datetime.timezone.utc)
    return t.strftime("%H:%M" if (clock or (0, info["slot_seconds"]))[1] % 60 == 0 else "%H:%M:%S")


def _agent_first_slot(market: dict) -> int:
    """The agent plans from one slot past the first open one: a bid sent as its slot's gate closes may
    reach the mempool yet miss the last block that could take it, and then the bids signed after it
    wait behind its nonce until they are dropped too."""
    return market["first_open_slot"] + 1


@agent.command("plan")
@_agent_options
@click.option("--send", "do_send", is_flag=True, help="Sign and send the planned bids.")
@click.option("-y", "--yes", is_flag=True, help="With --send: sign without asking.")
@json_option
@guard
def agent_plan(kwp, tilt, azimuth, lat, lon, utc_offset, daily_kwh, battery_kwh, battery_soc, cloudiness, slots, slot_hours,
               zone, sender, datadir, api, password_file, do_send, yes, as_json) -> None:
    """Forecast the next SLOTS slots and show the bids the agent would post, with the return it
    expects against net metering; --send posts them."""
    home = _home_agent(kwp, tilt, azimuth, lat, lon, utc_offset, daily_kwh, battery_kwh, battery_soc, cloudiness)
    client = node_client(api, datadir)
    info, market = client.get("/api/node"), client.get("/api/market")
    clock, clock_line = _clock(info, slot_hours, utc_offset)
    address = (sender or default_address(datadir)) if do_send else None
    funds = _lockable(client.get(f"/api/address/{address}?limit=1"), info) if address else None
    plan = home.plan(_agent_first_slot(market), slots, info, market, clock=clock, funds=funds)
    doc = plan.to_json()
    doc["clock"] = {"slot_hours": clock[1] / 3600 if clock else None,
                    "first_slot_starts": _slot_start_ms(clock, info, plan.first_slot)}
    doc["why_empty"] = _why_empty(plan, info, clock, home)

    def text(d) -> str:
        by_slot = {b["slot"]: b for b in d["bids"]}
        rows = []
        for k, (pv, load) in enumerate(zip(d["pv_wh"], d["load_wh"])):
            s = d["first_slot"] + k
            b = by_slot.get(s)
            rows.append([s, _slot_time(clock, info, s, utc_offset), kwh(pv), kwh(load), b["side"] if b else "-",
                         kwh(b["wh"]) if b else "", format_price(b["price"]) if b else ""])
        return ((clock_line + "\n" if clock_line else "") +
                table(["slot", "time", "PV kWh", "load kWh", "bid", "kWh", "limit/kWh"], rows, 200) +
                f"\nprice band: reference {format_price(d['reference_price'])}, sell at least {format_price(d['sell_limit'])}, "
                f"buy at most {format_price(d['buy_limit'])} tokens per kWh\nexpected return against net metering: "
                f"{tokens(d['expected_gain'])} tokens if every bid clears at the reference" +
                ("\nbids cut to what the balance can lock (buy escrow, sell collateral, fees)"
                 if d["cut_to_funds"] and d["bids"] else "") +
                (f"\n{d['why_empty']}" if d["why_empty"] else ""))

    if not do_send:
        emit(doc, as_json, text)
        return
    if not as_json:
        click.echo(text(doc))
        if not yes and sys.stdin.isatty():
            click.confirm(f"sign and send these {len(plan.bids)} bids?", abort=True)
    if any(b.side == 1 for b in plan.bids):
        warn_without_meter(client, address)
    sent, skipped = send_bids(client, unlock(datadir, address, password_file),
                               [b.to_bid(zone, info["gate_closure"]) for b in plan.bids])
    emit({**doc, "sent": [h for _, h in sent], "skipped_slots": skipped}, as_json,
          lambda d: f"{len(sent)} bids sent (pending)")


@agent.command("run")
@_agent_options
@guard
def agent_run(kwp, tilt, azimuth, lat, lon, utc_offset, daily_kwh, battery_kwh, battery_soc, cloudiness, slots, slot_hours,
              zone, sender, datadir, api, password_file) -> None:
    """Trade hands-free until Ctrl-C: keep bids posted SLOTS slots ahead, and after each settlement
    widen or narrow the safety margin by how far the meter landed from what was cleared."""
    import time

    home = _home_agent(kwp, tilt, azimuth, lat, lon, utc_offset, daily_kwh, battery_kwh, battery_soc, cloudiness)
    client = node_client(api, datadir)
    address = sender or default_address(datadir)
    if kwp:
        warn_without_meter(client, address)
    key = unlock(datadir, address, password_file)
    clock, clock_line = _clock(client.get("/api/node"), slot_hours, utc_offset)
    if clock_line:
        click.echo(clock_line)
    told_empty = False
    # Each pass follows a new head: told by the node's event stream, or every quarter slot from an older node.
    heads = client.new_heads(max(0.5, client.get("/api/node")["slot_seconds"] / 4))
    planned_to = -1
    sent_below = 0  # the nonce past our last bid: plan again once the chain has taken them
    learnt_to = -1  # the newest settled slot learnt from (a service runs for years: no set of them all)
    paused = False  # the owner turned hands-free off in the app: bids already sent stay, no new ones
    try:
        while True:
            info, market = client.get("/api/node"), client.get("/api/market")
            acct = client.get(f"/api/address/{address}?limit=1")
            if paused != (not client.hands_free(address)):
                paused = not paused
                click.echo(f"{time.strftime('%H:%M:%S')}  " + ("paused from the app: no new bids until it is turned "
                                                               "back on (bids already sent stay)" if paused else
                                                               "resumed from the app"))
            first = max(_agent_first_slot(market), planned_to + 1)
            last = _agent_first_slot(market) + slots - 1 if not paused else first - 1
            # The balance tells what can be locked once our bids already sent are in blocks (or dropped:
            # nothing pending).  Other pending transactions of the key, a solver's commits, cost fees only.
            if first <= last and (acct["nonce"] >= sent_below or acct["pending_nonce"] == acct["nonce"]):
                plan = home.plan(first, last - first + 1, info, market, clock=clock, funds=_lockable(acct, info))
                sent, _ = send_bids(client, key, [b.to_bid(zone, info["gate_closure"]) for b in plan.bids])
                sent_below = client.get(f"/api/address/{address}?limit=1")["pending_nonce"]
                planned_to = last
                click.echo(f"{time.strftime('%H:%M:%S')}  slots {first}..{last}: {len(sent)} bids sent, expected "
                           f"{tokens(plan.expected_gain)} tokens against net metering "
                           f"(margin {home.strategy.margin:.0%})"
                           + ("; cut to what the balance can lock" if plan.cut_to_funds else ""))
                why = _why_empty(plan, info, clock, home)
                if why and not told_empty:
                    click.echo(why)
                told_empty = told_empty or bool(why)
            for s in acct["settlements"]:  # the newest 20, newest first
                if s["slot"] > learnt_to:
                    home.strategy.learn(s["sold_wh"] or s["bought_wh"], s["shortfall_wh"] or s["unused_wh"])
                    click.echo(f"{time.strftime('%H:%M:%S')}  slot {s['slot']} settled: {kwh(s['shortfall_wh'])} kWh "
                               f"short, {kwh(s['unused_wh'])} kWh unused; margin now {home.strategy.margin:.0%}")
            learnt_to = max([learnt_to] + [s["slot"] for s in acct["settlements"]])
            next(heads)
    except KeyboardInterrupt:
        click.echo("agent stopped; bids already sent stay on the chain")


COMMANDS = [agent]
