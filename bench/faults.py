"""Fault campaign (issue 17): real `transx node` processes under the faults an operator's bad day brings.

    python bench/faults.py [--only kill,disk,damage,clock,hostile] [--seed 1] [--kills 100] [--peers 1] [--fills 10]
                           [--damages 4] [--kinds K,...] [--jumps 2] [--floods 3] [--quick] [--keep DIR]

Every campaign drives real node processes (the installed `transx` beside this Python) on private
development chains with 1-second slots, only through their public faces: the CLI, the HTTP API, the
data directory's files and libp2p.  Each prints a Markdown table of outcomes and the invariants it
checked; any violation is listed under the table, and the script exits 1 if there was one.

1. `kill`: kill -9 of a node at random instants under a steady load of transfers and bids (a second
   node on the same chain competes for every block, so the node under test also reverts and
   reconnects blocks).  Half the kills are at a uniform random instant, half aimed at the instant the
   node writes its blocks (the phase in the slot where its head has been seen to move, minus 0-80 ms).
   After each kill, `transx check` on the stopped data directory, then a restart: the node starts (or
   refuses with one line naming transx check / repair: counted), at or above the height seen before the
   kill, its chain linked (the last 64 blocks each time, from genesis every 10th kill and at the end,
   and every final block seen before never changes), the money adds up (GET /api/node's supply and
   every funded address), and at the end every transaction answered 202 is in a block or pending
   (bids whose expiry height passed while pending are counted apart: the mempool drops them).
2. `disk`: a node on a small tmpfs of its own under load; the disk is filled until the node says so
   (/api/health 503, POST /api/tx 503 "kept": false), then freed, N times.  The node must resume by
   itself every time; after a clean restart every 202 is in a block or pending, and nothing answered
   "kept": false is anywhere.
3. `damage`: a stopped node's files damaged one at a time (a byte flipped, or the file truncated,
   at random offsets): every file in chain/ by kind (*.log, *.ldb, MANIFEST-*, CURRENT, LOG, LOCK),
   chain.head, the mempool journal, the keystore's key files.  Outcomes: `sound` (starts, every check
   holds, and `transx check` says sound), `refused` (does not start, one line), `runs, check
   DAMAGED` (starts, and holds its chain, but `transx check` finds damage), and SILENT (starts with a
   lower height, a block changed or missing, money not adding up, or a pending transaction lost
   without a word: a bug).  Besides the node, the damaged database is read back in-process through
   the public Store: `changed reads` counts entries read back different from what was written with no
   error.
4. `clock`: the node's wall clock jumps forward and back under libfaketime (apt `faketime`; skipped
   when absent): the node keeps producing (or says why), and no block is stamped further ahead of the
   node's own clock than MAX_FUTURE_MS; how far ahead of the real clock its blocks were is shown.
5. `hostile`: a libp2p peer that floods the node's gossip with garbage, raw TCP connections that
   stall in the handshake, and HTTP clients that trickle or stall their request bodies: the node stays
   up, keeps producing, bans the flooder, cuts every slow body (408 or closed) within its bound, and
   answers other clients meanwhile.

`--quick`: a few of each (what tests/functional/feature_faults.py runs).  The machine's load matters
(every node process is a Python process); the figures printed are counts, not timings.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nacl.signing import SigningKey

from consensus.rules.blocks import MAX_FUTURE_MS
from consensus.rules.genesis import dev_genesis
from consensus.rules.keys import address_of_key, encode_address
from consensus.rules.transactions import BUY, SELL, Bid, Transfer, sign_tx
from transxnode.client.devnet import free_ports, transx_command
from transxnode.datadir.create import init_datadir

PASSWORD = "fault campaign"
ENV = {**os.environ, "TRANSX_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"}
CAMPAIGNS = ("kill", "disk", "damage", "clock", "hostile")
REPAIR_WORDS = ("transx check", "transx repair")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Violation(AssertionError):
    """An invariant the campaign checks did not hold."""


def transx(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*transx_command(), *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = predicate()
        except (OSError, ValueError, http.client.HTTPException):
            got = None
        if got:
            return got
        time.sleep(interval)
    raise Violation(f"timed out after {timeout:.0f} s waiting for {what}")


# --------------------------------------------------------------------------------------------- nodes
class Refused(Exception):
    """The node exited at start; the message is what it said last (its one line, if it kept to one)."""

    def __init__(self, lines: list[str], code: int | None) -> None:
        self.lines, self.code = lines, code
        super().__init__(lines[-1] if lines else f"exit {code} without a word")


class Node:
    """One `transx node` process on `datadir`; its output appended to `log_path`."""

    def __init__(self, datadir: Path, log_path: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.datadir = datadir
        self.log_path = log_path or datadir.parent / f"{datadir.name}.log"
        self.env = env or ENV
        self.proc: subprocess.Popen | None = None
        self.api = ""
        self.dropped = 0  # GETs whose connection the node closed without an answer (asked again)
        self.slowest = 0.0  # the longest any API request took, in seconds

    @property
    def dd(self) -> list[str]:
        return ["--datadir", str(self.datadir)]

    def start(self, timeout: float = 90) -> "Node":
        """Start and wait for its API (`Refused` if it exits first)."""
        (self.datadir / "node.json").unlink(missing_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*transx_command(), "node", *self.dd], stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not (self.datadir / "node.json").exists():
            if self.proc.poll() is not None:
                with open(self.log_path, "rb") as f:
                    f.seek(offset)
                    said = f.read().decode(errors="replace")
                raise Refused([ln for ln in said.splitlines() if ln.strip()], self.proc.returncode)
            if time.monotonic() > deadline:
                self.kill()
                raise Violation(f"{self.datadir.name} did not start in {timeout:.0f} s")
            time.sleep(0.05)
        self.api = json.loads((self.datadir / "node.json").read_text())["api"]
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Violation(f"{self.datadir.name} did not stop on SIGINT in {timeout:.0f} s") from None

    def request(self, method: str, path: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, Any]:
        req = urllib.request.Request(self.api + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"} if body else {})
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"error": raw.decode(errors="replace"), "not_json": True}
        finally:
            self.slowest = max(self.slowest, time.monotonic() - t0)

    def get(self, path: str) -> Any:
        for attempt in range(3):  # a connection the server dropped is asked again (counted in `dropped`)
            try:
                status, doc = self.request("GET", path)
                break
            except (ConnectionError, urllib.error.URLError, http.client.HTTPException) as e:
                if attempt == 2 or not self.running():
                    raise OSError(f"GET {path}: {e}") from None
                self.dropped += 1
                time.sleep(0.2)
        if status != 200:
            raise OSError(f"GET {path}: {status} {doc}")
        return doc

    def submit(self, raw: bytes) -> tuple[int, Any]:
        return self.request("POST", "/api/tx", json.dumps({"raw": raw.hex()}).encode())

    @property
    def height(self) -> int:
        return self.get("/api/head")["height"]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Net:
    """Node data directories on one development genesis, with seeded user keys funded in it."""

    root: Path
    nodes: list[Node]
    node_addresses: list[str]
    users: list[SigningKey]
    genesis: dict

    @property
    def addresses(self) -> list[str]:
        return self.node_addresses + [encode_address(address_of_key(u)) for u in self.users]


def make_net(root: Path, seed: int, nodes: int = 1, users: int = 4, slot_seconds: int = 1,
             datadir_of: Callable[[int], Path] | None = None) -> Net:
    """`nodes` data directories (all solvers, each bootstrapping to the others over loopback libp2p)."""
    from p2p.network import peer_id_from_seed

    rng = random.Random(f"net/{seed}")
    node_keys = [SigningKey(rng.randbytes(32)) for _ in range(nodes)]
    user_keys = [SigningKey(rng.randbytes(32)) for _ in range(users)]
    funded = [address_of_key(k) for k in node_keys + user_keys]
    doc = dev_genesis(funded, [address_of_key(k) for k in node_keys], slot_seconds=slot_seconds,
                      chain_id=f"transx-faults-{seed}", start=int(time.time()) + 2 + nodes)
    ports = free_ports(nodes)
    peers = [f"/ip4/127.0.0.1/tcp/{p}/p2p/{peer_id_from_seed(bytes(k))}" for p, k in zip(ports, node_keys)]
    out, addresses = [], []
    for i, key in enumerate(node_keys):
        d = datadir_of(i) if datadir_of else root / f"node{i + 1}"
        address, _ = init_datadir(d, PASSWORD, doc, api_listen="127.0.0.1:0", seed=bytes(key),
                                  p2p_listen=peers[i].rsplit("/p2p/", 1)[0],
                                  bootstrap=[p for j, p in enumerate(peers) if j != i])
        out.append(Node(d, root / f"node{i + 1}.log"))
        addresses.append(address)
    return Net(root, out, addresses, user_keys, doc)


# ---------------------------------------------------------------------------------------------- load
@dataclass
class Answer:
    status: int  # 0: no answer (the node was down, or died mid-request)
    kept: bool | None
    hash: str
    bid_expiry: int | None  # a bid's last includable height; None for a transfer


class Load:
    """Transfers and bids from the net's users to one node, as fast as it answers (`pause` between
    sends); every answer is recorded.  Each user sends at the next nonce the node holds for it."""

    def __init__(self, node: Node, net: Net, seed: int, pause: float = 0.03, bids: bool = True) -> None:
        self.node, self.net, self.pause, self.bids = node, net, pause, bids
        self.rng = random.Random(f"load/{seed}")
        self.answers: list[Answer] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.nonces: dict[int, int | None] = {i: None for i in range(len(net.users))}
        self.info: dict | None = None
        self.errors: list[str] = []
        self.paused = threading.Event()  # set: send nothing until cleared

    def start(self) -> "Load":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)

    def accepted(self) -> list[Answer]:
        return [a for a in self.answers if a.status == 202]

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._send()
            except Exception as e:  # noqa: BLE001 - the load goes on; what broke it is kept for the report
                self.errors.append(f"{type(e).__name__}: {e}")
                time.sleep(0.5)

    def _send(self) -> None:
        users = self.net.users
        amount = 0
        while not self.stop_event.is_set():
            if self.paused.is_set():
                time.sleep(0.1)
                continue
            i = self.rng.randrange(len(users))
            key = users[i]
            try:
                if self.info is None or self.rng.random() < 0.05:
                    self.info = self.node.get("/api/node")
                if self.nonces[i] is None:
                    self.nonces[i] = self.node.get(f"/api/address/{encode_address(address_of_key(key))}")["pending_nonce"]
            except (OSError, ValueError, http.client.HTTPException):
                time.sleep(0.2)
                continue
            amount += 1
            body: Any = Transfer(address_of_key(self.rng.choice(users)), amount)
            expiry = None
            if self.bids and i % 2 and self.rng.random() < 0.5:
                first = self.info["first_open_slot"]
                slot = first + self.rng.randint(2, 8)
                side = BUY if i % 4 == 1 else SELL
                expiry = slot - self.info["gate_closure"]
                body = Bid(side, slot, self.rng.randint(100, 3000), self.rng.randint(170_000, 570_000), 0, expiry)
            tx = sign_tx(key, chain_id=self.info["chain_id"], nonce=self.nonces[i], fee=1000, body=body)
            try:
                status, doc = self.node.submit(tx.encoded)
            except (OSError, ValueError, http.client.HTTPException):  # no answer: may or may not be kept
                status, doc = 0, {}
            self.answers.append(Answer(status, doc.get("kept") if isinstance(doc, dict) else None, tx.hash.hex(), expiry))
            if status == 202:
                self.nonces[i] += 1  # type: ignore[operator]
            else:
                self.nonces[i] = None  # ask the node again
                time.sleep(0.1 if status else 0.2)
            time.sleep(self.pause)


def tx_statuses(node: Node, answers: list[Answer]) -> dict[str, str | None]:
    """Each answered transaction's status on `node` now: included / pending / None (unknown to it)."""
    out: dict[str, str | None] = {}
    for a in answers:
        if a.hash in out:
            continue
        status, doc = node.request("GET", f"/api/tx/{a.hash}", timeout=60)
        out[a.hash] = doc.get("status") if status == 200 else None
    return out


