"""Several real node processes on loopback, talking over libp2p: gossip, convergence, restart, sync.

Driven as a user drives them, through the HTTP API; every wait is on a condition, bounded in time.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request

import pytest

from node_support import wait_for
from transxnode.datadir.create import init_datadir
from agent.home import random_home
from transxnode.client.devnet import PASSWORD, Devnet, DevnetNode, free_ports
from consensus.rules.genesis import dev_genesis
from consensus.rules.keys import address_of_key
from consensus.rules.transactions import BUY, SELL, Bid, sign_tx


def get(node: DevnetNode, path: str):
    with urllib.request.urlopen(node.api + path, timeout=10) as r:
        return json.loads(r.read())


def post_tx(node: DevnetNode, raw: bytes) -> None:
    req = urllib.request.Request(node.api + "/api/tx", data=json.dumps({"raw": raw.hex()}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 202


def heights(nodes: list[DevnetNode]) -> list[int]:
    return [get(n, "/api/node")["height"] for n in nodes]


def agree(nodes: list[DevnetNode], depth: int = 3) -> int | None:
    """A height below every head (by `depth`, past the reveal window's churn) where all nodes hold the
    same block, or None."""
    h = min(heights(nodes)) - depth
    if h < 1:
        return None
    hashes = {get(n, f"/api/block/{h}")["hash"] for n in nodes}
    return h if len(hashes) == 1 else None


def logs(net: Devnet) -> str:
    return "\n".join(f"--- {n.datadir.name}\n" + (n.datadir / "node.log").read_text()[-3000:] for n in net.nodes)


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    net = Devnet(tmp_path_factory.mktemp("net") / "devnet", nodes=5, homes=6, slot_seconds=2, seed=7,
                 say=lambda s: None, agents=random_home)
    net.create()
    try:
        net.start(timeout=120)
        yield net
    finally:
        net.stop()


def test_a_bid_sent_to_one_node_reaches_every_mempool_and_clears_on_one_chain(five):
    net, nodes = five, five.nodes
    wait_for(lambda: all(get(n, "/api/node")["peers"] >= 2 for n in nodes), 60, "every node to have peers")
    info = get(nodes[0], "/api/node")
    slot = info["first_open_slot"] + 3  # three blocks to get in: the machine may be loaded
    seller, buyer = net.households[0], net.households[1]
    bids = [(seller, Bid(SELL, slot, 5_000, 200_000, 0, slot - info["gate_closure"])),
            (buyer, Bid(BUY, slot, 4_000, 500_000, 0, slot - info["gate_closure"]))]
    for h, body in bids:
        nonce = get(nodes[0], f"/api/address/{h.address}")["pending_nonce"]
        post_tx(nodes[0], sign_tx(h.key, chain_id=info["chain_id"], nonce=nonce, fee=1_000, body=body).encoded)
    # Gossip carries both bids to all five mempools (or straight into a block, for a slow node).
    for n in nodes:
        wait_for(lambda: all(get(n, f"/api/address/{h.address}")["pending_nonce"] >= 1 for h, _ in bids), 20,
                 f"the bids to reach {n.datadir.name}")
    start = min(heights(nodes))
    wait_for(lambda: min(heights(nodes)) >= max(start + 10, slot + 3), 90, "ten more slots on every node")
    # Every node holds the same chain, and on it the two bids cleared against each other.
    h = wait_for(lambda: agree(nodes), 20, "the heads to agree")
    for k in range(1, h + 1, 4):
        assert len({get(n, f"/api/block/{k}")["hash"] for n in nodes}) == 1, f"nodes differ at {k}\n{logs(net)}"
    for n in nodes:
        m = get(n, f"/api/market/{slot}")
        assert len(m["bids"]) == 2 and m["traded_wh"] == 4_000, (m, logs(net))
    winners = {get(nodes[0], f"/api/block/{k}")["proposer"] for k in range(1, h + 1)}
    assert len(winners) >= 2, f"one solver won every block: {winners}"


def test_a_node_killed_for_five_slots_syncs_and_rejoins(five):
    net, nodes = five, five.nodes
    victim, others = nodes[2], [n for n in nodes if n is not nodes[2]]
    victim.proc.kill()  # SIGKILL: no clean shutdown
    victim.proc.wait()
    at = min(heights(others))
    wait_for(lambda: min(heights(others)) >= at + 5, 40, "five slots without the victim")
    try:
        wait_for(lambda: agree(others) is not None, 20, "the four to agree")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{logs(net)}") from None
    net.start_node(victim)
    net.wait_node(victim, time.monotonic() + 60)
    wait_for(lambda: get(victim, "/api/node")["height"] >= min(heights(others)) - 1, 60,
             "the restarted node to catch up")
    # Past the blocks minted while it was down, by agree()'s depth: the common block is one it had to fetch.
    target = max(max(heights(nodes)) + 2, at + 5 + 3)
    wait_for(lambda: min(heights(nodes)) >= target, 30, "the restarted node to follow the head")
    h = wait_for(lambda: agree(nodes), 20, f"all five heads to agree\n{logs(net)}")
    assert h >= at + 5


def test_a_late_node_syncs_two_hundred_blocks_then_follows_the_head(tmp_path):
    """A producer whose genesis lies 200 slots in the past makes those blocks as fast as it can; a
    node started afterwards from genesis fetches them all, verifies them, and keeps up."""
    rng = random.Random(5)
    seeds = [rng.randbytes(32) for _ in range(2)]
    from nacl.signing import SigningKey

    from p2p.network import peer_id_from_seed

    keys = [SigningKey(s) for s in seeds]
    doc = dev_genesis([address_of_key(k) for k in keys], [address_of_key(keys[0])], slot_seconds=1,
                      chain_id="transx-sync", start=int(time.time()) - 200)
    ports = free_ports(2)
    addrs = [f"/ip4/127.0.0.1/tcp/{p}/p2p/{peer_id_from_seed(s)}" for p, s in zip(ports, seeds)]
    net = Devnet(tmp_path / "sync", nodes=2, homes=0, say=lambda s: None)
    net.dir.mkdir(parents=True)
    for k, seed in enumerate(seeds):
        d = net.dir / f"node{k + 1}"
        # The late node dials the producer; the producer has no peer to wait for (a node with bootstrap peers
        # waits up to 15 s for them before it proposes: here they are not up yet).
        address, _ = init_datadir(d, PASSWORD, doc, api_listen="127.0.0.1:0", seed=seed,
                                  p2p_listen=addrs[k].rsplit("/p2p/", 1)[0], bootstrap=[addrs[0]] if k else [])
        net.nodes.append(DevnetNode(d, address, addrs[k]))
    producer, late = net.nodes
    try:
        net.start_node(producer)
        net.wait_node(producer, time.monotonic() + 60)
        wait_for(lambda: get(producer, "/api/node")["height"] >= 200, 120, "the producer to make 200 blocks")
        net.start_node(late)
        net.wait_node(late, time.monotonic() + 60)
        wait_for(lambda: get(late, "/api/node")["height"] >= 200, 60, "the late node to sync 200 blocks")
        head = get(producer, "/api/node")["height"]
        wait_for(lambda: get(late, "/api/node")["height"] >= head + 3, 30, "the late node to follow new blocks")
        h = wait_for(lambda: agree(net.nodes), 20, "the two chains to agree")
        for k in (1, 100, 200, h):
            assert get(late, f"/api/block/{k}")["hash"] == get(producer, f"/api/block/{k}")["hash"]
        metrics = urllib.request.urlopen(late.api + "/metrics", timeout=10).read().decode()
        assert "transx_sync_target_height" in metrics
        assert "sync:" in (late.datadir / "node.log").read_text(), "a long sync shows its progress"
    finally:
        net.stop()


def test_a_peer_that_freezes_is_dropped_by_ping_and_redialled_when_it_wakes(tmp_path):
    """SIGSTOP keeps a node's sockets open but stops it answering: the link looks alive to TCP for
    minutes.  The keepalive pings notice, drop it, and the dial loop reconnects once it runs again."""
    import signal

    net = Devnet(tmp_path / "devnet", nodes=2, homes=0, slot_seconds=2, seed=11, say=lambda s: None)
    net.create()
    for n in net.nodes:  # an operator on a flaky link: 8 s of silence, not the default 300, drops a peer
        config = n.datadir / "config.toml"
        config.write_text(config.read_text().replace("keepalive = 300 ", "keepalive = 8 "))
        assert "keepalive = 8 " in config.read_text()
    try:
        net.start(timeout=60)
        a, b = net.nodes
        wait_for(lambda: get(a, "/api/node")["peers"] == 1, 30, "the two nodes to connect")
        b.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            wait_for(lambda: get(a, "/api/node")["peers"] == 0, 40, "node 1 to drop the frozen peer")
            dropped_after = time.monotonic() - t0
        finally:
            b.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: get(a, "/api/node")["peers"] == 1 and get(b, "/api/node")["peers"] == 1, 40,
                 "the two nodes to reconnect")
        assert "answered none of 2 pings in 8 s" in (a.datadir / "node.log").read_text()
        assert dropped_after < 25, dropped_after
    finally:
        net.stop()
