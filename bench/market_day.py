"""Market-day benchmark: a day of simulated homes on a real chain, against net metering.

    python bench/market_day.py [--homes 100,1000] [--seed 1]

For each size, agent/simulation.py's DaySimulation: every home forecasts its day (pvlib clear
sky in Kuala Lumpur, a cloud cover the forecast misses by a little, a typical load profile),
posts its day-ahead bids through the agent's strategy, the chain clears the 48 half-hour slots
with the real solver, a physical model decides what really happened, meters report it and the
chain settles.  Printed: energy traded peer to peer, what the homes gained against net metering
(imports at retail, exports at feed-in, the same flows), the price of fairness (Nash-bargaining
welfare over the welfare-maximising clearing of the same candidate pairs, by HiGHS), the
settlement deviations, and the time taken.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time


from agent.simulation import DaySimulation


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--homes", default="100,1000", help="comma-separated numbers of homes (default 100,1000)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sizes = [int(x) for x in args.homes.split(",")]
    rows = []
    for n in sizes:
        say(f"{n} homes: setting up")
        t0 = time.perf_counter()
        sim = DaySimulation(homes=n, seed=args.seed, progress=lambda m, n=n: say(f"{n} homes: {m}"))
        try:
            day = sim.run()
        finally:
            sim.close()
        rows.append((n, day, time.perf_counter() - t0, sim.cloud))
    import numpy as np
    import pvlib

    print(f"`python bench/market_day.py --homes {args.homes} --seed {args.seed}`\n")
    print(f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
          f"pvlib {pvlib.__version__}, numpy {np.__version__}; 48 half-hour slots, Kuala Lumpur, seed {args.seed}\n")
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


if __name__ == "__main__":
    main()
