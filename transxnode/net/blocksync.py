"""Block sync: catch up with the best peer by height range, at start and whenever a peer shows a
head we lack.

Every few seconds (or at once when poked) it asks its peers for their head; if one is ahead, it finds
where the two chains part (comparing headers within the finality depth), then fetches blocks in
ranges and offers each to the consensus engine, which validates it fully like any other block.
Progress lives in the chain itself, so an interrupted sync resumes where it stopped.  Long syncs
show a progress bar on a terminal, a log line every few seconds otherwise, and the metrics.
"""

from __future__ import annotations

import logging
import random
import sys
import time

import trio

from consensus.engine import BLOCK, REJECT
from p2p import sync
from p2p.network import Network

from consensus.rules.blocks import HEADER
from transxnode.metrics import NodeMetrics
from .peering import MAX_BLOCK_BYTES, Peering

log = logging.getLogger("transx.sync")

RANGE = 256  # blocks per request
POLL_SECONDS = 15.0  # a fallback: gossip of a better head pokes the sync at once
POLL_PEERS = 3  # peers asked at a periodic check (a poke asks them all)
SHOW_FROM = 20  # blocks behind before progress is shown


class BlockSync:
    def __init__(self, network: Network, peering: Peering, metrics: NodeMetrics | None = None,
                 interactive: bool | None = None) -> None:
        self.network, self.peering, self.metrics = network, peering, metrics
        self.engine, self.chain = peering.engine, peering.chain
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self._poke = trio.Event()
        self._poke.set()  # look for a better head as soon as the node has peers
        self.synced_blocks = 0
        peering.on_behind = self.poke

    def poke(self, peer: str | None = None) -> None:
        self._poke.set()

    async def run(self) -> None:
        with trio.move_on_after(10):  # at start: wait for a first peer rather than a poll period
            while not self.network.peers():
                await trio.sleep(0.1)
        while True:
            with trio.move_on_after(POLL_SECONDS):
                await self._poke.wait()
            poked, self._poke = self._poke.is_set(), trio.Event()
            try:
                await self.sync_once(None if poked else POLL_PEERS)
            except Exception:  # a peer's misbehaviour is handled inside; this is our bug: keep the node up
                log.exception("block sync round failed")
            await trio.sleep(0.2)

    async def best_peer(self, sample: int | None = None) -> tuple[str, int] | None:
        """The connected peer with the highest head above ours, asked concurrently (`sample`: only that
        many peers, chosen at random)."""
        heights: dict[str, int] = {}

        async def ask(peer: str) -> None:
            try:
                heights[peer] = sync.decode_status(await self.network.request(peer, sync.Request(sync.STATUS), 3.0))[0]
            except sync.SyncError:
                pass

        peers = list(self.network.peers())
        if sample is not None and len(peers) > sample:
            peers = random.sample(peers, sample)
        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(ask, peer)
        if not heights:
            return None
        peer = max(heights, key=lambda p: heights[p])
        return (peer, heights[peer]) if heights[peer] > self.chain.height else None

    async def sync_once(self, sample: int | None = None) -> int:
        """Catch up with the best peer if one is ahead; returns the blocks taken."""
        if self.chain.store.unwritable is not None:
            return 0  # nowhere to put blocks: the round loop reopens the store first
        best = await self.best_peer(sample)
        if best is None:
            return 0
        return await self.catch_up(*best)

    async def catch_up(self, peer: str, target: int) -> int:
        start = await self._fork_point(peer)
        first, taken, t0, shown = self.chain.height, 0, time.monotonic(), 0.0
        self.peering.syncing = target - first > 2
        if self.metrics is not None:
            self.metrics.sync_target.set(target)
        try:
            while start <= target:
                count = min(RANGE, target - start + 1)
                raw = await self.network.request(peer, sync.Request(sync.BLOCKS, start, count), 20.0)
                items = sync.decode_items(raw, MAX_BLOCK_BYTES, count)
                if not items:
                    break
                for item in items:
                    verdict, out = self.peering.judge(BLOCK, item, peer)
                    self.peering.send(out)
                    if verdict == REJECT:
                        log.warning("sync: %s sent an invalid block at height %d; dropping it", peer[-8:], start)
                        self.network.penalise(peer, 100.0)
                        return taken
                    taken += 1
                    start += 1
                    await trio.sleep(0)  # the API and gossip keep running during a long sync
                if self.chain.height < start - 1:
                    break  # its branch lost the fork choice here: nothing more to take from this peer
                if target - first >= SHOW_FROM and (time.monotonic() - shown > 5 or self.interactive):
                    shown = time.monotonic()
                    self._show(first, target, t0)
        except sync.SyncError as e:
            log.info("sync from %s interrupted at height %d: %s", peer[-8:], self.chain.height, e)
        finally:
            self.peering.syncing = False
            self.synced_blocks += taken
            if target - first >= SHOW_FROM:  # done only if it got there: a peer that left, a bad block, a stop
                self._show(first, target, t0, end="done" if self.chain.height >= target else "interrupted")
        return taken

    async def _fork_point(self, peer: str) -> int:
        """The first height where the peer's chain differs from ours, looking back `finality_depth`."""
        ours = self.chain.height
        lo = max(1, ours - self.chain.genesis.finality_depth + 1)
        if ours == 0:
            return 1
        raw = await self.network.request(peer, sync.Request(sync.HEADERS, lo, ours - lo + 1), 10.0)
        for h, item in enumerate(sync.decode_items(raw, 64 * 1024), lo):
            try:
                header = HEADER.decode(item)
            except Exception:
                self.network.penalise(peer)
                raise sync.SyncError("malformed header in a sync answer") from None
            if header.height != h or header.hash != self.chain.hash_at(h):
                return h
        return ours + 1

    def _show(self, first: int, target: int, t0: float, end: str | None = None) -> None:
        """A progress bar on a terminal (redrawn in place), else a log line; `end` ("done", "interrupted") closes
        it.  Blocks that land meanwhile by gossip can carry the chain past the target: the total grows with it."""
        target = max(target, self.chain.height)
        taken, total = self.chain.height - first, target - first
        rate = taken / max(1e-6, time.monotonic() - t0)
        if self.metrics is not None:
            self.metrics.sync_target.set(target)
            self.metrics.sync_remaining.set(0 if end == "done" else total - taken)
        if self.interactive:
            filled = 30 * max(0, taken) // max(1, total)
            sys.stderr.write(f"\rsync [{'#' * filled}{'.' * (30 - filled)}] {taken}/{total} blocks "
                             f"{rate:.0f} blocks/s  height {self.chain.height}   " + (f"{end}\n" if end else ""))
            sys.stderr.flush()
        else:
            log.info("sync: %d/%d blocks (%.0f blocks/s), height %d%s", taken, total, rate, self.chain.height,
                     f", {end}" if end else "")
