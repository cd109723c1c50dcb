"""The node's Prometheus metrics, in a registry of its own (one per node, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NodeMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.height = Gauge("transx_height", "Height of the chain head", registry=r)
        self.mempool = Gauge("transx_mempool_transactions", "Transactions waiting in the mempool", registry=r)
        self.tx_accepted = Counter("transx_tx_accepted", "Transactions admitted to the mempool", registry=r)
        self.tx_rejected = Counter("transx_tx_rejected", "Transactions refused", ["reason"], registry=r)
        self.solve_seconds = Histogram("transx_solve_seconds", "Time to clear a slot", registry=r,
                                       buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300))
        self.commit_seconds = Histogram("transx_block_commit_seconds", "Time to validate and write a block",
                                        registry=r, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5))
        self.traded_wh = Counter("transx_traded_wh", "Energy cleared peer to peer, Wh", registry=r)
        self.void_slots = Counter("transx_void_slots", "Slots no method could clear", registry=r)
        self.peers = Gauge("transx_peers", "Connected peers", registry=r)
        self.sync_target = Gauge("transx_sync_target_height", "Best head height seen at a peer", registry=r)
        self.sync_remaining = Gauge("transx_sync_remaining_blocks", "Blocks left in the running sync", registry=r)
        self.gossip_rejected = Gauge("transx_gossip_rejected", "Gossip messages rejected as invalid", registry=r)
        self.peer_bans = Gauge("transx_peer_bans", "Peers banned for misbehaviour", registry=r)
        self.reorgs = Gauge("transx_reorgs", "Chain reorganisations since the node started", registry=r)
