"""The node's Prometheus metrics, in a registry of its own (one per node, so tests can run several).

Names follow Prometheus' rules (https://prometheus.io/docs/practices/naming/): running counts are
counters ending in `_total`, durations are in seconds, energy in Wh and money in tokens, each named
with its unit.  The gossip and consensus counts the network and the engine keep themselves are read at
scrape time (`RunningCounts`), so they are counters without a second copy to keep in step.
`metrics_app` serves the registry alone, for `[metrics] listen` / `transx node --metrics-listen`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from consensus.chain.chain import Chain
from consensus.chain.store import Store, StoreError
from consensus.proposer import Solution
from consensus.rules.blocks import Block
from consensus.rules.settlement import settled_slot
from consensus.rules.transactions import SessionClose, SessionOpen
from consensus.rules.units import MICRO
from p2p.network import Network

# The counts p2p.network.NetStats and consensus.engine.Stats keep, as (attribute, metric name, help).
GOSSIP_COUNTS = (
    ("received", "transx_gossip_received_messages", "Gossip messages received from peers (before validation)"),
    ("accepted", "transx_gossip_accepted_messages", "Gossip messages received and accepted (relayed)"),
    ("rejected", "transx_gossip_rejected_messages", "Gossip messages rejected as invalid (the sender is penalised)"),
    ("published_messages", "transx_gossip_published_messages", "Gossip messages this node published"),
    ("published_items", "transx_gossip_published_items", "Items (transactions, votes, blocks) in published messages"),
    ("bans", "transx_peer_bans", "Peers banned for misbehaviour"),
)
ENGINE_COUNTS = (
    ("proposed", "transx_proposed_blocks", "Blocks this node proposed"),
    ("invalid", "transx_consensus_invalid_messages", "Blocks, commits and votes refused as invalid"),
    ("reorgs", "transx_reorgs", "Chain reorganisations since the node started"),
    ("votes", "transx_finality_votes", "Finality votes counted"),
    ("equivocations", "transx_vote_equivocations", "Conflicting finality votes seen (slashable)"),
)
# No `*_created` series beside each counter and histogram (the text format's gauges of start times): they
# double what Prometheus stores and no query here reads them.  Process-wide, as prometheus_client has it.
disable_created_metrics()
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class RunningCounts(Collector):
    """Counters read at scrape time from the objects that keep them (the network's and the engine's stats:
    plain attributes that only grow while the process runs)."""

    def __init__(self) -> None:
        self.sources: list[tuple[Any, tuple[tuple[str, str, str], ...]]] = []

    def collect(self) -> Iterator[CounterMetricFamily]:
        for stats, table in self.sources:
            for attr, name, doc in table:
                yield CounterMetricFamily(name, doc, value=getattr(stats, attr))


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.build = Info("transx_build", "The node's version and the network (chain id) it runs", registry=r)
        self.counts = RunningCounts()
        r.register(self.counts)
        # The chain
        self.height = Gauge("transx_height", "Height of the chain head", registry=r)
        self.justified_height = Gauge("transx_justified_height", "Height of the latest justified checkpoint",
                                      registry=r)
        self.finalized_height = Gauge("transx_finalized_height", "Height of the final checkpoint (never reverted)",
                                      registry=r)
        self.mempool = Gauge("transx_mempool_transactions", "Transactions waiting in the mempool", registry=r)
        self.tx_accepted = Counter("transx_tx_accepted", "Transactions admitted to the mempool", registry=r)
        self.tx_rejected = Counter("transx_tx_rejected", "Transactions refused", ["reason"], registry=r)
        for reason in ("malformed", "invalid"):  # the API's reasons, at 0 from the start: a series to query
            self.tx_rejected.labels(reason)
        self.peers = Gauge("transx_peers", "Connected peers", registry=r)
        self.store_memory = Gauge("transx_store_memory_bytes", "The chain database's own memory, approximately "
                                  "(LevelDB's block cache, at most 8 MiB, and its memtables)", registry=r)
        self.sync_target = Gauge("transx_sync_target_height", "Best head height seen at a peer", registry=r)
        self.sync_remaining = Gauge("transx_sync_remaining_blocks", "Blocks left in the running sync", registry=r)
        # Timings
        self.solve_seconds = Histogram("transx_solve_seconds", "Time to clear a slot (this node's solver)",
                                       registry=r, buckets=SECONDS_BUCKETS)
        self.verify_seconds = Histogram("transx_verify_seconds", "Time of the exact verification of a clearing "
                                        "this node solved", registry=r, buckets=SECONDS_BUCKETS)
        self.commit_seconds = Histogram("transx_block_commit_seconds", "Time of the round step that imported a "
                                        "block (validate, execute, write)", registry=r, buckets=SECONDS_BUCKETS)
        self.gossip_validation_seconds = Histogram("transx_gossip_validation_seconds", "Time from a peer's gossip "
                                                   "message's arrival to its verdict (a block's verification "
                                                   "included), by topic", ["topic"], registry=r,
                                                   buckets=SECONDS_BUCKETS)
        self.import_delay_seconds = Histogram("transx_block_import_delay_seconds", "From the start of a block's "
                                              "slot to its import here (production and gossip latency)",
                                              registry=r, buckets=SECONDS_BUCKETS)
        # The market, per block imported
        self.energy_cleared_wh = Counter("transx_energy_cleared_wh", "Energy cleared peer to peer, Wh", registry=r)
        self.value_traded_tokens = Counter("transx_value_traded_tokens", "Payments of cleared trades, tokens",
                                           registry=r)
        self.void_slots = Counter("transx_void_slots", "Slots no method could clear", registry=r)
        self.uncertified_slots = Counter("transx_uncertified_slots", "Slots imported live that the uncertified "
                                         "fallback cleared", registry=r)
        self.slot_energy_wh = Gauge("transx_slot_energy_cleared_wh", "Energy cleared in the last block's slot, Wh",
                                    registry=r)
        self.slot_value_tokens = Gauge("transx_slot_value_traded_tokens", "Payments of the last block's trades, "
                                       "tokens", registry=r)
        self.slot_trades = Gauge("transx_slot_trades", "Trades in the last block's slot", registry=r)
        self.certificate_gap = Gauge("transx_clearing_certificate_gap", "Duality gap of the last clearing imported "
                                     "live, per unit of bargaining weight, nats (0: empty or void)", registry=r)
        # Delivery settlement and charging sessions, per block imported
        self.shortfall_wh = Counter("transx_settlement_shortfall_wh", "Energy sold but not delivered, Wh",
                                    registry=r)
        self.shortfalls = Counter("transx_settlement_shortfalls", "Settled accounts with a delivery shortfall",
                                  registry=r)
        self.settlements = Counter("transx_settlements", "Accounts' slots settled against their meters",
                                   registry=r)
        self.sessions_opened = Counter("transx_charging_opened_sessions", "Charging sessions opened on chain",
                                       registry=r)
        self.sessions_closed = Counter("transx_charging_closed_sessions", "Charging sessions closed on chain",
                                       registry=r)
        self.charging_wh = Counter("transx_charging_energy_wh", "Energy delivered in closed charging sessions, Wh",
                                   registry=r)

    def describe(self, version: str, network: str) -> None:
        """Fill `transx_build_info{version, network}`."""
        self.build.info({"version": version, "network": network})

    def watch(self, *stats: tuple[Any, str]) -> None:
        """Expose running counts kept elsewhere: `(stats, "gossip")` for p2p's NetStats, `(stats, "engine")`
        for the consensus engine's Stats."""
        tables = {"gossip": GOSSIP_COUNTS, "engine": ENGINE_COUNTS}
        self.counts.sources.extend((s, tables[kind]) for s, kind in stats)

    def watch_store(self, store: Store) -> None:
        """Read the chain database's memory at each scrape (NaN while it cannot be read: reopening after
        a failed write, or closed at shutdown; the scrape's other metrics still answer)."""
        def read() -> float:
            try:
                return store.memory_bytes()
            except (StoreError, RuntimeError):  # RuntimeError: plyvel's "Database is closed"
                return float("nan")
        self.store_memory.set_function(read)

    def watch_gossip(self, network: Network) -> None:
        """Time each gossip message's validation on `network` (its topics' series exist from the start)."""
        for topic in network.topics:
            self.gossip_validation_seconds.labels(topic)
        network.on_validated = lambda topic, seconds: self.gossip_validation_seconds.labels(topic).observe(seconds)

    def solved(self, seconds: float, sol: Solution) -> None:
        """A slot this node solved: the solve's time, and that of the exact verification inside it."""
        self.solve_seconds.observe(seconds)
        if sol.result is not None and "verify" in sol.result.timings:
            self.verify_seconds.observe(sol.result.timings["verify"])

    def timed(self, solve: Callable[..., Solution]) -> Callable[..., Solution]:
        """`solve` (the engine's solver, called when a round needs a clearing the daemon did not solve
        ahead in its worker thread), counted by `solved`."""

        def timed_solve(*args: Any, **kw: Any) -> Solution:
            t0 = time.perf_counter()
            sol = solve(*args, **kw)
            self.solved(time.perf_counter() - t0, sol)
            return sol

        return timed_solve

    def block_imported(self, chain: Chain, block: Block, live_delay_s: float | None) -> None:
        """Count a block the chain took: its clearing, the delivery it settled and the charging sessions it
        opened and closed.  `live_delay_s`, from its slot's start to now, only for a block imported live
        (not while catching up): then its clearing's certificate too (the verdict the chain cached)."""
        clearing = block.clearing
        wh, paid = sum(t.wh for t in clearing.trades), sum(t.payment for t in clearing.trades)
        self.energy_cleared_wh.inc(wh)
        self.value_traded_tokens.inc(paid / MICRO)
        self.slot_energy_wh.set(wh)
        self.slot_value_tokens.set(paid / MICRO)
        self.slot_trades.set(len(clearing.trades))
        if clearing.void:
            self.void_slots.inc()
        for tx in block.txs:
            if isinstance(tx.body, SessionOpen):
                self.sessions_opened.inc()
            elif isinstance(tx.body, SessionClose):
                self.sessions_closed.inc()
                self.charging_wh.inc(tx.body.delivered_wh)
        slot = settled_slot(block.header.height, chain.genesis)
        if slot >= 1:
            for _, s in chain.state().settlements_of_slot(slot):
                self.settlements.inc()
                if s.shortfall_wh:
                    self.shortfalls.inc()
                    self.shortfall_wh.inc(s.shortfall_wh)
        if live_delay_s is None:
            return
        self.import_delay_seconds.observe(max(0.0, live_delay_s))
        verdict = chain.check_clearing(block.header.height, clearing)
        gap = verdict.gap_per_weight if verdict is not None else None
        self.certificate_gap.set(float(gap) if gap is not None else 0.0)
        if verdict is not None and not verdict.certified:
            self.uncertified_slots.inc()

    def head(self, chain: Chain, finalized_height: int, mempool: int) -> None:
        """The head's height, its finality and the mempool, after blocks landed."""
        self.height.set(chain.height)
        self.justified_height.set(chain.justified().height)
        self.finalized_height.set(finalized_height)
        self.mempool.set(mempool)


def metrics_app(registry: CollectorRegistry) -> Starlette:
    """An ASGI app that serves `registry` at /metrics and nothing else (the separate metrics listener)."""

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def index(request: Request) -> Response:
        return PlainTextResponse("TransX node metrics: /metrics\n")

    return Starlette(routes=[Route("/metrics", metrics), Route("/", index)])
