"""`transx station ...` and `transx ev ...`: the NFC plugin's commands (added to `transx` by plugins.py).

Errors are one line and a non-zero exit, like every `transx` command; a station's refusals are
console lines (the station keeps running).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import click

from transx_cli.plugin_api import api_option, datadir_option, fail, guard, json_option, node_client, password_option
from transx_cli.plugin_api import resolve_datadir, table, unlock

_device_option = click.option("--device", required=True,
                              help="NFC device: usb, usb:BUS:DEV, tty:USB0:pn532, or udp:HOST:PORT (no hardware).")
_key_option = click.option("--key", "address", help="The EV owner's address in the keystore (default: the first).")


def _tokens_arg(text: str, what: str) -> int:
    from transxnode.client.wallet import InputError, parse_tokens

    try:
        return parse_tokens(text, what)
    except InputError as e:
        raise click.BadParameter(str(e)) from None


def _nfc_ready() -> None:
    from .device import missing_dependencies

    missing = missing_dependencies()
    if missing:
        fail(missing, status=1)


def _open(device: str):
    from .device import DeviceError, open_frontend

    _nfc_ready()
    try:
        return open_frontend(device)
    except DeviceError as e:
        fail(str(e), status=1)


def _targets(device: str) -> tuple[str, ...]:
    # Over udp every technology polled costs a second of silence: an emulated card is always FeliCa.
    return ("212F",) if device.startswith("udp") else ("212F", "106A", "106B")


def _quiet_nfcpy() -> None:
    import logging

    logging.getLogger("nfc").setLevel(logging.WARNING)


# ----------------------------------------------------------------- station
@click.group()
def station() -> None:
    """A charging station: an NFC reader opens and closes EV charging sessions on chain."""


def _status_path(datadir) -> Path:
    return Path(resolve_datadir(datadir)) / "station.json"


@station.command("run")
@datadir_option
@_device_option
@click.option("--price", "price_text", default="0.60", show_default=True, help="Price per kWh, in tokens.")
@click.option("--power-kw", type=click.FloatRange(0.1, 1000), default=7.4, show_default=True,
              help="The charger's power (simulated delivery).")
@click.option("--battery-kwh", type=click.FloatRange(1, 1000), default=60, show_default=True,
              help="EV battery size assumed for the state of charge.")
@click.option("--min-seconds", type=click.FloatRange(0), default=2.0, show_default=True,
              help="A second tap of the same card sooner than this does not stop the charge.")
@click.option("--speed", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Simulated time factor (60: a minute of charging per second), for demos.")
@click.option("--taps", type=click.IntRange(1), help="Stop after this many taps (default: run until Ctrl-C).")
@click.option("--metrics-listen", help="HOST:PORT to serve the station's Prometheus metrics.")
@api_option
@password_option
@guard
def station_run(datadir, device, price_text, power_kw, battery_kwh, min_seconds, speed, taps, metrics_listen, api,
                password_file) -> None:
    """Run the station: tap to start charging, tap again (or `transx station stop`) to stop."""
    from transxnode.datadir.config import load_config

    from .records import CardError, ForeignCard, decode_card
    from .station import Station
    from .tag import tap

    price = _tokens_arg(price_text, "price")
    cfg = load_config(resolve_datadir(datadir))
    client = node_client(api, datadir)
    client.get("/api/node")  # a clear error now if the node is not running
    key = unlock(datadir, cfg.key, password_file)
    st = Station(client, key, price=price, power_w=int(power_kw * 1000), battery_wh=int(battery_kwh * 1000),
                 min_seconds=min_seconds, speed=speed, say=lambda m: click.echo(f"{time.strftime('%H:%M:%S')}  {m}"))
    if metrics_listen:
        from .metrics import serve_metrics

        try:
            serve_metrics(st.metrics, metrics_listen)  # before the reader opens: a busy port is one line, exit 2
        except ValueError as e:
            fail(str(e))
    clf = _open(device)
    _quiet_nfcpy()
    st.metrics.reader_up.set(1)
    stop_requested = []
    done = []
    signal.signal(signal.SIGUSR1, lambda *a: stop_requested.append("charger signal"))
    for sig in (signal.SIGTERM, signal.SIGINT):  # nfcpy swallows KeyboardInterrupt inside connect()
        signal.signal(sig, lambda *a: done.append(True))
    status = _status_path(datadir)
    status.write_text(json.dumps({"pid": os.getpid(), "device": device}))

    def on_tag(tag):
        try:
            if tag.ndef is None:
                raise CardError("unreadable or not an NDEF tag: hold the card still and tap again")
            card = decode_card(tag.ndef.octets)
        except CardError as e:
            st.on_bad_card("foreign_tag" if isinstance(e, ForeignCard) else "unreadable", str(e))
            return True
        records = st.on_card(card)
        if records is not None:
            try:
                tag.ndef.records = records
            except Exception as e:  # the card left mid-write, or is too small for the receipt
                st.say(f"could not write the receipt to the card ({e}); tap again to retry; it is on chain "
                       "either way: `transx ev sessions`")
            else:
                st.written_to_card(card.auth.owner)
        return True

    click.echo(f"station on {device}: {price / 1e6:g}/kWh, {power_kw:g} kW; tap a card to charge (Ctrl-C stops)")
    seen = 0
    try:
        while taps is None or seen < taps:
            if done:
                break
            if stop_requested:
                stop_requested.clear()
                st.stop("charger signal" if not Path(str(status) + ".stop").exists() else "stop command")
                Path(str(status) + ".stop").unlink(missing_ok=True)
            try:
                result = tap(clf, on_tag, lambda: bool(stop_requested or done), _targets(device))
                st.metrics.reader_up.set(1)
            except Exception as e:  # a reader hiccup or our bug: say so, keep the station up
                click.echo(f"{time.strftime('%H:%M:%S')}  tap failed: {type(e).__name__}: {e}")
                st.metrics.reader_up.set(0)
                result = e
            if result is None:
                continue
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        if st.charge is not None:
            st.stop("station shutting down")
        clf.close()
        status.unlink(missing_ok=True)


@station.command("stop")
@datadir_option
@guard
def station_stop(datadir) -> None:
    """Stop the charge in progress at the station running on --datadir (as unplugging does)."""
    status = _status_path(datadir)
    try:
        pid = json.loads(status.read_text())["pid"]
    except (OSError, ValueError, KeyError):
        fail(f"no station is running on {resolve_datadir(datadir)}", status=1)
    Path(str(status) + ".stop").write_text("")
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        status.unlink(missing_ok=True)
        fail(f"no station is running on {resolve_datadir(datadir)} (stale station.json removed)", status=1)
    click.echo(f"asked the station (pid {pid}) to stop charging")


@station.group("session")
def station_session() -> None:
    """Open and close sessions by hand (no reader): from an authorisation file (`transx ev authorize`)."""


@station_session.command("open")
@click.argument("auth_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--price", "price_text", default="0.60", show_default=True, help="Price per kWh, in tokens.")
@click.option("--soc", type=click.IntRange(0, 100), default=0, show_default=True, help="The EV's state of charge.")
@datadir_option
@api_option
@password_option
@guard
def station_session_open(auth_file, price_text, soc, datadir, api, password_file) -> None:
    """Open a charging session for the authorisation in AUTH_FILE, signed by this node's key."""
    from consensus.rules.charging import AuthError, decode_authorisation
    from transxnode.datadir.config import load_config
    from consensus.rules.transactions import SessionOpen
    from transxnode.client.wallet import send

    try:
        auth = decode_authorisation(Path(auth_file).read_bytes())
    except AuthError as e:
        fail(f"{auth_file}: {e}")
    key = unlock(datadir, load_config(resolve_datadir(datadir)).key, password_file)
    answer = send(node_client(api, datadir), key, SessionOpen(auth, _tokens_arg(price_text, "price"), soc))
    click.echo(f"session {auth.session_id.hex()} opened for {auth.ev_id}: transaction {answer['hash']} (pending)")


