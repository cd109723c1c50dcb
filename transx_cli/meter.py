"""`transx meter`: register a meter key, send signed readings for delivery settlement."""

from __future__ import annotations

import click

from .plugin_api import resolve_datadir
from .plugin_api import fail, kwh, datadir_option, password_option, api_option, json_option, node_client, guard, ask_password, emit, open_keystore, default_address, fetch_account


@click.group()
def meter() -> None:
    """A home's meter: register its key to an account, send its readings for settlement."""


@meter.command("register")
@click.option("--address", help="The account the meter belongs to (default: the default address).")
@click.option("--meter", "meter_address", help="The meter's key, an address in the keystore (default: a new key).")
@datadir_option
@api_option
@password_option
@json_option
@guard
def meter_register(address, meter_address, datadir, api, password_file, as_json) -> None:
    """Register a meter key to the account: from then on the chain settles the account's trades
    against readings that key signed (a reading signed by another key is refused)."""
    from consensus.rules.keys import public_key
    from consensus.rules.transactions import RegisterMeter
    from transxnode.client.wallet import send

    password = ask_password(password_file, datadir=resolve_datadir(datadir))
    account = address or default_address(datadir)
    meter_address = meter_address or open_keystore(datadir).create(password)
    meter_key = open_keystore(datadir).unlock(meter_address, password)
    out = send(node_client(api, datadir), open_keystore(datadir).unlock(account, password), RegisterMeter(public_key(meter_key)))
    emit({**out, "account": account, "meter": meter_address}, as_json,
          lambda d: f"meter {meter_address} registered to {account}: transaction {d['hash']} (pending)")


@meter.command("read")
@click.option("--slot", type=click.IntRange(0), required=True, help="The delivered slot the reading is for.")
@click.option("--imported-wh", type=click.IntRange(0, 2**32 - 1), default=0, help="Wh taken from the grid.")
@click.option("--exported-wh", type=click.IntRange(0, 2**32 - 1), default=0, help="Wh fed into the grid.")
@click.option("--address", help="The account (default: the default address).")
@datadir_option
@api_option
@password_option
@json_option
@guard
def meter_read(slot, imported_wh, exported_wh, address, datadir, api, password_file, as_json) -> None:
    """Send the account's meter reading for SLOT, signed by the meter registered to it."""
    from consensus.rules.keys import address_of, decode_address, encode_address
    from consensus.rules.metering import sign_reading
    from transxnode.client.wallet import send

    if imported_wh and exported_wh:
        fail("a reading is an import or an export for one slot, not both")
    client = node_client(api, datadir)
    account = address or default_address(datadir)
    registered = fetch_account(account, datadir, api, history=1)["meter"]
    if registered is None:
        fail(f"no meter is registered to {account}: `transx meter register` first")
    meter_address = encode_address(address_of(bytes.fromhex(registered)))
    if meter_address not in open_keystore(datadir).addresses():
        fail(f"the meter registered to {account} ({meter_address}) has no key in this keystore")
    password = ask_password(password_file, datadir=resolve_datadir(datadir))
    info = client.get("/api/node")
    reading = sign_reading(open_keystore(datadir).unlock(meter_address, password), chain_id=info["chain_id"],
                           account=decode_address(account), slot=slot, imported_wh=imported_wh,
                           exported_wh=exported_wh)
    out = send(client, open_keystore(datadir).unlock(account, password), reading)
    emit(out, as_json, lambda d: f"reading for slot {slot} sent ({kwh(imported_wh)} kWh in, {kwh(exported_wh)} kWh "
          f"out): transaction {d['hash']} (pending)")


COMMANDS = [meter]
