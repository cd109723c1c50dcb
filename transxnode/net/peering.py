"""The node on the network: peers' messages into the consensus engine, its messages out, and the
chain served to peers that sync.

`p2p` moves opaque bytes; this module is where they become transactions and blocks.  Everything a
peer sends goes through `Engine.judge`, whose verdict decides relay and the peer's score.
"""

from __future__ import annotations

import logging
import time

import trio

from consensus.chain.store import StoreCorrupt, StoreError
from consensus.engine import BLOCK, IGNORE, PROPOSAL, REJECT, TX, VOTE, WANT, Engine, Message
from p2p import sync
from p2p.network import Network, TopicSpec, Verdict

from consensus.rules import schema
from consensus.rules.blocks import HEADER
from consensus.rules.transactions import MAX_TX_BYTES

log = logging.getLogger("transx.peering")

MAX_BLOCK_BYTES = 16 * 1024 * 1024
WANT_QUEUE = 64
MAX_VOTE_BYTES = 512


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def topics(max_block_txs: int) -> list[TopicSpec]:
    """The gossip topics and what a peer may send on each: transactions travel in batches.  A peer
    relays every solver's proposal, so its proposal rate is generous: a flood is far above it.  Each
    voter votes once a block (one encoded vote is under 300 bytes)."""
    block_bytes = min(MAX_BLOCK_BYTES, 64 * 1024 + max_block_txs * MAX_TX_BYTES)
    return [TopicSpec(TX, MAX_TX_BYTES, rate=5000.0, batch=True),
            TopicSpec(PROPOSAL, block_bytes, rate=100.0),
            TopicSpec(BLOCK, block_bytes, rate=100.0),
            TopicSpec(VOTE, MAX_VOTE_BYTES, rate=1000.0)]


class Peering:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.chain = engine.chain
        self.network: Network | None = None
        self.syncing = False  # a range sync is running: single missing blocks are left to it
        self.on_behind = lambda peer: None  # told when a peer shows a block whose ancestors we lack
        self._wants_in, self._wants_out = trio.open_memory_channel[tuple[bytes, str]](WANT_QUEUE)
        self._announced: bytes | None = None
        self.fatal: StoreCorrupt | None = None  # the store was found damaged while judging a peer's item

    # ------------------------------------------------------------ inbound
    def handle(self, kind: str, item: bytes, peer: str) -> Verdict:
        verdict, out = self.judge(kind, item, peer)
        self.send(out)
        return Verdict(verdict)

    def judge(self, kind: str, item: bytes, peer: str) -> tuple[str, list[Message]]:
        """`Engine.judge`, where a store that cannot be written makes the item ignored (the peer did
        nothing wrong; the round loop waits for the store), and a damaged one is kept in `fatal` for
        the round loop to stop the node with."""
        try:
            return self.engine.judge(kind, item, now_ms(), peer)
        except StoreCorrupt as e:
            self.fatal = self.fatal or e
            return IGNORE, []
        except StoreError:  # unwritable, or closed while it is reopened
            return IGNORE, []

    def send(self, messages: list[Message]) -> None:
        """Hand the engine's messages to the network: broadcasts are gossiped, a request for a missing
        block goes to the peer that showed us its child."""
        for m in messages:
            if m.topic == WANT:
                if m.to is not None and not self.syncing:
                    try:
                        self._wants_in.send_nowait((m.data, str(m.to)))
                    except trio.WouldBlock:
                        pass  # the range sync will catch up instead
                    self.on_behind(str(m.to))
            elif m.to is None and self.network is not None:
                self.network.publish(m.topic, m.data)

    def announce_head(self) -> None:
        """Gossip the head block once (a no-op for a block the network already carried: message ids
        are content hashes), so a node that missed the proposal gets it without asking."""
        head = self.chain.head.hash
        if head != self._announced and self.chain.height > 0 and self.network is not None:
            self._announced = head
            raw = self.chain.store.get(schema.block(head))
            if raw is not None:
                self.network.publish(BLOCK, raw)

    async def fetch_wanted(self) -> None:
        """Fetch blocks the engine asked for, one by one, from the peer that showed their children."""
        async for block_hash, peer in self._wants_out:
            if self.chain.block(block_hash) is not None or self.syncing:
                continue
            try:
                raw = await self.network.request(peer, sync.Request(sync.BLOCK, hash=block_hash), timeout=5.0)
                items = sync.decode_items(raw, MAX_BLOCK_BYTES, 1)
            except sync.SyncError as e:
                log.debug("%s", e)
                continue
            for item in items:
                verdict, out = self.judge(BLOCK, item, peer)
                if verdict == REJECT:
                    self.network.penalise(peer)
                self.send(out)

    # ------------------------------------------------- served to peers (p2p.sync.Source)
    def status(self) -> tuple[int, bytes]:
        return self.chain.height, self.chain.head.hash

    def headers(self, start: int, count: int) -> list[bytes]:
        out = []
        for h in range(max(1, start), min(self.chain.height, start + count - 1) + 1):
            b = self.chain.block_at(h)
            if b is None:
                break
            out.append(HEADER.encode(b.header))
        return out

    def blocks(self, start: int, count: int, max_bytes: int) -> list[bytes]:
        out, size = [], 0
        for h in range(max(1, start), min(self.chain.height, start + count - 1) + 1):
            block_hash = self.chain.hash_at(h)
            raw = self.chain.store.get(schema.block(block_hash)) if block_hash is not None else None
            if raw is None or (out and size + len(raw) > max_bytes):
                break
            out.append(raw)
            size += len(raw)
        return out

    def block(self, block_hash: bytes) -> bytes | None:
        return self.chain.store.get(schema.block(block_hash))
