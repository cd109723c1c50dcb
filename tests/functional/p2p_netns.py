"""Multi-host: three nodes, each in a network namespace of its own, joined by veth links to a bridge.

Each node sees only its own network stack, as on separate machines: it gossips and syncs over its
veth link to a bridge (in a fourth namespace: the "switch").  The test cuts one node off by taking
its link down (`ip link set down`, at both ends of the cable), checks that the other two keep
producing blocks and agree while the cut-off node, a solver too, builds a branch of its own, then
brings the link back up and checks that all three converge on one chain (the fork choice reorgs
within `finality_depth`, so the partition is kept a few slots short of it).

Each namespace also has a second veth link to the test's own (root) namespace, used only to reach
the node's HTTP API; it is never cut.  Namespace and link names carry the test's pid, so runs do not
collide; teardown stops every process and deletes every namespace and link it made, also on failure.

Needs Linux, iproute2's `ip`, and the right to create network namespaces (root, or CAP_SYS_ADMIN
and CAP_NET_ADMIN); skipped, saying which, where any of these is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from node_support import ENV, PASSWORD, TRANSX, wait_for

SLOT_SECONDS = 1
FINALITY_DEPTH = 12  # dev_genesis's
API_PORT = 8080
P2P_PORT = 4001  # the same in every namespace: each has its own port space
PARTITION_SLOTS = 4  # how far the majority builds past the cut before the heal (well under finality: a slow
# machine's polling adds slots before the heal, which must come before FINALITY_DEPTH - 4)
START_DELAY = 8  # seconds from writing the genesis to its first slot: the nodes start within it (~3-5 s)
BUDGET_SECONDS = 80  # every wait of the test together (about 20 s on an idle 2-core machine)
PREFIX = "txn"  # then the pid: "txn1234a" is node a's namespace in run 1234, "txn1234sw" the bridge's


@dataclass
class Host:
    """One node's namespace: its links, addresses and process."""

    label: str  # "a", "b", "c"
    ns: str
    link: str  # its interface on the shared segment, inside `ns`
    port: str  # the other end of that veth: a port of the bridge, in the bridge namespace
    p2p_ip: str
    api_link: str  # the API link's end in the root namespace
    api_ip: str
    seed: bytes = b""
    address: bytes = b""
    datadir: Path | None = None
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def api(self) -> str:
        return f"http://{self.api_ip}:{API_PORT}"

    def get(self, path: str):
        with urllib.request.urlopen(self.api + path, timeout=3) as r:
            return json.loads(r.read())

    def height(self) -> int:
        return self.get("/api/node")["height"]

    def block(self, height: int) -> dict | None:
        try:
            return self.get(f"/api/block/{height}")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def log(self, tail: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
        return f"--- node {self.label} ({self.ns}) log, last {tail} chars:\n{text[-tail:]}"


@dataclass
class Topology:
    prefix: str
    bridge_ns: str
    hosts: list[Host] = field(default_factory=list)
    made_ns: list[str] = field(default_factory=list)
    made_root_links: list[str] = field(default_factory=list)


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _subnet_octet(pid: int) -> int:
    """A second octet for this run's 10.x.0.0/16 that no address or route in the root namespace uses."""
    used = ip("-4", "route", "show", "table", "all", check=False).stdout + ip("-4", "addr", check=False).stdout
    for k in range(200):
        octet = 20 + (pid + k) % 230
        if f"10.{octet}." not in used:
            return octet
    pytest.skip("no free 10.x.0.0/16 subnet in the root namespace for the test's links")


def _make_topology(prefix: str) -> Topology:
    """Namespaces `<prefix>a/b/c` on a bridge in `<prefix>sw`, each with its own API link to the root
    namespace.  Skips where namespaces, bridges or veth links are not permitted; whatever was made
    before a skip or an error is deleted again."""
    if not sys.platform.startswith("linux"):
        pytest.skip("network namespaces are a Linux feature")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed (no `ip` command): cannot make network namespaces "
                    "(Debian: apt-get install iproute2)")
    octet = _subnet_octet(os.getpid())
    topo = Topology(prefix, f"{prefix}sw")
    try:
        _build(topo, octet)
    except BaseException:  # pytest.skip's exception too
        _teardown(topo)
        raise
    return topo


