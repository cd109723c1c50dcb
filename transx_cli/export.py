"""`transx export`: a chain range's bids, trades, clearings, settlements and sessions as CSV/Parquet
tables for researchers (transxnode/client/export.py), read from a running node's API."""

from __future__ import annotations

import click

from .plugin_api import api_option, datadir_option, guard, kwh, node_client, tokens


@click.command("export")
@click.option("--from", "first", type=int, default=None, help="first slot (= block height); default 1")
@click.option("--to", "last", type=int, default=None, help="last slot; default the chain's head")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="directory to write the tables to")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "both"]), default="both", show_default=True,
              help="parquet needs pyarrow: pip install 'transx[research]'")
@click.option("--plots", is_flag=True, help="also market.png and supply_demand.png (matplotlib; holds the range in memory)")
@datadir_option
@api_option
@guard
def export(first, last, out, fmt, plots, datadir, api) -> None:
    """Write slots FROM..TO as tables: bids, trades, clearings, settlements, sessions, and schema.json
    (every column's type and unit: Wh, micro-units, micro-units per kWh)."""
    from transxnode.client import export as ex

    ex.check_format(fmt)
    if first is not None and last is not None:
        ex.check_range(first, last, last)  # --from after --to: said before any node is asked
    client = node_client(api, datadir)
    info = client.get("/api/node")
    first, last = ex.check_range(first, last, info["height"])
    ex.prepare_dir(out)
    about = {"source": client.url, "chain_id": info["chain_id"], "genesis": info["genesis"], "from": first,
             "to": last, "head": info["height"], "slot_seconds": info["slot_seconds"], "grid": info["grid"]}
    progress = lambda m: click.echo(m, err=True)  # noqa: E731
    if plots:  # the plots read the whole range: held in memory
        tables = ex.build_tables(client.get, first, last, progress=progress)
        ex.write_tables(tables, out, fmt, about)
        ex.plot_market(tables, out)
        n = {name: len(rows) for name, rows in tables.items()}
        n["volume_wh"] = sum(r["volume_wh"] for r in tables["clearings"])
        n["value"] = sum(r["value"] for r in tables["clearings"])
    else:  # written as it is read: a chunk of slots in memory, whatever the range
        n = ex.export_range(client.get, first, last, out, fmt, about, progress=progress)
    click.echo(f"slots {first}..{last}: {n['bids']} bids, {n['trades']} trades, {kwh(n['volume_wh'])} kWh, "
               f"{tokens(n['value'])} tokens, {n['settlements']} settlements, {n['sessions']} sessions -> {out}")


def check_research(out: str) -> None:
    """What `transx devnet --export` needs, checked before the devnet starts: pyarrow, matplotlib, a writable
    directory (InputError: one line, exit 2)."""
    from transxnode.client import export as ex
    from transxnode.client.wallet import InputError

    ex.check_format("both")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(f"--export plots need matplotlib: {ex.RESEARCH_HINT}") from None
    ex.prepare_dir(out)


def export_devnet(net, out: str, say) -> None:
    """A stopping devnet's chain, slots 1..head, as tables and plots in `out`, read from a node that still
    answers; a failure is said, and the devnet still stops."""
    from transxnode.client import export as ex
    from transxnode.client.devnet import DevnetError
    from transxnode.client.node_api import ClientError
    from transxnode.client.wallet import InputError

    try:
        info = net.answering()
        if info["height"] < 1:
            say("nothing to export: no slot cleared")
            return
        tables = ex.build_tables(net.client.get, 1, info["height"])
        ex.write_tables(tables, out, "both", {"source": "transx devnet", "chain_id": info["chain_id"],
                                              "genesis": info["genesis"], "from": 1, "to": info["height"],
                                              "slot_seconds": info["slot_seconds"], "grid": info["grid"]})
        ex.plot_market(tables, out)
        say(f"exported slots 1..{info['height']} ({len(tables['trades'])} trades) to {out}/")
    except (ClientError, DevnetError, OSError, InputError) as e:
        say(f"export failed: {e}")


COMMANDS = [export]
