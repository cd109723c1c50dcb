"""`transx devnet`: a local network of node processes with simulated households."""

from __future__ import annotations

import click

from .plugin_api import fail, guard


@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), default="devnet", show_default=True,
              help="Where the devnet lives (recreated at every start).")
@click.option("--nodes", type=click.IntRange(1, 64), default=3, show_default=True,
              help="Node processes, each a solver, connected over libp2p on 127.0.0.1.")
@click.option("--homes", type=click.IntRange(0, 5000), default=20, show_default=True,
              help="Simulated households (PV homes, homes, EV stations) bidding every slot.")
@click.option("--slot-seconds", type=click.IntRange(1, 3600), default=2, show_default=True)
@click.option("--slots", type=click.IntRange(1), help="Stop after this many slots (default: run until Ctrl-C).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulated households.")
@click.option("--station", is_flag=True, help="Also run a charging station with an emulated NFC reader and an EV "
              "that taps every few slots (needs transx[nfc]).")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), default=None,
              help="When it stops, write the chain as `transx export` does (CSV, Parquet, plots) to this directory "
              "(needs transx[research]).")
def devnet(directory, nodes, homes, slot_seconds, slots, seed, station, export_dir) -> None:
    """Start a local network that trades: nodes, simulated households, one status line per slot."""
    _devnet(directory, nodes, homes, slot_seconds, slots, seed, station, export_dir)


def _station_plugin():
    """The installed plugin that can run a devnet's charging station (the NFC plugin), handed to the devnet."""
    from transxnode.plugins import load_plugins

    for p in load_plugins():
        if p.obj is not None and hasattr(p.obj, "devnet_station"):
            return p.obj
    fail("--station needs the NFC plugin: pip install 'transx[nfc]'")


@guard
def _devnet(directory, nodes, homes, slot_seconds, slots, seed, station, export_dir=None) -> None:
    from pathlib import Path

    if export_dir is not None:
        from .export import check_research

        check_research(export_dir)  # before anything starts: one line, exit 2

    from agent.home import random_home
    from transxnode.client.devnet import Devnet, DevnetError

    say = lambda msg: click.echo(msg)  # noqa: E731
    try:
        net = Devnet(Path(directory), nodes=nodes, homes=homes, slot_seconds=slot_seconds, seed=seed, say=say,
                     agents=random_home, station=_station_plugin() if station else None)
        say(f"creating {directory}/: {nodes} node{'s' * (nodes > 1)}, {homes} households, {slot_seconds}s slots")
        net.create()
    except DevnetError as e:
        fail(str(e))
    import signal

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def interrupted(signum, frame):
        """Ctrl-C, SIGTERM or a closed terminal: stop everything, once.  Later signals (`timeout` and a
        process group both send one; an impatient second Ctrl-C) must not cut the stop short and orphan
        the nodes."""
        for sig in stops:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    for sig in stops:
        signal.signal(sig, interrupted)
    try:
        say("starting the nodes (each imports the solver and libp2p: a few seconds)")
        net.start()
        say(f"{directory}/devnet.json lists the nodes; Ctrl-C stops everything")
        say(f"sign with a node's funded key: transx wallet send ADDRESS 5 --datadir {Path(directory) / 'node1'}  "
            f"(the keys' password is in {Path(directory) / 'password'}, which each node's config.toml names; "
            f"elsewhere: --password-file {Path(directory) / 'password'})")
        net.run(slots)
    except KeyboardInterrupt:
        say("stopping")
    except DevnetError as e:
        fail(str(e), status=1)
    finally:
        for sig in stops:
            signal.signal(sig, signal.SIG_IGN)
        if export_dir is not None:
            from .export import export_devnet

            export_devnet(net, export_dir, say)
        net.stop()


COMMANDS = [devnet]
