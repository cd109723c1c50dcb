"""A node's libp2p network: gossip topics, the sync protocol, peer scores, reconnects.

Settings that py-libp2p 0.8.1 gets wrong by default are made here, deliberately (see the field
notes): Noise only and yamux; gossipsub heartbeat 1 s and its own per-topic spam limit off (ours
counts per peer in `scoring`); content-addressed message ids so one block published by many nodes
travels once; the sequence counter starts at the clock in nanoseconds, so a restarted node's messages
are not taken for duplicates; every handler is wrapped, since an exception in one kills the process.

Items (transactions, proposals, blocks: opaque bytes here) are handed to the node's `handler` inside
gossipsub's validator, before anything is relayed; its verdict decides relay, and the peer's score.
`publish` never blocks: a sender task batches items, and waits while a peer's outbound queue is long
instead of letting py-libp2p drop messages silently.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import multiaddr
import trio

from . import framing, scoring, sync

log = logging.getLogger("transx.p2p")

QUEUE_HIGH = 24  # py-libp2p's per-peer outbound queue holds 32 RPCs and drops the rest
MAX_BATCH_BYTES = 256 * 1024
LINGER = 0.01  # seconds a transaction waits for others to share its message


class Verdict(enum.Enum):
    ACCEPT = "accept"  # new and valid: relay it
    IGNORE = "ignore"  # not useful (a duplicate, too late, not yet connectable): drop, no penalty
    REJECT = "reject"  # can never be valid: drop and score the peer down


@dataclass(frozen=True)
class TopicSpec:
    kind: str  # "tx", "proposal", "block"
    max_item: int  # bytes
    rate: float  # items per second a peer may send
    batch: bool = False  # many items per message


Handler = Callable[[str, bytes, str], Verdict]  # (kind, item, peer id) -> verdict


@dataclass
class NetworkConfig:
    seed: bytes  # the node key's 32-byte seed: the same Ed25519 key is the peer identity
    chain_id: str
    listen: str = "/ip4/127.0.0.1/tcp/0"
    bootstrap: list[str] = field(default_factory=list)
    max_peers: int = 32
    mdns: bool = False
    heartbeat: int = 1
    ban_seconds: float = 600.0
    sync_rate: float = 20.0  # sync requests per second a peer may make
    keepalive: float = 300.0  # a peer that answers no ping for about this long is dropped (0: never)
    seen_ttl: int = 120  # s a message id stays seen: the same bytes sent again after it travel again


@dataclass
class NetStats:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    published_items: int = 0
    published_messages: int = 0
    bans: int = 0
    waits: int = 0  # times a publish waited for a peer's queue to drain


def peer_id_from_seed(seed: bytes) -> str:
    """The peer id a node with this 32-byte key seed has (to write bootstrap lists before it runs)."""
    from libp2p.identity_utils import create_identity_from_seed
    from libp2p.peer.id import ID

    return ID.from_pubkey(create_identity_from_seed(seed).public_key).to_base58()


def topic_name(chain_id: str, kind: str) -> str:
    return f"/transx/{chain_id}/{kind}/1"


def sync_protocol(chain_id: str) -> str:
    return f"/transx/{chain_id}/sync/1"


class _Notifee:
    """Connection events from the swarm: banned peers are dropped as soon as they connect, and the
    peer cap is kept for inbound connections too."""

    def __init__(self, net: "Network") -> None:
        self.net = net

    async def connected(self, network, conn) -> None:
        self.net._on_connected(conn.muxed_conn.peer_id)

    async def disconnected(self, network, conn) -> None:
        pass

    async def opened_stream(self, network, stream) -> None:
        pass

    async def closed_stream(self, network, stream) -> None:
        pass

    async def listen(self, network, maddr) -> None:
        pass

    async def listen_close(self, network, maddr) -> None:
        pass


class Network:
    def __init__(self, cfg: NetworkConfig, topics: list[TopicSpec], handler: Handler, source: sync.Source,
                 max_answer_bytes: int = 8 * 1024 * 1024) -> None:
        from libp2p.identity_utils import create_identity_from_seed
        from libp2p.peer.id import ID

        self.cfg, self.handler, self.source = cfg, handler, source
        self.topics = {t.kind: t for t in topics}
        self.max_answer_bytes = max_answer_bytes
        self.key_pair = create_identity_from_seed(cfg.seed)
        self.id = ID.from_pubkey(self.key_pair.public_key)
        self.peer_id = self.id.to_base58()
        self.book = scoring.PeerBook(rates={t.kind: t.rate for t in topics} | {"sync": cfg.sync_rate},
                                     ban_seconds=cfg.ban_seconds)
        self.stats = NetStats()
        # Told (topic kind, seconds) each time a peer's message gets its verdict: the node's metrics.
        self.on_validated: Callable[[str, float], None] | None = None
        self._outbox: dict[str, deque[bytes]] = {t.kind: deque() for t in topics}
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.host = self.pubsub = self.gossipsub = self.rr = None
        self._backoff: dict[object, tuple[float, float]] = {}  # peer -> (next attempt, delay)
        self._tidied = time.monotonic()
        self._bootstrap = [self._peer_info(a) for a in cfg.bootstrap]
        self.ready = trio.Event()

    # -------------------------------------------------------------- public
    @property
    def addrs(self) -> list[str]:
        """Our listen addresses, each ending in /p2p/<peer id>, for other nodes' bootstrap lists."""
        if self.host is None:
            return []
        return [f"{a}/p2p/{self.peer_id}" if "/p2p/" not in str(a) else str(a) for a in self.host.get_addrs()]

    def peers(self) -> list[str]:
        return [p.to_base58() for p in self.host.get_connected_peers()] if self.host is not None else []

    def publish(self, kind: str, item: bytes) -> None:
        """Queue `item` for gossip on `kind`'s topic; returns at once."""
        self._outbox[kind].append(item)
        self._wake.set()

    async def request(self, peer: str, req: sync.Request, timeout: float = 10.0) -> bytes:
        """Ask `peer` (a peer id) over the sync protocol; `sync.SyncError` if it fails or times out."""
        from libp2p.peer.id import ID
        from libp2p.request_response import BytesCodec, RequestResponseConfig
        from libp2p.request_response.exceptions import RequestResponseError

        cfg = RequestResponseConfig(timeout=timeout, max_response_size=self.max_answer_bytes + 1024)
        try:
            return await self.rr.send_request(ID.from_base58(peer), [sync_protocol(self.cfg.chain_id)], req.encode(),
                                              BytesCodec(), cfg)
        except (RequestResponseError, ValueError, OSError) as e:
            raise sync.SyncError(f"{req.kind.decode()} request to {peer[-8:]} failed: {e}") from None

    def penalise(self, peer: str, points: float = scoring.INVALID) -> None:
        """Score a peer down for something the node found wrong outside gossip (a bad sync answer)."""
        from libp2p.peer.id import ID

        if self.book.penalise(peer, points, time.monotonic()):
            self._ban(ID.from_base58(peer))

    # ----------------------------------------------------------------- run
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen, join the topics, serve sync requests and keep peers connected, until cancelled."""
        from libp2p import new_host
        from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
        from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
        from libp2p.pubsub.pubsub import Pubsub, get_content_addressed_msg_id
        from libp2p.request_response import BytesCodec, RequestResponse, RequestResponseConfig
        from libp2p.security.noise.transport import PROTOCOL_ID as NOISE, Transport as NoiseTransport
        from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX, Yamux
        from libp2p.tools.anyio_service import background_trio_service

        noise = NoiseTransport(self.key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
        self.host = new_host(key_pair=self.key_pair, sec_opt={NOISE: noise}, muxer_opt={YAMUX: Yamux},
                             enable_mDNS=self.cfg.mdns)
        # Not /meshsub/1.2.0: py-libp2p 0.8.1 answers every message received with an IDONTWANT to each mesh
        # peer (the spec means it for large messages only): one more RPC per message and peer, each with a
        # signed peer record to verify.  Idle 7-node devnet: ~1.0 cores with 1.1 only, ~1.3 with 1.2.
        self.gossipsub = GossipSub(protocols=[PROTOCOL_ID_V11, PROTOCOL_ID], degree=6, degree_low=4,
                                   degree_high=12, heartbeat_interval=self.cfg.heartbeat, spam_protection_enabled=False,
                                   eclipse_protection_enabled=False)
        max_rpc = max(t.max_item for t in self.topics.values()) + MAX_BATCH_BYTES
        self.pubsub = Pubsub(self.host, self.gossipsub, msg_id_constructor=get_content_addressed_msg_id,
                             max_inbound_rpc_size=max_rpc, cache_size=4096, seen_ttl=self.cfg.seen_ttl)
        self.pubsub.counter = time.time_ns()  # not int(time.time()): a restarted node would look like a replay
        self.rr = RequestResponse(self.host)
        self.rr.set_handler(sync_protocol(self.cfg.chain_id), self._serve, BytesCodec(),
                            RequestResponseConfig(timeout=20.0, max_response_size=self.max_answer_bytes + 1024))
        self.host.get_network().register_notifee(_Notifee(self))
        listen = [multiaddr.Multiaddr(self.cfg.listen)]
        async with background_trio_service(self.pubsub), background_trio_service(self.gossipsub):
            async with self.host.run(listen_addrs=listen), trio.open_nursery() as nursery:
                self._nursery = nursery
                await self.pubsub.wait_until_ready()
                for t in self.topics.values():
                    name = topic_name(self.cfg.chain_id, t.kind)
                    self.pubsub.set_topic_validator(name, self._validator(t), False)
                    nursery.start_soon(self._drain, await self.pubsub.subscribe(name))
                nursery.start_soon(self._send_loop)
                nursery.start_soon(self._dial_loop)
                if self.cfg.keepalive:
                    nursery.start_soon(self._keepalive_loop)
                self.ready.set()
                log.info("p2p: peer %s listening on %s", self.peer_id, ", ".join(self.addrs))
                task_status.started(self)
                await trio.sleep_forever()

    # ----------------------------------------------------------- receiving
    def _validator(self, spec: TopicSpec):
        def validate(forwarder, msg) -> bool:
            if forwarder == self.id:
                return True  # our own publish: the node handled it before handing it over
            t0 = time.perf_counter()
            try:
                return self._judge(spec, forwarder, msg.data)
            except Exception:  # never let a handler's bug reach py-libp2p: it would kill the process
                log.exception("p2p: handler failed on a %s message from %s", spec.kind, forwarder)
                return False
            finally:
                if self.on_validated is not None:
                    self.on_validated(spec.kind, time.perf_counter() - t0)
        return validate

    def _judge(self, spec: TopicSpec, forwarder, data: bytes) -> bool:
        now = time.monotonic()
        peer = forwarder.to_base58()
        self.stats.received += 1
        if self.book.is_banned(peer, now):
            return False
        try:
            items = framing.unpack(data, spec.max_item, 4096 if spec.batch else 1)
        except framing.FramingError as e:
            log.info("p2p: %s sent a malformed %s message: %s", peer[-8:], spec.kind, e)
            return self._reject(forwarder, peer, now)
        if not self.book.allow(peer, spec.kind, len(items), now):
            if self.book.flooded(peer, now):
                log.warning("p2p: %s floods %s messages: banned for %.0f s", peer[-8:], spec.kind, self.cfg.ban_seconds)
                self._ban(forwarder)
            return False
        verdicts = []
        for item in items:  # the first invalid item condemns the message: no work on the rest
            verdicts.append(self.handler(spec.kind, item, peer))
            if verdicts[-1] is Verdict.REJECT:
                return self._reject(forwarder, peer, now)
        if Verdict.ACCEPT in verdicts:
            self.stats.accepted += 1
            self.book.reward(peer, now)
            return True
        return False

    def _reject(self, forwarder, peer: str, now: float) -> bool:
        self.stats.rejected += 1
        if self.book.penalise(peer, scoring.INVALID, now):
            log.warning("p2p: %s sent invalid messages: banned for %.0f s", peer[-8:], self.cfg.ban_seconds)
            self._ban(forwarder)
        return False

    def _ban(self, peer_id) -> None:
        self.stats.bans += 1
        self.pubsub.add_to_blacklist(peer_id)
        if self._nursery is not None:
            self._nursery.start_soon(self._disconnect, peer_id)

    async def _disconnect(self, peer_id) -> None:
        try:
            with trio.move_on_after(5):  # a dead link must not hold the task
                await self.host.disconnect(peer_id)
        except Exception as e:  # already gone
            log.debug("p2p: disconnecting %s: %s", peer_id, e)

    async def _keepalive_loop(self) -> None:
        """Ping every connected peer; drop one that leaves two pings in a row unanswered.  A link cut
        without a FIN (a cable, a crashed router, a frozen process) otherwise stays "connected" for
        TCP's minutes-long timeouts: gossip to it is lost and the dial loop never redials it."""
        misses: dict = {}
        every = self.cfg.keepalive / 4  # two misses of keepalive/2 each, pinged every keepalive/4
        while True:
            t0 = time.monotonic()
            await trio.sleep(every)
            if time.monotonic() - t0 > every + max(1.0, every / 4):
                # This node's own loop is a second late: it is the one overloaded (and on a shared machine so
                # are its peers); unanswered pings now say nothing about the links.
                misses.clear()
                continue
            peers = list(self.host.get_connected_peers())
            async with trio.open_nursery() as nursery:
                for pid in peers:
                    nursery.start_soon(self._ping, pid, misses)
            for pid in [p for p in misses if p not in peers]:
                del misses[pid]

    async def _ping(self, peer_id, misses: dict) -> None:
        from libp2p.host.ping import ID as PING, perform_ping_roundtrip

        try:
            with trio.fail_after(self.cfg.keepalive / 2):
                stream = await self.host.new_stream(peer_id, [PING])
                try:
                    await perform_ping_roundtrip(stream)
                finally:
                    await stream.close()
        except Exception as e:  # trio.TooSlowError, a reset stream, a refused protocol
            misses[peer_id] = misses.get(peer_id, 0) + 1
            if misses[peer_id] >= 2:
                del misses[peer_id]
                log.info("p2p: %s answered none of 2 pings in %g s (%s): dropping the connection",
                         peer_id.to_base58()[-8:], self.cfg.keepalive, type(e).__name__)
                await self._disconnect(peer_id)
            return
        misses.pop(peer_id, None)

    def _on_connected(self, peer_id) -> None:
        now = time.monotonic()
        peer = peer_id.to_base58()
        if self.book.is_banned(peer, now):
            log.info("p2p: banned peer %s reconnected: dropped", peer[-8:])
        elif len(self.host.get_connected_peers()) > self.cfg.max_peers:
            log.info("p2p: peer cap %d reached: dropped %s", self.cfg.max_peers, peer[-8:])
        else:
            if peer_id in self.pubsub.blacklisted_peers:  # a ban that has run out
                self.pubsub.remove_from_blacklist(peer_id)
            return
        if self._nursery is not None:
            self._nursery.start_soon(self._disconnect, peer_id)

    async def _drain(self, subscription) -> None:
        """Subscriptions hold 32 messages and drop the rest; handlers already ran in the validator."""
        while True:
            await subscription.get()

    async def _serve(self, request: bytes, ctx) -> bytes:
        from libp2p.request_response.exceptions import RequestResponseError

        now, peer = time.monotonic(), ctx.peer_id.to_base58()
        if self.book.is_banned(peer, now):
            raise RequestResponseError("banned")
        if not self.book.allow(peer, "sync", 1, now):
            if self.book.flooded(peer, now):
                self._ban(ctx.peer_id)
            raise RequestResponseError("rate limited")
        try:
            return sync.answer(self.source, request, self.max_answer_bytes)
        except sync.SyncError as e:
            self.penalise(peer)
            raise RequestResponseError(str(e)) from None

    # ------------------------------------------------------------- sending
    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if any(self.topics[k].batch for k, q in self._outbox.items() if q):
                await trio.sleep(LINGER)
            for kind, queue in self._outbox.items():
                while queue:
                    batch, size = [], 0
                    limit = 4096 if self.topics[kind].batch else 1
                    while queue and len(batch) < limit and (not batch or size + len(queue[0]) <= MAX_BATCH_BYTES):
                        size += len(queue[0])
                        batch.append(queue.popleft())
                    await self._wait_for_room()
                    try:
                        await self.pubsub.publish(topic_name(self.cfg.chain_id, kind), framing.pack(batch))
                    except Exception as e:  # a closing stream, say: the items are lost to gossip, not to the node
                        log.warning("p2p: publishing %d %s items failed: %s", len(batch), kind, e)
                        continue
                    self.stats.published_items += len(batch)
                    self.stats.published_messages += 1

    async def _wait_for_room(self) -> None:
        """Back-pressure: wait (up to 2 s) while any peer's outbound queue is nearly full."""
        with trio.move_on_after(2.0):
            while any(len(q) >= QUEUE_HIGH for q in self.pubsub.peer_queues.values()):
                self.stats.waits += 1
                await trio.sleep(0.005)

    # ------------------------------------------------------------- dialing
    def _peer_info(self, addr: str):
        from libp2p.peer.peerinfo import info_from_p2p_addr

        try:
            return info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as e:
            raise ValueError(f"bad bootstrap address {addr!r}: {e}") from None

    async def _dial_loop(self) -> None:
        """Keep bootstrap peers and discovered peers (mDNS, identify) connected, with backoff per peer
        (1 s doubling to 60 s), up to the peer cap.  py-libp2p itself would wait ~60 s to redial."""
        while True:
            now = time.monotonic()
            connected = set(self.host.get_connected_peers())
            room = self.cfg.max_peers - len(connected)
            wanted = {info.peer_id: info for info in self._bootstrap}
            store = self.host.get_peerstore()
            for pid in store.peers_with_addrs():
                if pid != self.id and pid not in wanted:
                    from libp2p.peer.peerinfo import PeerInfo
                    wanted[pid] = PeerInfo(pid, store.addrs(pid))
            for pid, info in wanted.items():
                if room <= 0:
                    break
                if pid in connected or self.book.is_banned(pid.to_base58(), now):
                    continue
                at, delay = self._backoff.get(pid, (0.0, 0.5))
                if now < at:
                    continue
                self._backoff[pid] = (now + delay, min(60.0, delay * 2))
                room -= 1
                self._nursery.start_soon(self._dial, info)
            if now - self._tidied > 60:  # peer ids cost nothing to make: forget the faded ones
                self._tidied = now
                self.book.forget(now)
                self._backoff = {p: v for p, v in self._backoff.items() if p in wanted}
            await trio.sleep(0.5)

    async def _dial(self, info) -> None:
        try:
            with trio.fail_after(5):
                await self.host.connect(info)
        except Exception as e:
            log.debug("p2p: dialing %s failed: %s", info.peer_id, e)
            return
        self._backoff.pop(info.peer_id, None)
        log.info("p2p: connected to %s", info.peer_id.to_base58()[-8:])
