"""Consensus at scale: what each node receives per block as the network grows, with committees and
gossip over a sparse mesh (issue 13).

    python bench/consensus_scale.py [--nodes 10,30,100] [--rounds 6] [--mesh 8] [--committee 16] [--seed 1]
                                    [--latency 50,500] [--loss 0.05] [--slot-seconds 10] [--tick-ms 500]

Each row is one simulator run (consensus/sim.py): N full nodes, every one a registered solver with a
vote key, each talking to about `--mesh` peers, every message relayed by gossip (a node forwards a
proposal only when it ranks above the best it has seen for the height); committees of expected size
`--committee` propose; at most 256 voting seats.  After the warm-up (keys registered, the voter set
in force, committees drawn), `--rounds` blocks are measured:

- messages and kB received per node per block (mean over nodes, and the most any node received);
- consensus transactions per block (commits, reveals, keys, evidence; mean and max);
- finality: slots from a block's slot start until every node holds it final (median, worst);
- the blocks' distinct proposers, and all nodes on one head at the end;
- wall-clock seconds per simulated slot, and CPU ms per node per block (the simulator's speed).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from consensus.rules import committee, keys
from consensus.rules.transactions import CONSENSUS
from consensus.sim import SimConfig, Simulation


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(nodes: int, rounds: int, mesh: int, k: int, seed: int, latency: tuple[int, int], loss: float,
        slot_seconds: int, tick_ms: int = 500) -> dict:
    say(f"{nodes} nodes, mesh {mesh}, committee {k}: warming up")
    t0 = time.perf_counter()
    # The solvers of an established town registered their vote keys long ago: here in the genesis file,
    # so the voter set and the committees are in force from block 1 (no start-up round in which every
    # solver commits and registers, which costs N^2 in one simulator process).
    sim = Simulation(SimConfig(nodes=nodes, seed=seed, mesh=mesh, committee=k, households=8, latency_ms=latency,
                               loss=loss, tick_ms=tick_ms, slot_seconds=slot_seconds, genesis_keys=True))
    try:
        e0 = sim.engines[0]
        say(f"{nodes} nodes: set up in {time.perf_counter() - t0:.0f} s")
        for _ in range(60):  # until committees draw the next heights (from block 1, with keys at genesis)
            sim.run_rounds(1)
            say(f"{nodes} nodes: height {e0.chain.height}, {time.perf_counter() - t0:.0f} s")
            if committee.started(e0.chain.state(), e0.chain.height + 1):
                break
        sim.run_rounds(2)
        setup = time.perf_counter() - t0
        say(f"{nodes} nodes: warm at height {e0.chain.height} after {setup:.0f} s; measuring {rounds} blocks")
        h0 = e0.chain.height
        got0, bytes0, cpu0 = list(sim.received), list(sim.received_bytes), list(sim.cpu)
        finals: dict[int, int] = {}  # height -> when every node first held it final
        t1 = time.perf_counter()
        g = sim.genesis
        end = h0 + rounds
        while sim.now < g.slot_start_ms(end + 12):
            sim.run_until(sim.now + 250)
            low = min(e.final_height() for e in sim.engines)
            for h in range(h0 + 1, min(low, end) + 1):
                finals.setdefault(h, sim.now)
            if len(finals) == rounds and min(e.chain.height for e in sim.engines) >= end:
                break
        wall = time.perf_counter() - t1
        slots = (sim.now - g.slot_start_ms(h0 + 1)) / 1000 / g.slot_seconds
        blocks = [e0.chain.block_at(h) for h in range(h0 + 1, end + 1)]
        ctx = [sum(1 for t in b.txs if t.space == CONSENSUS) for b in blocks]
        got = [(a - b) / rounds for a, b in zip(sim.received, got0)]
        kb = [(a - b) / rounds / 1000 for a, b in zip(sim.received_bytes, bytes0)]
        cpu = [(a - b) / rounds * 1000 for a, b in zip(sim.cpu, cpu0)]
        lat = [(finals[h] - g.slot_start_ms(h)) / 1000 / g.slot_seconds for h in sorted(finals)]
        return dict(nodes=nodes, mesh=mesh, k=k, setup=setup, msgs=statistics.mean(got), msgs_max=max(got),
                    kb=statistics.mean(kb), kb_max=max(kb), ctx=statistics.mean(ctx), ctx_max=max(ctx),
                    final_median=statistics.median(lat) if lat else None, final_worst=max(lat) if lat else None,
                    final_count=len(lat), rounds=rounds,
                    proposers=len({keys.address_of(b.header.proposer) for b in blocks}),
                    agree=len({e.chain.hash_at(end) for e in sim.engines}) == 1,
                    wall_per_slot=wall / slots, cpu_ms=statistics.mean(cpu))
    finally:
        sim.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="10,30,100")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--mesh", type=int, default=8)
    ap.add_argument("--committee", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--latency", default="50,500", help="min,max one-hop latency in ms")
    ap.add_argument("--loss", type=float, default=0.05)
    ap.add_argument("--slot-seconds", type=int, default=10)
    ap.add_argument("--tick-ms", type=int, default=500, help="how often each node's engine looks at its clock")
    args = ap.parse_args()
    lo, hi = (int(x) for x in args.latency.split(","))
    print(f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}; seed {args.seed}; "
          f"one-hop latency {lo}-{hi} ms, loss {args.loss:.0%}, {args.slot_seconds}-second slots")
    print()
    print("| nodes | mesh | committee | msgs / node / block (max) | kB / node / block (max) | consensus txs / block "
          "(max) | final after, slots: median (worst) | proposers / blocks | agree | wall s / slot | CPU ms / node / block |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for n in (int(x) for x in args.nodes.split(",")):
        r = run(n, args.rounds, args.mesh, args.committee, args.seed, (lo, hi), args.loss, args.slot_seconds, args.tick_ms)
        fin = (f"{r['final_median']:.1f} ({r['final_worst']:.1f})" if r["final_median"] is not None else "none") + (
            f", {r['final_count']} of {r['rounds']}" if r["final_count"] < r["rounds"] else "")
        print(f"| {r['nodes']} | {r['mesh']} | {r['k']} | {r['msgs']:,.0f} ({r['msgs_max']:,.0f}) | "
              f"{r['kb']:,.0f} ({r['kb_max']:,.0f}) | {r['ctx']:.0f} ({r['ctx_max']}) | {fin} | "
              f"{r['proposers']} / {r['rounds']} | {'yes' if r['agree'] else 'NO'} | {r['wall_per_slot']:.1f} | "
              f"{r['cpu_ms']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
