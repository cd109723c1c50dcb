"""Network benchmark: real `transx node` processes on loopback, talking over libp2p.

    python bench/network.py [--nodes 1,5,10,20] [--quick] [--seed 1] [--probe journal|http]

For each network size a fresh `Devnet` (every node a genesis solver, each bootstrapped to all the
others, 2-second slots, blocks produced as usual while we measure), then:

1. Bid propagation latency.  Bids from fresh funded households are POSTed one at a time to node 1;
   each bid's time runs from just before its POST until the node has admitted it to its mempool,
   for every node; the figure per bid is the time until the LAST node has it.  How "has it" is seen
   (--probe): `journal` (default) tails every node's mempool journal (`<datadir>/mempool.journal`,
   one length-prefixed record appended and flushed per admitted transaction, on the node's own loop
   right after admission) from one thread in this process: no HTTP load on the nodes, resolution one
   scan of the files (measured and printed).  `http` polls GET /api/tx/<hash> on every node from one
   thread per node over keep-alive connections instead (resolution: the poll period, printed).
   A bid not everywhere within 5 s lets the next one go; the test sends no new bid after
   --latency-seconds.
2. Bids/s accepted per node.  A burst of pre-signed bids (many funded households, at most 16 nonces
   each, so gossip reordering never leaves a gap the mempool refuses) POSTed as fast as several
   client threads can to node 1, for at most --burst-seconds; the rate node 1 accepts them, and the
   rate at which they reach every other node's mempool (journal), until the last node has them all.
   A bid a block carried to a node before gossip did counts as arrived (checked over HTTP at the end).
3. Memory: RSS of every node process after start-up and after the burst (/proc/<pid>/status
   VmRSS), and the peak (VmHWM).
Also the CPU the nodes use idle (blocks only, no bids) and during the burst (/proc/<pid>/stat), and
the machine's load average: every node shares the machine's cores with the others (and with anything
else running there), so these say how much of the figures is the machine.  A 1-node "network" (the
default list starts with it) runs the burst only: the API's own ceiling, with no peers to gossip to.

Then the sync speed of a late joiner: a one-solver genesis whose clock started `--sync-blocks`
1-second slots ago; its chain is built in this process by the same consensus engine the node runs
(`Engine.tick`, ~300 blocks/s, faster than the node would mint the past slots itself), the solver node is started on it, and then a non-solver node
bootstrapped to it from genesis; we time until its height reaches the producer's.

`--quick`: 1 and 5 nodes and small counts: a smoke run of every part (about a minute).
Every process started here is stopped on the way out, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


from nacl.signing import SigningKey

from agent.home import random_home
from transxnode.client.devnet import PASSWORD, Devnet, free_ports, interrupt_all, transx_command
from consensus.rules.keys import address_of_key
from consensus.rules.transactions import BUY, SELL, Bid, sign_tx

SAME_SENDER = 16  # bids per household in the burst: the mempool's MAX_GAP, so no reordering strands one
FAR = 200  # the bids target a slot this far past the first open one: no block clears it during the run
GOALS = {"p99_ms": 100, "bids_per_s": 1_000, "sync_blocks": 10_000, "sync_s": 30}


@dataclass(frozen=True)
class Plan:
    nodes: tuple[int, ...]
    latency_bids: int
    burst: int  # bids signed for the burst: it stops when they are all sent or after burst_seconds
    burst_seconds: float
    latency_seconds: float  # the latency test sends no new bid after this long
    clients: int
    sync_blocks: int


FULL = Plan(nodes=(1, 5, 10, 20), latency_bids=200, burst=10_000, burst_seconds=20, latency_seconds=90, clients=4,
            sync_blocks=10_000)
QUICK = Plan(nodes=(1, 5), latency_bids=20, burst=1_000, burst_seconds=8, latency_seconds=30, clients=4,
             sync_blocks=500)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list; inf stays inf."""
    s = sorted(xs)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def ms(x: float, unit: str = "") -> str:
    """Seconds as milliseconds; "never" for a bid some node never showed."""
    return "never" if math.isinf(x) else f"{x * 1000:.1f}{unit}"


def seed_bytes(seed: int, label: str) -> bytes:
    return hashlib.blake2b(f"transx-netbench/{seed}/{label}".encode(), digest_size=32).digest()


