"""Solver benchmark: clear seeded realistic instances of growing size.

    python bench/clearing.py [--sizes 200,1000,...] [--solver auto|clarabel|scs|dual] [--seed 1] [--cap 16]
    python bench/clearing.py --fairness [--sizes ...] [--pairs-only] [--variant V]   what the price of fairness comes from
    python bench/clearing.py --extreme N [--first-seed 0]

Prints one Markdown row per size: candidate pairs, compile / solve / sparse step, rounding and
certificate / verify seconds, the certified gap, the trades and trades per trading participant, the
share of tradable sellers the candidate rule left without a pair, Jain's index of the gains, and
the welfare of the Nash-bargaining clearing beside the welfare LP optimum on the same pairs
(HiGHS): the price of fairness (solver.report.slot_report, also `transx solve --report`).  A
size whose solve fails or exceeds --time-limit is reported as such.  `--extreme N` instead clears N
extreme markets (bench/extreme_markets.py) and counts the slots that did not certify.

`--fairness` prints, per size, who the welfare LP leaves out and what the Nash-bargaining clearing
gives them: the buyers without a candidate pair, the participants the LP's optimum trades, the
share of the clearing's energy that goes to the others and the margin it earns there against the
rest.  `--min-pair-gain` and `--cover-extra` are what-ifs: they change the candidate rule's
constants (solver.pairs) for the run, which the chain does not; `--variant` changes the generated
markets (no network charges, one zone, equal capacities, limit prices spread wider or narrower).

(Named clearing.py, not solver.py: `python bench/X.py` puts bench/ first on the import path, and a
bench/solver.py would be imported as the solver package.)
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace

import numpy as np

from solver import pairs as pair_rule
from solver.generator import generate
from solver.instance import Instance
from solver.market import clear
from solver.pairs import DEFAULT_CAP, candidate_pairs
from solver.relaxation import SolverError
from solver.report import slot_report
from solver.verifier import verify

HEADER = ("| participants | pairs | pairs s | compile s | solve s | sparse+round+certify s | verify s (of solve) "
          "| gap / participant | trades | trades / trader | tradable sellers left out | Jain "
          "| welfare NBS / LP, tokens (price of fairness) | |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")


VARIANTS = ("as-generated", "no-charge", "one-zone", "equal-wh", "spread=F")


def market(n: int, seed: int, variant: str = "as-generated") -> Instance:
    """generate(n, seed), or a variant of it to see what a figure depends on: no network charges, one
    zone, every participant 5 kWh, or the limit prices spread F times as wide around each side's mean."""
    inst = generate(n, seed)
    sellers, buyers, charge = inst.sellers, inst.buyers, inst.network_charge
    if variant == "no-charge":
        charge = tuple((0,) * len(r) for r in charge)
    elif variant == "one-zone":
        charge = ((charge[0][0],),)
        sellers, buyers = (tuple(replace(p, zone=0) for p in side) for side in (sellers, buyers))
    elif variant == "equal-wh":
        sellers, buyers = (tuple(replace(p, wh=5000) for p in side) for side in (sellers, buyers))
    elif variant.startswith("spread="):
        f = float(variant.split("=")[1])

        def spread(side):
            mean = sum(p.price for p in side) / len(side)
            return tuple(replace(p, price=max(0, round(mean + f * (p.price - mean)))) for p in side)

        sellers, buyers = spread(sellers), spread(buyers)
    elif variant != "as-generated":
        raise SystemExit(f"unknown --variant {variant!r}: one of {', '.join(VARIANTS)}")
    return Instance(inst.slot, inst.feed_in, inst.retail, charge, sellers, buyers)


def row(inst: Instance, solver: str, time_limit: float, cap: int = DEFAULT_CAP) -> str:
    n = len(inst.sellers) + len(inst.buyers)
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
        f"| {sum(r.timings.get(k, 0.0) for k in ('sparse', 'round', 'certify')):.2f} | {t_verify:.3f} ({100 * t_verify / solve:.1f}%) "
        f"| {float(v.gap_per_weight):.1e} | {rep.trades:,} | {rep.trades_per_trader:.2f} "
        f"| {100 * rep.left_out_share:.1f}% | {rep.jain:.3f} "
        f"| {nbs:,.2f} / {best:,.2f} ({100 * rep.price_of_fairness:.2f}%) | ok |"
    )


FAIRNESS_HEADER = ("| participants | with a pair | buyers without a pair | traded by the LP's optimum "
                   "| clearing's energy to the others | its margin / the rest's, token/kWh "
                   "| welfare NBS / LP, tokens (price of fairness) |\n"
                   "|---:|---:|---:|---:|---:|---:|---:|")


