"""Soak benchmark: does a node's memory stay flat over thousands of blocks (issue 20)?

    python bench/soak.py [--mode node|sim] [--blocks 2000] [--every 250] [--nodes 1] [--homes 20]
                         [--slot-seconds 1] [--seed 1] [--warmup 500]

`node` (default): a real devnet (`transx.client.devnet.Devnet`, what `transx devnet` runs): `--nodes`
`transx node` processes on 127.0.0.1, every one a genesis solver, and `--homes` simulated households
run by the home agent that bid every slot, send their meter readings after each slot they traded in,
and so load the nodes with bids, readings, settlements and clearings, for `--blocks` blocks.  Every
`--every` blocks, for each node process (from /proc/PID): its resident memory (VmRSS), open file
descriptors (/proc/PID/fd), CPU time (utime + stime), and its LevelDB directory's size on disk
(`chain/`, the files' apparent sizes) and mempool journal, and from its /metrics LevelDB's own memory
(`transx_store_memory_bytes`: block cache and memtables, part of the anonymous RSS); one table row per
sample.

`sim`: the consensus simulator (`consensus.sim.Simulation`, `--nodes` nodes in this process, each
with its own LevelDB store), for `--blocks` blocks; Python's heap (tracemalloc, traced current bytes,
started after the first row so it slows only what it measures), this process's RSS, and the entries
held by the engines' and chains' per-block structures.  The simulator's own memo of solutions is
replaced by a bounded one (an unbounded memo would be the harness's growth, not a node's).

The summary: RSS growth per 1,000 blocks after `--warmup` blocks (a least-squares line through the
rows from there), file descriptors' range, disk bytes per block.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agent.home import random_home
from consensus.chain.store import LRU_CACHE, WRITE_BUFFER
from consensus.engine import Engine
from consensus.proposer import solve_slot
from consensus.rules import verified
from consensus.sim import SimConfig, Simulation
from transxnode.client.devnet import Devnet, interrupt_all
from transxnode.heap import TRIM_EVERY

TICK = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ /proc
def rss_mb(pid: int | str = "self") -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_split_mb(pid: int | str = "self") -> tuple[float, float]:
    """(RssAnon, RssFile): memory of its own (heaps, arenas) and file pages mapped (libraries, and the
    LevelDB tables it maps to read them: clean pages, which the kernel takes back under pressure)."""
    got = {}
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(("RssAnon", "RssFile")):
            got[line.split(":")[0]] = int(line.split()[1]) / 1024
    return got.get("RssAnon", float("nan")), got.get("RssFile", float("nan"))


def fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int | str = "self") -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def dir_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:  # LevelDB removed it meanwhile (a compaction)
            pass
    return total


def slope_per_1000(rows: list[dict], key: str, warmup: int) -> float | None:
    """Least-squares growth of `key` per 1,000 blocks over the rows at or after `warmup` blocks."""
    pts = [(r["blocks"], r[key]) for r in rows if r["blocks"] >= warmup]
    if len(pts) < 2:
        return None
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return 1000 * sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


# ------------------------------------------------------------------ node
def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def store_memory_mb(api: str) -> float:
    """The node's `transx_store_memory_bytes` (LevelDB's block cache and memtables), from its /metrics."""
    with urllib.request.urlopen(api + "/metrics", timeout=30) as r:
        for fam in text_string_to_metric_families(r.read().decode()):
            if fam.name == "transx_store_memory_bytes":
                return fam.samples[0].value / 1e6
    return float("nan")


def soak_node(args) -> list[dict]:
    base = Path(tempfile.mkdtemp(prefix="transx-soak-"))
    net = Devnet(base / "devnet", nodes=args.nodes, homes=args.homes, slot_seconds=args.slot_seconds, seed=args.seed,
                 say=lambda s: None, agents=random_home)
    rows: list[dict] = []
    try:
        net.create()
        net.start()
        say(f"{args.nodes} node(s) up in {base}; {args.homes} households bid every {args.slot_seconds}-s slot")
        first = get_json(net.nodes[0].api + "/api/node")["height"]
        done = threading.Event()
        failed: list[BaseException] = []

        def drive() -> None:
            try:
                net.run(slots=args.blocks + 2 * args.every)  # stopped by `done` long before
            except BaseException as e:  # noqa: BLE001 - reported below
                if not done.is_set():
                    failed.append(e)

        threading.Thread(target=drive, daemon=True).start()
        t0 = time.monotonic()
        cpu0 = [cpu_seconds(n.proc.pid) for n in net.nodes]
        last_cpu, last_t = list(cpu0), t0
        target = 0
        while target <= args.blocks:
            if failed:
                raise failed[0]
            height = get_json(net.nodes[0].api + "/api/node")["height"]
            if height - first < target:
                time.sleep(0.5)
                continue
            now = time.monotonic()
            procs = [n.proc.pid for n in net.nodes]
            cpus = [cpu_seconds(p) for p in procs]
            info = get_json(net.nodes[0].api + "/api/node")
            row = {
                "blocks": height - first, "minutes": (now - t0) / 60,
                "rss": [rss_mb(p) for p in procs], "fds": [fds(p) for p in procs],
                "anon": [rss_split_mb(p)[0] for p in procs], "file": [rss_split_mb(p)[1] for p in procs],
                "chain_mb": [dir_bytes(n.datadir / "chain") / 1e6 for n in net.nodes],
                "journal_kb": [(n.datadir / "mempool.journal").stat().st_size / 1e3
                               if (n.datadir / "mempool.journal").exists() else 0.0 for n in net.nodes],
                "cpu": [(c - lc) / max(1e-9, now - last_t) for c, lc in zip(cpus, last_cpu)],
                "mempool": info["mempool"],
                "leveldb": [store_memory_mb(n.api) for n in net.nodes],
                "final": info["finalized"]["height"] - first,  # undo records at or below it are pruned
            }
            row["rss_mean"] = sum(row["rss"]) / len(procs)
            row["anon_mean"] = sum(row["anon"]) / len(procs)
            row["file_mean"] = sum(row["file"]) / len(procs)
            row["chain_mean"] = sum(row["chain_mb"]) / len(procs)
            row["leveldb_mean"] = sum(row["leveldb"]) / len(procs)
            rows.append(row)
            say(f"block {row['blocks']}: RSS {', '.join(f'{x:.1f}' for x in row['rss'])} MB, fds {row['fds']}, "
                f"chain {row['chain_mean']:.2f} MB")
            last_cpu, last_t = cpus, now
            target += args.every
        done.set()
    finally:
        net.stop()
        interrupt_all([n.proc for n in net.nodes if n.proc is not None])
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return rows


def print_node_table(rows: list[dict], args) -> None:
    print(f"\nSoak: {args.nodes} real node(s), {args.homes} households, {args.slot_seconds}-s slots, "
          f"{rows[-1]['blocks']:,} blocks in {rows[-1]['minutes']:.0f} min; {platform.machine()}, "
          f"Python {platform.python_version()}, {os.cpu_count()} cores shared with other work\n")
    many = args.nodes > 1
    rss_h = "RSS MB, mean (max)" if many else "RSS MB"
    print(f"| blocks | final | minutes | {rss_h} | of which anonymous / file-mapped MB | of the anonymous, LevelDB's "
          f"(block cache, memtables) MB | RSS change since the last row, "
          f"MB per 1,000 blocks | open fds "
          f"| chain/ on disk MB{' (mean)' if many else ''} | disk bytes per block since the last row "
          f"| mempool (node 1) | mempool journal kB | CPU, cores |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    prev = None
    for r in rows:
        rss = f"{r['rss_mean']:.1f}" + (f" ({max(r['rss']):.1f})" if many else "")
        split = f"{r['anon_mean']:.1f} / {r['file_mean']:.1f}"
        if prev is not None and r["blocks"] > prev["blocks"]:
            d = r["blocks"] - prev["blocks"]
            drss = f"{1000 * (r['rss_mean'] - prev['rss_mean']) / d:+.2f}"
            disk = f"{1e6 * (r['chain_mean'] - prev['chain_mean']) / d:,.0f}"
        else:
            drss = disk = "-"
        f = sorted(set(r["fds"]))
        print(f"| {r['blocks']:,} | {r.get('final', 0):,} | {r['minutes']:.1f} | {rss} | {split} | {r['leveldb_mean']:.1f} | {drss} | {'-'.join(map(str, (f[0], f[-1]))) if many else f[0]} "
              f"| {r['chain_mean']:.2f} | {disk} | {r['mempool']} | {max(r['journal_kb']):.1f} | "
              f"{sum(r['cpu']) / len(r['cpu']):.2f} |")
        prev = r
    summary(rows, args, "rss_mean")
    s = slope_per_1000(rows, "anon_mean", args.warmup)
    if s is not None:
        print(f"anonymous RSS (heaps, not file pages) after {args.warmup:,} blocks: {s:+.2f} MB per 1,000 blocks")
        lv = slope_per_1000(rows, "leveldb_mean", args.warmup)
        if lv is not None:
            print(f"of which LevelDB's block cache and memtables: {lv:+.2f} MB per 1,000 blocks (bounded: "
                  f"{LRU_CACHE / 2**20:.0f} MiB cache, {WRITE_BUFFER / 2**20:.0f} MiB memtable, two while one is written)")
    allf = [x for r in rows for x in r["fds"]]
    after = [r for r in rows if r["blocks"] >= args.warmup] or rows
    fd_after = [x for r in after for x in r["fds"]]
    print(f"open file descriptors: {min(allf)}-{max(allf)} over the run, {min(fd_after)}-{max(fd_after)} "
          f"after {args.warmup:,} blocks")
    if len(rows) >= 2:
        span = rows[-1]["blocks"] - rows[0]["blocks"]
        print(f"chain/ on disk: {rows[0]['chain_mean']:.2f} -> {rows[-1]['chain_mean']:.2f} MB, "
              f"{1e6 * (rows[-1]['chain_mean'] - rows[0]['chain_mean']) / max(1, span):,.0f} bytes per block")


def summary(rows: list[dict], args, key: str) -> None:
    s = slope_per_1000(rows, key, args.warmup)
    if s is None:
        print(f"\nRSS growth after {args.warmup:,} blocks: too few rows to say")
    else:
        print(f"\nRSS growth after {args.warmup:,} blocks (least squares over the rows from there): "
              f"{s:+.2f} MB per 1,000 blocks")


# ------------------------------------------------------------------- sim
def structures(sim: Simulation) -> int:
    """Entries in the per-block structures of every engine, chain and vote book (see tests/unit/test_bounds.py)."""
    total = 0
    for e in sim.engines:
        b = e.book
        total += sum(map(len, (e.solutions, e.committed, e.proposed_on, e.seen, e.arrived, e.wanted, e.side,
                               e.orphans, e.future, b.parents, b.justified, b.latest, e.node.mempool.by_hash)))
    return total


def soak_sim(args) -> list[dict]:
    memo: dict = {}

    def solve(market, pairs, g):  # the simulator's memo, bounded: identical instances solved once
        key = json.dumps(market.instance.to_json(), sort_keys=True)
        if key not in memo:
            if len(memo) >= 64:
                del memo[next(iter(memo))]
            memo[key] = solve_slot(market, pairs, g)
        return memo[key]

    sim = Simulation(SimConfig(nodes=args.nodes, seed=args.seed, slot_seconds=args.slot_seconds, households=args.homes,
                               finality_depth=args.finality_depth, genesis_keys=True),
                     engine_for=lambda i, node, s: Engine(node, solve=solve, decode=s.decode))
    rows: list[dict] = []
    t0, cpu0 = time.monotonic(), time.process_time()
    try:
        done = 0
        while done <= args.blocks:
            left = args.every if done else 0
            while left > 0:  # as the daemon: the checked signatures forgotten every TRIM_EVERY blocks
                sim.run_rounds(min(TRIM_EVERY, left))
                left -= min(TRIM_EVERY, left)
                verified.forget()
            h = sim.engines[0].chain.height
            row = {"blocks": h, "minutes": (time.monotonic() - t0) / 60, "rss": rss_mb(), "fds": fds(),
                   "heap": tracemalloc.get_traced_memory()[0] / 1e6 if tracemalloc.is_tracing() else float("nan"),
                   "entries": structures(sim), "chain_mb": sum(dir_bytes(Path(s.path)) for s in sim.stores) / 1e6 / args.nodes,
                   "cpu": time.process_time() - cpu0, "converged": sim.converged()}
            rows.append(row)
            say(f"block {h}: RSS {row['rss']:.1f} MB, heap {row['heap']:.2f} MB, entries {row['entries']}")
            if not tracemalloc.is_tracing():
                tracemalloc.start()  # after the first row: the heap column is what was allocated since
            done += args.every
    finally:
        sim.close()
    return rows


def print_sim_table(rows: list[dict], args) -> None:
    print(f"\nSoak (simulator): {args.nodes} nodes in one process, {args.homes} households, finality depth "
          f"{args.finality_depth}, {rows[-1]['blocks']:,} blocks; Python {platform.python_version()}\n")
    print("| blocks | minutes | process RSS MB | Python heap MB allocated since the first row (tracemalloc) | heap change per 1,000 "
          "blocks since the last row, MB | entries in per-block structures | open fds | chain/ per node MB | converged |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    prev = None
    for r in rows:
        dh = "-"
        if prev is not None and prev["heap"] == prev["heap"] and r["blocks"] > prev["blocks"]:
            dh = f"{1000 * (r['heap'] - prev['heap']) / (r['blocks'] - prev['blocks']):+.3f}"
        heap = "-" if r["heap"] != r["heap"] else f"{r['heap']:.2f}"
        print(f"| {r['blocks']:,} | {r['minutes']:.1f} | {r['rss']:.1f} | {heap} | {dh} | {r['entries']} | {r['fds']} "
              f"| {r['chain_mb']:.2f} | {'yes' if r['converged'] else 'no'} |")
        prev = r
    summary(rows, args, "rss")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("node", "sim"), default="node")
    ap.add_argument("--blocks", type=int, default=2000)
    ap.add_argument("--every", type=int, default=250, help="a table row every this many blocks")
    ap.add_argument("--warmup", type=int, default=500, help="blocks before the growth is measured")
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--homes", type=int, default=20)
    ap.add_argument("--slot-seconds", type=int, default=1)
    ap.add_argument("--finality-depth", type=int, default=8, help="(sim) the genesis' finality depth")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="(node) keep the devnet's directory")
    args = ap.parse_args()
    say(f"soak: {args.mode}, {args.blocks} blocks, a row every {args.every}")
    if args.mode == "node":
        print_node_table(soak_node(args), args)
    else:
        print_sim_table(soak_sim(args), args)


if __name__ == "__main__":
    main()
