"""`transx init` and `transx node`: create a data directory, run the node on it."""

from __future__ import annotations

import sys

import click

from .plugin_api import fail, datadir_option, password_option, resolve_datadir, guard, ask_password


@click.command()
@datadir_option
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, exists=True),
              help="Genesis file of the network to join (default: the TransX network's, shipped with transx).")
@click.option("--dev", is_flag=True, help="A private development chain: starts now, this node funded and solving.")
@click.option("--slot-seconds", type=click.IntRange(1, 86400), default=5, show_default=True,
              help="Slot length of a --dev chain.")
@click.option("--api-listen", default=None, help="HOST:PORT of the HTTP API (default 127.0.0.1:8645; port 0 picks one).")
@click.option("--p2p-listen", default=None,
              help="Multiaddress for peers (default /ip4/0.0.0.0/tcp/9645; tcp/0 picks a port).")
@click.option("--bootstrap", multiple=True, help="A peer to join, /ip4/HOST/tcp/PORT/p2p/PEER_ID (repeatable).")
@password_option
def init(datadir, genesis_file, dev, slot_seconds, api_listen, p2p_listen, bootstrap, password_file) -> None:
    """Create a data directory: node key (encrypted), genesis, config."""
    _init(datadir, genesis_file, dev, slot_seconds, api_listen, p2p_listen, bootstrap, password_file)


@guard
def _init(datadir, genesis_file, dev, slot_seconds, api_listen, p2p_listen, bootstrap, password_file) -> None:
    from pathlib import Path

    from consensus.rules import genesis as G
    from transxnode.datadir.config import DEFAULT_API, DEFAULT_P2P, check_p2p_address, config_path
    from transxnode.datadir.create import init_datadir, network_genesis

    d = Path(resolve_datadir(datadir, create=True))
    if config_path(d).exists():
        fail(f"{d} is already initialised (config.toml exists); choose another --datadir")
    if dev and genesis_file:
        fail("give --dev or --genesis, not both")
    for addr in (p2p_listen, *bootstrap):
        if addr is not None:
            check_p2p_address(addr, peer=addr != p2p_listen)
    doc = None
    if not dev:
        doc = G.read_json(genesis_file or network_genesis(), G.GenesisError)
        G.genesis_from_json(doc)  # refuse a bad file before asking for a password
    password = ask_password(password_file, confirm=True)
    address, g = init_datadir(d, password, doc, dev_slot_seconds=slot_seconds if dev else None,
                              api_listen=api_listen or DEFAULT_API, p2p_listen=p2p_listen or DEFAULT_P2P,
                              bootstrap=list(bootstrap))
    click.echo(f"initialised {d}")
    click.echo(f"  network   {g.chain_id} (genesis {g.hash.hex()[:16]}, {g.slot_seconds}s slots)")
    click.echo(f"  node key  {address}")
    click.echo(f"next: transx node --datadir {d}")


@click.command()
@datadir_option
@password_option
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def node(datadir, password_file, verbose) -> None:
    """Run the node: keep the chain, clear each slot, serve the API. Ctrl-C stops it cleanly."""
    _node(datadir, password_file, verbose)


@guard
def _node(datadir, password_file, verbose) -> None:
    import logging

    import trio

    from transxnode.datadir.config import load_config
    from transxnode.daemon import run_node

    d = resolve_datadir(datadir)
    load_config(d)  # a missing datadir is one line, before asking for a password
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-5s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("hypercorn.error", "hypercorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    password = ask_password(password_file, datadir=d)
    trio.run(run_node, d, password)


COMMANDS = [init, node]
