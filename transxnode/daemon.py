"""`transx node`: the composition root that wires store, chain, mempool, solver and API.

Runs everything on one trio loop: the HTTP API (hypercorn), and the block
producer, which waits for each slot's start, solves its market in a worker
thread and commits the block.  SIGINT/SIGTERM cancel the loop; the store
is closed on the way out, and a block is either fully written or not at all.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from functools import partial

import trio
from hypercorn.trio import serve

from consensus.engine import Engine
from consensus.proposer import solve_slot
from p2p.network import Network, NetworkConfig

from transxnode.api.app import make_app
from transxnode.api.owner import owner_app
from transxnode.api.server import check_tls, hypercorn_config, serve_app
from transxnode.net.blocksync import BlockSync
from consensus.chain.chain import Chain
from transxnode.datadir.config import Config, ConfigError, load_config
from consensus.rules import verified
from consensus.rules.genesis import load_genesis
from consensus.rules.keys import encode_address
from consensus.journal import Journal, JournalError
from transxnode.datadir.keystore import Keystore
from .events import ChainFeed, EventHub
from .health import clock_behind_head_s, health
from .heap import HeapTrimmer
from .metrics import NodeMetrics, metrics_app
from consensus.node import Node
from transxnode.net.peering import Peering, topics
from .plugins import load_plugins, log_plugins
from consensus.chain.store import Store, StoreCorrupt, StoreWriteError

log = logging.getLogger("transx.node")
VERSION = "0.1.0"
INITIAL_SYNC_SECONDS = 15.0  # waiting for peers and their blocks before proposing


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def run_node(datadir: str, password: str, engine_for: Callable[[Node], Engine] = Engine,
                   overrides: Mapping[str, tuple[object, str]] | None = None) -> None:
    """Run the node on `datadir` until cancelled or signalled.  `engine_for` makes its consensus engine:
    the functional tests hand a byzantine one (tests/functional/byzantine_node.py), nothing else does.
    `overrides`: `transx node`'s run-time settings over config.toml (config.overrides_from)."""
    cfg = load_config(datadir, overrides)
    genesis = load_genesis(str(cfg.genesis_path))
    key = Keystore(cfg.keystore_dir).unlock(cfg.key, password)
    tls = _tls(cfg)
    sock, api_url = _listen(cfg.api_listen)
    if tls is not None:
        api_url = "https" + api_url.removeprefix("http")
    metrics_listen = cfg.metrics_listen
    msock = _listen(metrics_listen, "for metrics")[0] if metrics_listen else None  # a busy port: one line, exit 2
    store = Store(str(cfg.chain_dir), watermark=True)
    journal = Journal(cfg.datadir / "mempool.journal")
    chain = None
    try:
        chain = Chain(store, genesis)
        chain.check()  # a damaged store stops the node here, with one line that says what to do
        node = Node(chain, key, journal=journal)
        metrics = NodeMetrics()
        metrics.describe(VERSION, genesis.chain_id)
        metrics.head(chain, chain.finalized().height, 0)
        engine = engine_for(node)
        engine.solve = metrics.timed(engine.solve)  # the slots a round solves at once (needed() did not foresee)
        peering = Peering(engine)
        network = Network(NetworkConfig(seed=key.encode(), chain_id=genesis.chain_id, listen=cfg.p2p_listen,
                                        bootstrap=cfg.bootstrap, max_peers=cfg.max_peers, mdns=cfg.mdns,
                                        keepalive=cfg.keepalive,
                                        # A solver resends its pending commits and reveals at each new head:
                                        # ids must be forgotten by then, or a peer that once refused one
                                        # (its head was behind) never gets it again.
                                        # At least 5 s: longer than gossipsub's IHAVE window (3 heartbeats),
                                        # or a peer would fetch and relay a pending transaction again and again.
                                        seen_ttl=max(5, min(120, genesis.slot_seconds // 2))),
                          topics(genesis.max_block_txs + genesis.max_consensus_txs), peering.handle, peering)
        peering.network = network
        metrics.watch((network.stats, "gossip"), (engine.stats, "engine"))
        metrics.watch_gossip(network)
        metrics.watch_store(chain.store)
        node.on_local_tx.append(lambda tx: network.publish("tx", tx.encoded))
        blocksync = BlockSync(network, peering, metrics)
        plugins = load_plugins()
        log_plugins(plugins)
        app = make_app(node, metrics, info=lambda: {"version": VERSION, "plugins": [p.to_json() for p in plugins],
                                                    **_p2p_info(network)},
                       peers=partial(_peers, network), final=engine.finalized,
                       health=partial(health, chain, lambda: len(network.peers()), bool(cfg.bootstrap)),
                       events=(hub := EventHub()), cors_origins=cfg.cors_origins)
        feed = ChainFeed(hub, chain)  # /api/events: heads, final blocks, cleared slots, after each round
        app.mount("/app", owner_app(node, cfg, [p.obj for p in plugins if p.ready and hasattr(p.obj, "plan_day")]))
        log.info("chain %s at height %d (%s), node %s", genesis.chain_id, chain.height, chain.head.hash.hex()[:16],
                 encode_address(node.address))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, nursery.cancel_scope)
            await nursery.start(partial(serve, serve_app(app), hypercorn_config(sock, tls=tls), shutdown_trigger=trio.sleep_forever))
            if msock is not None:
                await nursery.start(partial(serve, metrics_app(metrics.registry), hypercorn_config(msock),
                                            shutdown_trigger=trio.sleep_forever))
                log.info("metrics on http://%s/metrics", metrics_listen)
            await nursery.start(network.run)
            _write_runtime(cfg, api_url, network)
            log.info("API and explorer on %s/", api_url)
            nursery.start_soon(peering.fetch_wanted)
            if cfg.bootstrap:
                # Catch up before proposing: Engine.tick proposes every slot it missed at once, so a
                # solver that starts behind would mint those slots alone and, once that branch is
                # deeper than finality_depth, be forked off for good.
                with trio.move_on_after(INITIAL_SYNC_SECONDS):
                    while not network.peers():
                        await trio.sleep(0.1)
                    while await blocksync.sync_once():
                        pass
            nursery.start_soon(blocksync.run)
            if chain.state().solver(node.address) is None:
                log.info("this node is not a registered solver: it follows the chain but proposes no blocks")
            nursery.start_soon(_run_rounds, engine, peering, metrics, cfg, feed)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not interrupt the close
            signal.signal(sig, signal.SIG_IGN)
        cfg.runtime_path.unlink(missing_ok=True)
        journal.close()
        sock.close()
        if msock is not None:
            msock.close()
        store.close()
        if chain is not None:
            log.info("stopped; the store is closed at height %d", chain.height)


def _tls(cfg: Config) -> tuple[str, str] | None:
    """The API's (certificate, key) when config.toml gives them, checked now: a file that is missing or not
    a PEM pair is one line before anything starts."""
    if cfg.api_tls_cert is None or cfg.api_tls_key is None:
        return None
    cert, key = str(cfg.in_datadir(cfg.api_tls_cert)), str(cfg.in_datadir(cfg.api_tls_key))
    try:
        check_tls(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"[api] tls_cert/tls_key ({cert}, {key}): cannot serve TLS with them: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    return cert, key


def _listen(address: str, what: str = "for the API") -> tuple[socket.socket, str]:
    """A listening socket (the API's, the metrics'), bound here so a busy port is one clear error; and its URL."""
    host, _, port = address.rpartition(":")
    try:
        sock = socket.create_server((host, int(port)))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot listen on {address} {what}: {getattr(e, 'strerror', None) or e}") from None
    return sock, f"http://{host}:{sock.getsockname()[1]}"


def _write_runtime(cfg: Config, api_url: str, network: Network) -> None:
    tmp = cfg.runtime_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"api": api_url, "pid": os.getpid(), "peer": network.addrs[0] if network.addrs else None,
                               "peer_id": network.peer_id}))
    os.replace(tmp, cfg.runtime_path)


