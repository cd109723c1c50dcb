"""Solver benchmark: clear seeded realistic instances of growing size.

    python bench/clearing.py [--sizes 200,1000,...] [--solver auto|clarabel|scs|dual] [--seed 1] [--cap 16]
    python bench/clearing.py --extreme N [--first-seed 0]

Prints one Markdown row per size: candidate pairs, compile / solve / verify seconds, the certified
gap, the trades and trades per trading participant, the share of tradable sellers the candidate
rule left without a pair, Jain's index of the gains, and the welfare of the Nash-bargaining
clearing beside the welfare LP optimum on the same pairs (HiGHS): the price of fairness
(solver.report.slot_report, also `transx solve --report`).  A size whose solve fails or exceeds
--time-limit is reported as such.  `--extreme N` instead clears N extreme markets
(bench/extreme_markets.py) and counts the slots that did not certify.

(Named clearing.py, not solver.py: `python bench/X.py` puts bench/ first on the import path, and a
bench/solver.py would be imported as the solver package.)
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from solver.generator import generate
from solver.market import clear
from solver.pairs import DEFAULT_CAP, candidate_pairs
from solver.relaxation import SolverError
from solver.report import slot_report
from solver.verifier import verify

HEADER = ("| participants | pairs | pairs s | compile s | solve s | round+certify s | verify s (of solve) "
          "| gap / participant | trades | trades / trader | tradable sellers left out | Jain "
          "| welfare NBS / LP, tokens (price of fairness) | |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")


def row(n: int, seed: int, solver: str, time_limit: float, cap: int = DEFAULT_CAP) -> str:
    inst = generate(n, seed)
    t0 = time.perf_counter()
    pairs = candidate_pairs(inst, cap)
    t_pairs = time.perf_counter() - t0
    try:
        r = clear(inst, solver=solver, pairs=pairs, time_limit=time_limit, cap=cap)
    except SolverError as e:
        return f"| {n:,} | {len(pairs):,} | {t_pairs:.3f} |" + " - |" * 10 + f" {e} |"
    t_verify = float("inf")
    for _ in range(3):  # best of three: a node verifies on warm structures
        t1 = time.perf_counter()
        v = verify(inst, r.clearing, pairs=pairs)
        t_verify = min(t_verify, time.perf_counter() - t1)
    assert v.ok, v.reason
    rep = slot_report(inst, r.clearing, pairs=pairs, verdict=v)
    solve = r.timings["solve"]
    nbs, best = rep.welfare_nano / 1e9, rep.lp_welfare_nano / 1e9  # tokens
    return (
        f"| {n:,} | {len(pairs):,} | {t_pairs:.3f} | {r.timings['compile']:.2f} | {solve:.2f} "
        f"| {r.timings['round'] + r.timings['certify']:.2f} | {t_verify:.3f} ({100 * t_verify / solve:.1f}%) "
        f"| {float(v.gap_per_weight):.1e} | {rep.trades:,} | {rep.trades_per_trader:.2f} "
        f"| {100 * rep.left_out_share:.1f}% | {rep.jain:.3f} "
        f"| {nbs:,.2f} / {best:,.2f} ({100 * rep.price_of_fairness:.2f}%) | ok |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200,500,1000,2000,5000,10000,30000,100000")
    ap.add_argument("--solver", default="auto", choices=["auto", "clarabel", "scs", "dual"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cap", type=int, default=DEFAULT_CAP, help="candidate sellers per buyer")
    ap.add_argument("--time-limit", type=float, default=600.0, help="seconds per solve")
    ap.add_argument("--extreme", type=int, metavar="N", help="clear N extreme markets instead (the fuzzer)")
    ap.add_argument("--first-seed", type=int, default=0, help="with --extreme: the first market's seed")
    args = ap.parse_args()
    if args.extreme is not None:
        from extreme_markets import fuzz  # the sibling script: bench/ is first on the import path

        print("\n".join(fuzz(args.extreme, args.first_seed, args.solver)))
        return
    import cvxpy

    print(f"solver {args.solver}, seed {args.seed}, cap {args.cap}, cvxpy {cvxpy.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print()
    print(HEADER)
    for n in (int(s) for s in args.sizes.split(",")):
        print(row(n, args.seed, args.solver, args.time_limit, args.cap), flush=True)


if __name__ == "__main__":
    main()
