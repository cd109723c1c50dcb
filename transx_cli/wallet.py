"""`transx wallet`: keys and money."""

from __future__ import annotations

import click

from .plugin_api import AmountCommand, resolve_datadir
from .plugin_api import tokens, table, datadir_option, password_option, api_option, json_option, node_client, guard, ask_password, format_tokens, emit, open_keystore, default_address, unlock, fetch_account


@click.group()
def wallet() -> None:
    """Keys and money: new, list, address, balance, send."""


@wallet.command("new")
@datadir_option
@password_option
@json_option
@guard
def wallet_new(datadir, password_file, as_json) -> None:
    """Create a key in the keystore; prints its address."""
    address = open_keystore(datadir).create(ask_password(password_file, confirm=True, datadir=resolve_datadir(datadir)))
    emit({"address": address}, as_json, lambda d: d["address"])


@wallet.command("list")
@datadir_option
@api_option
@json_option
@guard
def wallet_list(datadir, api, as_json) -> None:
    """The keystore's addresses, with balances when a node answers."""
    from transxnode.client.node_api import ClientError

    rows = []
    client = node_client(api, datadir)
    for a in open_keystore(datadir).addresses():
        try:
            acct = client.get(f"/api/address/{a}?limit=1")
            rows.append({"address": a, "balance": acct["balance"], "escrowed": acct["escrowed"]})
        except ClientError:
            rows.append({"address": a, "balance": None, "escrowed": None})
    emit(rows, as_json, lambda rs: table(["address", "balance", "escrowed"],
                                           [[r["address"], format_tokens(r["balance"]), format_tokens(r["escrowed"])] for r in rs])
          if rs else "the keystore is empty: `transx wallet new`")


@wallet.command("address")
@datadir_option
@json_option
@guard
def wallet_address(datadir, as_json) -> None:
    """The default address: the node key of --datadir (or the keystore's first key)."""
    a = default_address(datadir)
    emit({"address": a}, as_json, lambda d: d["address"])


@wallet.command("balance")
@click.argument("address", required=False)
@datadir_option
@api_option
@json_option
@guard
def wallet_balance(address, datadir, api, as_json) -> None:
    """Balance, escrow and nonce of ADDRESS (default: the default address)."""
    acct = fetch_account(address, datadir, api)
    emit(acct, as_json, lambda a: "\n".join([
        f"address   {a['address']}", f"balance   {tokens(a['balance'])} tokens",
        f"escrowed  {tokens(a['escrowed'])} tokens",
        f"nonce     {a['nonce']} ({a['pending_nonce'] - a['nonce']} pending)",
        f"open bids {len(a['open_bids'])}"]))


@wallet.command("send", cls=AmountCommand)
@click.argument("to")
@click.argument("amount")
@click.option("--from", "sender", help="Address to send from (default: the default address).")
@click.option("--fee", help="Fee in tokens (default: the network's minimum).")
@datadir_option
@api_option
@password_option
@json_option
@guard
def wallet_send(to, amount, sender, fee, datadir, api, password_file, as_json) -> None:
    """Send AMOUNT tokens to TO."""
    from consensus.rules.keys import decode_address
    from consensus.rules.transactions import Transfer
    from transxnode.client.wallet import parse_tokens, send

    body = Transfer(decode_address(to), parse_tokens(amount))
    fee_micro = None if fee is None else parse_tokens(fee, "fee", allow_zero=True)
    client = node_client(api, datadir)
    out = send(client, unlock(datadir, sender, password_file), body, fee_micro)
    emit(out, as_json, lambda d: f"sent {tokens(body.amount)} tokens to {to}: transaction {d['hash']} (pending)")


COMMANDS = [wallet]
