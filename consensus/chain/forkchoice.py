"""Fork choice: which of two blocks for one height a node keeps.

A block that extends the head is taken.  A block for a height the chain already has (the first
height where the two chains differ decides) is compared with ours there:
  1. never at or below the chain's final checkpoint (checkpoints.py), nor below one this node saw
     final and pruned: it stays;
  2. the block that wins the caller's `weigh(block hash, height)` (compared with <): the branch of the
     highest checkpoint known justified, then the deposit of the voters whose latest vote is for that
     block or a descendant of it (LMD-GHOST; consensus/votes.py `VoteBook.prefer`).  Votes are cast once a block is adopted at the end of its reveal window, so
     a block released late, or a lower-hash twin of an adopted one, finds the honest votes behind
     the block it tries to replace, and loses;
  3. at equal weight (before anyone voted, or where nobody votes), the better-ranked proposal
     (consensus/rules/ranking.py), reverting at most `finality_depth` blocks; equal ranks (one
     solver's two blocks) go to the lower block hash, so every node keeps the same block whichever
     it saw first.
Mixed into `Chain` (chain.py), whose blocks, state and verifier it reads.
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.rules import keys, schema
from consensus.rules.blocks import MAX_FUTURE_MS, Block, BlockError
from consensus.rules.ranking import Rank, commitment, rank, rank_step


TIE_RANK_DEPTH = 2  # at equal votes, blocks this far below the head or more are ordered by hash, not rank


class ForkChoice:
    """Ranking proposals against the chain and switching to a better branch; needs `Chain`'s reads,
    `connect` and `revert_head`."""

    def rank(self, block: Block) -> Rank:
        """How `block` ranks among proposals for its height (consensus/rules/ranking.py); its parent must be on
        this chain.  Raises `BlockError` if its clearing is invalid."""
        hit = self._ranks.get(block.hash)
        if hit is not None:
            return hit
        h = block.header
        if self.hash_at(h.height - 1) != h.parent:
            raise BlockError(f"block {h.height}'s parent is not on this chain")
        verdict = self.check_clearing(h.height, block.clearing)
        solver = keys.address_of(h.proposer)
        state = self.state() if h.parent == self.head.hash else None
        stored = self.state().get(schema.commit(h.height, solver))
        committed = any(h.salt) and stored is not None and stored[:32] == commitment(h.clearing_hash, solver, h.salt)
        if state is not None:  # the ticket and the committee are checked against the parent (on connect, always)
            self._check_ticket(state, h.height, solver, h.ticket, h.timestamp)
        g = self.genesis
        step = rank_step(g.tolerance_ppm, verdict.weight, g.quantum_exp) if verdict is not None else 1
        r = rank(committed=bool(committed), objective=None if verdict is None else verdict.objective, step=step,
                 lottery=self.ticket_value(block), certified=verdict is None or verdict.certified)
        if len(self._ranks) > 10_000:
            self._ranks.clear()
        self._ranks[block.hash] = r
        return r

    def offer(self, block: Block, now_ms: int,
              weigh: Callable[[bytes, int], object] | None = None) -> tuple[str, list[Block]]:
        """Fork choice (the module's rules): take `block` if it extends the head, or if it beats this
        chain's block at its height.  Returns "connected", "reorg", "known", "worse", "final" or
        "orphan" (its parent is not on this chain), with the blocks a reorg reverted; raises
        `BlockError` if it is invalid."""
        h = block.header
        if h.height < 1:
            raise BlockError("a block below height 1")
        if self.hash_at(h.height) == block.hash:
            return "known", []
        if h.parent == self.head.hash:
            self.connect(block, now_ms)
            return "connected", []
        if h.height > self.height or self.hash_at(h.height - 1) != h.parent:
            return "orphan", []
        if h.height <= max(self.finalized().height, self.pruned):
            # Final on this chain, now or before a shallow reorg took the head's state back below it:
            # a block this node saw final stays (its undo record is gone: chain.py `_prune_final`).
            return "final", []
        if weigh is None and h.height <= self.justified().height:
            return "final", []
        ours = self.block_at(h.height)
        assert ours is not None
        self.precheck(block)
        theirs_w, ours_w = (weigh(block.hash, h.height), weigh(ours.hash, h.height)) if weigh else (0, 0)
        if theirs_w != ours_w:
            if theirs_w < ours_w:
                return "worse", []
        elif weigh is None and self.height - (h.height - 1) > self.genesis.finality_depth:
            return "final", []  # where nobody votes, the depth bounds a reorg; where they do, finality does
        elif weigh is not None and self.height - h.height >= TIE_RANK_DEPTH:
            # Equal votes deep below the head (two equal halves of a healed partition): the lower block
            # hash, which needs no state; ranking a clearing so deep would read a market our own later
            # blocks changed, and each side could rank its own block first for ever.
            if not block.hash < ours.hash:
                return "worse", []
        # One total order: equal ranks (one solver's two blocks) are decided by the block hash, so every
        # node keeps the same one whichever it saw first.
        elif not (self.rank(block), block.hash) < (self.rank(ours), ours.hash):
            return "worse", []
        reverted = []
        while self.height >= h.height:
            reverted.append(self.revert_head())
        try:
            self.connect(block, now_ms)
        except BlockError:
            for b in reversed(reverted):  # put our chain back as it was
                self.connect(b, now_ms + MAX_FUTURE_MS)
            raise
        return "reorg", reverted
