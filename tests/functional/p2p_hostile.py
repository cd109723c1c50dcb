"""A hostile libp2p peer against a real node process: it speaks the gossip protocol correctly and sends
garbage, a badly signed transaction, oversize items, undecodable proposals and blocks.

What a node operator relies on: the node stays up and keeps making blocks, nothing hostile reaches
the mempool, each bad item is rejected (and counted), the peer is banned, disconnected, and dropped
again when it reconnects.  The hostile peer is py-libp2p built here directly, with the settings a node
uses (Noise only, yamux, gossipsub heartbeat 1 s, the library's own spam limit off), so the node
cannot tell it from an honest peer until it sends something bad.  Every wait is on a condition,
bounded in time.
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from node_support import PASSWORD, NodeProcess, transx, wait_for
from p2p import framing
from p2p.network import topic_name
from consensus.rules.keys import decode_address
from transxnode.datadir.keystore import Keystore
from consensus.rules.transactions import MAX_TX_BYTES, Transfer, sign_tx

pytestmark = pytest.mark.trio


@dataclass
class Funded:
    address: str
    key: object


@pytest.fixture
def node(tmp_path: Path):
    datadir = tmp_path / "data"
    transx("init", "--datadir", str(datadir), "--dev", "--slot-seconds", "1", "--api-listen", "127.0.0.1:0",
           "--p2p-listen", "/ip4/127.0.0.1/tcp/0", check=True)
    n = NodeProcess(datadir).start()
    try:
        n.wait_height(1, timeout=30)
        yield n
    finally:
        if n.proc is not None and n.proc.poll() is None:
            n.stop()


@pytest.fixture
def funded(node: NodeProcess) -> Funded:
    """A wallet of this test's own (the node key is busy with its solver's commits), funded on chain."""
    ks = Keystore(node.datadir / "keystore")
    me = ks.create(PASSWORD)
    transx("wallet", "send", me, "1000", *node.dd, check=True)
    wait_for(lambda: node.get(f"/api/address/{me}")["balance"] > 0, 30, "funding to land")
    return Funded(me, ks.unlock(me, PASSWORD))


@dataclass
class Hostile:
    host: object
    pubsub: object
    gossipsub: object
    peer_id: str


@asynccontextmanager
async def hostile_peer(topics: list[str]):
    """A py-libp2p host subscribed to the node's topics, as Network.run builds one, but with no
    validators and no redial loop: it sends what the test tells it to and reconnects only when told."""
    from libp2p import new_host
    from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
    from libp2p.identity_utils import create_identity_from_seed
    from libp2p.peer.id import ID
    from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
    from libp2p.pubsub.pubsub import Pubsub, get_content_addressed_msg_id
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE, Transport as NoiseTransport
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX, Yamux
    from libp2p.tools.anyio_service import background_trio_service
    from multiaddr import Multiaddr

    key_pair = create_identity_from_seed(os.urandom(32))
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    host = new_host(key_pair=key_pair, sec_opt={NOISE: noise}, muxer_opt={YAMUX: Yamux})
    gossipsub = GossipSub(protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID], degree=6, degree_low=4,
                          degree_high=12, heartbeat_interval=1, spam_protection_enabled=False,
                          eclipse_protection_enabled=False)
    pubsub = Pubsub(host, gossipsub, msg_id_constructor=get_content_addressed_msg_id)

    async def drain(sub) -> None:
        while True:
            await sub.get()

    async with background_trio_service(pubsub), background_trio_service(gossipsub):
        async with host.run(listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/0")]), trio.open_nursery() as nursery:
            await pubsub.wait_until_ready()
            for t in topics:
                nursery.start_soon(drain, await pubsub.subscribe(t))
            yield Hostile(host, pubsub, gossipsub, ID.from_pubkey(key_pair.public_key).to_base58())
            nursery.cancel_scope.cancel()


async def test_hostile_peer_is_rejected_banned_and_dropped(node: NodeProcess, funded: Funded):
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from multiaddr import Multiaddr

    def log() -> str:
        return f"\n--- node log (tail):\n{node.log()[-6000:]}"

    async def api(path: str):
        return await trio.to_thread.run_sync(node.get, path)

    async def status(path: str) -> int:
        return (await trio.to_thread.run_sync(node.request, "GET", path))[0]

    async def until(predicate, timeout: float, what: str):
        """Poll the async `predicate` until truthy, within `timeout` seconds."""
        try:
            with trio.fail_after(timeout):
                while True:
                    value = await predicate()
                    if value:
                        return value
                    await trio.sleep(0.05)
        except trio.TooSlowError:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{log()}") from None

    async def peers():
        return await api("/api/peers")

    def alive() -> None:
        assert node.proc.poll() is None, f"the node died (exit {node.proc.returncode}){log()}"

    info = await api("/api/node")
    chain_id = info["chain_id"]
    runtime = json.loads((node.datadir / "node.json").read_text())
    node_info = info_from_p2p_addr(Multiaddr(runtime["peer"]))
    node_id = runtime["peer_id"]
    assert node_info.peer_id.to_base58() == node_id
    topics = {k: topic_name(chain_id, k) for k in ("tx", "proposal", "block")}

    with trio.fail_after(45):
        async with hostile_peer(list(topics.values())) as h:
            # ---- join: connect and wait until the node is in our mesh on every topic (so a publish reaches it)
            with trio.fail_after(10):
                await h.host.connect(node_info)

            async def in_mesh():
                return all(node_info.peer_id in h.gossipsub.mesh.get(t, ()) for t in topics.values())

            await until(in_mesh, 15, "the node in the hostile peer's gossip mesh on all three topics")
            await until(lambda: _listed(peers, h.peer_id), 10, "the node to list the hostile peer")

            async def publish(kind: str, data: bytes) -> None:
                await h.pubsub.publish(topics[kind], data)

            # ---- control: a valid transaction over the same path reaches the mempool, no penalty
            me = decode_address(funded.address)
            nonce = (await api(f"/api/address/{funded.address}"))["pending_nonce"]
            good = sign_tx(funded.key, chain_id=chain_id, nonce=nonce, fee=1000, body=Transfer(me, 1))
            await publish("tx", framing.pack([good.encoded]))

            async def good_known():
                return await status(f"/api/tx/{good.hash.hex()}") == 200

            await until(good_known, 10, "the valid gossiped transaction to reach the node")
            stats = (await peers())["stats"]
            assert stats["accepted"] >= 1 and stats["rejected"] == 0, (stats, log())
            height_before = (await api("/api/node"))["height"]

            # ---- the attack: distinct payloads (message ids are content hashes), each must be rejected
            bad = sign_tx(funded.key, chain_id=chain_id, nonce=nonce + 1, fee=1000, body=Transfer(me, 2))
            tampered = bytearray(bad.encoded)
            tampered[-10] ^= 0x01  # a signature byte: otherwise a transaction the node would take
            tampered = bytes(tampered)
            attack = [
                ("tx", b"\xff" * 6 + os.urandom(32), "unframed garbage (an overlong length prefix)"),
                ("tx", framing.pack([os.urandom(200)]), "a framed item that is not a transaction"),
                ("tx", framing.pack([tampered]), "a transaction with a flipped signature byte"),
                ("tx", framing.pack([os.urandom(MAX_TX_BYTES + 100)]), "an item over the transaction size limit"),
                ("proposal", framing.pack([os.urandom(300)]), "an undecodable proposal"),
                ("block", framing.pack([os.urandom(300)]), "an undecodable block"),
            ]
            for i, (kind, data, what) in enumerate(attack, 1):
                await publish(kind, data)

                async def counted():
                    return (await peers())["stats"]["rejected"] >= i

                await until(counted, 10, f"the node to reject {what} (hostile item {i})")
                alive()
                if i == 1:  # the penalty shows in the peer list while the peer is still connected
                    listed = await _listed(peers, h.peer_id)
                    assert listed and listed["score"] <= -15, (listed, log())

            # ---- banned, and disconnected by the node
            async def banned():
                doc = await peers()
                return next((b for b in doc["banned"] if b["peer_id"] == h.peer_id), None)

            ban = await until(banned, 10, "the hostile peer in /api/peers 'banned'")
            assert ban["seconds_left"] > 500, (ban, log())

            async def dropped():
                return (node_info.peer_id not in h.host.get_connected_peers()
                        and not await _listed(peers, h.peer_id))

            await until(dropped, 10, "the node to disconnect the banned peer")
            doc = await peers()
            assert doc["stats"]["rejected"] >= len(attack) and doc["stats"]["bans"] == 1, (doc, log())

            # ---- none of it reached the mempool: the tampered transaction is unknown to the node
            assert await status(f"/api/tx/{_tx_hash(tampered)}") == 404, log()

            # ---- a reconnect does not stick: the node drops the banned peer again
            reconnected = True
            try:
                with trio.fail_after(10):
                    await h.host.connect(node_info)
            except Exception:  # refused during the handshake: as good as dropped
                reconnected = False
            await until(dropped, 10, "the node to drop the banned peer's reconnection")
            if reconnected:
                assert "reconnected: dropped" in node.log(), log()
            doc = await peers()
            assert any(b["peer_id"] == h.peer_id for b in doc["banned"]), (doc, log())

            # ---- and through all of it the node kept making blocks
            async def grew():
                return (await api("/api/node"))["height"] >= height_before + 2

            await until(grew, 15, "the chain to keep growing after the attack")
            alive()

    assert node.stop(signal.SIGINT) == 0, log()


async def _listed(peers, peer_id: str):
    doc = await peers()
    return next((p for p in doc["peers"] if p["peer_id"] == peer_id), None)


def _tx_hash(raw: bytes) -> str:
    """The hash a transaction with these exact bytes would have (tampered bytes still decode)."""
    from consensus.rules.transactions import decode_tx

    return decode_tx(raw).hash.hex()
