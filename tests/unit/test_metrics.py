"""The node's Prometheus metrics: names that follow Prometheus' rules, read from the registry itself, and
the market's counts against a real chain's blocks (LevelDB, the real solver)."""

from __future__ import annotations

import re

from chain_support import Net
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client import generate_latest

from consensus.chain.store import LRU_CACHE, WRITE_BUFFER
from consensus.engine import Stats
from p2p.network import NetStats
from test_ledger import market_bids
from transxnode.metrics import NodeMetrics

# What a name of ours may end in: a base unit, or the thing it counts (plural).  `accepted` and `rejected`:
# transx_tx_accepted_total and transx_tx_rejected_total, older than these rules and kept for their users.
UNITS = {"seconds", "bytes", "wh", "tokens", "height", "blocks", "transactions", "peers", "messages", "items",
         "trades", "gap", "info", "slots", "bans", "reorgs", "votes", "equivocations", "shortfalls", "settlements",
         "sessions", "accepted", "rejected", "started", "completed", "refused", "taps", "charging", "up"}


def families(m: NodeMetrics) -> dict:
    """Metric families as a scraper parses them from the exposition text."""
    return {f.name: f for f in text_string_to_metric_families(generate_latest(m.registry).decode())}


def watched() -> NodeMetrics:
    m = NodeMetrics()
    m.describe("0.1.0", "transx-dev")
    m.watch((NetStats(received=5, accepted=3, rejected=1, bans=1), "gossip"), (Stats(reorgs=2), "engine"))
    return m


def check_names(fams: dict, prefix: str = "transx_") -> None:
    """Prometheus' naming rules over parsed families: counters end in `_total` and nothing else does,
    durations are in seconds, energy and money carry their unit, our names end in a unit or what they count."""
    for name, f in fams.items():
        assert re.fullmatch(r"(transx|process|python)_[a-z0-9_]+", name), name
        assert name.startswith((prefix, "process_", "python_")), name
        for s in f.samples:
            if f.type == "counter":  # a running count
                assert s.name.endswith("_total"), s.name
            else:
                assert not s.name.endswith("_total"), f"{s.name} is a {f.type}, named like a counter"
        doc = f.documentation.lower()
        if f.type == "histogram" or re.search(r"\btime\b|duration|latency", doc):
            assert name.endswith("_seconds") or name.startswith("process_"), f"{name}: a duration not in seconds"
        if re.search(r"\bwh\b", doc):
            assert "_wh" in name, f"{name}: energy without its unit in the name"
        if "tokens" in doc:
            assert "_tokens" in name, f"{name}: money without its unit in the name"
        if name.startswith("transx_"):
            assert name.split("_")[-1] in UNITS, f"{name}: ends in no unit or counted thing"


def test_every_metric_follows_prometheus_naming_rules():
    fams = families(watched())
    assert len([n for n in fams if n.startswith("transx_")]) > 30
    check_names(fams)
    # The process and platform collectors, and the build.
    assert "process_cpu_seconds" in fams and "process_resident_memory_bytes" in fams and "python_info" in fams
    build = fams["transx_build_info"].samples[0]
    assert build.name == "transx_build_info" and build.labels == {"version": "0.1.0", "network": "transx-dev"}
    assert build.value == 1


def test_running_counts_are_counters_read_from_the_network_and_the_engine():
    m = NodeMetrics()
    net, engine = NetStats(), Stats()
    m.watch((net, "gossip"), (engine, "engine"))
    net.received, net.rejected, net.bans, engine.reorgs = 7, 2, 1, 3
    f = families(m)
    assert f["transx_gossip_received_messages"].type == "counter"
    value = {n: f[n].samples[0].value for n in ("transx_gossip_received_messages", "transx_gossip_rejected_messages",
                                                 "transx_peer_bans", "transx_reorgs")}
    assert value == {"transx_gossip_received_messages": 7, "transx_gossip_rejected_messages": 2,
                     "transx_peer_bans": 1, "transx_reorgs": 3}


def test_blocks_count_energy_value_certificate_and_delivery_shortfalls(tmp_path):
    """A slot traded on a real chain, its sellers' meters silent (a missing reading settles as nothing
    delivered): the metrics count the block's energy and payments, the certificate gap, and the shortfall."""
    net = Net(str(tmp_path / "db"))
    try:
        m = NodeMetrics()
        for k in net.users:
            net.register_meter(k)
        slot = net.next_height + net.g.gate_closure
        market_bids(net, slot)
        for c in net.produce_until(slot + net.g.meter_window + 1):
            m.block_imported(net.chain, c.block, 0.25)
        traded = net.chain.block_at(slot).clearing.trades
        reg = m.registry
        assert traded and reg.get_sample_value("transx_energy_cleared_wh_total") == sum(t.wh for t in traded)
        assert reg.get_sample_value("transx_value_traded_tokens_total") == sum(t.payment for t in traded) / 1e6
        assert reg.get_sample_value("transx_block_import_delay_seconds_count") == net.height
        # The last block cleared nothing: the slot gauges follow the last block, the counters add up.
        assert reg.get_sample_value("transx_slot_energy_cleared_wh") == 0
        gap = net.chain.check_clearing(slot, net.chain.block_at(slot).clearing).gap_per_weight
        assert gap is not None and gap >= 0
        sold = {t.seller for t in traded}
        assert reg.get_sample_value("transx_settlement_shortfalls_total") == len(sold)
        assert reg.get_sample_value("transx_settlement_shortfall_wh_total") == sum(t.wh for t in traded)
        m.head(net.chain, 0, 0)
        assert reg.get_sample_value("transx_height") == net.height
        # The chain database's own memory, read at the scrape: its memtable holds the blocks just written.
        m.watch_store(net.chain.store)
        assert 0 < reg.get_sample_value("transx_store_memory_bytes") <= LRU_CACHE + 2 * WRITE_BUFFER + (1 << 20)
        net.chain.store.close()  # a store that cannot be read: NaN, and the scrape still answers
        memory = families(m)["transx_store_memory_bytes"].samples[0].value
        assert memory != memory and reg.get_sample_value("transx_height") == net.height
    finally:
        net.close()
