"""A deterministic simulator of a TransX network: N nodes in one process, a virtual clock.

Each node is the real thing (its own LevelDB store, chain, mempool and consensus `Engine`); only the
network and the clock are simulated: messages are delivered after a random latency, may be lost, and
cross a partition only when it is healed; each node's clock may be skewed.  The network is every node
to every node, or (`SimConfig.mesh`) gossip over a sparse random mesh, where a node relays what its
engine accepts (`Engine.judge`) to its other peers, as gossipsub does; each node's messages, bytes and
engine CPU are counted (`received`, `received_bytes`, `cpu`).  Households post bids to
random nodes every slot.  Everything random comes from one seed: the same seed gives the same run.
Identical instances are solved once for all nodes (the solver is deterministic; this only saves time).
"""

from __future__ import annotations

import heapq
import json
from time import process_time
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from consensus.rules import keys
from consensus.rules.blocks import Block
from consensus.chain.chain import Chain, decode_block
from consensus.rules.codec import digest
from consensus.rules.finality import register_key
from consensus.rules.genesis import dev_genesis, genesis_from_json
from .node import Node
from consensus.chain.store import Store
from consensus.rules.transactions import BUY, SELL, Bid, sign_tx

from .engine import ACCEPT, PROPOSAL, TX, VOTE, Engine, Message
from .proposer import Solution, solve_slot

START = 1_800_000_000  # genesis time of every simulated network (s)


@dataclass
class SimConfig:
    nodes: int = 5
    seed: int = 0
    slot_seconds: int = 2
    latency_ms: tuple[int, int] = (5, 50)
    loss: float = 0.0
    households: int = 8
    finality_depth: int = 32
    reveal_window: int | None = None  # default: the genesis default (finality_depth)
    tick_ms: int = 250
    relay: bool = False  # nodes forward each proposal and vote they accept, as gossipsub's mesh does
    mesh: int | None = None  # each node talks to about this many peers, and every message is relayed (gossip)
    committee: int | None = None  # the genesis' committee_size (default: the genesis default)
    voting_seats: int | None = None
    solvers: int | None = None  # how many nodes are registered solvers (default: all)
    genesis: dict = field(default_factory=dict)  # other genesis fields to set (e.g. max_consensus_txs)
    genesis_keys: bool = False  # the solvers' vote keys in the genesis file: voters and committees from block 1


@dataclass(order=True)
class _Event:
    t: int
    seq: int
    node: int = field(compare=False)
    kind: str = field(compare=False)
    payload: object = field(compare=False, default=None)


