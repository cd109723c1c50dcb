"""Finality benchmark: how long until a block is final on every node, and what 1/3 of the voters offline does.

    python bench/finality.py [--rounds 30] [--seeds 3] [--nodes 7]

Runs the simulator (consensus/sim.py: real engines, stores and BLS votes, a virtual clock, 2-second
slots; nodes forward the proposals and votes they accept, as gossipsub does, so a lost message is
lost on one link, not to the node) and samples every node's final checkpoint every 50 ms of simulated time.  A block's finality
latency is the time from its slot's start until every node holds it final, in seconds and in blocks
(how far the slowest node's head had moved past it by then).

Table 1: latency 50-500 ms, message loss 0, 10 and 30%.  Table 2: with nodes holding 1/3 of the
deposit offline for a stretch of rounds (and then 1/3 + 1 node): blocks made and final checkpoint
advance while they are away, and how long after their return finality catches up.
"""

from __future__ import annotations

import argparse
import statistics
import time

from consensus.sim import SimConfig, Simulation

STEP_MS = 50


def latency_run(nodes: int, seed: int, rounds: int, latency: tuple[int, int], loss: float) -> tuple[list, list, int]:
    """(seconds, blocks) per block final on every node, and the blocks made."""
    sim = Simulation(SimConfig(nodes=nodes, seed=seed, latency_ms=latency, loss=loss, relay=True))
    try:
        g = sim.genesis
        warm = 6  # vote keys land, the voter set starts
        sim.run_rounds(warm)
        first = max(e.chain.height for e in sim.engines) + 1
        end = g.slot_start_ms(first + rounds)
        done: dict[int, tuple[int, int]] = {}
        while sim.now < end:
            sim.run_until(sim.now + STEP_MS)
            final = min(e.final_height() for e in sim.engines)
            head = min(e.chain.height for e in sim.engines)
            for h in range(first, final + 1):
                done.setdefault(h, (sim.now, head))
        secs = [(t - g.slot_start_ms(h)) / 1000 for h, (t, _) in done.items()]
        blocks = [head - h for h, (_, head) in done.items()]
        made = min(e.chain.height for e in sim.engines) - first + 1
        return secs, blocks, made
    finally:
        sim.close()


def offline_run(nodes: int, seed: int, away: int, rounds: int) -> dict:
    """`away` nodes offline for `rounds` rounds, then back."""
    sim = Simulation(SimConfig(nodes=nodes, seed=seed, latency_ms=(50, 500)))
    try:
        sim.run_rounds(6)
        live = list(range(away, nodes))
        h0 = sim.engines[live[0]].chain.height
        f0 = sim.engines[live[0]].final_height()
        for i in range(away):
            sim.online[i] = False
        for _ in range(rounds):
            sim.run_rounds(1)
        e = sim.engines[live[0]]
        made, advanced = e.chain.height - h0, e.final_height() - f0
        back_at = e.chain.height
        for i in range(away):
            sim.online[i] = True
        n = 0
        while n < 20 and min(x.final_height() for x in sim.engines[away:]) <= back_at:
            sim.run_rounds(1)
            n += 1
        return {"made": made, "advanced": advanced, "resumed_after": n if n < 20 else None}
    finally:
        sim.close()


def q(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=7)
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"{args.nodes} nodes, 2 s slots, {args.rounds} rounds x {args.seeds} seeds per row\n")
    print("| latency ms | loss | blocks made | final on every node | latency s median (p90) | blocks median (p90) |")
    print("|---|---:|---:|---:|---:|---:|")
    for loss in (0.0, 0.1, 0.3):
        secs, blocks, made = [], [], 0
        for seed in range(1, args.seeds + 1):
            s, b, m = latency_run(args.nodes, seed, args.rounds, (50, 500), loss)
            secs += s
            blocks += b
            made += m
        if not secs:
            print(f"| 50-500 | {loss:.0%} | {made} | 0 | - | - |")
            continue
        print(f"| 50-500 | {loss:.0%} | {made} | {len(secs)} | {statistics.median(secs):.2f} ({q(secs, 0.9):.2f}) "
              f"| {statistics.median(blocks):g} ({q(blocks, 0.9):g}) |")
    print()
    third = args.nodes // 3
    print("| offline (of equal deposits) | rounds away | blocks made while away | final checkpoint advance while away "
          "| rounds after return until final again |")
    print("|---|---:|---:|---:|---:|")
    for away in (third, third + 1):
        for seed in range(1, args.seeds + 1):
            r = offline_run(args.nodes, seed, away, 10)
            print(f"| {away} of {args.nodes} (seed {seed}) | 10 | {r['made']} | {r['advanced']} | "
                  f"{r['resumed_after'] if r['resumed_after'] is not None else 'not in 20'} |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
