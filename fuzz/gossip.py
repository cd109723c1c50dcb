"""Fuzz target: what a node does with bytes a peer sends (p2p/): gossip messages and sync requests.

The first byte picks the entry point (byte % 7):
  0-3  a gossip message on the tx, proposal, block or vote topic, judged as py-libp2p's validator hands it
       over (`Network._judge`: framing, the peer's rate, then each item through the node's real handler,
       `Peering.handle` -> `Engine.judge`, on the world's chain): it returns True or False, never raises;
  4    a sync request answered from the world's chain (`sync.answer` over `Peering`): `SyncError` only;
  5    a sync answer as a downloader reads it (`decode_status`, `decode_items`): `SyncError` only;
  6    a batch (`framing.unpack`): `FramingError` only, and a batch that unpacks packs to the same bytes.
The node's state is put back after each input: mempool emptied, a block connected reverted, a fresh
engine and peer book, so an input's outcome does not depend on those before it.
"""

from __future__ import annotations

from fuzz import harness

TOPICS = ("tx", "proposal", "block", "vote")


def seeds(world) -> list[bytes]:
    from consensus.rules.blocks import HEADER
    from p2p import framing, sync

    s = world.samples.by_kind
    nxt = world.next_block()
    chain = world.chain
    items = {"tx": [framing.pack(s["tx"][:3]), framing.pack(s["tx"][-2:])] + [framing.pack([t]) for t in s["tx"][-6:]],
             "proposal": [framing.pack([nxt.encoded])],
             "block": [framing.pack([b]) for b in s["block"][-3:]] + [framing.pack([nxt.encoded])],
             "vote": [framing.pack([v]) for v in s["vote"]]}
    out = [bytes([k]) + m for k, topic in enumerate(TOPICS) for m in items[topic]]
    head = chain.head.hash
    for req in (sync.Request(sync.STATUS), sync.Request(sync.HEADERS, 1, 4), sync.Request(sync.BLOCKS, 3, 2),
                sync.Request(sync.BLOCK, hash=head)):
        out.append(bytes([4]) + req.encode())
    out.append(bytes([5]) + chain.height.to_bytes(8, "big") + head)
    out.append(bytes([5]) + framing.pack([HEADER.encode(chain.block_at(h).header) for h in (1, 2, 3)]))
    out.append(bytes([6]) + framing.pack(s["tx"][:4]))
    return out


def setup(world):
    from consensus.engine import Engine
    from consensus.mempool import Mempool
    from p2p import framing, scoring, sync
    from p2p.network import Network, NetworkConfig
    from transxnode.net.peering import MAX_BLOCK_BYTES, Peering, topics

    g, chain, node = world.g, world.chain, world.node
    specs = topics(g.max_block_txs + g.max_consensus_txs)
    net = Network(NetworkConfig(seed=bytes(world.solver), chain_id=g.chain_id), specs, None, None)
    forwarder = Network(NetworkConfig(seed=bytes(world.users[0]), chain_id=g.chain_id), specs, None, None).id
    rates = dict(net.book.rates)
    base = chain.height
    by_kind = {t.kind: t for t in specs}

    def one_input(data: bytes) -> None:
        if not data:
            return
        entry, payload = data[0] % 7, data[1:]
        if entry < 4:
            node.mempool = Mempool()
            peering = Peering(Engine(node))
            net.handler, net.source = peering.handle, peering
            net.book = scoring.PeerBook(rates=dict(rates))
            try:
                verdict = net._judge(by_kind[TOPICS[entry]], forwarder, payload)
            finally:
                while chain.height > base:
                    chain.revert_head()
            if verdict is not True and verdict is not False:
                raise harness.Finding(f"_judge returned {verdict!r}")
        elif entry == 4:
            try:
                sync.answer(Peering(Engine(node)), payload, MAX_BLOCK_BYTES)
            except sync.SyncError:
                pass
        elif entry == 5:
            try:
                sync.decode_status(payload)
            except sync.SyncError:
                pass
            try:
                sync.decode_items(payload, MAX_BLOCK_BYTES)
            except sync.SyncError:
                pass
        else:
            try:
                items = framing.unpack(payload, 1 << 20, 4096)
            except framing.FramingError:
                return
            if framing.pack(items) != payload:
                raise harness.Finding(f"batch {payload.hex()} unpacks to {len(items)} items that pack otherwise")

    return one_input


if __name__ == "__main__":
    harness.main("gossip")
