"""Solver benchmark: clear seeded realistic instances of growing size.

    python bench/clearing.py [--sizes 200,1000,...] [--solver clarabel|scs] [--seed 1]

Prints one Markdown row per size: candidate pairs, compile / solve / verify
seconds, the certified gap, and the welfare of the Nash-bargaining clearing
beside the welfare LP optimum on the same pairs (HiGHS): the price of
fairness.  A size whose solve exceeds --time-limit is reported as such.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog


from solver.generator import generate
from solver.market import clear
from solver.pairs import candidate_pairs
from solver.relaxation import SolverError
from solver.verifier import verify


def welfare_lp(inst, pairs) -> float:
    """Maximum total gain (tokens) over the candidate pairs: the efficiency benchmark."""
    P, n_s = len(pairs), len(inst.sellers)
    rows = np.concatenate([pairs.seller, n_s + pairs.buyer])
    A = sp.csr_matrix((np.ones(2 * P), (rows, np.tile(np.arange(P), 2))), shape=(n_s + len(inst.buyers), P))
    cap = np.concatenate([inst.seller_wh, inst.buyer_wh]).astype(float)
    res = linprog(-pairs.margin / 1e9, A_ub=A, b_ub=cap, bounds=(0, None), method="highs")
    return -res.fun


def row(n: int, seed: int, solver: str, time_limit: float) -> str:
    inst = generate(n, seed)
    t0 = time.perf_counter()
    pairs = candidate_pairs(inst)
    t_pairs = time.perf_counter() - t0
    try:
        r = clear(inst, solver=solver, pairs=pairs, time_limit=time_limit)
    except SolverError as e:
        return f"| {n:,} | {len(pairs):,} | {t_pairs:.3f} | - | - | - | - | - | - | {e} |"
    t_verify = float("inf")
    for _ in range(3):  # best of three: a node verifies on warm structures
        t1 = time.perf_counter()
        v = verify(inst, r.clearing, pairs=pairs)
        t_verify = min(t_verify, time.perf_counter() - t1)
    assert v.ok, v.reason
    nbs = (int(v.seller_surplus.sum()) + int(v.buyer_surplus.sum())) / 1e9  # total gain, tokens
    best = welfare_lp(inst, pairs)
    solve = r.timings["solve"]
    return (
        f"| {n:,} | {len(pairs):,} | {t_pairs:.3f} | {r.timings['compile']:.2f} | {solve:.2f} "
        f"| {r.timings['round'] + r.timings['certify']:.2f} | {t_verify:.3f} ({100 * t_verify / solve:.1f}%) "
        f"| {float(v.gap_per_weight):.1e} | {nbs:,.2f} / {best:,.2f} ({100 * (1 - nbs / best):.2f}%) | ok |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200,500,1000,2000,5000,10000,30000,100000")
    ap.add_argument("--solver", default="auto", choices=["auto", "clarabel", "scs", "dual"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=600.0, help="seconds per solve")
    args = ap.parse_args()
    import cvxpy

    print(f"solver {args.solver}, seed {args.seed}, cvxpy {cvxpy.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print()
    print("| participants | pairs | pairs s | compile s | solve s | round+certify s | verify s (of solve) "
          "| gap / participant | welfare NBS / LP, tokens (price of fairness) | |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        print(row(n, args.seed, args.solver, args.time_limit), flush=True)


if __name__ == "__main__":
    main()
