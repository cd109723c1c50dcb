"""Certification fuzzer: clear many small markets at the edges of what an instance admits.

    python bench/extreme_markets.py [--markets 1000] [--first-seed 0] [--solver auto]

(also `python bench/clearing.py --extreme N`, the solver benchmark's fuzzer mode).  Each market is
`solver.generator.extreme(seed)`: 1 Wh to 1 GWh per participant, prices from 0 to the maximum, 1 to
64 zones, bargaining weights 1 to 1,000.  Markets with no candidate pair clear empty and are not
counted.  Prints how many of the others certify, and each failure's seed and reason: a slot whose
clearing does not certify clears void on chain (nobody trades that slot).
"""

from __future__ import annotations

import argparse
import time
import warnings

from solver.generator import extreme
from solver.market import clear
from solver.pairs import candidate_pairs
from solver.relaxation import SolverError


def fuzz(markets: int, first_seed: int = 0, solver: str = "auto") -> list[str]:
    """Clear `markets` extreme markets from `first_seed`: a Markdown table, then one line per
    market that did not certify (its seed and reason)."""
    warnings.simplefilter("ignore")
    tried, failed = 0, []
    t0 = time.perf_counter()
    for seed in range(first_seed, first_seed + markets):
        inst = extreme(seed)
        pairs = candidate_pairs(inst)
        if not len(pairs):
            continue
        tried += 1
        try:
            clear(inst, solver=solver, pairs=pairs)
        except SolverError as e:
            failed.append(f"seed {seed}: {e}")
    took = time.perf_counter() - t0
    return ["| seeds | markets with a pair | certified | not certified | seconds |",
            "|---|---:|---:|---:|---:|",
            f"| {first_seed}..{first_seed + markets - 1} | {tried} | {tried - len(failed)} | {len(failed)} | {took:.0f} |",
            *failed]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markets", type=int, default=1000, help="seeds to try")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--solver", default="auto", choices=["auto", "clarabel", "scs", "dual"])
    args = ap.parse_args()
    print("\n".join(fuzz(args.markets, args.first_seed, args.solver)))


if __name__ == "__main__":
    main()