@station_session.command("close")
@click.argument("session")
@click.option("--kwh", type=click.FloatRange(0, 1000), required=True, help="Energy delivered.")
@click.option("--soc", type=click.IntRange(0, 100), default=0, show_default=True, help="State of charge at the end.")
@datadir_option
@api_option
@password_option
@guard
def station_session_close(session, kwh, soc, datadir, api, password_file) -> None:
    """Close SESSION (its hex id) with the energy delivered; the owner pays for that."""
    from transxnode.datadir.config import load_config
    from consensus.rules.transactions import SessionClose
    from transxnode.client.wallet import send

    try:
        sid = bytes.fromhex(session)
        assert len(sid) == 32
    except (ValueError, AssertionError):
        raise click.BadParameter("a session id is 64 hex characters", param_hint="SESSION") from None
    key = unlock(datadir, load_config(resolve_datadir(datadir)).key, password_file)
    answer = send(node_client(api, datadir), key, SessionClose(sid, int(round(kwh * 1000)), soc))
    click.echo(f"session {session} closed with {kwh:g} kWh: transaction {answer['hash']} (pending)")


# ---------------------------------------------------------------------- ev
@click.group()
def ev() -> None:
    """The EV owner's side: authorisations on a card or phone, and past sessions."""


def _authorise(datadir, address, password_file, api, ev_id, max_kwh, max_price, valid_hours, nonce):
    from consensus.rules.charging import authorise

    expiry = (time.time() + valid_hours * 3600) * 1000
    if not (math.isfinite(expiry) and 0 <= expiry < 2**64):
        raise click.BadParameter(f"{valid_hours:g} hours is out of range", param_hint="'--valid-hours'")
    info = node_client(api, datadir).get("/api/node")
    key = unlock(datadir, address, password_file)
    return authorise(key, chain_id=info["chain_id"], ev_id=ev_id, max_wh=int(max_kwh * 1000),
                     max_price=_tokens_arg(max_price, "max price"),
                     expiry=int(expiry),
                     nonce=secrets.randbits(63) if nonce is None else nonce)