def fairness_row(inst: Instance, solver: str, time_limit: float, cap: int = DEFAULT_CAP, pairs_only: bool = False) -> str:
    """Who the LP leaves out, and the clearing's energy (and its margin) that goes to them."""
    n = len(inst.sellers) + len(inst.buyers)
    pairs = candidate_pairs(inst, cap)
    n_s, n_b = len(inst.sellers), len(inst.buyers)
    with_pair = len(np.unique(pairs.seller)) + len(np.unique(pairs.buyer))
    no_pair = n_b - len(np.unique(pairs.buyer))
    head = f"| {n:,} | {with_pair:,} | {no_pair:,} ({100 * no_pair / n_b:.1f}%) |"
    if pairs_only:
        return head + " - |" * 4
    try:
        r = clear(inst, solver=solver, pairs=pairs, time_limit=time_limit, cap=cap)
    except SolverError as e:
        return head + " - |" * 3 + f" {e} |"
    rep = slot_report(inst, r.clearing, pairs=pairs, verdict=r.verdict)
    index = {(int(i), int(j)): e for e, (i, j) in enumerate(zip(pairs.seller, pairs.buyer))}
    wh = np.zeros(len(pairs))
    for t in r.clearing.trades:
        wh[index[inst.seller_index[t.seller], inst.buyer_index[t.buyer]]] = t.wh
    others = ~rep.lp_traded[pairs.seller] | ~rep.lp_traded[n_s + pairs.buyer]  # a side the LP leaves out
    g = pairs.margin / 1e6  # token/kWh

    def margin(mask) -> str:
        return f"{(g * wh)[mask].sum() / wh[mask].sum():.3f}" if wh[mask].sum() else "-"

    return (head + f" {rep.lp_traders:,} | {100 * wh[others].sum() / wh.sum():.1f}% | {margin(others)} / {margin(~others)} "
            f"| {rep.welfare_nano / 1e9:,.2f} / {rep.lp_welfare_nano / 1e9:,.2f} ({100 * rep.price_of_fairness:.2f}%) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="200,500,1000,2000,5000,10000,30000,100000")
    ap.add_argument("--solver", default="auto", choices=["auto", "clarabel", "scs", "dual"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cap", type=int, default=DEFAULT_CAP, help="candidate sellers per buyer")
    ap.add_argument("--time-limit", type=float, default=600.0, help="seconds per solve")
    ap.add_argument("--extreme", type=int, metavar="N", help="clear N extreme markets instead (the fuzzer)")
    ap.add_argument("--first-seed", type=int, default=0, help="with --extreme: the first market's seed")
    ap.add_argument("--fairness", action="store_true", help="who the LP leaves out and what the clearing gives them")
    ap.add_argument("--variant", default="as-generated", help=f"the generated market, or a variant: {', '.join(VARIANTS)}")
    ap.add_argument("--pairs-only", action="store_true", help="with --fairness: the candidate pairs' columns only, no solve")
    ap.add_argument("--min-pair-gain", type=int, default=pair_rule.MIN_PAIR_GAIN,
                    help="what-if: the candidate rule's minimum gain on a pair's first 100 Wh, nano-units")
    ap.add_argument("--cover-extra", type=int, default=pair_rule.COVER_EXTRA,
                    help="what-if: cover pairs a buyer may take (0: no cover rule)")
    args = ap.parse_args()
    pair_rule.MIN_PAIR_GAIN, pair_rule.COVER_EXTRA = args.min_pair_gain, args.cover_extra
    if args.extreme is not None:
        from extreme_markets import fuzz  # the sibling script: bench/ is first on the import path

        print("\n".join(fuzz(args.extreme, args.first_seed, args.solver)))
        return
    import cvxpy

    print(f"solver {args.solver}, seed {args.seed}, market {args.variant}, cap {args.cap}, min pair gain {args.min_pair_gain}, "
          f"cover extra {args.cover_extra}, cvxpy {cvxpy.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print()
    print(FAIRNESS_HEADER if args.fairness else HEADER)
    for n in (int(s) for s in args.sizes.split(",")):
        inst = market(n, args.seed, args.variant)
        if args.fairness:
            print(fairness_row(inst, args.solver, args.time_limit, args.cap, args.pairs_only), flush=True)
        else:
            print(row(inst, args.solver, args.time_limit, args.cap), flush=True)


if __name__ == "__main__":
    main()