# ------------------------------------------------------------------ processes
def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB (empty if it is gone)."""
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(("VmRSS", "VmHWM")):
                out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def foreign_nodes(ours: set[int]) -> int:
    """`transx node` processes on this machine that this benchmark did not start (they share the CPU)."""
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) not in ours:
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"node" in cmd and any(c.endswith(b"transx") for c in cmd):
                n += 1
    return n


class Http:
    """One keep-alive HTTP/1.1 connection to a node's API (urllib opens a new one per request)."""

    IDLE = 3.0  # hypercorn closes a connection idle for 5 s: reconnect before that rather than race it

    def __init__(self, url: str, timeout: float = 30) -> None:
        u = urlsplit(url)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.used = 0.0

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.conn is not None and time.monotonic() - self.used > self.IDLE:
            self.conn.close()
            self.conn = None
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body, {"Content-Type": "application/json"} if body else {})
                r = self.conn.getresponse()
                status, data = r.status, r.read()
                self.used = time.monotonic()
                if attempt and status == 422 and b"already in the mempool" in data:
                    status = 202  # the first attempt got through before the connection broke
                return status, data
            except (http.client.HTTPException, ConnectionError, TimeoutError, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str):
        status, data = self.call("GET", path)
        return status, (json.loads(data) if data else None)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


# --------------------------------------------------------------------- probes
_LEN = struct.Struct(">I")


class JournalWatch(threading.Thread):
    """Tails every node's mempool journal; notes when each tracked transaction first appears there.

    A node appends (and flushes) each transaction it admits, right after admission, on its own loop;
    it may replace the file with a compacted one (a new inode: read again from the start)."""

    def __init__(self, paths: list[Path], interval: float = 0.0005) -> None:
        super().__init__(daemon=True)
        self.paths, self.interval = paths, interval
        self.tracked: dict[bytes, int] = {}
        self.seen: list[dict[int, float]] = [{} for _ in paths]
        self.gaps = array("d")
        self.halt = threading.Event()

    def track(self, raw: bytes, key: int) -> None:
        self.tracked[raw] = key

    def has(self, node: int, key: int) -> bool:
        return key in self.seen[node]

    def run(self) -> None:
        files: list = [None] * len(self.paths)
        ino = [None] * len(self.paths)
        pos = [0] * len(self.paths)
        buf = [b""] * len(self.paths)
        last = time.perf_counter()
        while not self.halt.is_set():
            for j, path in enumerate(self.paths):
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if st.st_ino != ino[j] or st.st_size < pos[j]:
                    if files[j] is not None:
                        files[j].close()
                    files[j], ino[j], pos[j], buf[j] = open(path, "rb"), st.st_ino, 0, b""
                if st.st_size <= pos[j]:
                    continue
                files[j].seek(pos[j])
                data = files[j].read(st.st_size - pos[j])
                now = time.perf_counter()
                pos[j] += len(data)
                b, k = buf[j] + data, 0
                seen, tracked = self.seen[j], self.tracked
                while k + 4 <= len(b):
                    (n,) = _LEN.unpack_from(b, k)
                    if k + 4 + n > len(b):
                        break
                    key = tracked.get(b[k + 4:k + 4 + n])
                    if key is not None and key not in seen:
                        seen[key] = now
                    k += 4 + n
                buf[j] = b[k:]
            now = time.perf_counter()
            self.gaps.append(now - last)
            last = now
            time.sleep(self.interval)
        for f in files:
            if f is not None:
                f.close()

    def resolution(self, since: int = 0) -> tuple[float, float]:
        """Mean and p99 seconds between the starts of two scans (an arrival is seen within one)."""
        g = list(self.gaps[since:]) or [0.0]
        return statistics.fmean(g), pct(g, 99)


class HttpProbe:
    """One thread per node polling GET /api/tx/<hash> for the bid in flight (keep-alive)."""

    def __init__(self, apis: list[str], interval: float = 0.005) -> None:
        self.interval = interval
        self.current: tuple[int, str] | None = None
        self.seen: list[dict[int, float]] = [{} for _ in apis]
        self.rtts = array("d")
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._poll, args=(j, api), daemon=True) for j, api in enumerate(apis)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def has(self, node: int, key: int) -> bool:
        return key in self.seen[node]

    def _poll(self, j: int, api: str) -> None:
        h = Http(api, timeout=10)
        while not self.halt.is_set():
            cur = self.current
            if cur is None or cur[0] in self.seen[j]:
                time.sleep(self.interval)
                continue
            t0 = time.perf_counter()
            try:
                status, _ = h.call("GET", f"/api/tx/{cur[1]}")
            except Exception:
                time.sleep(self.interval)
                continue
            t1 = time.perf_counter()
            self.rtts.append(t1 - t0)
            if status == 200:
                self.seen[j][cur[0]] = t1
            else:
                time.sleep(self.interval)
        h.close()

    def stop(self) -> None:
        self.halt.set()
        for t in self.threads:
            t.join(5)


# -------------------------------------------------------------------- devnet
@dataclass
class NetResult:
    nodes: int
    start_s: float = 0.0
    peers_min: int = 0
    latency: dict = field(default_factory=dict)
    burst: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    cpu: dict = field(default_factory=dict)
    load: list = field(default_factory=list)  # 1-minute load average: when idle was measured, after the burst


