"""Fuzz target: well-signed blocks and proposals through the consensus engine (`Engine.judge`, and so
the fork choice: `Chain.offer`, reorgs) on the world's chain.  What `gossip` feeds is mostly refused at
the proposer's signature; here each input is a block decoded and then built again, signed, so the
engine's own logic runs: ranks, the reveal window, a competitor of the head, a reorg and its undo.

The rest after the first byte is a block (`decode_block`; `BlockError` ends the input).  Its clearing,
vote aggregates, salt and timestamp, and its transactions signed again by the world's keys (those that
pass `check_stateless`), make a block built by the world's solver (by the second solver, users[3], when
the byte's top bit is set) on the block `depth` = byte & 3 below the head: 0 the head's child, 1 a
competitor of the head, 2 and 3 deeper forks.  It goes to a fresh engine as a proposal (byte & 4) or a
block, at the clock of its slot's start plus (byte >> 3 & 15) eighths of a slot.  The engine's verdict
must be accept, ignore or reject, and nothing may raise.  The chain is put back after each input.
"""

from __future__ import annotations

from fuzz import harness


def seeds(world) -> list[bytes]:
    blocks = world.samples.by_kind["block"][-4:] + [world.next_block().encoded]
    return [bytes([v]) + raw for raw in blocks for v in (0, 1, 4 + 2, 5 + 8 * 6, 0x80 | 1)]


def setup(world):
    from consensus.chain.chain import decode_block
    from consensus.engine import ACCEPT, BLOCK, IGNORE, PROPOSAL, REJECT, Engine
    from consensus.mempool import Mempool
    from consensus.rules import keys
    from consensus.rules.blocks import BlockError

    chain, node, g = world.chain, world.node, world.g
    base = chain.height
    originals = {h: chain.block_at(h) for h in range(1, base + 1)}

    def restore() -> None:
        while chain.height > base or chain.head.hash != originals[chain.height].hash:
            chain.revert_head()
        for h in range(chain.height + 1, base + 1):
            chain.connect(originals[h], max(world.now(h), originals[h].header.timestamp))

    def one_input(data: bytes) -> None:
        if not data:
            return
        v = data[0]
        try:
            block = decode_block(data[1:])
        except BlockError:
            return
        txs = world.resign(block.txs)
        k = world.users[3] if v & 0x80 else world.solver
        h = block.header
        try:
            for _ in range(min(v & 3, base - 1)):
                chain.revert_head()
            try:
                built, _ = chain.build_block(k, block.clearing, txs, h.timestamp, salt=h.salt, votes=list(block.votes),
                                             vote_secret=keys.vote_secret(k))
            except BlockError:
                return
            finally:
                restore()
            chain._built = None  # a peer's block: executed again when it connects
            node.mempool = Mempool()
            now = g.slot_start_ms(built.height) + ((v >> 3) & 15) * g.slot_seconds * 125
            verdict, _ = Engine(node).judge(PROPOSAL if v & 4 else BLOCK, built.encoded, max(now, 0), "peer")
        finally:
            restore()
        if verdict not in (ACCEPT, IGNORE, REJECT):
            raise harness.Finding(f"the engine's verdict is {verdict!r}")

    return one_input


if __name__ == "__main__":
    harness.main("proposal")