def _build(topo: Topology, octet: int) -> None:
    prefix = topo.prefix
    r = ip("netns", "add", topo.bridge_ns, check=False)
    if r.returncode != 0:
        pytest.skip(f"network namespaces are not permitted here: `ip netns add` failed: {r.stderr.strip()}")
    topo.made_ns.append(topo.bridge_ns)
    ip("link", "set", "lo", "up", ns=topo.bridge_ns)
    r = ip("link", "add", "br0", "type", "bridge", ns=topo.bridge_ns, check=False)
    if r.returncode != 0:
        pytest.skip(f"Linux bridges are not available here: {r.stderr.strip()}")
    ip("link", "set", "br0", "up", ns=topo.bridge_ns)
    for k, label in enumerate("abc", 1):
        h = Host(label, f"{prefix}{label}", link=f"{prefix}{label}0", port=f"{prefix}{label}p",
                 p2p_ip=f"10.{octet}.0.{k}", api_link=f"{prefix}{label}r", api_ip=f"10.{octet}.{k}.2")
        ip("netns", "add", h.ns)
        topo.made_ns.append(h.ns)
        topo.hosts.append(h)
        ip("link", "set", "lo", "up", ns=h.ns)
        # The node's link to the bridge: a veth made with one end in each namespace.
        r = ip("link", "add", h.link, "netns", h.ns, "type", "veth", "peer", "name", h.port, "netns", topo.bridge_ns,
               check=False)
        if r.returncode != 0:
            pytest.skip(f"veth links are not available here: {r.stderr.strip()}")
        ip("link", "set", h.port, "master", "br0", "up", ns=topo.bridge_ns)
        ip("addr", "add", f"{h.p2p_ip}/24", "dev", h.link, ns=h.ns)
        ip("link", "set", h.link, "up", ns=h.ns)
        # The API link: root namespace <-> node namespace, a /30 of its own; never cut.
        inner = f"{prefix}{label}s"
        ip("link", "add", h.api_link, "type", "veth", "peer", "name", inner, "netns", h.ns)
        topo.made_root_links.append(h.api_link)
        ip("addr", "add", f"10.{octet}.{k}.1/30", "dev", h.api_link)
        ip("link", "set", h.api_link, "up")
        ip("addr", "add", f"{h.api_ip}/30", "dev", inner, ns=h.ns)
        ip("link", "set", inner, "up", ns=h.ns)