def money(node: Node, addresses: list[str]) -> tuple[int, dict]:
    """What the funded addresses hold (balance, escrow, deposit) and /api/node, read at one height."""
    for _ in range(50):
        info = node.get("/api/node")
        held = 0
        for a in addresses:
            acct = node.get(f"/api/address/{a}")
            held += acct["balance"] + acct["escrowed"] + acct["solver_deposit"]
        if node.get("/api/node")["height"] == info["height"]:
            return held, info
    raise Violation("the height moved under every one of 50 reads of the balances")


def money_adds_up(node: Node, addresses: list[str]) -> str | None:
    held, info = money(node, addresses)
    s = info["supply"]
    if held + s["burned"] + s["grid_charged"] != s["minted"] + s["grid_credited"]:
        return (f"money does not add up at height {info['height']}: held {held} + burned {s['burned']} + grid "
                f"charged {s['grid_charged']} != minted {s['minted']} + grid credited {s['grid_credited']}")
    return None


def chain_breaks(node: Node, low: int, high: int | None = None) -> tuple[list[str], dict[int, dict]]:
    """Blocks `low`..head (or `high`) present and each linked to its parent; the blocks read."""
    high = node.height if high is None else high
    problems, blocks = [], {}
    prev = None
    for h in range(max(0, low), high + 1):
        status, b = node.request("GET", f"/api/block/{h}")
        if status != 200:
            problems.append(f"block {h} missing ({status}) below head {high}")
            prev = None
            continue
        blocks[h] = b
        if prev is not None and b["parent"] != prev:
            problems.append(f"block {h} does not link to block {h - 1}")
        prev = b["hash"]
    return problems, blocks


def said(e: Refused) -> list[str]:
    """What a refusing node said itself, its log lines (HH:MM:SS LEVEL ...) left out."""
    return [ln for ln in e.lines if not _LOG_LINE.match(ln)]


def one_line_naming_repair(e: Refused) -> bool:
    text = said(e)
    return len(text) == 1 and any(w in text[0] for w in REPAIR_WORDS)


# ------------------------------------------------------------------------------------------- results
@dataclass
class Result:
    name: str
    rows: list[tuple[str, str]] = field(default_factory=list)  # (what, figure)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    def row(self, what: str, figure: Any) -> None:
        self.rows.append((what, str(figure)))

    def table(self) -> str:
        out = [f"### {self.name}", ""]
        if self.skipped:
            return "\n".join(out + [f"skipped: {self.skipped}", ""])
        out += ["| what | figure |", "|---|---:|"] + [f"| {w} | {f} |" for w, f in self.rows]
        out.append("")
        out += [f"- note: {n}" for n in self.notes]
        out += [f"- VIOLATION: {v}" for v in self.violations] or ["- violations: none"]
        return "\n".join(out + [""])


# ======================================================================================= 1. kill -9
def set_p2p(node: Node, listen: str, bootstrap: list[str]) -> None:
    from dataclasses import replace

    from transxnode.datadir.config import load_config, write_config

    write_config(replace(load_config(node.datadir), p2p_listen=listen, bootstrap=bootstrap))


