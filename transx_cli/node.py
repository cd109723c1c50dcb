"""`transx init` and `transx node`: create a data directory, run the node on it (with run-time overrides of its
config.toml, also used by `transx config show`)."""

from __future__ import annotations

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


def override_options(fn):
    """`transx node`'s and `transx config show`'s run-time settings over config.toml (each also an environment
    variable: flag > environment > config.toml > default)."""
    from transxnode.datadir.config import LOG_FORMATS, LOG_LEVELS

    for option in reversed([
        click.option("--api-listen", default=None, metavar="HOST:PORT",
                     help="HTTP API address ($TRANSX_API_LISTEN; port 0 picks one)."),
        click.option("--p2p-listen", default=None, metavar="MULTIADDR", help="Address for peers ($TRANSX_P2P_LISTEN)."),
        click.option("--bootstrap", multiple=True, metavar="MULTIADDR",
                     help="A peer to join, repeatable; replaces config.toml's list ($TRANSX_BOOTSTRAP, comma-separated)."),
        click.option("--metrics-listen", default=None, metavar="HOST:PORT",
                     help="Serve /metrics on this address too ($TRANSX_METRICS_LISTEN)."),
        click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default=None,
                     help="Least severe level logged ($TRANSX_LOG_LEVEL; default info)."),
        click.option("--log-file", type=click.Path(dir_okay=False), default=None,
                     help="Log to this file, rotated, instead of stderr ($TRANSX_LOG_FILE)."),
        click.option("--log-format", type=click.Choice(LOG_FORMATS, case_sensitive=False), default=None,
                     help="text for people, json (one object a line) for machines ($TRANSX_LOG_FORMAT)."),
    ]):
        fn = option(fn)
    return fn


def overrides_of(flags: dict, verbose: bool = False) -> dict:
    """The run-time overrides from these flags and the environment; -v/--verbose is --log-level debug."""
    import os

    from transxnode.datadir.config import overrides_from

    out = overrides_from(os.environ, flags)
    if verbose and not flags.get("log_level"):
        out["log_level"] = ("debug", "--verbose")
    return out


@click.command()
@datadir_option
@password_option
@override_options
@click.option("-v", "--verbose", is_flag=True, help="Debug logging (--log-level debug).")
def node(datadir, password_file, verbose, **flags) -> None:
    """Run the node: keep the chain, clear each slot, serve the API. Ctrl-C stops it cleanly."""
    _node(datadir, password_file, verbose, flags)


@guard
def _node(datadir, password_file, verbose, flags) -> None:
    from functools import partial

    import trio

    from transxnode.datadir.config import load_config
    from transxnode.logs import setup_logging

    d = resolve_datadir(datadir)
    overrides = overrides_of(flags, verbose)
    cfg = load_config(d, overrides)  # a missing datadir or a bad setting is one line, before asking for a password
    setup_logging(cfg)  # and so is a log file that cannot be written
    from transxnode.daemon import run_node  # the solver's imports take a while: not for a refusal

    password = ask_password(password_file, datadir=d)
    trio.run(partial(run_node, d, password, overrides=overrides))


COMMANDS = [init, node]