class Simulation:
    def __init__(self, cfg: SimConfig, engine_for: Callable[[int, Node, "Simulation"], Engine] | None = None) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.dir = tempfile.mkdtemp(prefix="transx-sim-")
        self.keys = [SigningKey(digest(f"sim-node-{cfg.seed}-{i}".encode())) for i in range(cfg.nodes)]
        self.homes = [SigningKey(digest(f"sim-home-{cfg.seed}-{i}".encode())) for i in range(cfg.households)]
        addrs = [keys.address_of_key(k) for k in self.keys]
        solvers = addrs if cfg.solvers is None else addrs[:cfg.solvers]
        doc = dev_genesis(addrs + [keys.address_of_key(k) for k in self.homes], solvers,
                          slot_seconds=cfg.slot_seconds, chain_id="transx-sim", start=START)
        doc["finality_depth"] = cfg.finality_depth
        for name in ("reveal_window", "committee", "voting_seats"):
            if getattr(cfg, name) is not None:
                doc["committee_size" if name == "committee" else name] = getattr(cfg, name)
        if cfg.genesis_keys:
            doc["vote_keys"] = {
                keys.encode_address(a): register_key(keys.vote_secret(k), chain_id=doc["chain_id"], solver=a).encoded.hex()
                for k, a in zip(self.keys, addrs) if a in solvers}
        doc.update(cfg.genesis)
        self.genesis = genesis_from_json(doc)
        self._memo: dict[bytes, Solution] = {}
        self.stores = [Store(f"{self.dir}/node{i}") for i in range(cfg.nodes)]
        self._make = engine_for or (lambda i, node, sim: Engine(node, solve=sim.solve, decode=sim.decode))
        self.engines = [self._make(i, Node(Chain(s, self.genesis), k), self) for i, (s, k) in
                        enumerate(zip(self.stores, self.keys))]
        self._decoded: dict[bytes, Block] = {}
        self.skew = [0] * cfg.nodes
        # Relayed message ids per node, and when each was first seen: forgotten after `seen_ms`, as
        # gossipsub's seen cache forgets them (120 s against hour-long slots; here half a slot), so a
        # message sent again at the next head travels again.
        self._seen: list[dict[bytes, int]] = [{} for _ in range(cfg.nodes)]
        self.seen_ms = cfg.slot_seconds * 500
        self.peers = self._mesh(cfg.mesh) if cfg.mesh else None
        self.received = [0] * cfg.nodes  # messages delivered to each node
        self.received_bytes = [0] * cfg.nodes
        self.cpu = [0.0] * cfg.nodes  # process CPU seconds each node's engine spent (ticks and messages)
        self.online = [True] * cfg.nodes
        self.groups: list[set[int]] | None = None  # a partition: messages cross only within a group
        self.now = self.genesis.slot_start_ms(1) - 1
        self._queue: list[_Event] = []
        self._seq = 0
        self.messages = 0
        self._bid_slot = 0
        for i in range(cfg.nodes):
            self._push(self.now + self.rng.randrange(cfg.tick_ms), i, "tick")

    def close(self) -> None:
        for s in self.stores:
            s.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---------------------------------------------------------------- solving
    def solve(self, market, pairs, g) -> Solution:
        key = digest(json.dumps(market.instance.to_json(), sort_keys=True).encode())
        if key not in self._memo:
            self._memo[key] = solve_slot(market, pairs, g)
        return self._memo[key]

    def decode(self, data: bytes) -> Block:
        """Blocks are immutable values: every node receiving the same bytes gets the one decoded copy
        (the bytes are still decoded once, with all the codec's checks)."""
        key = digest(data)
        hit = self._decoded.get(key)
        if hit is None:
            if len(self._decoded) > 4096:
                self._decoded.clear()
            hit = self._decoded[key] = decode_block(data)
        return hit

    # ---------------------------------------------------------------- network
    def _push(self, t: int, node: int, kind: str, payload: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Event(t, self._seq, node, kind, payload))

    def _mesh(self, degree: int) -> list[list[int]]:
        """A sparse random overlay, as gossipsub's mesh: a ring (so it is connected) plus random links
        until each node has about `degree` peers."""
        n = self.cfg.nodes
        links: list[set[int]] = [set() for _ in range(n)]
        for i in range(n):
            if n > 1:
                j = (i + 1) % n
                if j != i:
                    links[i].add(j)
                    links[j].add(i)
        for i in range(n):
            tries = 0
            while len(links[i]) < degree and tries < 4 * degree:
                tries += 1
                j = self.rng.randrange(n)
                if j != i and len(links[j]) < degree + 2:
                    links[i].add(j)
                    links[j].add(i)
        return [sorted(x) for x in links]

    def linked(self, a: int, b: int) -> bool:
        return self.groups is None or any(a in g and b in g for g in self.groups)

    def send(self, src: int, msgs: list[Message], came_from: int | None = None) -> None:
        lo, hi = self.cfg.latency_ms
        for m in msgs:
            if isinstance(m.to, int):
                targets = [m.to]
            elif self.peers is not None:
                targets = [j for j in self.peers[src] if j != came_from]
                if came_from is None:
                    self._seen[src][digest(m.data)] = self.now  # its own message, should it come back
            else:
                targets = [j for j in range(self.cfg.nodes) if j != src]
            for dst in targets:
                if not self.linked(src, dst) or self.rng.random() < self.cfg.loss:
                    continue
                self.messages += 1
                self._push(self.now + self.rng.randint(lo, hi), dst, "msg", (m, src))

    def stop(self, i: int) -> None:
        """Node `i` goes down: it neither ticks nor hears anything until `start`."""
        self.online[i] = False

    def start(self, i: int) -> None:
        """Node `i` comes back as a restarted process: a new engine over the same store (what it
        kept in memory is gone; its store's node-local records are what it has)."""
        self.engines[i] = self._make(i, Node(Chain(self.stores[i], self.genesis), self.keys[i]), self)
        self.online[i] = True

    def partition(self, *groups: set[int]) -> None:
        self.groups = [set(g) for g in groups]

    def heal(self) -> None:
        self.groups = None

    # ------------------------------------------------------------------- run
    def node_time(self, i: int) -> int:
        return self.now + self.skew[i]

    def run_until(self, t_end: int) -> None:
        while self._queue and self._queue[0].t <= t_end:
            ev = heapq.heappop(self._queue)
            self.now = ev.t
            i = ev.node
            if ev.kind == "tick":
                self._push(ev.t + self.cfg.tick_ms, i, "tick")
                if i == 0:
                    self._households()
                if self.online[i]:
                    c0 = process_time()
                    out = self.engines[i].tick(self.node_time(i))
                    self.cpu[i] += process_time() - c0
                    self.send(i, out)
            elif ev.kind == "msg" and self.online[i]:
                m, src = ev.payload  # type: ignore[misc]
                self.received[i] += 1
                self.received_bytes[i] += len(m.data)
                gossip = self.peers is not None or (self.cfg.relay and m.topic in (PROPOSAL, VOTE))
                if gossip and m.to is None:
                    seen = self._seen[i]  # gossipsub's message ids: each node handles a message once
                    key = digest(m.data)
                    if seen.get(key, -self.seen_ms) > self.now - self.seen_ms:
                        continue
                    if len(seen) > 20_000:
                        self._seen[i] = seen = {k: t for k, t in seen.items() if t > self.now - self.seen_ms}
                    seen[key] = self.now
                    c0 = process_time()
                    verdict, out = self.engines[i].judge(m.topic, m.data, self.node_time(i), src)
                    self.cpu[i] += process_time() - c0
                    self.send(i, out)
                    if verdict == ACCEPT:
                        self.send(i, [Message(m.topic, m.data)], came_from=src)
                else:
                    c0 = process_time()
                    out = self.engines[i].receive(m.topic, m.data, self.node_time(i), src)
                    self.cpu[i] += process_time() - c0
                    self.send(i, out)
            elif ev.kind == "inject" and self.online[i]:
                topic, data = ev.payload  # type: ignore[misc]
                if self.peers is not None:
                    self._seen[i][digest(data)] = self.now
                out = self.engines[i].receive(topic, data, self.node_time(i))
                self.send(i, out + ([Message(topic, data)] if topic == TX else []))
        self.now = max(self.now, t_end)

    def run_rounds(self, n: int) -> None:
        """Run until `n` more slots have started and half of the last one has passed."""
        target = max(e.chain.height for e in self.engines) + n
        self.run_until(self.genesis.slot_start_ms(target) + self.genesis.slot_seconds * 500 + self.cfg.latency_ms[1]
                       + 2 * self.cfg.tick_ms)

    def _households(self) -> None:
        """Once per slot, each household bids through a random node, for the slot after the first open
        one (so a bid has two blocks to get in, whatever the latency)."""
        head = max(e.chain.height for e in self.engines)
        slot = head + 2 + self.genesis.gate_closure
        if slot <= self._bid_slot:
            return
        self._bid_slot = slot
        for k, home in enumerate(self.homes):
            side = SELL if k % 2 else BUY
            body = Bid(side, slot, self.rng.randint(1_000, 6_000),
                       self.rng.randint(180_000, 400_000) if side == SELL else self.rng.randint(300_000, 560_000),
                       self.rng.randrange(self.genesis.zones), slot - self.genesis.gate_closure)
            via = self.rng.randrange(self.cfg.nodes)
            node = self.engines[via].node  # like a wallet, ask the node for the next nonce
            a = keys.address_of_key(home)
            nonce = node.mempool.next_nonce(a, node.chain.state().account(a).nonce)
            tx = sign_tx(home, chain_id=self.genesis.chain_id, nonce=nonce, fee=1_000, body=body)
            self._push(self.now + self.rng.randint(*self.cfg.latency_ms), via, "inject", (TX, tx.encoded))

    # ---------------------------------------------------------------- checks
    def heads(self) -> list[tuple[int, bytes]]:
        return [(e.chain.height, e.chain.head.hash) for e in self.engines]

    def converged(self) -> bool:
        return len({h for h in self.heads()}) == 1