def wait_mesh(net: Devnet, deadline: float) -> int:
    """Until every node is connected to all the others (or the deadline) and has a block; the fewest
    peers any node has."""
    clients = [Http(n.api, 10) for n in net.nodes]
    want = len(net.nodes) - 1
    try:
        while True:
            infos = [c.get("/api/node")[1] for c in clients]
            fewest = min(i["peers"] for i in infos)
            if (fewest >= want and min(i["height"] for i in infos) >= 1) or time.monotonic() > deadline:
                return fewest
            time.sleep(0.5)
    finally:
        for c in clients:
            c.close()


def bid_body(k: int, slot: int, gate: int, rng: random.Random) -> Bid:
    if k % 2:
        return Bid(SELL, slot, rng.randint(1_000, 10_000), rng.randint(175_000, 450_000), k % 3, slot - gate)
    return Bid(BUY, slot, rng.randint(1_000, 8_000), rng.randint(250_000, 570_000), k % 3, slot - gate)


def measure_latency(net: Devnet, homes: list, n_bids: int, probe_kind: str, watch: JournalWatch,
                    rng: random.Random, key_base: int, seconds: float = 1e9) -> dict:
    entry = Http(net.nodes[0].api)
    _, info = entry.get("/api/node")
    chain_id, gate = info["chain_id"], info["gate_closure"]
    slot = info["first_open_slot"] + FAR
    txs = [sign_tx(h.key, chain_id=chain_id, nonce=0, fee=1_000, body=bid_body(k, slot, gate, rng))
           for k, h in enumerate(homes[:n_bids])]
    n = len(net.nodes)
    if probe_kind == "http":
        probe = HttpProbe([x.api for x in net.nodes])
        probe.start()
    else:
        probe = watch
    gaps_from = len(watch.gaps)
    sent, acked, missing = [], [], 0
    timeout = 5.0
    stop_at = time.perf_counter() + seconds
    try:
        for i, tx in enumerate(txs):
            if time.perf_counter() > stop_at:
                break
            key = key_base + i
            watch.track(tx.encoded, key)
            if probe_kind == "http":
                probe.current = (key, tx.hash.hex())
            body = json.dumps({"raw": tx.encoded.hex()}).encode()
            wall, t0 = time.time(), time.perf_counter()
            status, data = entry.call("POST", "/api/tx", body)
            acked.append(time.perf_counter() - t0)
            if status != 202:
                raise RuntimeError(f"node 1 refused latency bid {i}: {status} {data[:200]!r}")
            sent.append((key, t0, (wall - info["genesis_time"]) % info["slot_seconds"]))
            end = t0 + timeout
            while not all(probe.has(j, key) for j in range(n)) and time.perf_counter() < end:
                time.sleep(0.0005)
            missing += not all(probe.has(j, key) for j in range(n))
            time.sleep(rng.uniform(0.02, 0.06))  # not in step with anything periodic in the nodes
    finally:
        if probe_kind == "http":
            probe.stop()
        entry.close()
    # Pairs (bid, node) still missing: did a block bring the bid there, or did it never arrive?
    by_block = never = 0
    for j, node in enumerate(net.nodes):
        gone = [(key, i) for i, (key, _, _) in enumerate(sent) if key not in probe.seen[j]]
        if gone:
            h = Http(node.api, 10)
            for _, i in gone:
                status, doc = h.get(f"/api/tx/{txs[i].hash.hex()}")
                by_block += status == 200 and doc.get("status") == "included"
                never += status != 200
            h.close()
    last, first_other, pairs, admit, slow = [], [], [], [], []
    for key, t0, phase in sent:
        times = [probe.seen[j].get(key, math.inf) - t0 for j in range(n)]
        admit.append(times[0])
        others = times[1:]
        last.append(max(others))
        slow.append((max(others), 2 + others.index(max(others)), phase))
        first_other.append(min(others))
        pairs += others
    if probe_kind == "http":
        rtt = list(probe.rtts) or [0.0]
        res = (statistics.fmean(rtt) + probe.interval, pct(rtt, 99) + probe.interval)
    else:
        res = watch.resolution(gaps_from)
    return dict(bids=len(sent), probe=probe_kind, resolution=res, missing=missing, by_block=by_block, never=never,
                ack=(pct(acked, 50), pct(acked, 99)), admit=(pct(admit, 50), pct(admit, 99)),
                first=(pct(first_other, 50), pct(first_other, 99)),
                pairs=(pct(pairs, 50), pct(pairs, 99)),
                last=(pct(last, 50), pct(last, 99), max(last)), slowest=sorted(slow, reverse=True)[:5])