def _auth_options(fn):
    for opt in reversed([
        click.option("--ev-id", required=True, help="The vehicle's id (plate or VIN), up to 32 characters."),
        click.option("--max-kwh", type=click.FloatRange(0.001, 1000), default=60, show_default=True),
        click.option("--max-price", default="0.80", show_default=True, help="Highest price per kWh, in tokens."),
        click.option("--valid-hours", type=float, default=24 * 30, show_default=True,
                     help="How long the authorisation is valid."),
        click.option("--nonce", type=click.IntRange(0, 2**63), help="One-use number (default: random)."),
    ]):
        fn = opt(fn)
    return fn


@ev.command("authorize")
@datadir_option
@_key_option
@_auth_options
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="File for the authorisation.")
@api_option
@password_option
@guard
def ev_authorize(datadir, address, ev_id, max_kwh, max_price, valid_hours, nonce, output, api, password_file):
    """Sign an authorisation into a file (for `transx station session open`, or a phone app)."""
    auth = _authorise(datadir, address, password_file, api, ev_id, max_kwh, max_price, valid_hours, nonce)
    Path(output).write_bytes(auth.encoded)
    click.echo(f"authorisation for {ev_id}: session {auth.session_id.hex()} written to {output}")


@ev.group("card")
def ev_card() -> None:
    """A physical card (a writable tag)."""


@ev_card.command("write")
@datadir_option
@_device_option
@_key_option
@_auth_options
@click.option("--soc", type=click.IntRange(0, 100), help="The EV's state of charge to record on the card.")
@click.option("--timeout", type=click.FloatRange(1), default=30, show_default=True, help="Seconds to wait for a tag.")
@api_option
@password_option
@guard
def ev_card_write(datadir, device, address, ev_id, max_kwh, max_price, valid_hours, nonce, soc, timeout, api,
                  password_file):
    """Write a new authorisation onto a writable tag held to the reader."""
    from .records import card_records
    from .tag import tap

    auth = _authorise(datadir, address, password_file, api, ev_id, max_kwh, max_price, valid_hours, nonce)
    clf = _open(device)
    _quiet_nfcpy()
    deadline = time.monotonic() + timeout

    def write(tag):
        if tag.ndef is None or not tag.ndef.is_writeable:
            return "the tag is not NDEF-formatted or is read-only"
        tag.ndef.records = card_records(auth, soc)
        return None

    click.echo(f"hold a writable tag to {device} ...")
    try:
        result = tap(clf, write, lambda: time.monotonic() > deadline, _targets(device))
    finally:
        clf.close()
    if result is None:
        fail(f"no tag within {timeout:g} s", status=1)
    if isinstance(result, Exception) or isinstance(result, str):
        fail(f"could not write the card: {result}", status=1)
    click.echo(f"card written: {ev_id}, up to {max_kwh:g} kWh, session {auth.session_id.hex()[:16]}")


@ev.command("emulate")
@datadir_option
@_device_option
@_key_option
@_auth_options
@click.option("--soc", type=click.IntRange(0, 100), default=20, show_default=True, help="Simulated state of charge.")
@click.option("--taps", type=click.IntRange(1), help="Exit after this many taps (default: until Ctrl-C).")
@click.option("--renew/--no-renew", default=True, show_default=True,
              help="After a receipt, sign a fresh authorisation (as a phone app does).")
@click.option("--foreign", is_flag=True, help="Emulate a tag that holds no TransX record (for testing stations).")
@click.option("--away", type=click.FloatRange(0), default=3.0, show_default=True,
              help="Seconds the card stays out of the field after each tap (a person taps, then steps back).")