def campaign_kill(root: Path, seed: int, kills: int, peers: int = 1, check_every: int = 1) -> Result:
    """`peers` other solvers on the chain; with one or more, every third kill falls in a partition's heal:
    the first peer (or, every other time, the node under test) is cut off (restarted on another port,
    without its bootstrap: the other dials its old address in vain), the load pauses, both
    sides build their own branch for 2-4 s, then the peer is restarted joined again and the node
    under test is killed 0-3 s later, while one side reverts its branch (counted when the node under test
    logged a reorg before its kill)."""
    res = Result(f"kill -9 under load ({kills} kills, seed {seed}, {peers} competing peer{'s' * (peers != 1)})")
    rng = random.Random(f"kill/{seed}")
    net = make_net(root, seed, nodes=1 + peers, users=4)
    subject, others = net.nodes[0], net.nodes[1:]
    from transxnode.datadir.config import load_config

    joined = {id(n): (load_config(n.datadir).p2p_listen, load_config(n.datadir).bootstrap) for n in net.nodes}
    for n in net.nodes:
        n.start()
    counts = dict.fromkeys(["kills", "uniform instant", "aimed at a block write", "in a partition's heal",
                            "of which after the node logged a reorg", "transx check sound", "transx check DAMAGED",
                            "restarted", "refused (one line naming check/repair)", "refused (other)"], 0)
    final_seen: dict[int, str] = {}
    phases: list[float] = []
    load = None
    try:
        wait_for(lambda: subject.height >= 2, 60, "the first blocks")
        load = Load(subject, net, seed).start()
        g_start_ms = net.genesis["timestamp"] * 1000
        slot_ms = net.genesis["slot_seconds"] * 1000
        for k in range(kills):
            # watch the head for a while (learning when in the slot blocks land), then kill
            watch_until = time.monotonic() + rng.uniform(0.5, 2.5)
            last = subject.height
            while time.monotonic() < watch_until:
                try:
                    h = subject.height
                except (OSError, ValueError, http.client.HTTPException):
                    break
                if h != last:
                    phases.append((time.time() * 1000 - g_start_ms) % slot_ms)
                    last = h
                time.sleep(0.02)
            kind = "uniform instant"
            log_from = len(subject.log_text())
            if others and k % 3 == 2:
                kind = "in a partition's heal"
                # Cut off the peer, or (every other heal) the node under test; no load meanwhile, so neither
                # branch is favoured by holding the transactions.
                cut = others[0] if (k // 3) % 2 == 0 else subject
                load.paused.set()
                cut.kill()
                set_p2p(cut, f"/ip4/127.0.0.1/tcp/{free_ports(1)[0]}", [])
                cut.start()
                time.sleep(rng.uniform(2, 4))  # both sides build a branch of their own (well short of finality_depth)
                cut.kill()
                set_p2p(cut, *joined[id(cut)])
                log_from = len(subject.log_text())
                cut.start()
                load.paused.clear()
                time.sleep(rng.uniform(0, 3))
            elif k % 3 == 1 and len(phases) >= 3:
                kind = "aimed at a block write"
                recent = sorted(phases[-20:])
                phase = recent[len(recent) // 2] - rng.uniform(0, 80)
                now_phase = (time.time() * 1000 - g_start_ms) % slot_ms
                time.sleep(((phase - now_phase) % slot_ms) / 1000)
            else:
                time.sleep(rng.uniform(0, 1.0))
            try:
                seen = subject.height
            except (OSError, ValueError, http.client.HTTPException):
                seen = last
            subject.kill()
            counts["kills"] += 1
            counts[kind] += 1
            reorged = "reorg at height" in subject.log_text()[log_from:]
            if kind == "in a partition's heal" and reorged:
                counts["of which after the node logged a reorg"] += 1
            if check_every and k % check_every == 0:
                r = transx("check", *subject.dd)
                counts["transx check sound" if r.returncode == 0 else "transx check DAMAGED"] += 1
                if r.returncode != 0:
                    res.violations.append(f"kill {k + 1}: transx check after kill -9: {r.stdout.strip()} "
                                          f"{r.stderr.strip()}")
            try:
                subject.start()
            except Refused as e:
                counts["refused (one line naming check/repair)" if one_line_naming_repair(e) else "refused (other)"] += 1
                res.violations.append(f"kill {k + 1}: refused to start after kill -9: {e}")
                rr = transx("repair", "--yes", *subject.dd)
                res.notes.append(f"kill {k + 1}: repaired ({rr.returncode}): {rr.stdout.strip()[:200]}")
                subject.start()
            counts["restarted"] += 1
            head = subject.height
            if head < seen and not reorged:
                res.violations.append(f"kill {k + 1}: restarted at height {head}, below {seen} seen before the kill")
            elif head < seen:  # a reorg onto a shorter branch may lower the height; never below the fork
                res.notes.append(f"kill {k + 1}: restarted at {head} after a reorg, {seen} seen before")
            full = (k + 1) % 10 == 0 or k == kills - 1
            problems, blocks = chain_breaks(subject, 0 if full else head - 64, head)
            checked = final_seen.items() if full else rng.sample(sorted(final_seen.items()), min(32, len(final_seen)))
            for h, want in checked:  # every final block seen before: all on full walks, 32 of them otherwise
                b = blocks.get(h)
                if b is None:
                    status, b = subject.request("GET", f"/api/block/{h}")
                    b = b if status == 200 else None
                if b is None or b["hash"] != want:
                    problems.append(f"final block {h} changed or went missing")
            res.violations += [f"kill {k + 1}: {p}" for p in problems]
            fin = subject.get("/api/node").get("finalized") or {}
            fh = fin.get("height") if isinstance(fin, dict) else None
            for h, b in blocks.items():
                if fh is not None and h <= fh:
                    final_seen.setdefault(h, b["hash"])
            bad = money_adds_up(subject, net.addresses)
            if bad:
                res.violations.append(f"kill {k + 1}: {bad}")
            say(f"kill {k + 1}/{kills} ({kind}{', after a reorg' if reorged else ''}): seen {seen}, restarted at "
                f"{head}; {len(load.accepted())} accepted so far; {len(res.violations)} violations so far"
                + (f" (last: {res.violations[-1][:200]})" if res.violations else ""))
        load.stop()
        # the end: every 202 in a block or pending
        top = subject.height
        wait_for(lambda: subject.height >= top + 3, 60, "three more blocks at the end")
        statuses = tx_statuses(subject, load.accepted())
        final_height = subject.height
        lost = [a for a in load.accepted() if statuses[a.hash] not in ("included", "pending")]
        expired = [a for a in lost if a.bid_expiry is not None and a.bid_expiry <= final_height]
        lost = [a for a in lost if a not in expired]
        for key, n in counts.items():
            res.row(key, n)
        log = subject.log_text()
        res.row("reorgs the node logged", log.count("reorg at height"))
        res.row("final height (final blocks checked unchanged)", f"{final_height} ({len(final_seen)})")
        res.row("transactions answered 202", len(load.accepted()))
        res.row("of them in a block", sum(statuses[a.hash] == "included" for a in load.accepted()))
        res.row("of them pending", sum(statuses[a.hash] == "pending" for a in load.accepted()))
        res.row("bids dropped at their expiry height (not lost)", len(expired))
        res.row("LOST (answered 202, nowhere)", len(lost))
        res.row("answered other than 202 / no answer (node down)",
                f"{sum(0 < a.status != 202 for a in load.answers)} / {sum(a.status == 0 for a in load.answers)}")
        if lost:
            res.violations.append(f"{len(lost)} transactions answered 202 are neither in a block nor pending: "
                                  + ", ".join(a.hash[:16] for a in lost[:5]))
        problems, _ = chain_breaks(subject, 0)
        res.violations += [f"at the end: {p}" for p in problems]
        res.row("tracebacks in the node's log", log.count("Traceback"))
        res.row("slowest API answer", f"{subject.slowest:.1f} s")
        if others:
            try:
                agreed = wait_for(lambda: _agree(net.nodes), 60, "the nodes to agree on one chain")
                res.row("the nodes agree at the end (height below every head)", f"yes ({agreed})")
            except Violation as e:
                res.row("the nodes agree at the end (height below every head)", "NO")
                res.violations.append(f"at the end: {e}")
    finally:
        if load is not None:
            load.stop()
        for n in net.nodes:
            n.kill()
    return res


def _agree(nodes: list[Node], depth: int = 3) -> int | None:
    h = min(n.height for n in nodes) - depth
    if h < 1:
        return None
    return h if len({n.get(f"/api/block/{h}")["hash"] for n in nodes}) == 1 else None


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT(\d\d:\d\d:\d\d)\.\d+\S* ")  # transxnode/logs.py's ISO time


def _reorg_within(log: str, t: float, seconds: int) -> bool:
    """Whether the node logged a reorg in the `seconds` whole seconds before `t` (its log lines start with
    an ISO local time, compared here to the second)."""
    stamps = {time.strftime("%H:%M:%S", time.localtime(t - s)) for s in range(seconds + 1)}
    for line in log.splitlines()[-400:]:
        m = _LOG_LINE.match(line)
        if m and "reorg at height" in line and m.group(1) in stamps:
            return True
    return False


# ======================================================================================= 2. full disk
class Tmpfs:
    """A tmpfs of `size_mb` at `path` (needs root): `fill` takes every free byte, `free` gives it back."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise OSError(f"cannot mount a tmpfs: {r.stderr.strip()}")
        self.ballast = path / "ballast"

    def fill(self) -> None:
        with open(self.ballast, "ab", buffering=0) as f:
            for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
                try:
                    while True:
                        f.write(b"\0" * chunk)
                except OSError:
                    pass

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def campaign_disk(root: Path, seed: int, fills: int, size_mb: int = 24) -> Result:
    res = Result(f"full disk under load ({fills} fills of a {size_mb} MB tmpfs, seed {seed})")
    if os.geteuid() != 0:
        res.skipped = "mounting a tmpfs needs root"
        return res
    try:
        disk = Tmpfs(root / "disk", size_mb)
    except OSError as e:
        res.skipped = str(e)
        return res
    load = None
    node = None
    resumed: list[float] = []
    counts = dict.fromkeys(["fills", "said so on /api/health (503)", "refused a transaction with 503 kept:false",
                            "held production while full (at most 1 block more)", "resumed by itself"], 0)
    try:
        net = make_net(root, seed, nodes=1, users=4, datadir_of=lambda i: disk.path / "data")
        node = net.nodes[0]
        node.start()
        wait_for(lambda: node.height >= 2, 60, "the first blocks")
        load = Load(node, net, seed, bids=True).start()
        for k in range(fills):
            n = len(load.answers)
            wait_for(lambda: sum(a.status == 202 for a in load.answers[n:]) >= 5, 60, "transactions accepted")
            disk.fill()
            counts["fills"] += 1
            try:
                wait_for(lambda: node.request("GET", "/api/health")[0] == 503, 30, "/api/health 503")
                counts["said so on /api/health (503)"] += 1
            except Violation as e:
                res.violations.append(f"fill {k + 1}: {e}")
            n = len(load.answers)
            try:
                wait_for(lambda: any(a.status == 503 and a.kept is False for a in load.answers[n:]), 30,
                         "a transaction refused with 503, kept: false")
                counts["refused a transaction with 503 kept:false"] += 1
            except Violation as e:
                res.violations.append(f"fill {k + 1}: {e}")
            stalled = node.height
            time.sleep(2)
            if node.height <= stalled + 1:
                counts["held production while full (at most 1 block more)"] += 1
            else:
                res.violations.append(f"fill {k + 1}: height went from {stalled} to {node.height} on a full disk")
            disk.free()
            t0 = time.monotonic()
            try:
                wait_for(lambda: node.request("GET", "/api/health")[0] == 200, 120, "the node to resume by itself")
                h = node.height
                wait_for(lambda: node.height >= h + 2, 60, "two blocks after resuming")
                resumed.append(time.monotonic() - t0)
                counts["resumed by itself"] += 1
            except Violation as e:
                res.violations.append(f"fill {k + 1}: {e}")
            say(f"fill {k + 1}/{fills}: resumed after {time.monotonic() - t0:.1f} s; height {node.height}")
        n = len(load.answers)
        wait_for(lambda: sum(a.status == 202 for a in load.answers[n:]) >= 5, 60, "transactions accepted at the end")
        load.stop()
        code = node.stop()
        if code != 0:
            res.violations.append(f"the node exited {code} on SIGINT")
        node.start()
        h = node.height
        wait_for(lambda: node.height >= h + 2, 60, "blocks after the restart")
        statuses = tx_statuses(node, load.answers)
        height = node.height
        accepted = load.accepted()
        lost = [a for a in accepted if statuses[a.hash] not in ("included", "pending")
                and not (a.bid_expiry is not None and a.bid_expiry <= height)]
        not_kept = [a for a in load.answers if a.status != 202 and a.kept is False]
        twice = [a for a in not_kept if statuses[a.hash] is not None]
        by_status: dict[int, int] = {}
        for a in load.answers:
            by_status[a.status] = by_status.get(a.status, 0) + 1
        for key, v in counts.items():
            res.row(key, v)
        res.row("seconds to resume after the disk was freed (min / median / max)",
                f"{min(resumed):.1f} / {sorted(resumed)[len(resumed) // 2]:.1f} / {max(resumed):.1f}" if resumed else "-")
        res.row("answers by status", ", ".join(f"{k or 'none'}: {v}" for k, v in sorted(by_status.items())))
        res.row("answered 202", len(accepted))
        res.row("LOST (answered 202, after a clean restart neither in a block nor pending)", len(lost))
        res.row("answered kept:false", len(not_kept))
        res.row("of them in a block or pending all the same", len(twice))
        bad_json = sum(1 for a in load.answers if a.status >= 500 and a.kept is None)
        res.row("errors without a kept field (5xx)", bad_json)
        log = node.log_text()
        res.row("tracebacks in the node's log", log.count("Traceback"))
        res.row("log lines 'not producing' / 'takes writes again'",
                f"{log.count('not producing')} / {log.count('takes writes again')}")
        if lost:
            res.violations.append(f"{len(lost)} transactions answered 202 lost: " + ", ".join(a.hash[:16] for a in lost[:5]))
        if twice:
            res.violations.append(f"{len(twice)} transactions answered kept:false went in: "
                                  + ", ".join(a.hash[:16] for a in twice[:5]))
        if bad_json:
            res.violations.append(f"{bad_json} 5xx answers without a kept field")
        bad = money_adds_up(node, net.addresses)
        if bad:
            res.violations.append(bad)
        problems, _ = chain_breaks(node, 0)
        res.violations += problems
    finally:
        if load is not None:
            load.stop()
        if node is not None:
            node.kill()
        disk.unmount()
    return res


# ======================================================================================= 3. damage
def file_kind(rel: str) -> str:
    """What a data directory file is, for counting: chain/*.log, chain/*.ldb, chain/MANIFEST, ..."""
    name = rel.rsplit("/", 1)[-1]
    if rel.startswith("chain/"):
        if name.endswith(".log"):
            return "chain/*.log"
        if name.endswith((".ldb", ".sst")):
            return "chain/*.ldb"
        if name.startswith("MANIFEST-"):
            return "chain/MANIFEST-*"
        return f"chain/{name}"  # CURRENT, LOG, LOG.old, LOCK
    if rel.startswith("keystore/"):
        return "keystore/*"
    return rel  # chain.head, mempool.journal


DAMAGED_FILES = ("chain/", "chain.head", "mempool.journal", "keystore/")


def damage(path: Path, op: str, rng: random.Random) -> str:
    """Flip one byte (XOR 0x55) or truncate `path` at a random offset; what was done, for the report."""
    size = path.stat().st_size
    offset = rng.randrange(size)
    if op == "flip":
        with open(path, "r+b") as f:
            f.seek(offset)
            b = f.read(1)
            f.seek(offset)
            f.write(bytes([b[0] ^ 0x55]))
        return f"byte {offset} of {size} flipped"
    os.truncate(path, offset)
    return f"truncated to {offset} of {size} bytes"


def dump_store(datadir: Path) -> dict[bytes, bytes] | str:
    """Every entry of a data directory's chain database as the node reads it at start (the Store with its
    checksums and watermark, then Chain.check over the whole chain), or why it is refused.  On a copy:
    LevelDB rewrites its files as it opens them."""
    from consensus.chain.chain import Chain
    from consensus.chain.store import Store, StoreError
    from consensus.rules.genesis import load_genesis

    work = Path(tempfile.mkdtemp(prefix="dump-"))
    try:
        if (datadir / "chain").exists():
            shutil.copytree(datadir / "chain", work / "chain")
        if (datadir / "chain.head").exists():
            shutil.copy(datadir / "chain.head", work / "chain.head")
        try:
            store = Store(str(work / "chain"), watermark=True)
        except StoreError as e:
            return f"refused: {e}"
        try:
            Chain(store, load_genesis(str(datadir / "genesis.json"))).check(depth=None)
            return dict(store.items(b""))
        except StoreError as e:
            return f"refused on read: {e}"
        finally:
            store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class Pristine:
    datadir: Path
    height: int
    hashes: dict[int, str]
    pending: list[str]
    entries: dict[bytes, bytes]
    files: dict[str, list[str]]  # kind: files of that kind (relative to the data directory)


def _pristine(root: Path, seed: int, slot_seconds: int = 10, txs: int = 30) -> tuple[Pristine, Net]:
    """A stopped node that ran twice (so its database has tables and a log), stopped right after four
    more transactions were answered 202 (pending in its journal).  Slots of 10 s: the trials restart it
    minutes later, and every slot it missed is a block to make first."""
    from consensus.chain.chain import Chain
    from consensus.chain.store import Store
    from consensus.rules.genesis import load_genesis

    net = make_net(root, seed, nodes=1, users=4, slot_seconds=slot_seconds)
    node = net.nodes[0]
    node.start()
    try:
        wait_for(lambda: node.height >= 1, 60, "the first block")
        load = Load(node, net, seed, pause=0.01).start()
        wait_for(lambda: len(load.accepted()) >= txs, 90, f"{txs} transactions accepted")
        load.stop()
        h = node.height
        wait_for(lambda: node.height > h, 60, "a block with them")
        node.stop()
        node.start()
        load = Load(node, net, seed + 1, pause=0.01).start()
        wait_for(lambda: len(load.accepted()) >= txs, 90, f"{txs} more transactions accepted")
        load.stop()
        h = node.height
        wait_for(lambda: node.height > h, 60, "a block with them")
        bad = money_adds_up(node, net.addresses)
        if bad:
            raise Violation(f"before any damage: {bad}")
        info = node.get("/api/node")
        pending = []
        for u in net.users[:2]:
            nonce = node.get(f"/api/address/{encode_address(address_of_key(u))}")["pending_nonce"]
            for k in range(2):
                tx = sign_tx(u, chain_id=info["chain_id"], nonce=nonce + k, fee=1000, body=Transfer(address_of_key(u), 7 + k))
                status, doc = node.submit(tx.encoded)
                if status != 202:
                    raise Violation(f"a transaction was refused: {status} {doc}")
                pending.append(tx.hash.hex())
    finally:
        if node.running():
            node.stop()
    (node.datadir / "node.json").unlink(missing_ok=True)
    entries = dump_store(node.datadir)
    if not isinstance(entries, dict):
        raise Violation(f"the undamaged store: {entries}")
    work = Path(tempfile.mkdtemp(prefix="h-"))
    try:
        shutil.copytree(node.datadir / "chain", work / "chain")
        st = Store(str(work / "chain"))
        try:
            chain = Chain(st, load_genesis(str(node.datadir / "genesis.json")))
            height = chain.height
            hashes = {h: chain.hash_at(h).hex() for h in range(height + 1)}
        finally:
            st.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    files: dict[str, list[str]] = {}
    for p in sorted(node.datadir.rglob("*")):
        rel = str(p.relative_to(node.datadir))
        if p.is_file() and rel.startswith(DAMAGED_FILES):
            files.setdefault(file_kind(rel), []).append(rel)
    return Pristine(node.datadir, height, hashes, pending, entries, files), net


def campaign_damage(root: Path, seed: int, trials: int, plan: list[tuple[str, str]] | None = None,
                    slot_seconds: int = 10, txs: int = 30, kinds: list[str] | None = None) -> Result:
    """`trials` flips and truncations of each file kind (of `kinds`, if given); or only the (kind, op)
    pairs of `plan`, once each."""
    res = Result(f"damaged files on a stopped node ({trials} flip(s) and {trials} truncation(s) per file kind, "
                 f"seed {seed})")
    rng = random.Random(f"damage/{seed}")
    pristine, net = _pristine(root / "pristine", seed, slot_seconds, txs)
    outcomes: dict[str, dict[str, int]] = {}
    oracle: dict[str, dict[str, int]] = {}
    say(f"pristine node at height {pristine.height}; files: "
        + ", ".join(f"{k} x{len(v)}" for k, v in pristine.files.items()))
    trial = 0
    todo = plan or [(kind, op) for kind in sorted(pristine.files) if not kinds or kind in kinds
                    for op in ("flip", "truncate") for _ in range(trials)]
    for kind, op in todo:
        files = pristine.files.get(kind)
        if not files:
            res.notes.append(f"no {kind} file in the data directory")
            continue
        rel = rng.choice(files)
        if (pristine.datadir / rel).stat().st_size == 0:
            outcomes.setdefault(kind, {}).setdefault("empty file: nothing to damage", 0)
            outcomes[kind]["empty file: nothing to damage"] += 1
            continue
        trial += 1
        work = root / f"trial{trial}"
        shutil.copytree(pristine.datadir, work / "data")
        did = damage(work / "data" / rel, op, rng)
        what = f"{rel}: {did}"
        # the database as the node's Store reads it
        got = dump_store(work / "data")
        if isinstance(got, str):
            o = "refused"
        else:
            changed = sum(1 for k, v in got.items() if pristine.entries.get(k) != v)
            lost = sum(1 for k in pristine.entries if k not in got)
            o = "all as written" if not changed and not lost else "READ CHANGED"
            if o == "READ CHANGED":
                res.notes.append(f"{what}: the Store read back {changed} changed/new and {lost} missing "
                                 f"entries without an error")
        oracle.setdefault(kind, {}).setdefault(o, 0)
        oracle[kind][o] += 1
        verdict = _damaged_node(Node(work / "data", work / "node.log"), pristine, net, what, res)
        outcomes.setdefault(kind, {}).setdefault(verdict, 0)
        outcomes[kind][verdict] += 1
        say(f"trial {trial}: {what}: {verdict}")
        shutil.rmtree(work, ignore_errors=True)
    cols = ["sound", "refused (one line)", "refused (more lines)", "runs, check DAMAGED", "SILENT"]
    res.rows.append(("**file kind**", "**" + " / ".join(cols) + "; the Store and Chain.check read in-process**"))
    for kind in sorted(outcomes):
        o = outcomes[kind]
        extra = "; ".join(f"{k}: {v}" for k, v in o.items() if k not in cols)
        reads = ", ".join(f"{k} {v}" for k, v in sorted(oracle.get(kind, {}).items()))
        res.row(kind, " / ".join(str(o.get(c, 0)) for c in cols) + (f" ({extra})" if extra else "")
                + (f"; reads: {reads}" if reads else ""))
    return res


def _damaged_node(node: Node, p: Pristine, net: Net, what: str, res: Result) -> str:
    try:
        node.start(timeout=60)
    except Refused as e:
        words = said(e)
        if len(words) == 1:
            if not any(w in words[0] for w in REPAIR_WORDS) and not what.startswith("keystore/"):
                res.notes.append(f"{what}: refused in one line not naming transx check/repair: {words[0][:200]}")
            return "refused (one line)"
        res.notes.append(f"{what}: refused with {len(words)} lines: {' | '.join(words)[:300]}")
        return "refused (more lines)"
    silent = []
    try:
        height = node.height
        if height < p.height:
            silent.append(f"started at height {height}, below {p.height}")
        for h in range(0, min(height, p.height) + 1):
            status, b = node.request("GET", f"/api/block/{h}")
            if status != 200:
                silent.append(f"block {h} missing ({status})")
                break
            if b["hash"] != p.hashes[h]:
                silent.append(f"block {h} is not the one written")
                break
        problems, _ = chain_breaks(node, 0)
        silent += problems
        bad = money_adds_up(node, net.addresses)
        if bad:
            silent.append(bad)
        for h in p.pending:
            status, doc = node.request("GET", f"/api/tx/{h}")
            if status != 200 or doc.get("status") not in ("pending", "included"):
                silent.append(f"pending transaction {h[:16]} (answered 202 before the stop) is gone")
    finally:
        code = node.stop()
    log = node.log_text()
    if silent:
        said_words = [ln for ln in log.splitlines() if "WARN" in ln or "ERROR" in ln or "damaged" in ln]
        res.violations.append(f"{what}: started and ran without refusing: {'; '.join(silent)}"
                              + (f" (its log warned: {said_words[0][:160]})" if said_words else " (its log said nothing)"))
        return "SILENT"
    if code != 0:
        res.notes.append(f"{what}: ran, but exited {code} on SIGINT")
    r = transx("check", *node.dd)
    if r.returncode == 0 and "is sound" in r.stdout:
        return "sound"
    res.notes.append(f"{what}: ran; transx check: {' | '.join(ln for ln in r.stdout.splitlines() if 'ok' not in ln[:4])[:200]}")
    return "runs, check DAMAGED"


# ======================================================================================= 4. clock
def libfaketime() -> str | None:
    """libfaketime's preload library (Debian's `faketime` package), if installed."""
    for d in ("/usr/lib/x86_64-linux-gnu/faketime", "/usr/lib/aarch64-linux-gnu/faketime", "/usr/lib/faketime",
              "/usr/local/lib/faketime", "/usr/lib64/faketime"):
        for name in ("libfaketimeMT.so.1", "libfaketime.so.1"):
            if Path(d, name).exists():
                return str(Path(d, name))
    return None


def campaign_clock(root: Path, seed: int, jumps: int, short: bool = False) -> Result:
    """The node's wall clock (CLOCK_REALTIME, through libfaketime reading an offset file once a second;
    the monotonic clock left alone, as an NTP step leaves it) steps forward by F s, back to the true time,
    back by B s below it, and to the true time again; F and B grow with each jump."""
    res = Result(f"clock steps ({jumps} forward-and-back rounds, seed {seed})")
    lib = libfaketime()
    if lib is None:
        res.skipped = "libfaketime is not installed (apt-get install faketime)"
        return res
    rng = random.Random(f"clock/{seed}")
    offset_file = root / "offset"
    offset = {"now": 0}

    def set_offset(seconds: int) -> None:
        offset_file.write_text(f"{seconds:+d}\n")
        offset["now"] = seconds

    set_offset(0)
    env = {**ENV, "LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(offset_file),
           "FAKETIME_CACHE_DURATION": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    net = make_net(root, seed, nodes=1, users=4)
    node = net.nodes[0]
    node.env = env
    seen: dict[int, int] = {}  # height: timestamp
    worst = {"ahead_of_node_clock_ms": -10**12, "ahead_of_real_clock_ms": -10**12}
    rows: list[tuple[str, str]] = []
    load = None

    def poll(window_offsets: list[int]) -> int:
        """Read the blocks new since the last poll; check each stamp against the node's clock."""
        head = node.get("/api/head")
        real = time.time() * 1000
        node_clock = real + max(window_offsets) * 1000
        for h in range(max(seen, default=-1) + 1, head["height"] + 1):
            status, b = node.request("GET", f"/api/block/{h}")
            if status != 200:
                continue
            ts = b["timestamp"]
            seen[h] = ts
            worst["ahead_of_node_clock_ms"] = max(worst["ahead_of_node_clock_ms"], ts - node_clock)
            worst["ahead_of_real_clock_ms"] = max(worst["ahead_of_real_clock_ms"], ts - real)
            if ts > node_clock + MAX_FUTURE_MS + 1000:
                res.violations.append(f"block {h} stamped {ts - node_clock:.0f} ms ahead of the node's clock "
                                      f"(allowed {MAX_FUTURE_MS})")
        return head["height"]

    def phase(name: str, to: int, hold: float, expect_blocks: bool | None) -> None:
        before = offset["now"]
        set_offset(to)
        t0 = time.monotonic()
        h0 = poll([before, to])
        longest, last_h, last_t = 0.0, h0, t0
        while time.monotonic() - t0 < hold:
            time.sleep(0.2)
            h = poll([before, to])
            if h != last_h:
                last_h, last_t = h, time.monotonic()
            longest = max(longest, time.monotonic() - last_t)
        alive = node.running()
        if not alive:
            res.violations.append(f"{name}: the node exited ({node.proc.returncode})")
        made = last_h - h0
        rows.append((name, f"{made} blocks in {hold:.0f} s, longest without a block {longest:.1f} s"
                     + ("" if alive else ", EXITED")))
        if expect_blocks and made == 0:  # said, not failed: a starved machine makes slow blocks too (the end waits)
            res.notes.append(f"{name}: no block in {hold:.0f} s")

    try:
        node.start()
        wait_for(lambda: node.height >= 2, 60, "the first blocks")
        load = Load(node, net, seed, bids=False, pause=0.1).start()
        poll([0])
        for j in range(jumps):
            forward = ([8] if short else [20, 60, 300])[min(j, 0 if short else 2)] + rng.randint(0, 3)
            back = ([5] if short else [15, 45, 120])[min(j, 0 if short else 2)] + rng.randint(0, 3)
            hold = 3 if short else 8
            log_from = len(node.log_text())
            if not short:
                phase(f"round {j + 1}: true time", 0, 5, True)
            phase(f"round {j + 1}: clock +{forward} s", forward, hold, None if short else True)
            # back to the true time: the head is now up to `forward` s ahead of the node's clock
            phase(f"round {j + 1}: back to the true time (head ~{forward} s ahead)", 0, forward + (3 if short else 10), None)
            phase(f"round {j + 1}: clock -{back} s", -back, hold, None)
            phase(f"round {j + 1}: true time again", 0, 8 if short else 10, True)
            said = [ln[9:130] for ln in node.log_text()[log_from:].splitlines()
                    if ("clock" in ln.lower() or "WARN" in ln or "ERROR" in ln)]
            rows.append((f"round {j + 1}: what the node said about it", f"{len(said)} lines"
                         + (f": {said[0]}" if said else "")))
        load.stop()
        h = node.height
        try:  # keeps producing: a block within a minute of the last step, on however loaded a machine
            wait_for(lambda: node.height > h, 60, "a block after the clock came back")
        except Violation as e:
            res.violations.append(f"{e} (the node {'runs' if node.running() else 'exited'}; it said: "
                                  f"{[ln[9:120] for ln in node.log_text().splitlines()[-3:]]})")
        t0 = time.monotonic()
        if not short:  # how long the head takes to be at the clock's slot again (the short form does not wait)
            try:
                wait_for(lambda: node.get("/api/node")["behind_slots"] <= 1, 120, "the node to catch up with its "
                         "clock", interval=1.0)
                caught_up = f"{time.monotonic() - t0:.0f}"
            except Violation:
                behind = node.get("/api/node")["behind_slots"]
                caught_up = f"more than 120 (still {behind} slots behind, producing)"
                res.notes.append(f"120 s after the clock came back the head was still {behind} slots behind it "
                                 f"(/api/health: {node.request('GET', '/api/health')[1]})")
            rows.append(("seconds after the last step until the head was at the clock's slot again", caught_up))
        statuses = tx_statuses(node, load.accepted())
        lost = [a for a in load.accepted() if statuses[a.hash] not in ("included", "pending")]
        rows.append(("transactions answered 202 / lost", f"{len(load.accepted())} / {len(lost)}"))
        if lost:
            res.violations.append(f"{len(lost)} transactions answered 202 lost")
        problems, _ = chain_breaks(node, 0)
        res.violations += problems
        bad = money_adds_up(node, net.addresses)
        if bad:
            res.violations.append(bad)
        stamps = [seen[h] for h in sorted(seen)]
        if any(b <= a for a, b in zip(stamps, stamps[1:])):
            res.violations.append("block timestamps do not increase along the chain")
        rows.append(("blocks checked", len(seen)))
        rows.append(("most a block was stamped ahead of the node's own clock (allowed MAX_FUTURE_MS)",
                     f"{worst['ahead_of_node_clock_ms'] / 1000:.1f} s ({MAX_FUTURE_MS / 1000:.0f} s)"))
        rows.append(("most a block was stamped ahead of the true time", f"{worst['ahead_of_real_clock_ms'] / 1000:.1f} s"))
        rows.append(("tracebacks in the node's log", node.log_text().count("Traceback")))
        rows.append(("API connections closed without an answer (asked again)", node.dropped))
        rows.append(("slowest API answer", f"{node.slowest:.1f} s"))
    finally:
        if load is not None:
            load.stop()
        node.kill()
    res.rows += rows
    return res


# ======================================================================================= 5. hostile
def _flood(peer_addr: str, topics: dict[str, str], items: int, seed: int) -> dict[str, Any]:
    """A libp2p peer with a node's settings (Noise, yamux, gossipsub) that publishes `items` pieces of
    garbage on the node's topics as fast as it can; what it saw."""
    import trio
    from libp2p import new_host
    from libp2p.crypto.x25519 import create_new_key_pair as x25519_pair
    from libp2p.identity_utils import create_identity_from_seed
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
    from libp2p.pubsub.pubsub import Pubsub, get_content_addressed_msg_id
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE, Transport as NoiseTransport
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX, Yamux
    from libp2p.tools.anyio_service import background_trio_service
    from multiaddr import Multiaddr

    from p2p import framing

    rng = random.Random(f"flood/{seed}")
    out: dict[str, Any] = {"sent": 0, "peer_id": "", "error": None}

    async def main() -> None:
        key_pair = create_identity_from_seed(rng.randbytes(32))
        noise = NoiseTransport(key_pair, noise_privkey=x25519_pair().private_key)
        host = new_host(key_pair=key_pair, sec_opt={NOISE: noise}, muxer_opt={YAMUX: Yamux})
        gossipsub = GossipSub(protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID], degree=6, degree_low=4,
                              degree_high=12, heartbeat_interval=1, spam_protection_enabled=False,
                              eclipse_protection_enabled=False)
        pubsub = Pubsub(host, gossipsub, msg_id_constructor=get_content_addressed_msg_id)
        out["peer_id"] = ID.from_pubkey(key_pair.public_key).to_base58()
        node_info = info_from_p2p_addr(Multiaddr(peer_addr))

        async def drain(sub) -> None:
            while True:
                await sub.get()

        async with background_trio_service(pubsub), background_trio_service(gossipsub):
            async with host.run(listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/0")]), trio.open_nursery() as nursery:
                await pubsub.wait_until_ready()
                for t in topics.values():
                    nursery.start_soon(drain, await pubsub.subscribe(t))
                with trio.fail_after(15):
                    await host.connect(node_info)
                with trio.move_on_after(10):  # into the node's mesh, so a publish reaches it
                    while not all(node_info.peer_id in gossipsub.mesh.get(t, ()) for t in topics.values()):
                        await trio.sleep(0.05)
                kinds = list(topics)
                with trio.move_on_after(20):
                    for i in range(items):
                        kind = kinds[i % len(kinds)]
                        junk = [rng.randbytes(rng.randint(1, 600))] if i % 2 else [rng.randbytes(64)] * 3
                        data = framing.pack(junk) if i % 3 else b"\xff" * 6 + rng.randbytes(40)
                        try:
                            await pubsub.publish(topics[kind], data)
                        except Exception:  # the node hung up on us: what it should do
                            break
                        out["sent"] += 1
                        if i % 20 == 0:
                            await trio.sleep(0)
                await trio.sleep(2)
                nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except BaseException as e:  # noqa: BLE001 - a peer refused mid-flood is an outcome, reported
        out["error"] = f"{type(e).__name__}: {e}"[:200]
    return out


def _stall_tcp(port: int, n: int, hold: float) -> dict[str, int]:
    """`n` TCP connections to the node's libp2p port that send half a handshake line and then nothing."""
    socks, closed = [], 0
    for _ in range(n):
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"\x13/multistream/1.0")  # short of its length: the handshake never completes
            c.setblocking(False)
            socks.append(c)
        except OSError:
            closed += 1
    deadline = time.monotonic() + hold
    open_ = set(range(len(socks)))
    while time.monotonic() < deadline and open_:
        for i in list(open_):
            try:
                if socks[i].recv(4096) == b"":
                    open_.discard(i)
            except BlockingIOError:
                pass
            except OSError:
                open_.discard(i)
        time.sleep(0.2)
    for c in socks:
        c.close()
    return {"opened": len(socks), "refused": closed, "closed by the node": len(socks) - len(open_),
            "still open after": len(open_)}


def _slow_body(api: str, how: str, bound: float) -> tuple[float, bytes]:
    """A POST /api/tx whose body trickles a byte every 0.5 s (`trickle`) or stops after a byte (`stall`):
    how long the node kept it, and what it answered."""
    host, port = api.rsplit("/", 1)[-1].split(":")
    c = socket.create_connection((host, int(port)), timeout=1.0)
    t0 = time.monotonic()
    said = b""
    try:
        c.sendall(b"POST /api/tx HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 2000\r\n\r\n{")
        while time.monotonic() - t0 < bound:
            if how == "trickle":
                try:
                    c.sendall(b" ")
                except OSError:
                    break
            try:
                chunk = c.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            said += chunk
            if b"\r\n\r\n" in said:
                break
        return time.monotonic() - t0, said
    finally:
        c.close()


def campaign_hostile(root: Path, seed: int, rounds: int, items: int = 400, stalls: int = 50,
                     slow_clients: int = 20) -> Result:
    """Each round: a fresh libp2p identity floods `items` garbage messages; `stalls` raw TCP connections
    stall in the libp2p handshake; `slow_clients` HTTP clients trickle or stall their bodies (the node's
    bound: transxnode.api.server.BODY_SECONDS); meanwhile the API is timed and the chain watched."""
    from p2p.network import topic_name
    from transxnode.api.server import BODY_SECONDS

    res = Result(f"hostile peers and slow clients ({rounds} rounds, seed {seed})")
    net = make_net(root, seed, nodes=1, users=4)
    node = net.nodes[0]
    counts = dict.fromkeys(["rounds", "garbage messages published", "flooders banned", "flooders disconnected",
                            "stalled TCP connections", "of them closed by the node", "slow bodies",
                            "of them cut in time with 408", "of them cut in time, closed without an answer",
                            "of them kept longer than the bound"], 0)
    api_worst = 0.0
    load = None
    try:
        node.start()
        wait_for(lambda: node.height >= 2, 60, "the first blocks")
        load = Load(node, net, seed, bids=False, pause=0.1).start()
        runtime = json.loads((node.datadir / "node.json").read_text())
        chain_id = node.get("/api/node")["chain_id"]
        topics = {k: topic_name(chain_id, k) for k in ("tx", "proposal", "block")}
        p2p_port = int(runtime["peer"].split("/tcp/")[1].split("/")[0])
        for r in range(rounds):
            counts["rounds"] += 1
            h0 = node.height
            results: dict[str, Any] = {"slow": []}
            bound = BODY_SECONDS + 5

            def slow(k: int) -> None:
                results["slow"].append(_slow_body(node.api, "trickle" if k % 2 else "stall", bound + 5))

            threads = [threading.Thread(target=slow, args=(k,), daemon=True) for k in range(slow_clients)]
            threads.append(threading.Thread(target=lambda: results.__setitem__(
                "stall", _stall_tcp(p2p_port, stalls, 15)), daemon=True))
            threads.append(threading.Thread(target=lambda: results.__setitem__(
                "flood", _flood(runtime["peer"], topics, items, seed * 100 + r)), daemon=True))
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                t0 = time.monotonic()
                try:
                    node.get("/api/head")
                except OSError as e:
                    res.violations.append(f"round {r + 1}: the API did not answer: {e}")
                api_worst = max(api_worst, time.monotonic() - t0)
                if not node.running():
                    raise Violation(f"round {r + 1}: the node died ({node.proc.returncode})")
                time.sleep(0.5)
            flood = results["flood"]
            counts["garbage messages published"] += flood["sent"]
            peers = node.get("/api/peers")
            if any(b["peer_id"] == flood["peer_id"] for b in peers.get("banned", [])):
                counts["flooders banned"] += 1
            else:
                res.notes.append(f"round {r + 1}: the flooder was not banned ({flood})")
            if not any(p["peer_id"] == flood["peer_id"] for p in peers.get("peers", [])):
                counts["flooders disconnected"] += 1
            st = results["stall"]
            counts["stalled TCP connections"] += st["opened"]
            counts["of them closed by the node"] += st["closed by the node"]
            for lasted, said in results["slow"]:
                counts["slow bodies"] += 1
                if lasted > bound:
                    counts["of them kept longer than the bound"] += 1
                    res.violations.append(f"round {r + 1}: a slow body was kept {lasted:.0f} s (bound {BODY_SECONDS} s)")
                elif said.startswith(b"HTTP/1.1 408"):
                    counts["of them cut in time with 408"] += 1
                else:
                    counts["of them cut in time, closed without an answer"] += 1
            if node.height < h0 + 3:
                res.violations.append(f"round {r + 1}: the chain went from {h0} to {node.height} only")
            say(f"hostile round {r + 1}/{rounds}: {flood['sent']} garbage messages, height {h0} -> {node.height}, "
                f"stalls {st}, slow bodies {len(results['slow'])}")
        load.stop()
        statuses = tx_statuses(node, load.accepted())
        lost = [a for a in load.accepted() if statuses[a.hash] not in ("included", "pending")]
        for k, v in counts.items():
            res.row(k, v)
        res.row("slowest API answer meanwhile (GET /api/head)", f"{api_worst:.2f} s")
        res.row("transactions answered 202 meanwhile / lost", f"{len(load.accepted())} / {len(lost)}")
        log = node.log_text()
        res.row("tracebacks in the node's log", log.count("Traceback"))
        asgi = log.count("Error in ASGI Framework")
        busy = sum(ln.startswith("trio.BusyResourceError") for ln in log.splitlines())
        if asgi:
            res.notes.append(f"the node logged 'Error in ASGI Framework' with a traceback {asgi} times, {busy} of "
                             f"them trio.BusyResourceError ('another task is currently sending data on this "
                             f"SocketStream') from serve_app's 408 answer")
        if lost:
            res.violations.append(f"{len(lost)} transactions answered 202 lost")
    finally:
        if load is not None:
            load.stop()
        node.kill()
    return res


# ============================================================================================== main
@dataclass(frozen=True)
class Sizes:
    kills: int
    peers: int
    fills: int
    damages: int  # trials per file kind and damage (flip, truncate)
    jumps: int
    floods: int


FULL = Sizes(kills=100, peers=1, fills=10, damages=4, jumps=2, floods=3)
QUICK = Sizes(kills=3, peers=1, fills=1, damages=1, jumps=1, floods=1)


def run(only: list[str], seed: int, sizes: Sizes, root: Path, kinds: list[str] | None = None) -> list[Result]:
    out = []
    for name in only:
        started = time.monotonic()
        say(f"campaign {name} (seed {seed})")
        where = root / name
        where.mkdir(parents=True, exist_ok=True)
        try:
            r = _campaign(name, where, seed, sizes, kinds or [])
        except Exception as e:  # a campaign that could not finish is a finding too: said, not hidden
            import traceback

            r = Result(f"{name} (seed {seed})")
            r.violations.append(f"the campaign stopped: {type(e).__name__}: {e}")
            say(traceback.format_exc())
        r.row("wall seconds", f"{time.monotonic() - started:.0f}")
        out.append(r)
        say(f"campaign {name}: {len(r.violations)} violations")
    return out


def _campaign(name: str, where: Path, seed: int, sizes: Sizes, kinds: list[str]) -> Result:
    if name == "kill":
        return campaign_kill(where, seed, sizes.kills, sizes.peers)
    if name == "disk":
        return campaign_disk(where, seed, sizes.fills)
    if name == "damage":
        return campaign_damage(where, seed, sizes.damages, kinds=kinds)
    if name == "clock":
        return campaign_clock(where, seed, sizes.jumps)
    if name == "hostile":
        return campaign_hostile(where, seed, sizes.floods)
    raise ValueError(f"no campaign {name!r}: choose from {', '.join(CAMPAIGNS)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(CAMPAIGNS), help=f"campaigns, comma-separated ({','.join(CAMPAIGNS)})")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a few of each (the test's sizes)")
    ap.add_argument("--kills", type=int, help=f"kill -9s (default {FULL.kills})")
    ap.add_argument("--peers", type=int, help=f"nodes competing with the one killed (default {FULL.peers})")
    ap.add_argument("--fills", type=int, help=f"times the disk fills (default {FULL.fills})")
    ap.add_argument("--damages", type=int, help=f"trials per file kind and damage (default {FULL.damages})")
    ap.add_argument("--jumps", type=int, help=f"forward-and-back clock jumps (default {FULL.jumps})")
    ap.add_argument("--floods", type=int, help=f"hostile rounds (default {FULL.floods})")
    ap.add_argument("--kinds", default="", help="damage: only these file kinds, comma-separated (e.g. 'chain/*.log,chain.head')")
    ap.add_argument("--keep", type=Path, help="work here and keep the node directories (default: a temporary one)")
    args = ap.parse_args()
    base = QUICK if args.quick else FULL
    sizes = Sizes(**{k: (getattr(args, k) if getattr(args, k) is not None else getattr(base, k))
                     for k in Sizes.__dataclass_fields__})
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    print(f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}; seed {args.seed}; {sizes}")
    root = args.keep or Path(tempfile.mkdtemp(prefix="transx-faults-"))
    try:
        results = run(only, args.seed, sizes, root, [k for k in args.kinds.split(",") if k])
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print()
    for r in results:
        print(r.table())
    bad = sum(len(r.violations) for r in results)
    print(f"{bad} violations")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