def measure_burst(net: Devnet, homes: list, n_bids: int, clients: int, watch: JournalWatch,
                  rng: random.Random, seconds: float) -> dict:
    entry_api = net.nodes[0].api
    probe = Http(entry_api)
    _, info = probe.get("/api/node")
    probe.close()
    chain_id, gate = info["chain_id"], info["gate_closure"]
    slot = info["first_open_slot"] + FAR
    senders = homes[:math.ceil(n_bids / SAME_SENDER)]
    say(f"  burst: signing {n_bids:,} bids from {len(senders):,} households")
    t_sign = time.perf_counter()
    # Round-robin by nonce: a sender's consecutive bids are far apart in the stream.
    per_thread: list[list[tuple[int, bytes]]] = [[] for _ in range(clients)]
    key, hashes = 0, {}
    for nonce in range(SAME_SENDER):
        for s, h in enumerate(senders):
            if key >= n_bids:
                break
            tx = sign_tx(h.key, chain_id=chain_id, nonce=nonce, fee=1_000,
                         body=bid_body(s, slot + s % 5, gate, rng))
            watch.track(tx.encoded, key)
            hashes[key] = tx.hash.hex()
            per_thread[s % clients].append((key, json.dumps({"raw": tx.encoded.hex()}).encode()))
            key += 1
    t_sign = time.perf_counter() - t_sign
    accepted: list[int] = []
    refused: dict[str, int] = {}
    last_ack = [0.0] * clients
    lock = threading.Lock()
    go = threading.Event()

    def post(c: int) -> None:
        h = Http(entry_api)
        go.wait()
        ok, bad = [], {}
        try:
            for k, body in per_thread[c]:
                if time.perf_counter() > deadline:
                    break
                status, data = h.call("POST", "/api/tx", body)
                if status == 202:
                    ok.append(k)
                else:
                    reason = json.loads(data).get("error", str(status))[:60] if data else str(status)
                    bad[reason] = bad.get(reason, 0) + 1
            last_ack[c] = time.perf_counter()
        finally:
            h.close()
            with lock:
                accepted.extend(ok)
                for r, m in bad.items():
                    refused[r] = refused.get(r, 0) + m

    cpu0 = [cpu_seconds(n.proc.pid) for n in net.nodes]
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=post, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    go.set()
    for t in threads:
        t.join()
    t_post = max(last_ack) - t0
    entry_rate = len(accepted) / t_post if t_post > 0 else 0.0
    say(f"  burst: node 1 accepted {len(accepted):,} in {t_post:.1f} s ({entry_rate:,.0f}/s); waiting for the others")
    # Until every node has every accepted bid, or nothing new arrives for 15 s (cap 120 s).
    want = set(accepted)
    n = len(net.nodes)
    stalled, last_total, cap = time.perf_counter(), -1, time.perf_counter() + 120
    while True:
        total = sum(len(want & dict(watch.seen[j]).keys()) for j in range(n))
        if total == n * len(want):
            break
        if total != last_total:
            last_total, stalled = total, time.perf_counter()
        if time.perf_counter() - stalled > 15 or time.perf_counter() > cap:
            break
        time.sleep(0.25)
    cpu1 = [cpu_seconds(x.proc.pid) for x in net.nodes]
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - t0
    stats = Http(entry_api, 10).get("/api/peers")[1].get("stats", {})
    rows = []
    for j, node in enumerate(net.nodes):
        got = {k: t for k, t in dict(watch.seen[j]).items() if k in want}
        lost = sorted(want - got.keys())
        via_block = gone = 0
        if lost:  # a block may have brought them before gossip did: ask the node (a sample if many)
            h = Http(node.api, 10)
            sample = lost if len(lost) <= 200 else random.Random(j).sample(lost, 200)
            for k in sample:
                status, doc = h.get(f"/api/tx/{hashes[k]}")
                if status == 200 and doc.get("status") == "included":
                    via_block += 1
                elif status == 200:
                    pass  # pending: it arrived after the scan; counted as late, not lost
                else:
                    gone += 1
            h.close()
            scale = len(lost) / len(sample)
            via_block, gone = round(via_block * scale), round(gone * scale)
        t_last = max(got.values()) - t0 if got else math.inf
        t_first = min(got.values()) - t0 if got else math.inf
        rows.append(dict(node=j + 1, gossip=len(got), via_block=via_block, lost=gone, first=t_first, last=t_last,
                         rate=len(got) / t_last if got and t_last > 0 else 0.0))
    others = rows[1:]
    return dict(bids=len(accepted) + sum(refused.values()), senders=len(senders), clients=clients, sign_s=t_sign,
                accepted=len(accepted), stats=stats, seconds=seconds,
                bench_cpu=(self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime) / wall,
                refused=refused, post_s=t_post, entry_rate=entry_rate, wall=wall, rows=rows,
                other_rate_min=min((r["rate"] for r in others), default=math.nan),
                other_rate_med=statistics.median(r["rate"] for r in others) if others else math.nan,
                all_by=max((r["last"] for r in others), default=math.nan),
                lost=sum(r["lost"] for r in others), via_block=sum(r["via_block"] for r in others),
                cpu=[b - a for a, b in zip(cpu0, cpu1)])


