"""What `/api/events` streams: new heads, newly final blocks and cleared slots, held in a bounded ring so a
client that reconnects gets what it missed.  Sans-IO: publishing appends and calls the subscribers' wake-up
callbacks, never waits, so block production never waits on a reader; the API's server side does the I/O.

Event ids are "<run>-<seq>": `run` changes with each start of the node, so an id from before a restart is
recognised as such (the client gets a `reset`, as when what it missed has left the ring).
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RING = 1024  # events held for clients that reconnect
SUBSCRIBER_QUEUE = 256  # events a subscriber may have unsent before it is dropped (a slow reader)
MAX_SUBSCRIBERS = 64  # concurrent streams; more get 503
HEARTBEAT_SECONDS = 15.0  # an SSE comment this often keeps proxies and clients from timing out


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str  # head, final, cleared, reset
    data: dict[str, Any]

    def sse(self, run: str) -> str:
        """The event in the text/event-stream format."""
        return f"id: {run}-{self.seq}\nevent: {self.kind}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n"


@dataclass(eq=False)
class Subscriber:
    """One open stream: events published since it subscribed, not yet sent.  `dropped`: it fell
    SUBSCRIBER_QUEUE behind, and its stream ends (it reconnects with Last-Event-ID)."""
    wake: Callable[[], None]
    pending: deque = field(default_factory=deque)
    dropped: bool = False


class Full(Exception):
    """MAX_SUBSCRIBERS streams are open already."""


class EventHub:
    def __init__(self, ring: int = RING, queue: int = SUBSCRIBER_QUEUE, max_subscribers: int = MAX_SUBSCRIBERS,
                 run: str | None = None) -> None:
        self.run = run or secrets.token_hex(4)
        self.ring: deque[Event] = deque(maxlen=ring)
        self.queue, self.max_subscribers = queue, max_subscribers
        self.seq = 0
        self.subscribers: set[Subscriber] = set()

    def publish(self, kind: str, data: dict[str, Any]) -> Event:
        self.seq += 1
        ev = Event(self.seq, kind, data)
        self.ring.append(ev)
        for sub in list(self.subscribers):
            if len(sub.pending) >= self.queue:
                sub.dropped = True
                self.subscribers.discard(sub)
            else:
                sub.pending.append(ev)
            sub.wake()
        return ev

    def subscribe(self, wake: Callable[[], None], last_event_id: str | None = None) -> Subscriber:
        """A new subscriber; with `last_event_id` (a previous stream's Last-Event-ID), its queue starts with
        the events after it, or with one `reset` event if they are no longer all held (or the id is not
        this run's).  Raises Full beyond max_subscribers."""
        if len(self.subscribers) >= self.max_subscribers:
            raise Full(f"{self.max_subscribers} event streams are open already")
        sub = Subscriber(wake)
        if last_event_id is not None:
            missed = self.since(last_event_id)
            if missed is None:
                sub.pending.append(Event(self.seq, "reset", {"reason": "the events after that id are no longer held: "
                                                                "read the state again", "seq": self.seq}))
            elif len(missed) > self.queue:
                sub.pending.append(Event(self.seq, "reset", {"reason": "too many events missed: read the state again",
                                                      "seq": self.seq}))
            else:
                sub.pending.extend(missed)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def since(self, last_event_id: str) -> list[Event] | None:
        """The held events after `last_event_id`; None if some are gone or the id is not one of this run's."""
        run, _, seq_text = last_event_id.strip().rpartition("-")
        if run != self.run or not seq_text.isdigit() or int(seq_text) > self.seq:
            return None
        seq = int(seq_text)
        if seq == self.seq:
            return []
        if not self.ring or self.ring[0].seq > seq + 1:
            return None
        return [e for e in self.ring if e.seq > seq]


class ChainFeed:
    """Turns a chain's changes into events: call `update` after the chain may have moved (a block produced
    or imported, votes counted).  Publishes `cleared` for each newly connected block's slot (again after a
    reorg), then `head`, and `final` when the final checkpoint moved up."""

    KEEP = 256  # hashes of recently published heights, to find where a reorg forked

    def __init__(self, hub: EventHub, chain: Any) -> None:
        self.hub, self.chain = hub, chain
        self.hashes: dict[int, bytes] = {chain.height: chain.head.hash}
        self.head = chain.head.hash
        self.final_height = chain.finalized().height

    def update(self, final: Any = None) -> None:
        chain = self.chain
        if chain.head.hash != self.head:
            common = min(max(self.hashes), chain.height)  # walk down to where both chains agree
            while common in self.hashes and chain.hash_at(common) != self.hashes[common]:
                common -= 1
            # After a long catch-up (the node's first rounds follow its initial sync) only the last KEEP
            # slots: a client further behind gets a reset from the ring anyway, and the loop stays free.
            for h in range(max(common + 1, chain.height - self.KEEP + 1), chain.height + 1):
                self._cleared(h)
            for h in [h for h in self.hashes if h > chain.height or h <= chain.height - self.KEEP]:
                del self.hashes[h]
            self.head = chain.head.hash
            self.hub.publish("head", {"height": chain.height, "hash": chain.head.hash.hex(), "slot": chain.height,
                                      "timestamp": chain.head.timestamp})
        cp = final if final is not None else chain.finalized()
        if cp.height > self.final_height:
            self.final_height = cp.height
            self.hub.publish("final", {"height": cp.height, "hash": cp.hash.hex()})

    def _cleared(self, height: int) -> None:
        block = self.chain.block_at(height)
        if block is None:
            return
        self.hashes[height] = block.hash
        trades = block.clearing.trades
        self.hub.publish("cleared", {"slot": height, "height": height, "hash": block.hash.hex(),
                                     "trades": len(trades), "traded_wh": sum(t.wh for t in trades),
                                     "value": sum(t.payment for t in trades), "void": block.clearing.void})
