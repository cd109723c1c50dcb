"""`transx devnet`: a local network that trades, started with one command.

Creates a fresh directory with a development genesis in which every node is a
registered solver, starts the node processes on 127.0.0.1 (each bootstrapped
to all the others over libp2p), and plays simulated households against them,
each run by a home agent that the caller hands in (the CLI hands agent/'s HomeAgent;
this module never imports the layers above it) on an accelerated clock where
a slot plays half an hour: PV homes that sell by day and buy at night, homes
and EV charging stations that buy, each posting a bid for the first open slot
every slot, to a node of its own, so the bids reach the others by gossip.  Each household's meter is registered on
chain; after a slot it traded in, the meter reports what was really delivered
(the cleared quantity, off by the weather or the driver), and the chain settles
the difference.  Prints one status line per cleared slot, and stops every
process it started on Ctrl-C.

A node that stops answering (killed, restarting, its machine asleep) is said once, polled again, and said
again when it answers (at the API address its node.json gives then: a restart may pick another port);
meanwhile the driver reads the chain from a node that answers and sends each household's transactions
through it.  It gives up only when every node is gone for good: none answers and none runs (neither the
process it started nor the one a node.json names) for GONE_SECONDS.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey


from .node_api import ApiClient, ClientError
from transxnode.datadir.config import running_api, without_node_overrides
from transxnode.datadir.create import init_datadir
from consensus.rules.genesis import dev_genesis
from consensus.rules.keys import address_of_key, encode_address, public_key
from consensus.rules.metering import sign_reading
from consensus.rules.transactions import Bid, Body, MeterReading, RegisterMeter, sign_tx

PASSWORD = "devnet"  # the devnet's keys guard nothing of value; it is in <dir>/password, which each node's config names
API_TIMEOUT = 10  # s: a node slower than this to answer counts as not answering
POLL_SECONDS = 1.0  # how often a node that stopped answering is asked again
GONE_SECONDS = 30.0  # every node silent and no node process running this long: the devnet is gone
ROLES = (("pv", 0.45), ("home", 0.4), ("ev", 0.15))


class DevnetError(Exception):
    """The devnet cannot start; one line for the user."""


class StationPlugin(Protocol):
    """What `--station` needs of a plugin (transx_nfc provides it): why it cannot run here, and the
    `transx` commands that run a charging station on node 1 and an EV that taps it every `away` s."""

    def missing(self) -> str | None: ...

    def devnet_station(self, datadir: str, ev_address: str, away: float) -> list[tuple[list[str], str]]: ...


# A home agent for a role ("pv", "home", "ev"), drawn with the given random source: an object with
# `plan(first_slot, n, info, market, clock)` and a `battery` (or None), as agent.home.HomeAgent.
AgentFactory = Callable[[random.Random, str], Any]


# How far a household's metered energy strays from what it cleared (a uniform factor): the PV forecast
# misses the clouds, a home's load is not quite its profile, an EV leaves early or late.
DELIVERY = {"sell": (0.8, 1.1), "home": (0.85, 1.2), "pv": (0.85, 1.2), "ev": (0.7, 1.1)}
VIRTUAL_SLOT = 1800  # a devnet slot plays half an hour of a day in Kuala Lumpur


@dataclass
class Household:
    """A simulated participant run by the home agent (agent/): a home with rooftop PV (and maybe a
    battery) sells its surplus and buys at night, a home without buys, an EV charging station buys."""

    key: SigningKey
    role: str
    zone: int
    meter: SigningKey
    agent: Any  # a home agent (agent.home.HomeAgent), handed in by the caller
    nonce: int = 0

    @property
    def address(self) -> str:
        return encode_address(address_of_key(self.key))

    def bid(self, slot: int, info: dict, market: dict, clock: tuple[int, int]) -> Bid | None:
        """The agent's bid for `slot` (None when its forecast leaves too little to trade); its battery
        then runs through the slot as forecast."""
        plan = self.agent.plan(slot, 1, info, market, clock)
        if self.agent.battery is not None:
            self.agent.battery.step(plan.pv_wh[0] - plan.load_wh[0], clock[1])
        if not plan.bids:
            return None
        return plan.bids[0].to_bid(self.zone, info["gate_closure"])

    def reading(self, rng: random.Random, chain_id: str, slot: int, traded_wh: int, side: str) -> MeterReading:
        """What the meter measured in a slot where this household cleared `traded_wh` on `side`."""
        lo, hi = DELIVERY["sell" if side == "sell" else self.role]
        wh = min(2**32 - 1, round(traded_wh * rng.uniform(lo, hi)))
        flow = "exported_wh" if side == "sell" else "imported_wh"
        return sign_reading(self.meter, chain_id=chain_id, account=address_of_key(self.key), slot=slot, **{flow: wh})


@dataclass
class DevnetNode:
    datadir: Path
    address: str
    peer: str = ""
    proc: subprocess.Popen | None = None
    api: str = ""


def _seed(seed: int, label: str) -> bytes:
    return hashlib.blake2b(f"transx-devnet/{seed}/{label}".encode(), digest_size=32).digest()


def transx_command() -> list[str]:
    """How to run `transx` from here: the console script beside this Python, else `python -m cli`."""
    script = Path(sys.executable).parent / "transx"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


class Devnet:
    def __init__(self, directory: Path, *, nodes: int = 1, homes: int = 20, slot_seconds: int = 2, seed: int = 0,
                 say: Callable[[str], None] = print, agents: AgentFactory | None = None,
                 station: StationPlugin | None = None, gone_after: float = GONE_SECONDS) -> None:
        if homes and agents is None:
            raise ValueError("households need a home agent factory")
        self.n_nodes = nodes
        self.station = station
        self.extras: list[subprocess.Popen] = []  # the station and the emulated EV card
        self.ev_key = SigningKey(_seed(seed, "ev-owner"))
        self.dir, self.say, self.seed = directory, say, seed
        self.rng = random.Random(seed)
        self.slot_seconds = slot_seconds
        self.households = [
            Household(SigningKey(_seed(seed, f"home{k}")), role, self.rng.randrange(3),
                      SigningKey(_seed(seed, f"meter{k}")), agents(self.rng, role))  # type: ignore[misc]
            for k, role in enumerate(self.rng.choices([r for r, _ in ROLES], [w for _, w in ROLES], k=homes))
        ]
        self.nodes: list[DevnetNode] = []
        self.client: ApiClient | None = None  # the node the chain is read from (`reader`), while it answers
        self.reader = 0
        self.down: dict[int, float] = {}  # the nodes that stopped answering: when each was last asked
        self.gone_after = gone_after
        self._silent_since: float | None = None  # since when no node has answered, nor runs
        self._said_silent = False
        # Slot 0 plays the half hour from 07:00 today in Kuala Lumpur (UTC+8): the sun is up from the start.
        midnight = (int(time.time()) + 8 * 3600) // 86_400 * 86_400 - 8 * 3600
        self.clock = ((midnight + 7 * 3600) * 1000, VIRTUAL_SLOT)

    # ------------------------------------------------------------------ setup
    def create(self) -> None:
        """A fresh directory: one data directory per node, all on one development genesis."""
        if self.dir.exists():
            if not (self.dir / "devnet.json").exists() and any(self.dir.iterdir()):
                raise DevnetError(f"{self.dir} exists and is not a devnet directory; choose another --dir")
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        with os.fdopen(os.open(self.dir / "password", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(PASSWORD + "\n")  # `--datadir devnet/node1` signs without asking: the node configs name it
        from p2p.network import peer_id_from_seed

        node_keys = [SigningKey(_seed(self.seed, f"node{k}") if self.seed else os.urandom(32))
                     for k in range(self.n_nodes)]
        funded = [address_of_key(k) for k in node_keys] + [address_of_key(h.key) for h in self.households]
        if self.station:
            funded.append(address_of_key(self.ev_key))
        # Starts when the slowest node can be up: each process imports the solver and libp2p (~3 s).
        doc = dev_genesis(funded, [address_of_key(k) for k in node_keys], slot_seconds=self.slot_seconds,
                          chain_id="transx-devnet", start=int(time.time()) + 3 + self.n_nodes // 2,
                          outage_proof=True)
        peers = [f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_from_seed(bytes(key))}"
                 for port, key in zip(free_ports(len(node_keys)), node_keys)]
        for k, key in enumerate(node_keys):
            d = self.dir / f"node{k + 1}"
            listen = peers[k].rsplit("/p2p/", 1)[0]
            address, _ = init_datadir(d, PASSWORD, doc, api_listen="127.0.0.1:0", seed=bytes(key), p2p_listen=listen,
                                      bootstrap=[p for j, p in enumerate(peers) if j != k], password_file="../password")
            self.nodes.append(DevnetNode(d, address, peers[k]))
        if self.station:  # the EV owner's key lives beside node 1's, which also runs the station
            from transxnode.datadir.keystore import Keystore

            Keystore(self.nodes[0].datadir / "keystore").import_seed(bytes(self.ev_key), PASSWORD)
        if self.households:  # the first household's key beside its node's, for the owner app (/app/)
            from transxnode.datadir.keystore import Keystore

            k, h = self._app_household()
            Keystore(self.nodes[k % len(self.nodes)].datadir / "keystore").import_seed(bytes(h.key), PASSWORD)
        self._write_manifest()

    def _app_household(self) -> tuple[int, Household]:
        """The household the owner app is shown for: the first with rooftop PV, else the first."""
        return next(((k, h) for k, h in enumerate(self.households) if h.role == "pv"), (0, self.households[0]))

    def start(self, timeout: float = 60) -> None:
        for n in self.nodes:
            self.start_node(n)
        deadline = time.monotonic() + timeout
        for n in self.nodes:
            self.wait_node(n, deadline)
            self.say(f"node {n.datadir.name} up: API and explorer at {n.api}/  (key {n.address})")
        self._read_from(0)
        self._write_manifest()
        if self.households:
            k, h = self._app_household()
            self.say(f"the app for household {k} ({h.role}): {self.nodes[k % len(self.nodes)].api}/app/?account="
                     f"{h.address}  (password: {self.dir / 'password'})")
        if self.station:
            self.start_station()

    def start_station(self) -> None:
        """One charging station on node 1 with an emulated reader (nfcpy's udp driver), and an EV whose
        card taps every few slots: each visit opens a session, the next one closes it."""
        assert self.station is not None
        missing = self.station.missing()
        if missing:
            raise DevnetError(f"--station needs the NFC plugin: {missing}")
        d = str(self.nodes[0].datadir)
        env = {**os.environ, "TRANSX_PASSWORD": PASSWORD}
        away = 3 * self.slot_seconds
        for args, name in self.station.devnet_station(d, encode_address(address_of_key(self.ev_key)), away):
            log = open(self.dir / name, "ab")
            self.extras.append(subprocess.Popen([*transx_command(), *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                                stdin=subprocess.DEVNULL, start_new_session=True))
            log.close()
            time.sleep(1.0)  # the card binds its port before the reader polls it
        self.say(f"charging station on node1 with an emulated NFC reader; an EV taps every {away} s: "
                 f"see {self.dir / 'station.log'}, and its sessions in the explorer")

    def start_node(self, n: DevnetNode) -> None:
        (n.datadir / "node.json").unlink(missing_ok=True)
        env = {**without_node_overrides(os.environ), "TRANSX_PASSWORD": PASSWORD}  # each node has its own ports
        log = open(n.datadir / "node.log", "ab")
        n.proc = subprocess.Popen([*transx_command(), "node", "--datadir", str(n.datadir)], stdout=log,
                                  stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                                  start_new_session=True)  # Ctrl-C reaches the devnet, which stops them in turn
        log.close()

    def wait_node(self, n: DevnetNode, deadline: float) -> None:
        while not (n.datadir / "node.json").exists():
            if n.proc.poll() is not None:  # type: ignore[union-attr]
                raise DevnetError(f"node {n.datadir.name} exited at start; see {n.datadir / 'node.log'}")
            if time.monotonic() > deadline:
                raise DevnetError(f"node {n.datadir.name} did not start in time; see {n.datadir / 'node.log'}")
            time.sleep(0.1)
        n.api = json.loads((n.datadir / "node.json").read_text())["api"]

    def _write_manifest(self) -> None:
        doc = {"nodes": [{"api": n.api or None, "peer": n.peer, "datadir": str(n.datadir)} for n in self.nodes],
               "households": [{"address": h.address, "role": h.role, "zone": h.zone} for h in self.households]}
        (self.dir / "devnet.json").write_text(json.dumps(doc, indent=1) + "\n")

    # -------------------------------------------------------------------- run
    def run(self, slots: int | None = None) -> None:
        """Bid every slot and report every cleared slot; `slots` bounds the run (None: until Ctrl-C, or
        until every node is gone for good: DevnetError)."""
        info = self.answering()
        chain_id = info["chain_id"]
        reported = info["height"]
        bid_for = -1
        self._send_all(chain_id, lambda h: RegisterMeter(public_key(h.meter)))
        while slots is None or slots > 0:
            try:
                info = self.answering()
                for h in range(reported + 1, info["height"] + 1):
                    self.say(self.status(h, info["meter_window"]))
                    reported = h
                    self._send_readings(chain_id, h)
                    if slots is not None:
                        slots -= 1
                # One slot beyond the first open one: a bid then has two blocks to get in, so a block selected
                # late (a solver still warming up) does not make it miss its slot.
                if info["first_open_slot"] + 1 > bid_for:
                    bid_for = info["first_open_slot"] + 1
                    self._post_bids(info, bid_for)
            except ClientError as e:
                if e.status is not None:  # a refusal, not a node gone: a bug of ours, to see
                    raise
                self._lost(self.reader)  # read on from another node
            time.sleep(min(0.25, self.slot_seconds / 8))

    # ---------------------------------------------------- nodes that come and go
    def answering(self) -> dict:
        """/api/node of a node that answers, the one read from so far if it still does; `self.client` then
        reads from it.  Asks again the nodes that stopped answering, and waits while none does; raises
        DevnetError once every node has been gone for good (none answers, none runs) for `gone_after` s."""
        while True:
            self.poll_down()
            for i in [self.reader] + [i for i in range(len(self.nodes)) if i != self.reader]:
                if i in self.down:
                    continue
                try:
                    info = self._client(i).get("/api/node")
                except ClientError as e:
                    if e.status is not None:
                        raise
                    self._lost(i)
                    continue
                if i != self.reader:
                    self.say(f"reading the chain from node {self.nodes[i].datadir.name}")
                self._read_from(i)
                self._silent_since, self._said_silent = None, False
                return info
            if not self._said_silent:
                self._said_silent = True
                self.say("no node answers; asking them again every second (Ctrl-C stops)")
            if any(self._running(n) for n in self.nodes):
                self._silent_since = None
            else:
                now = time.monotonic()
                self._silent_since = self._silent_since or now
                if now - self._silent_since >= self.gone_after:
                    raise DevnetError(f"every node has stopped (none answers, none runs): see "
                                      f"{self.dir}/node*/node.log")
            time.sleep(min(POLL_SECONDS, 0.5))

    def poll_down(self) -> None:
        """Ask each node that stopped answering again (once a POLL_SECONDS), at the API its node.json gives
        now; say so for each that answers again."""
        now = time.monotonic()
        for i, asked in list(self.down.items()):
            if now - asked < POLL_SECONDS:
                continue
            self.down[i] = now
            n = self.nodes[i]
            api = running_api(n.datadir)
            if api is None:
                continue  # not started (again) yet
            try:
                height = ApiClient(api, timeout=API_TIMEOUT).get("/api/node")["height"]
            except ClientError as e:
                if e.status is None:
                    continue
                raise
            del self.down[i]
            if api != n.api:
                n.api = api
                self._write_manifest()
            self.say(f"node {n.datadir.name} answers again at {api} (height {height})")

    def _lost(self, i: int) -> None:
        """Node `i` did not answer: said once, then asked again by poll_down."""
        if i in self.down:
            return
        self.down[i] = time.monotonic()
        n = self.nodes[i]
        why = "its process exited" if n.proc is not None and n.proc.poll() is not None else "it may be restarting"
        self.say(f"node {n.datadir.name} stopped answering at {n.api} ({why}; see {n.datadir / 'node.log'}); "
                 "asking it again every second")

    def _client(self, i: int) -> ApiClient:
        return ApiClient(self.nodes[i].api, timeout=API_TIMEOUT)

    def _read_from(self, i: int) -> None:
        self.reader, self.client = i, self._client(i)

    @staticmethod
    def _running(n: DevnetNode) -> bool:
        """Whether a process runs for node `n`: the one this devnet started, or the one its node.json names
        (a node restarted by hand)."""
        if n.proc is not None and n.proc.poll() is None:
            return True
        try:
            pid = json.loads((n.datadir / "node.json").read_text())["pid"]
            os.kill(pid, 0)
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return n.proc is None or pid != n.proc.pid  # not our own, exited child's stale file

    def _post_bids(self, info: dict, slot: int) -> None:
        """Each household's agent bids for `slot`, which plays a half hour of today in Kuala Lumpur."""
        assert self.client is not None
        market = self.client.get("/api/market")
        self._send_all(info["chain_id"], lambda h: h.bid(slot, info, market, self.clock))

    def _send_readings(self, chain_id: str, slot: int) -> None:
        """Each household that traded in `slot` sends its meter's reading."""
        assert self.client is not None
        traded: dict[str, tuple[int, str]] = {}
        for p in self.client.get(f"/api/market/{slot}")["participants"]:
            wh, _ = traded.get(p["owner"], (0, p["side"]))
            traded[p["owner"]] = (wh + p["wh"], p["side"])
        self._send_all(chain_id, lambda h: h.reading(self.rng, chain_id, slot, *traded[h.address])
                       if traded.get(h.address, (0, ""))[0] else None)

    def _send_all(self, chain_id: str, body_of: Callable[[Household], Body | None]) -> None:
        """Each household signs `body_of(it)` (None: nothing to send) and sends it through a node of its own
        (home k uses node k mod N): gossip does the rest.  It signs at the node's next nonce for it, so a
        transaction the chain dropped (a bid whose slot closed before a block took it) leaves no gap that
        would hold its later ones back."""
        for k, h in enumerate(self.households):
            body = body_of(h)
            if body is None:
                continue
            via = k % len(self.nodes)
            if via in self.down:
                via = self.reader  # its own node does not answer: through the one read from
            if via in self.down:
                continue  # none answers now: try again next slot
            client = self._client(via)
            try:
                h.nonce = client.get(f"/api/address/{h.address}?limit=1")["pending_nonce"]
            except ClientError as e:
                if e.status is None:
                    self._lost(via)
                continue  # try again next slot
            tx = sign_tx(h.key, chain_id=chain_id, nonce=h.nonce, fee=1_000, body=body)
            try:
                client.submit(tx.encoded)
            except ClientError as e:
                if e.status is None:
                    self._lost(via)
                if os.environ.get("TRANSX_DEVNET_DEBUG"):
                    self.say(f"{tx.kind} of {h.address[:12]} via node {via + 1} refused: {e}")

    def status(self, height: int, meter_window: int) -> str:
        """One line for a cleared slot: bids, energy, price, the households' gain, the winner, and how the
        slot that block settled was really delivered."""
        assert self.client is not None
        m = self.client.get(f"/api/market/{height}")
        b = self.client.get(f"/api/block/{height}")
        sells = sum(1 for x in m["bids"] if x["side"] == "sell")
        gain = sum(p["return_vs_grid"] for p in m["participants"])
        winner = (b["proposer"] or "-")[:14]
        settled = self._settled(height - meter_window - 1)
        if not m["trades"]:
            return f"slot {height:>5}  bids {sells:>3} sell {len(m['bids']) - sells:>3} buy  no trades" + \
                   (" (void)" if m.get("void") else "") + f"  winner {winner}{settled}"
        return (f"slot {height:>5}  bids {sells:>3} sell {len(m['bids']) - sells:>3} buy  cleared "
                f"{m['traded_wh'] / 1000:7.1f} kWh in {len(m['trades']):>3} trades at {m['average_price'] / 1e6:.4f}"
                f"/kWh  gain vs grid {gain / 1e6:8.3f}  winner {winner}{settled}")

    def _settled(self, slot: int) -> str:
        if slot < 1:
            return ""
        d = self.client.get(f"/api/market/{slot}").get("delivery")  # type: ignore[union-attr]
        if not d or d["status"] != "settled" or not d["accounts"]:
            return ""
        rows = d["accounts"]
        short = sum(r["shortfall_wh"] for r in rows) / 1000
        unused = sum(r["unused_wh"] for r in rows) / 1000
        return f"  | slot {slot} settled: {short:.1f} kWh short, {unused:.1f} kWh unused"

    def stop(self) -> None:
        """Stop every process this devnet started (SIGINT; SIGKILL for those still running 20 s later,
        however many there are); the station first, so it can close its session while the nodes still run."""
        interrupt_all(self.extras)
        interrupt_all([n.proc for n in self.nodes if n.proc is not None])


def interrupt_all(procs: list[subprocess.Popen], grace: float = 20.0) -> None:
    """SIGINT to every process, then wait for them all within one shared `grace` period; kill the rest."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on 127.0.0.1 now (the nodes bind them a moment later)."""
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(n)]
    try:
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