def bench_network(n: int, plan: Plan, base: Path, seed: int, probe: str, slot_seconds: int) -> NetResult:
    res = NetResult(nodes=n)
    homes_needed = 4 + plan.latency_bids + math.ceil(plan.burst / SAME_SENDER)
    net = Devnet(base / f"net{n}", nodes=n, homes=homes_needed, slot_seconds=slot_seconds, seed=seed,
                 say=lambda s: None, agents=random_home)
    rng = random.Random(seed * 1000 + n)
    watch: JournalWatch | None = None
    try:
        say(f"{n} nodes: creating ({homes_needed:,} funded households)")
        net.create()
        t0 = time.perf_counter()
        net.start(timeout=60 + 10 * n)
        res.start_s = time.perf_counter() - t0
        say(f"{n} nodes: up in {res.start_s:.1f} s; waiting for every node to connect to every other")
        res.peers_min = wait_mesh(net, time.monotonic() + 60 + 2 * n)
        time.sleep(3)  # a few gossipsub heartbeats: meshes grafted
        cpu0, t_idle = [cpu_seconds(x.proc.pid) for x in net.nodes], time.perf_counter()
        time.sleep(5)
        t_idle = time.perf_counter() - t_idle
        res.cpu["idle"] = [(cpu_seconds(x.proc.pid) - c) / t_idle for x, c in zip(net.nodes, cpu0)]
        res.load.append(os.getloadavg()[0])
        say(f"{n} nodes: idle (blocks only, no bids) they use {sum(res.cpu['idle']):.2f} cores together")
        res.memory["start"] = [proc_status(x.proc.pid).get("VmRSS", 0) for x in net.nodes]
        watch = JournalWatch([x.datadir / "mempool.journal" for x in net.nodes])
        watch.start()
        homes = net.households
        warm, lat, rest = homes[:4], homes[4:4 + plan.latency_bids], homes[4 + plan.latency_bids:]
        if n > 1:
            measure_latency(net, warm, len(warm), probe, watch, rng, 2_000_000)  # opens the streams: not measured
            say(f"{n} nodes: latency of {plan.latency_bids} bids ({probe} probe)")
            res.latency = measure_latency(net, lat, plan.latency_bids, probe, watch, rng, 1_000_000,
                                          plan.latency_seconds)
            L = res.latency
            say(f"  last node p50 {ms(L['last'][0], ' ms')}, p99 {ms(L['last'][1], ' ms')}; "
                f"scan {L['resolution'][0] * 1000:.2f} ms")
        say(f"{n} node{'s' * (n > 1)}: burst of {plan.burst:,} bids to node 1 from {plan.clients} client threads")
        res.burst = measure_burst(net, rest, plan.burst, plan.clients, watch, rng, plan.burst_seconds)
        st = [proc_status(x.proc.pid) for x in net.nodes]
        res.memory["after"] = [s.get("VmRSS", 0) for s in st]
        res.memory["peak"] = [s.get("VmHWM", 0) for s in st]
        res.load.append(os.getloadavg()[0])
        return res
    finally:
        if watch is not None:
            watch.halt.set()
        say(f"{n} nodes: stopping")
        interrupt_all([x.proc for x in net.nodes if x.proc is not None], 15)
        net.stop()  # they are all gone: this only tidies up


# ---------------------------------------------------------------------- sync
def spawn(datadir: Path) -> subprocess.Popen:
    (datadir / "node.json").unlink(missing_ok=True)
    log = open(datadir / "node.log", "ab")
    try:
        return subprocess.Popen([*transx_command(), "node", "--datadir", str(datadir)], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "TRANSX_PASSWORD": PASSWORD}, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    finally:
        log.close()