def _stop_processes(topo: Topology) -> None:
    """SIGINT each node's process group, then SIGKILL what is left; then anything still in our namespaces."""
    running = [h for h in topo.hosts if h.proc is not None and h.proc.poll() is None]
    for h in running:
        try:
            os.killpg(h.proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    for h in running:
        try:
            h.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(h.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            h.proc.wait(10)
    for ns in topo.made_ns:  # a namespace of our own holds only processes we started
        for pid in ip("netns", "pids", ns, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def _teardown(topo: Topology) -> None:
    _stop_processes(topo)
    for ns in reversed(topo.made_ns):  # deleting a namespace deletes its veths, and their peers
        ip("netns", "del", ns, check=False)
    for link in topo.made_root_links:
        if ip("link", "show", link, check=False).returncode == 0:
            ip("link", "del", link, check=False)



def _sweep_stale() -> None:
    """Delete what an earlier run that was killed outright (no teardown) left behind: namespaces and
    root links named after a pid that no longer runs, with no process left in them."""
    if shutil.which("ip") is None:
        return
    names = [line.split()[0] for line in ip("netns", "list", check=False).stdout.splitlines() if line.strip()]
    links = re.findall(rf"^\d+: ({PREFIX}\d+[abc]r)@", ip("-o", "link", "show", check=False).stdout, re.M)
    for name in names + links:
        m = re.fullmatch(rf"{PREFIX}(\d+)(sw|[abc])" if name in names else rf"{PREFIX}(\d+)[abc]r", name)
        if m is None or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        if name in names:
            if not ip("netns", "pids", name, check=False).stdout.split():
                ip("netns", "del", name, check=False)
        else:
            ip("link", "del", name, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
def topo():
    _sweep_stale()
    t = _make_topology(f"{PREFIX}{os.getpid()}")
    try:
        yield t
    finally:
        _teardown(t)
    leftover = [ns for ns in t.made_ns if ns in ip("netns", "list", check=False).stdout.split()]
    assert not leftover, f"namespaces left behind: {leftover}"


# ------------------------------------------------------------------ the network

def _init_nodes(topo: Topology, tmp_path: Path) -> None:
    from p2p.network import peer_id_from_seed
    from transxnode.datadir.create import init_datadir
    from consensus.rules.genesis import dev_genesis
    from consensus.rules.keys import address_of_key

    for h in topo.hosts:
        h.seed = os.urandom(32)
        h.address = address_of_key(SigningKey(h.seed))
    peers = {h.label: f"/ip4/{h.p2p_ip}/tcp/{P2P_PORT}/p2p/{peer_id_from_seed(h.seed)}" for h in topo.hosts}
    # Starts once the nodes are up: a solver that starts after slots have passed mints them alone at
    # once, and three such branches deeper than the finality depth never reconcile.
    doc = dev_genesis([h.address for h in topo.hosts], [h.address for h in topo.hosts], slot_seconds=SLOT_SECONDS,
                      chain_id="transx-netns", start=int(time.time()) + START_DELAY)
    assert doc["finality_depth"] == FINALITY_DEPTH
    for h in topo.hosts:
        h.datadir = tmp_path / f"node-{h.label}"
        h.log_path = tmp_path / f"node-{h.label}.log"
        init_datadir(h.datadir, PASSWORD, doc, api_listen=f"{h.api_ip}:{API_PORT}", seed=h.seed,
                     p2p_listen=f"/ip4/{h.p2p_ip}/tcp/{P2P_PORT}",
                     bootstrap=[p for label, p in peers.items() if label != h.label])


def _start(h: Host) -> None:
    with open(h.log_path, "ab") as log:
        h.proc = subprocess.Popen(["ip", "netns", "exec", h.ns, *TRANSX, "node", "--datadir", str(h.datadir)],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=ENV,
                                  start_new_session=True)  # its own process group, killed as one


def _heights(hosts: list[Host]) -> list[int]:
    return [h.height() for h in hosts]


def _agree(hosts: list[Host], depth: int = 2) -> int | None:
    """A height `depth` below every head (past the reveal window's churn) where all hold one block."""
    height = min(_heights(hosts)) - depth
    if height < 1:
        return None
    hashes = {(h.block(height) or {}).get("hash") for h in hosts}
    return height if len(hashes) == 1 and None not in hashes else None


def _set_link(topo: Topology, h: Host, state: str) -> None:
    """Plug or unplug `h`'s cable at both ends: its own interface and its port on the bridge."""
    ip("link", "set", h.link, state, ns=h.ns)
    ip("link", "set", h.port, state, ns=topo.bridge_ns)


def test_three_namespaces_partition_and_heal(topo, tmp_path):
    t0 = time.monotonic()
    deadline = t0 + BUDGET_SECONDS
    marks: dict[str, float] = {}
    a, b, c = topo.hosts
    majority = [a, b]

    def mark(what: str) -> None:
        marks[what] = round(time.monotonic() - t0, 1)

    def within(seconds: float) -> float:
        """A wait's timeout, cut to what is left of the test's time budget."""
        left = deadline - time.monotonic()
        assert left > 1, f"the test's {BUDGET_SECONDS} s budget is spent"
        return min(seconds, left)

    def snapshot() -> str:
        out = []
        for h in topo.hosts:
            try:
                info = h.get("/api/node")
                out.append(f"{h.label}: height {info['height']} head {info['head'][:12]} peers {info['peers']}")
            except (OSError, ValueError) as e:
                out.append(f"{h.label}: API unreachable ({e})")
        return "; ".join(out)

    # Each namespace reaches only its own addresses and, over the bridge, the other nodes'.
    for h in topo.hosts:
        routes = ip("-4", "route", "show", ns=h.ns).stdout
        assert routes.count(" dev ") == 2 and "default" not in routes, routes
    _init_nodes(topo, tmp_path)
    for h in topo.hosts:
        _start(h)
    try:
        for h in topo.hosts:
            wait_for(lambda: h.proc.poll() is not None or h.get("/api/node"), within(45), f"node {h.label}'s API")
            assert h.proc.poll() is None, f"node {h.label} exited with {h.proc.returncode}"
        mark("apis up")
        wait_for(lambda: all(h.get("/api/node")["peers"] == 2 for h in topo.hosts), within(30),
                 "every node connected to both others")
        mark("connected")
        # Agreement on a block made after all three were connected: the network is whole before the cut.
        settled = max(_heights(topo.hosts)) + 2
        wait_for(lambda: (_agree(topo.hosts) or 0) >= settled, within(30),
                 f"all three nodes to agree on block {settled} before the cut")
        mark("agree")

        # ---- partition: unplug c
        _set_link(topo, c, "down")
        cut = max(_heights(topo.hosts))
        mark("cut")
        # The majority keeps producing and agrees; c, alone, builds its own branch (it is a solver too).
        target = cut + PARTITION_SLOTS
        wait_for(lambda: (_agree(majority) or 0) >= target - 2 and min(_heights(majority)) >= target,
                 within(PARTITION_SLOTS * SLOT_SECONDS + 15),
                 f"a and b to agree on block {target - 2} while c is cut off")
        mark("majority advanced")
        # Block cut + 2 was proposed after the cut on both sides (block `cut` was still being selected
        # at most until one slot before), so c's block there cannot be the majority's.
        probe = cut + 2
        wait_for(lambda: c.height() >= probe, within(10), f"c to produce block {probe} alone")
        ours, theirs = c.block(probe), a.block(probe)
        assert ours["hash"] != theirs["hash"], f"c holds the majority's block {probe} although cut off"
        c_peers = c.get("/api/node")["peers"]

        # ---- heal: plug c back in
        _set_link(topo, c, "up")
        healed_at = max(_heights(topo.hosts))
        mark("healed")
        assert healed_at - cut < FINALITY_DEPTH - 4, "the partition lasted too long for a reorg to heal it"
        # Within finality: the fork choice must pick one branch before either is FINALITY_DEPTH deep.
        converged = wait_for(lambda: (x := _agree(topo.hosts)) is not None and x >= healed_at + 1 and x,
                             within((FINALITY_DEPTH - (healed_at - cut)) * SLOT_SECONDS + 10),
                             f"all three to agree on a block above {healed_at} after the heal")
        mark("converged")
        # One block in common is one history: the branch the losing side built during the cut is gone.
        at_probe = {h.label: h.block(probe)["hash"] for h in topo.hosts}
        assert len(set(at_probe.values())) == 1, at_probe
        winner = "c's" if at_probe["c"] == ours["hash"] else "the majority's"
        for h in topo.hosts:
            assert h.proc.poll() is None, f"node {h.label} died"
        print(f"\nnetns: cut at {cut}, healed at {healed_at}, converged at {converged} on {winner} branch; "
              f"c saw {c_peers} peers while cut; timeline (s): {marks}")
    except AssertionError as e:
        raise AssertionError(f"{e}\ntimeline (s): {marks}\nnow: {snapshot()}\n"
                             + "\n".join(h.log() for h in topo.hosts)) from None
