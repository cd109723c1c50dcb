"""`transx check` and `transx repair`: a stopped node's data directory, verified and mended offline."""

from __future__ import annotations

import click

from .plugin_api import datadir_option, fail, guard, resolve_datadir


@click.command()
@datadir_option
def check(datadir) -> None:
    """Verify a stopped node's data directory: chain, checksums, money, journal, keystore."""
    _check(datadir)


@guard
def _check(datadir) -> None:
    from transxnode.datadir.integrity import check_datadir

    d = resolve_datadir(datadir)
    report = check_datadir(d)
    for line in report.ok:
        click.echo(f"ok       {line}")
    for line in report.problems:
        click.echo(f"DAMAGED  {line}")
    if report.problems:
        fail(f"{d} is damaged: `transx repair --datadir {d}` keeps the chain database aside and re-syncs "
             "it from peers")
    click.echo(f"{d} is sound")


@click.command()
@datadir_option
@click.option("--yes", is_flag=True, help="Do not ask before moving the chain database aside.")
def repair(datadir, yes) -> None:
    """Keep a damaged chain database aside and start afresh: the node re-syncs it from peers."""
    _repair(datadir, yes)


@guard
def _repair(datadir, yes) -> None:
    from transxnode.datadir.integrity import repair_datadir

    d = resolve_datadir(datadir)
    if not yes and not click.confirm(f"move {d}'s chain database aside and re-sync it from peers?"):
        fail("nothing changed", status=1)
    aside, carried, floor = repair_datadir(d)
    click.echo(f"kept the old chain database in {aside}")
    click.echo(f"a fresh one starts from genesis and re-syncs from peers at the next `transx node` "
               f"({carried} signing records carried over)")
    if floor:
        click.echo(f"the old one's signing records could not all be read: this node signs no block or vote "
                   f"up to height {floor}")


COMMANDS = [check, repair]
