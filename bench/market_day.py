"""Market-day benchmark: a day of simulated homes on a real chain, against net metering.

    python bench/market_day.py [--homes 100,1000] [--seed 1] [--scenario FILE]
                               [--export DIR [--format csv|parquet|both]] [--plots DIR]

For each size, agent/simulation.py's DaySimulation: every home forecasts its day (pvlib clear
sky at the scenario's site, by default scenarios/kuala_lumpur.toml: Kuala Lumpur, a cloud cover
the forecast misses by a little, a typical load profile),
posts its day-ahead bids through the agent's strategy, the chain clears the 48 half-hour slots
with the real solver, a physical model decides what really happened, meters report it and the
chain settles.  Printed: energy traded peer to peer, what the homes gained against net metering
(imports at retail, exports at feed-in, the same flows), the price of fairness (Nash-bargaining
welfare over the welfare-maximising clearing of the same candidate pairs, by HiGHS), the
settlement deviations, and the time taken.  --export writes the day's chain as `transx export`
does (bids, trades, clearings, settlements, sessions; schema.json); --plots draws price and volume
per slot, a slot's supply and demand, a home's day and each home's saving (matplotlib).  With
several sizes each gets a subdirectory homes-N.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time


from agent.scenario import Scenario, load_scenario, scenario_doc
from agent.simulation import DaySimulation, plot_day


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--homes", help="comma-separated numbers of homes (default: the scenario file's count, "
                                    "or 100,1000 without --scenario)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scenario", help="a scenario file (TOML or JSON; default scenarios/kuala_lumpur.toml's values)")
    ap.add_argument("--export", metavar="DIR", help="write the day's tables here (as `transx export`)")
    ap.add_argument("--format", default="both", help="csv, parquet or both (default; parquet needs pyarrow)")
    ap.add_argument("--plots", metavar="DIR", help="write the day's plots here (PNG, matplotlib)")
    args = ap.parse_args()
    try:
        sizes = [int(x) for x in args.homes.split(",")] if args.homes else None
    except ValueError:
        _refuse(f"--homes {args.homes!r}: comma-separated numbers of homes, e.g. 100,1000")
    try:
        scenario = load_scenario(args.scenario) if args.scenario else Scenario()
        sizes = sizes or ([scenario.homes] if args.scenario else [100, 1000])
        from transxnode.client.export import check_format, prepare_dir

        if args.export:
            check_format(args.format)
        for d in (args.export, args.plots):
            if d:
                prepare_dir(d)
        if args.plots:
            import matplotlib  # noqa: F401
    except ValueError as e:  # ScenarioError, InputError: one line naming what is wrong
        _refuse(str(e))
    except ImportError:
        _refuse("--plots needs matplotlib: pip install 'transx[research]'")
    rows = []
    for n in sizes:
        say(f"{n} homes: setting up")
        t0 = time.perf_counter()
        sim = DaySimulation(homes=n, seed=args.seed, progress=lambda m, n=n: say(f"{n} homes: {m}"),
                            scenario=scenario)
        try:
            day = sim.run()
            _write(sim, day, args, n if len(sizes) > 1 else None)
        finally:
            sim.close()
        rows.append((n, day, time.perf_counter() - t0, sim.cloud))
    import numpy as np
    import pvlib

    given = f" --scenario {args.scenario}" if args.scenario else ""
    print(f"`python bench/market_day.py --homes {','.join(map(str, sizes))} --seed {args.seed}{given}`\n")
    slots = f"{scenario.slots} {'half-hour' if scenario.slot_minutes == 30 else f'{scenario.slot_minutes}-minute'} slots"
    print(f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
          f"pvlib {pvlib.__version__}, numpy {np.__version__}; {slots}, {scenario.name}, seed {args.seed}\n")
    print("| homes | sellers / buyers that traded | kWh traded P2P | savings vs net metering, all homes (tokens) "
          "| per home: mean / min / max | per trading home, mean | price of fairness (NBS / max welfare) "
          "| shortfall, % of sold | unused, % of bought | cloud cover | solve s | total s |")
    print("|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, day, seconds, cloud in rows:
        homes = day.homes
        sellers = sum(1 for h in homes if h.sold_wh)
        buyers = sum(1 for h in homes if h.bought_wh and not h.sold_wh)
        traders = [h for h in homes if h.sold_wh or h.bought_wh]
        sold = sum(h.sold_wh for h in homes)
        bought = sum(h.bought_wh for h in homes)
        savings = [h.savings / 1e6 for h in homes]
        per_trader = sum(h.savings for h in traders) / len(traders) / 1e6 if traders else 0.0
        print(f"| {n:,} | {sellers} / {buyers} | {day.traded_wh / 1000:,.1f} | {sum(savings):,.2f} "
              f"| {sum(savings) / n:.3f} / {min(savings):.3f} / {max(savings):.3f} | {per_trader:.3f} "
              f"| {day.welfare_ratio:.4f} | {100 * sum(h.shortfall_wh for h in homes) / max(1, sold):.1f}% "
              f"| {100 * sum(h.unused_wh for h in homes) / max(1, bought):.1f}% | {cloud:.2f} "
              f"| {day.solve_seconds:.1f} | {seconds:.0f} |")


def _refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _write(sim: DaySimulation, day, args, size: int | None) -> None:
    """--export and --plots for one simulated day (in a homes-N subdirectory when several sizes run)."""
    from pathlib import Path

    from transxnode.client.export import plot_market, write_tables

    if not (args.export or args.plots):
        return
    tables = sim.tables()
    sub = f"homes-{size}" if size is not None else ""
    if args.export:
        about = {"source": "bench/market_day.py", "seed": args.seed, "homes": len(sim.homes),
                 "scenario": scenario_doc(sim.sc), "cloud": sim.cloud, "genesis": sim.g.hash.hex()}
        write_tables(tables, Path(args.export) / sub, args.format, about)
        say(f"{len(sim.homes)} homes: tables in {Path(args.export) / sub}")
    if args.plots:
        plot_market(tables, Path(args.plots) / sub)
        plot_day(sim, day, Path(args.plots) / sub)
        say(f"{len(sim.homes)} homes: plots in {Path(args.plots) / sub}")


if __name__ == "__main__":
    main()
