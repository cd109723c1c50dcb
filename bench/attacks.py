"""Attack benchmark: issue 12's attacks on Proof-of-Solution, each run over many seeds in the simulator.

    python bench/attacks.py [--seeds 50] [--extra-seeds 0] [--first-seed 1] [--jobs 2] [--only TEXT] [--quick]

Each row is a scenario of consensus/adversaries.py (`SCENARIOS`): one adversarial solver (or none,
for the partition, commit-loss and control rows) among honest nodes, latency 50-500 ms unless the
row says otherwise, the engine's defaults otherwise.  Columns:

- success: seeds where the scenario's success criterion held (see each scenario function), and in
  brackets the seeds where the attacker found its opening (a round it expected to win) and acted;
- attacker share: its share of blocks from the attack's start, mean over seeds, against its fair share
  (1 / nodes; node 0's share for the rows with no attacker);
- luck: for the rows judged by share, the successes a fair lottery alone would give over these seeds
  (the sum over seeds of P(Binomial(blocks, fair) > 1.5 x fair x blocks)); for every row, the
  attacker's blocks pooled over the seeds and their one-sided binomial p-value at the fair share.  A
  success count near the first figure, with a large p, is the lottery's variance, not the attack;
- honest commits lost: honest commits (for heights whose window closed) that their sender's own chain
  never held, over all seeds, and the worst share one honest solver lost in one seed;
- deepest revert: the most blocks any honest node reverted at once, over all seeds (median in brackets);
- splits: seeds ending with honest nodes holding different blocks at a height both treat as final.

The main rows, one or two per attack, run `--seeds` seeds (default 50: about 15 minutes on 2 cores).
The extra rows (other depths, latencies and sizes, the honest control: issue 12's other figures) run
only when `--extra-seeds N` is given, N seeds each (at most `--seeds`).  `--quick`: 3 seeds, main rows.
Seeds run in `--jobs` processes; every run is deterministic given its seed.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time

from scipy.stats import binom, binomtest

from consensus import adversaries
from consensus.adversaries import SCENARIOS, Result, Scenario


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_one(task: tuple[int, int]) -> tuple[int, int, Result, float]:
    row, seed = task
    sc = SCENARIOS[row]
    t0 = time.perf_counter()
    r = sc.run(seed, **sc.params)
    return row, seed, r, time.perf_counter() - t0


def pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.01 or x == 0 else f"{100 * x:.1f}%"


def luck(results: list[Result]) -> str:
    """What a fair lottery gives by chance.  For a row judged by share (above `factor` times fair): the
    expected count of seeds above it.  For every row: the attacker's blocks pooled over the seeds and
    their one-sided binomial p-value at the fair share."""
    p = results[0].fair_share
    n = sum(r.blocks for r in results)
    if not p or not n:
        return "-"
    k = sum(r.attacker_blocks for r in results)
    pooled = f"pooled {k}/{n}, p = {binomtest(k, n, p, alternative='greater').pvalue:.2g}"
    factor = results[0].detail.get("share_factor")
    if factor is None:
        return pooled
    # a seed succeeds with more than factor * p * blocks blocks; the 1e-9 keeps an exact product exact
    expected = sum(binom.sf(math.floor(factor * p * r.blocks + 1e-9), r.blocks, p) for r in results if r.blocks)
    return f"{expected:.1f}; {pooled}"


def summarise(sc: Scenario, results: list[Result], wall: float) -> str:
    n = len(results)
    won = sum(r.succeeded for r in results)
    acted = sum(r.attempted for r in results)
    share = statistics.mean(r.attacker_share for r in results)
    sent = sum(r.commits_sent for r in results)
    lost = sum(r.commits_lost for r in results)
    worst = max(r.worst_solver_loss for r in results)
    reverts = [r.deepest_revert for r in results]
    splits = sum(r.split for r in results)
    return (f"| {sc.label} | {sc.nodes} | {n} | **{won}/{n}** ({acted} acted) | {pct(share)} / {pct(results[0].fair_share)} "
            f"| {luck(results)} | {lost}/{sent} ({pct(lost / sent if sent else 0)}); worst solver {pct(worst)} "
            f"| {max(reverts)} ({statistics.median(reverts):g}) | {splits}/{n} | {wall:.0f} | {sc.issue} |")


def notes(results: list[Result]) -> str:
    """What a row's table cells leave out: the slashing of a double-spender, a grinder's tries."""
    out = []
    if any("slashed" in r.detail for r in results):
        out.append(f"attacker slashed in {sum(bool(r.detail.get('slashed')) for r in results)} of {len(results)} seeds")
    tries = [t for r in results for t in r.detail.get("tries", [])]
    if tries:
        failed = sum(r.detail.get("grind_failed", 0) for r in results)
        out.append(f"{len(tries)} successful grinds, tries median {statistics.median(tries):g} (range {min(tries)}-"
                   f"{max(tries)}), {failed} grinds gave up")
    streaks = [r.detail["final_streak"] for r in results if "final_streak" in r.detail]
    if streaks:
        out.append(f"the attacker won the last {max(streaks)} blocks in a row at most; all of the last 10 in "
                   f"{sum(s >= 10 for s in streaks)} seeds")
    return "; ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=50, help="seeds per row (default 50)")
    ap.add_argument("--extra-seeds", type=int, default=0, help="seeds for the extra rows (default 0: not run)")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    ap.add_argument("--only", default="", help="run the rows whose label contains this text")
    ap.add_argument("--quick", action="store_true", help="3 seeds, the main rows only: a smoke run")
    ap.add_argument("--details", action="store_true", help="print each seed's verdict too")
    ap.add_argument("--committee", type=int, default=0,
                    help="expected proposer committee per height (default: the genesis default, every node here)")
    ap.add_argument("--mesh", type=int, default=0, help="gossip over a sparse mesh of about this many peers per node")
    args = ap.parse_args()
    if args.committee:
        adversaries.SIM_OVERRIDES["committee"] = args.committee
    if args.mesh:
        adversaries.SIM_OVERRIDES["mesh"] = args.mesh
    seeds = 3 if args.quick else args.seeds
    extra = 0 if args.quick else min(seeds, args.extra_seeds)
    plan = {i: (extra if sc.extra else seeds) for i, sc in enumerate(SCENARIOS) if args.only in sc.label}
    rows = [i for i, n in plan.items() if n > 0]
    tasks = [(i, args.first_seed + k) for k in range(max(plan.values(), default=0)) for i in rows if k < plan[i]]
    print(f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}; "
          f"simulator overrides {adversaries.SIM_OVERRIDES or 'none'}; seeds {args.first_seed}..{args.first_seed + seeds - 1} (extra rows: {f'the first {extra}' if extra else 'not run'}), "
          f"{args.jobs} processes")
    started = time.perf_counter()
    got: dict[int, list[Result]] = {i: [] for i in rows}
    walls: dict[int, float] = {i: 0.0 for i in rows}
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        for done, (row, seed, r, wall) in enumerate(pool.imap_unordered(run_one, tasks), 1):
            got[row].append(r)
            walls[row] += wall
            say(f"{done}/{len(tasks)} {SCENARIOS[row].label} seed {seed}: {'SUCCESS' if r.succeeded else 'failed'} "
                f"({r.why}) {wall:.1f} s")
    print()
    print("| attack | nodes | seeds | success (acted) | attacker share / fair | luck: expected successes; pooled share "
          "| honest commits lost | deepest honest revert (median) | permanent splits | CPU-wall s | issue 12 said |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|")
    for i in rows:
        results = sorted(got[i], key=lambda r: r.seed)
        print(summarise(SCENARIOS[i], results, walls[i]))
    print()
    for i in rows:
        note = notes(got[i])
        if note:
            print(f"- {SCENARIOS[i].label}: {note}")
    if args.details:
        print()
        for i in rows:
            for r in sorted(got[i], key=lambda r: r.seed):
                print(f"{SCENARIOS[i].label} seed {r.seed}: {'SUCCESS' if r.succeeded else 'failed'}: {r.why}; "
                      f"share {r.attacker_blocks}/{r.blocks}, commits lost {r.commits_lost}/{r.commits_sent}, "
                      f"deepest revert {r.deepest_revert}, split {r.split}")
    print()
    print(f"total {time.perf_counter() - started:.0f} s wall ('CPU-wall s': the row's runs added up, in their processes)")


if __name__ == "__main__":
    main()
