"""Fuzz target: a block's way onto the chain: `decode_block`, `Chain.precheck` and `Chain.validate` on
the world's real chain over LevelDB (validate writes nothing, so every input meets the same head).
Only `BlockError` may escape.

The first byte picks how the rest is used (mode = byte % 2):
  0  raw bytes from a peer: decoded, prechecked and validated as they are, at the clock of the head's
     child's slot (a mutation breaks the proposer's signature, so this explores parsing and the checks
     before the signature's);
  1  decoded, then built again by the world's solver on the head with the block's clearing, vote
     aggregates, salt and timestamp, and its transactions signed again by the world's keys (those that
     pass `check_stateless`, as the mempool's candidates have) (`Chain.build_block`, which may refuse the clearing or a vote: `BlockError`): the block it builds must
     pass `validate` executed afresh, or a proposer would make blocks its own peers refuse.
"""

from __future__ import annotations

from fuzz import harness


def seeds(world) -> list[bytes]:
    blocks = world.samples.by_kind["block"] + [world.next_block().encoded]
    return [bytes([mode]) + raw for mode in (0, 1) for raw in blocks]


def setup(world):
    from consensus.chain.chain import decode_block
    from consensus.rules import keys
    from consensus.rules.blocks import BlockError

    chain = world.chain
    now = world.now(chain.height + 1) + 500

    def one_input(data: bytes) -> None:
        if not data:
            return
        mode, payload = data[0] % 2, data[1:]
        try:
            block = decode_block(payload)
            if mode == 0:
                chain.precheck(block)
                chain.validate(block, now)
                return
            txs = world.resign(block.txs)  # candidates come from the mempool: stateless checks passed
            h = block.header
            built, _ = chain.build_block(world.solver, block.clearing, txs, h.timestamp, salt=h.salt,
                                         votes=list(block.votes), vote_secret=keys.vote_secret(world.solver))
        except BlockError:
            return
        chain._built = None  # executed again, as a peer that receives it executes it
        try:
            chain.precheck(built)
            chain.validate(built, max(now, built.header.timestamp))
        except BlockError as e:
            raise harness.Finding(f"build_block made a block that validate refuses: {e}") from None

    return one_input


if __name__ == "__main__":
    harness.main("block")
