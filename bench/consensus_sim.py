"""Consensus benchmark: the simulator's speed, gossip per block, and the energy a block costs.

    python bench/consensus_sim.py [--seed 1] [--quick]

1. Rounds per second: N in-process nodes (each with its own LevelDB store, chain and consensus
   engine) over the simulated network (5-50 ms latency), households bidding every slot; wall-clock
   seconds per simulated round, and messages delivered per block.
2. Work per block: every registered solver solves the slot and every node verifies the winning
   clearing; CPU-seconds per block for the whole network from measured solve and verify times,
   against a proof-of-work chain's energy per block.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time


from consensus.sim import SimConfig, Simulation
from solver import clear, verify
from solver.generator import generate

# Bitcoin, for comparison: the Cambridge Bitcoin Electricity Consumption Index (CBECI) put the
# network's annualised consumption at roughly 150-170 TWh in 2024; with 144 blocks a day (52,560 a
# year) that is about 3 GWh per block.  Order of magnitude only: the index is an estimate.
BITCOIN_TWH_PER_YEAR = 160
BITCOIN_BLOCKS_PER_YEAR = 52_560
CORE_WATTS = 15  # one busy desktop-class core; a Raspberry Pi 4 uses ~6 W for all four


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def simulate(nodes: int, rounds: int, seed: int) -> dict:
    say(f"simulating {nodes} nodes for {rounds} rounds")
    t0 = time.perf_counter()
    sim = Simulation(SimConfig(nodes=nodes, seed=seed, households=8))
    setup = time.perf_counter() - t0
    try:
        sim.run_rounds(2)  # warm-up: first solves, first commits
        h0, m0, t1 = sim.engines[0].chain.height, sim.messages, time.perf_counter()
        sim.run_rounds(rounds)
        wall = time.perf_counter() - t1
        blocks = sim.engines[0].chain.height - h0
        return dict(nodes=nodes, rounds=blocks, setup=setup, wall=wall, per_round=wall / blocks,
                    messages=(sim.messages - m0) / blocks, converged=sim.converged())
    finally:
        sim.close()


def work_per_block(participants: int, seed: int) -> dict:
    inst = generate(participants, seed)
    say(f"solving a {participants}-participant slot")
    t0 = time.process_time()
    res = clear(inst)
    solve = time.process_time() - t0
    t1 = time.process_time()
    for _ in range(3):
        verify(inst, res.clearing)
    check = (time.process_time() - t1) / 3
    return dict(participants=participants, solve=solve, verify=check)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="10 and 50 nodes, fewer rounds")
    args = ap.parse_args()
    plan = [(10, 10), (50, 3)] if args.quick else [(10, 30), (50, 8), (200, 2)]
    started = time.perf_counter()
    print(f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}; seed {args.seed}")
    print()
    rows = [simulate(n, r, args.seed) for n, r in plan]
    print("| nodes | rounds | setup s | wall s per round | simulated s per wall s | messages per block | agree |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['nodes']} | {r['rounds']} | {r['setup']:.1f} | {r['per_round']:.2f} | {2 / r['per_round']:.2f} "
              f"| {r['messages']:,.0f} | {'yes' if r['converged'] else 'no'} |")
    print()
    work = [work_per_block(p, args.seed) for p in (200, 1_000)]
    btc_j = BITCOIN_TWH_PER_YEAR * 1e12 * 3600 / BITCOIN_BLOCKS_PER_YEAR
    print(f"Work per block: every solver solves, every node verifies; at {CORE_WATTS} W per busy core. "
          f"Bitcoin for comparison: ~{btc_j / 3.6e9:,.0f} MWh ({btc_j:.1e} J) per block "
          f"({BITCOIN_TWH_PER_YEAR} TWh/year, CBECI 2024, / {BITCOIN_BLOCKS_PER_YEAR:,} blocks).")
    print()
    print("| participants | solve CPU s | verify CPU s | nodes (all solving) | network CPU s per block "
          "| energy per block | Bitcoin / TransX |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for w in work:
        for n in (10, 200, 10_000):
            cpu = n * (w["solve"] + w["verify"])
            joules = cpu * CORE_WATTS
            print(f"| {w['participants']:,} | {w['solve']:.2f} | {w['verify']:.4f} | {n:,} | {cpu:,.1f} "
                  f"| {joules / 3600:.3g} Wh | {btc_j / joules:,.1e} |")
    print()
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