def _p2p_info(network: Network) -> dict:
    return {"peer_id": network.peer_id, "p2p": network.addrs, "peers": len(network.peers())}


def _peers(network: Network) -> dict:
    """Connected peers with their scores, and the banned ones: for /api/peers."""
    now = time.monotonic()
    book = network.book
    return {"peers": [{"peer_id": p, "score": round(book.score(p, now), 2)} for p in sorted(network.peers())],
            "banned": [{"peer_id": p, "seconds_left": round(until - now)} for p, until in sorted(book.banned.items())
                       if until > now],
            "stats": vars(network.stats)}


async def _watch_signals(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for sig in signals:
            log.info("%s: shutting down", signal.Signals(sig).name)
            scope.cancel()
            return


async def _run_rounds(engine: Engine, peering: Peering, metrics: NodeMetrics, cfg: Config,
                      feed: ChainFeed | None = None) -> None:
    """Drive the node's Proof-of-Solution rounds: solve what the engine will need in a worker thread,
    then let it commit, propose and select (consensus/engine.py); its messages go to the network.
    A store that cannot be written stops the rounds until it can (`_wait_for_store`)."""
    reported = engine.chain.height
    clock_said = -STORE_LOG_SECONDS
    heap = HeapTrimmer(forget=verified.forget)
    while True:
        slow = clock_behind_head_s(engine.chain, now_ms())
        if slow and time.monotonic() - clock_said >= STORE_LOG_SECONDS:  # once a minute while it lasts
            clock_said = time.monotonic()
            log.warning("the clock is %d s behind the chain's head (block %d's slot has not begun by it): "
                        "not proposing until it catches up; check the system clock (NTP)", slow, engine.chain.height)
        if peering.fatal is not None:
            raise peering.fatal
        if engine.chain.store.unwritable is not None:
            await _wait_for_store(engine)
        try:
            for h in engine.needed():
                market, pairs = engine.chain.market(h)
                t0 = time.perf_counter()
                sol = await trio.to_thread.run_sync(solve_slot, market, pairs, engine.chain.genesis,
                                                    cfg.solver_time_limit, abandon_on_cancel=True)
                metrics.solved(time.perf_counter() - t0, sol)
                engine.put_solution(h, sol)
            t0 = time.perf_counter()
            peering.send(engine.tick(now_ms()))
            peering.announce_head()
            if feed is not None:
                feed.update(engine.finalized())
            network = peering.network
            metrics.peers.set(len(network.peers()))
            if engine.chain.height != reported:
                metrics.commit_seconds.observe(time.perf_counter() - t0)
                reported = _report(engine, reported, metrics)
                heap.after_block(reported)
                await trio.sleep(0)  # a block landed: the next slot may be due already (catching up)
                continue
        except StoreWriteError:
            continue  # the store says so itself: wait for it above
        except JournalError as e:
            log.error("round for block %d: %s; retrying in 1 s", engine.chain.height + 1, e)
            await trio.sleep(1)
        except StoreCorrupt:
            raise  # damaged data is never built on: the node stops with the one line that says what to do
        except Exception:  # keep serving the chain; the next attempt may succeed (a clock step)
            log.exception("round for block %d failed; retrying in 1 s", engine.chain.height + 1)
            await trio.sleep(1)
        await trio.sleep(0.05)


STORE_RETRY_MAX_SECONDS = 30.0
STORE_LOG_SECONDS = 60.0


async def _wait_for_store(engine: Engine) -> None:
    """The store refused a write: produce nothing (the API answers 503 to transactions and on
    /api/health), reopen it with backoff until it takes writes again, and say so once a minute."""
    store, t0 = engine.chain.store, time.monotonic()
    log.error("%s; not producing blocks or taking transactions until it can", store.unwritable)
    delay, logged, tries = 1.0, t0, 0
    while True:
        await trio.sleep(delay)
        tries += 1
        if store.recover():
            break
        if time.monotonic() - logged >= STORE_LOG_SECONDS:
            logged = time.monotonic()
            log.error("%s; still not producing (%d attempts in %.0f s)", store.unwritable, tries,
                      logged - t0)
        delay = min(STORE_RETRY_MAX_SECONDS, delay * 2)
    engine.chain.reload()
    engine.chain.check()  # the reopened store must still be whole
    engine.node.after_head_change()
    log.info("the chain database takes writes again after %.0f s; producing from block %d",
             time.monotonic() - t0, engine.chain.height + 1)


def _report(engine: Engine, reported: int, metrics: NodeMetrics) -> int:
    """One log line per new block (every 100th while catching up), and the metrics."""
    chain, g = engine.chain, engine.chain.genesis
    for h in range(min(reported, chain.height) + 1, chain.height + 1):
        block = chain.block_at(h)
        wh = sum(t.wh for t in block.clearing.trades)
        behind = (now_ms() - g.slot_start_ms(h)) // (g.slot_seconds * 1000)
        metrics.block_imported(chain, block, (now_ms() - g.slot_start_ms(h)) / 1000 if behind <= 1 else None)
        if behind <= 1 or h % 100 == 0:
            n = chain.market(h)[0].instance
            log.info("block %d  txs %d  bids %d/%d  cleared %.1f kWh in %d trades  %s%s", h, len(block.txs),
                     len(n.sellers), len(n.buyers), wh / 1000, len(block.clearing.trades), chain.rank(block).describe(),
                     f"  catching up: {behind} slots behind" if behind > 1 else "")
    metrics.head(chain, engine.finalized().height, len(engine.node.mempool))
    return chain.height
