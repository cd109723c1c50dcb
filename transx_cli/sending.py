"""Signing and sending a list of bids, shared by `transx bid profile` and `transx agent`."""

from __future__ import annotations

import click

from .plugin_api import progress


def send_bids(client, key, bodies: list) -> tuple[list[tuple[int, str]], list[int]]:
    """Sign and send bid bodies one by one (each at the key's next nonce): (slot, hash) of those sent and
    the slots skipped because their gate closed while the others were being sent (the chain moves on
    during a long list; the rest of the plan still stands).  Progress on a terminal, skips on stderr."""
    from transxnode.client.node_api import ClientError
    from transxnode.client.wallet import send

    sent, skipped = [], []
    report = progress()
    for i, body in enumerate(bodies):
        try:
            sent.append((body.slot, send(client, key, body)["hash"]))
        except ClientError as e:
            if e.reason != "gate_closed":
                raise
            skipped.append(body.slot)
        if report and ((i + 1) % 10 == 0 or i + 1 == len(bodies)):
            report(f"{i + 1}/{len(bodies)} bids sent")
    if skipped:
        click.echo(f"warning: slot{'s' if len(skipped) > 1 else ''} {', '.join(map(str, skipped))} closed for bids "
                   "while sending; not sent", err=True)
    return sent, skipped


def warn_without_meter(client, address: str) -> None:
    """Selling without a registered meter is allowed, but every sale would settle as undelivered."""
    if client.get(f"/api/address/{address}?limit=1").get("meter") is None:
        click.echo(f"warning: no meter is registered to {address}: without its readings the chain settles its "
                   "sales as undelivered, bought from the grid at retail at its cost (`transx meter register`)",
                   err=True)