def wait_up(datadir: Path, proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not (datadir / "node.json").exists():
        if proc.poll() is not None:
            raise RuntimeError(f"node {datadir} exited at start; see {datadir / 'node.log'}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"node {datadir} did not start in {timeout:.0f} s; see {datadir / 'node.log'}")
        time.sleep(0.05)
    return json.loads((datadir / "node.json").read_text())["api"]


def bench_sync(blocks: int, base: Path, seed: int, timeout: float) -> dict:
    from consensus.engine import Engine
    from p2p.network import peer_id_from_seed
    from consensus.chain.chain import Chain
    from transxnode.datadir.create import init_datadir
    from consensus.rules.genesis import dev_genesis, genesis_from_json
    from consensus.node import Node
    from consensus.chain.store import Store

    d = base / "sync"
    prod_key, join_key = SigningKey(seed_bytes(seed, "producer")), SigningKey(seed_bytes(seed, "joiner"))
    doc = dev_genesis([address_of_key(prod_key)], [address_of_key(prod_key)], slot_seconds=1,
                      chain_id="transx-syncbench", start=int(time.time()) - blocks - 2)
    p_port, j_port = free_ports(2)
    prod_peer = f"/ip4/127.0.0.1/tcp/{p_port}/p2p/{peer_id_from_seed(bytes(prod_key))}"
    init_datadir(d / "producer", PASSWORD, doc, api_listen="127.0.0.1:0", seed=bytes(prod_key),
                 p2p_listen=f"/ip4/127.0.0.1/tcp/{p_port}")
    init_datadir(d / "joiner", PASSWORD, doc, api_listen="127.0.0.1:0", seed=bytes(join_key),
                 p2p_listen=f"/ip4/127.0.0.1/tcp/{j_port}", bootstrap=[prod_peer])
    say(f"sync: building {blocks:,} blocks in this process (Engine.tick, as the producer node would)")
    t0 = time.perf_counter()
    store = Store(str(d / "producer" / "chain"))
    try:
        chain = Chain(store, genesis_from_json(doc))
        engine = Engine(Node(chain, prod_key))
        while chain.height < blocks:
            engine.tick(time.time_ns() // 1_000_000)
        built = chain.height
    finally:
        store.close()
    build_s = time.perf_counter() - t0
    chain_bytes = sum(f.stat().st_size for f in (d / "producer" / "chain").iterdir())
    say(f"sync: built {built:,} blocks in {build_s:.1f} s ({built / build_s:,.0f}/s, {chain_bytes / 1e6:.1f} MB); "
        "starting the producer")
    producer = joiner = None
    try:
        producer = spawn(d / "producer")
        prod = Http(wait_up(d / "producer", producer, 120), 10)
        time.sleep(1)
        target = prod.get("/api/node")[1]["height"]
        say(f"sync: producer up at height {target:,}; starting the joiner")
        t_spawn = time.perf_counter()
        joiner = spawn(d / "joiner")
        jn = Http(wait_up(d / "joiner", joiner, 120), 10)
        t_up = time.perf_counter()
        t_first = t_done = None
        trace = []
        while time.perf_counter() - t_up < timeout:
            h = jn.get("/api/node")[1]["height"]
            now = time.perf_counter()
            trace.append((now - t_up, h))
            if h > 0 and t_first is None:
                t_first = now
            if h >= target:
                t_done = now
                break
            time.sleep(0.1)
        height = trace[-1][1]
        prod_h = prod.get("/api/node")[1]["height"]
        mem = {"producer": proc_status(producer.pid), "joiner": proc_status(joiner.pid)}
        cpu = {"producer": cpu_seconds(producer.pid), "joiner": cpu_seconds(joiner.pid)}
        prod.close()
        jn.close()
        synced_s = (t_done or time.perf_counter()) - t_up
        transfer_s = (t_done or time.perf_counter()) - (t_first or t_up)
        return dict(blocks=target, built=built, build_s=build_s, chain_mb=chain_bytes / 1e6,
                    spawn_to_api=t_up - t_spawn, first_block=(t_first - t_up) if t_first else math.inf,
                    done=t_done is not None, height=height, synced_s=synced_s, transfer_s=transfer_s,
                    rate=height / synced_s, transfer_rate=height / transfer_s if transfer_s > 0 else 0.0,
                    producer_height=prod_h, mem=mem, cpu=cpu)
    finally:
        interrupt_all([p for p in (joiner, producer) if p is not None], 15)


# ---------------------------------------------------------------------- main
def print_tables(results: list[NetResult], sync: dict | None, plan: Plan) -> None:
    if results:
        print("Bid propagation: POST to node 1, time until each node's mempool holds the bid "
              "(ms; *last node*: the figure per bid is the slowest node's).")
        print()
        print("| nodes | bids | probe (resolution, mean / p99) | node 1 POST answered p50 | node 1 admitted p50 "
              "| first other node p50 | any node p50 / p99 | last node p50 | **last node p99** | last node max "
              "| bids not everywhere in 5 s | (bid, node) pairs never seen: came by block / absent |")
        print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            L = r.latency
            if not L:
                continue
            res = L["resolution"]
            print(f"| {r.nodes} | {L['bids']} | {L['probe']} ({res[0] * 1000:.2f} / {res[1] * 1000:.2f} ms) "
                  f"| {ms(L['ack'][0])} | {ms(L['admit'][0])} | {ms(L['first'][0])} "
                  f"| {ms(L['pairs'][0])} / {ms(L['pairs'][1])} | {ms(L['last'][0])} | **{ms(L['last'][1])}** "
                  f"| {ms(L['last'][2])} | {L['missing']} | {L['by_block']} / {L['never']} |")
        for r in [r for r in results if r.latency]:
            slow = ", ".join(f"{ms(t, ' ms')} (node {j}, {ph:.2f} s into the slot)"
                             for t, j, ph in r.latency["slowest"])
            print(f"\n{r.nodes} nodes, slowest bids to reach the last node: {slow}")
        print()
        print("Burst: pre-signed bids POSTed to node 1 by the client threads as fast as it answers (for at most "
              f"{plan.burst_seconds:.0f} s); *other nodes*: bids reaching each other node's mempool by gossip, per "
              "second from the burst's start to that node's last arrival; *by block*: bids a block brought to a "
              "node before gossip did; *lost*: on no node's chain or mempool at the end (from a sample of up to "
              "200 per node).")
        print()
        print("| nodes | bids (senders) | clients | **node 1 accepted/s** | refused | other nodes bids/s, min / median "
              "| all nodes have all after s | by block | lost | node 1: items per gossip message, back-pressure waits "
              "| nodes' CPU, cores: idle / during burst | benchmark process CPU, cores |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            B = r.burst
            refused = sum(B["refused"].values())
            st = B["stats"]
            per_msg = st.get("published_items", 0) / max(1, st.get("published_messages", 0))
            others = (f"{B['other_rate_min']:,.0f} / {B['other_rate_med']:,.0f} | {B['all_by']:.1f}" if r.nodes > 1
                      else "(no other node) | -")
            print(f"| {r.nodes} | {B['bids']:,} ({B['senders']:,}) | {B['clients']} | **{B['entry_rate']:,.0f}** "
                  f"| {refused:,} | {others} "
                  f"| {B['via_block']:,} | {B['lost']:,} | {per_msg:.1f}, {st.get('waits', 0):,} "
                  f"| {sum(r.cpu['idle']):.2f} / {sum(B['cpu']) / B['wall']:.2f} | {B['bench_cpu']:.2f} |")
        for r in results:
            if r.burst["refused"]:
                print(f"\n{r.nodes} nodes, refusals: " + "; ".join(f"{v}x {k}" for k, v in r.burst["refused"].items()))
            lost = [f"node {x['node']}: {x['lost']}" for x in r.burst["rows"] if x["lost"]]
            if lost:
                print(f"\n{r.nodes} nodes, lost bids by node: " + ", ".join(lost))
        print()
        print("Memory per node process (MB; RSS from /proc/<pid>/status):")
        print()
        print("| nodes | start to all connected, s | fewest peers | RSS after start, mean (max) | RSS after burst, "
              "mean (max) | peak RSS (VmHWM), max | all nodes' RSS after burst | machine load average (1 min): idle "
              "test / after burst |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            m = {k: [x / 1024 for x in v] for k, v in r.memory.items()}
            print(f"| {r.nodes} | {r.start_s:.1f} | {r.peers_min} | {statistics.fmean(m['start']):.0f} "
                  f"({max(m['start']):.0f}) | {statistics.fmean(m['after']):.0f} ({max(m['after']):.0f}) "
                  f"| {max(m['peak']):.0f} | {sum(m['after']) / 1024:.2f} GB | {r.load[0]:.1f} / {r.load[1]:.1f} |")
        print()
    if sync is not None:
        S = sync
        print("Late joiner: a non-solver node started from genesis, bootstrapped to the one producer "
              f"(blocks built in this process: {S['built']:,} in {S['build_s']:.1f} s, "
              f"{S['chain_mb']:.1f} MB on disk).")
        print()
        print("| blocks synced | start to API up s | API up to first block s | API up to synced s "
              "| **blocks/s** (from API up) | blocks/s (first block on) | joiner RSS MB (peak) | producer RSS MB "
              "| CPU s joiner / producer |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        mj, mp = S["mem"]["joiner"], S["mem"]["producer"]
        status = "" if S["done"] else f" (timed out; the producer was at {S['blocks']:,})"
        print(f"| {S['height']:,}{status} | {S['spawn_to_api']:.1f} | {S['first_block']:.1f} | {S['synced_s']:.1f} "
              f"| **{S['rate']:,.0f}** | {S['transfer_rate']:,.0f} | {mj.get('VmRSS', 0) / 1024:.0f} "
              f"({mj.get('VmHWM', 0) / 1024:.0f}) | {mp.get('VmRSS', 0) / 1024:.0f} "
              f"| {S['cpu']['joiner']:.1f} / {S['cpu']['producer']:.1f} |")
        print()
    print("Against the goals:")
    for r in results:
        if not r.latency:
            print(f"- 1 node, no peers (the API's own ceiling): {r.burst['entry_rate']:,.0f} bids/s accepted")
            continue
        p99 = r.latency["last"][1]
        verdict = "not judged at this size"
        if r.nodes == 10:
            verdict = "met" if p99 * 1000 <= GOALS["p99_ms"] else "NOT met"
        print(f"- {r.nodes} nodes: last-node p99 {ms(p99, ' ms')} (goal <= {GOALS['p99_ms']} ms at 10 nodes: "
              f"{verdict}); node 1 accepted "
              f"{r.burst['entry_rate']:,.0f} bids/s, the slowest other node took {r.burst['other_rate_min']:,.0f}/s "
              f"(goal >= {GOALS['bids_per_s']:,}: "
              f"{'met' if min(r.burst['entry_rate'], r.burst['other_rate_min']) >= GOALS['bids_per_s'] else 'NOT met'}"
              ")")
    if sync is not None:
        projected = GOALS["sync_blocks"] / sync["rate"] if sync["rate"] else math.inf
        print(f"- sync: {sync['height']:,} blocks in {sync['synced_s']:.1f} s = {sync['rate']:,.0f} blocks/s; "
              f"{GOALS['sync_blocks']:,} blocks would take {projected:,.0f} s (goal <= {GOALS['sync_s']} s: "
              f"{'met' if projected <= GOALS['sync_s'] else 'NOT met'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", help="comma-separated network sizes (default 1,5,10,20; --quick: 1,5); 1: the "
                    "API's own ceiling, a node without peers (burst only)")
    ap.add_argument("--quick", action="store_true", help="1 and 5 nodes, small counts: a smoke run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--probe", choices=("journal", "http"), default="journal",
                    help="how arrival at a node is seen in the latency test (default: its mempool journal)")
    ap.add_argument("--latency-bids", type=int, help="bids timed one at a time (default 200; quick 20)")
    ap.add_argument("--latency-seconds", type=float, help="longest the latency test sends bids (default 90; quick 30)")
    ap.add_argument("--burst", type=int, help="bids signed for the burst (default 10000; quick 1000)")
    ap.add_argument("--burst-seconds", type=float, help="longest the burst posts (default 20; quick 8)")
    ap.add_argument("--clients", type=int, help="client threads posting the burst (default 4)")
    ap.add_argument("--sync-blocks", type=int, help="blocks the late joiner syncs (default 10000; quick 500; 0: skip)")
    ap.add_argument("--sync-timeout", type=float, default=300, help="seconds the joiner gets (default 300)")
    ap.add_argument("--slot-seconds", type=int, default=2, help="slot length of the devnets (default 2)")
    ap.add_argument("--dir", help="work directory (default: a fresh temporary one, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (node logs, chains)")
    args = ap.parse_args()
    base_plan = QUICK if args.quick else FULL
    plan = Plan(
        nodes=tuple(int(x) for x in args.nodes.split(",") if x) if args.nodes is not None else base_plan.nodes,
        latency_bids=args.latency_bids or base_plan.latency_bids,
        burst=args.burst or base_plan.burst,
        burst_seconds=args.burst_seconds or base_plan.burst_seconds,
        latency_seconds=args.latency_seconds or base_plan.latency_seconds,
        clients=args.clients or base_plan.clients,
        sync_blocks=base_plan.sync_blocks if args.sync_blocks is None else args.sync_blocks,
    )
    if any(n < 1 for n in plan.nodes):
        ap.error("--nodes: each network needs at least 1 node")

    def on_term(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the finally blocks must run to the end
        raise KeyboardInterrupt  # run the finally blocks: stop every node
    signal.signal(signal.SIGTERM, on_term)
    # A shell starts a background job with SIGINT ignored, and the nodes would inherit that: a node
    # still starting up would then miss the SIGINT that stops it.  Restore the default for them.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="transx-netbench-"))
    base.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    command = "python bench/network.py" + "".join(f" {a}" for a in sys.argv[1:])
    from importlib.metadata import version

    print(f"`{command}`")
    print()
    print(f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
          f"libp2p {version('libp2p')}, PyNaCl {version('pynacl')}; seed {args.seed}; "
          f"devnet slots {args.slot_seconds} s; load average at start "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"other `transx node` processes on the machine at start: {foreign_nodes(set())}")
    print()
    results: list[NetResult] = []
    sync = None
    ok = False
    try:
        for n in plan.nodes:
            results.append(bench_network(n, plan, base, args.seed, args.probe, args.slot_seconds))
        if plan.sync_blocks:
            sync = bench_sync(plan.sync_blocks, base, args.seed, args.sync_timeout)
        ok = True
    except KeyboardInterrupt:
        say("interrupted: every node stopped")
    except Exception:  # report what was measured before it, then the error
        traceback.print_exc()
        say("failed: every node stopped")
    finally:
        if not args.keep and not args.dir and ok:
            shutil.rmtree(base, ignore_errors=True)
        elif not ok:
            say(f"node logs kept in {base}")
    print_tables(results, sync, plan)
    print()
    print(f"load average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"total {time.perf_counter() - started:.0f} s")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