@api_option
@password_option
@guard
def ev_emulate(datadir, device, address, ev_id, max_kwh, max_price, valid_hours, nonce, soc, taps, renew, foreign,
               away, api, password_file):
    """Emulate the EV owner's card over nfcpy (Type 3 tag; use a udp:HOST:PORT device for tests and demos)."""
    import ndef

    from .records import CardError, decode_card, encode_card
    from .tag import EmulatedCard

    auth = _authorise(datadir, address, password_file, api, ev_id, max_kwh, max_price, valid_hours, nonce)
    key = unlock(datadir, address, password_file)
    octets = (b"".join(ndef.message_encoder([ndef.Record("urn:nfc:ext:example.com:other", "x", b"hello")]))
              if foreign else encode_card(auth, soc))
    card = EmulatedCard(octets)
    clf = _open(device)
    _quiet_nfcpy()
    state = {"taps": 0, "seen": set(), "stop": False}  # seen: sessions whose receipts were already on the card
    for sig in (signal.SIGTERM, signal.SIGINT):  # nfcpy swallows KeyboardInterrupt inside connect()
        signal.signal(sig, lambda *a: state.update(stop=True))

    def after_tap():
        nonlocal auth, soc
        state["taps"] += 1
        message = card.message
        line = {"event": "tap", "tap": state["taps"]}
        if message is not None and not foreign:
            try:
                contents = decode_card(message)
            except CardError as e:
                line["error"] = str(e)
            else:
                # New receipts by their session, not by count: the card keeps only the newest few (records.py),
                # so once it is full a new receipt replaces an old one and the count stays the same.
                new = [r for r in contents.receipts if r.session not in state["seen"]]
                state["seen"].update(r.session for r in contents.receipts)
                if new:
                    r = new[-1]
                    line["receipt"] = {"session": r.session.hex(), "delivered_wh": r.delivered_wh, "amount": r.amount,
                                       "soc_start": r.soc_start, "soc_end": r.soc_end}
                    soc = r.soc_end  # the car charged
                    if renew:
                        from consensus.rules.charging import authorise

                        auth = authorise(key, chain_id=auth.chain_id, ev_id=auth.ev_id, max_wh=auth.max_wh,
                                         max_price=auth.max_price, expiry=auth.expiry, nonce=secrets.randbits(63))
                        card.mem[:] = type(card)(encode_card(auth, soc, contents.receipts)).mem
        click.echo(json.dumps(line), nl=True)
        sys.stdout.flush()
        if taps is not None and state["taps"] >= taps:
            state["stop"] = True
        else:
            time.sleep(away)

    click.echo(json.dumps({"event": "ready", "device": device, "session": auth.session_id.hex(),
                           "owner": auth.owner.hex()}))
    sys.stdout.flush()
    try:
        card.serve(clf, lambda: state["stop"], after_tap)
    except KeyboardInterrupt:
        pass
    finally:
        clf.close()


@ev.command("sessions")
@click.argument("address", required=False)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="Sessions per page.")
@click.option("--before", help="Start below this cursor (a page's 'next', OPENED.SESSION_ID).")
@datadir_option
@api_option
@json_option
@guard
def ev_sessions(address, limit, before, datadir, api, as_json) -> None:
    """An owner's (or a station's) charging sessions, newest first, a page at a time: energy, cost, state
    of charge."""
    from urllib.parse import urlencode

    from consensus.rules.keys import decode_address

    if address is None:
        from transx_cli.plugin_api import default_address

        address = default_address(datadir)
    decode_address(address)
    query = {"limit": limit, **({"before": before} if before else {})}
    doc = node_client(api, datadir).get(f"/api/sessions/{address}?{urlencode(query)}")
    if as_json:
        click.echo(json.dumps(doc, indent=1))
        return
    rows = [[s["session"][:16], s["ev_id"], s["status"], s["opened"], f"{s['delivered_wh'] / 1000:.3f}",
             f"{s['amount'] / 1e6:,.4f}", f"{s['price'] / 1e6:.4f}",
             f"{s['soc_start']}%->{s['soc_end']}%" if s["soc_end"] is not None else f"{s['soc_start']}%->",
             s["station"][:14]] for s in doc["sessions"]]
    if not rows:
        click.echo(f"no charging sessions for {address}")
        return
    click.echo(table(["session", "ev", "status", "opened", "kWh", "cost", "price/kWh", "charge", "station"], rows))
    if "next" in doc:
        flags = f" --limit {limit}" if limit != 50 else ""
        click.echo(f"next page: transx ev sessions {address} --before {doc['next']}{flags}")
