"""Certification fuzzer: clear many small markets at the edges of what an instance admits.

    python bench/extreme_markets.py [--markets 1000] [--first-seed 0] [--solver auto]

Each market is `solver.generator.extreme(seed)`: 1 Wh to 1 GWh per participant, prices from 0 to the
maximum, 1 to 64 zones, bargaining weights 1 to 1,000.  Markets with no candidate pair clear empty
and are not counted.  Prints how many of the others certify, and each failure's seed and reason: a
slot whose clearing does not certify clears void on chain (nobody trades that slot).
"""

from __future__ import annotations

import argparse
import collections
import time
import warnings

from solver.generator import extreme
from solver.market import clear
from solver.pairs import candidate_pairs
from solver.relaxation import SolverError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markets", type=int, default=1000, help="seeds to try")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--solver", default="auto", choices=["auto", "clarabel", "scs", "dual"])
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    tried, failed, reasons = 0, [], collections.Counter()
    t0 = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.markets):
        inst = extreme(seed)
        pairs = candidate_pairs(inst)
        if not len(pairs):
            continue
        tried += 1
        try:
            clear(inst, solver=args.solver, pairs=pairs)
        except SolverError as e:
            failed.append((seed, str(e)))
            reasons[str(e).split(":")[0]] += 1
    took = time.perf_counter() - t0
    print("| seeds | markets with a pair | certified | not certified | seconds |")
    print("|---|---:|---:|---:|---:|")
    print(f"| {args.first_seed}..{args.first_seed + args.markets - 1} | {tried} | {tried - len(failed)} | "
          f"{len(failed)} | {took:.0f} |")
    for seed, reason in failed:
        print(f"seed {seed}: {reason}")


if __name__ == "__main__":
    main()
