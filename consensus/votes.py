"""A node's view of the finality votes (sans-IO): counting them, the fork choice's weights, aggregates to carry.

Votes come one by one from gossip (`add_vote`, counted by a `finality.Tally` against the head's
voter set) and as aggregates inside blocks (`add_block`).  From both the book keeps each voter's
latest vote, the one with the highest target, and from those the weight the fork choice compares
(forkchoice.py): the weight of block B at height h is the deposit of the voters whose latest vote
is for B or for a descendant of B (LMD-GHOST).  Ancestry comes from the headers of every block the
node has seen, kept here as parent links, and from the chain's store.

What is kept is bounded: parent links and counted votes below the final checkpoint are dropped
(`forget_below`), and a voter has one latest vote.
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.rules.blocks import Block
from consensus.rules.finality import (Certificate, Checkpoint, FinalityError, Outcome, Counted, Tally, Vote, VoterSet,
                                      check_aggregate)

MAX_PARENTS = 8192  # parent links kept, at most (a node far behind drops the oldest first)


class VoteBook:
    def __init__(self, chain_id: str, stored_parent: Callable[[bytes], tuple[int, bytes] | None]) -> None:
        """`stored_parent(hash)`: (height, parent hash) of a block the chain's store holds, else None."""
        self.chain_id = chain_id
        self._stored_parent = stored_parent
        self.voters: VoterSet | None = None
        self.tally: Tally | None = None
        self.latest: dict[bytes, Checkpoint] = {}  # BLS key -> target of its latest vote
        self.parents: dict[bytes, tuple[int, bytes]] = {}  # block hash -> (height, parent hash)
        self.version = 0  # bumped whenever a latest vote changes: the weights may have

    # ------------------------------------------------------------ inputs
    def set_voters(self, voters: VoterSet | None) -> None:
        """The head's voter set; votes are counted against it (a new set starts a new count)."""
        if voters == self.voters:
            return
        self.voters = voters
        self.tally = Tally(self.chain_id, voters) if voters is not None else None
        keep = set(voters.index) if voters is not None else set()
        self.latest = {k: t for k, t in self.latest.items() if k in keep}
        self.version += 1

    def add_vote(self, v: Vote) -> Outcome | None:
        """Count a gossiped vote (None: nobody votes yet)."""
        if self.tally is None:
            return None
        out = self.tally.add(v)
        if isinstance(out, Counted):
            self._saw(v.voter, v.target)
        return out

    def add_block(self, block: Block) -> None:
        """Note a block's parent link, and the latest votes its aggregates show (those that verify
        against the head's voter set; an aggregate checked against another set is skipped here, the
        chain checks it when the block is connected)."""
        h = block.header
        if len(self.parents) >= MAX_PARENTS:
            for k in sorted(self.parents, key=lambda k: self.parents[k][0])[:MAX_PARENTS // 4]:
                del self.parents[k]
        self.parents[block.hash] = (h.height, h.parent)
        if self.voters is None:
            return
        for c in block.votes:
            try:
                signers = check_aggregate(c, self.voters, chain_id=self.chain_id)
            except FinalityError:
                continue
            for i in signers:
                self._saw(self.voters.voters[i].bls_key, c.target)

    def _saw(self, key: bytes, target: Checkpoint) -> None:
        old = self.latest.get(key)
        if old is None or target.height > old.height:
            self.latest[key] = target
            self.version += 1

    # ------------------------------------------------------------ outputs
    def parent_of(self, block_hash: bytes) -> tuple[int, bytes] | None:
        hit = self.parents.get(block_hash)
        return hit if hit is not None else self._stored_parent(block_hash)

    def knows(self, block_hash: bytes) -> bool:
        return self.parent_of(block_hash) is not None

    def ancestor_at(self, block_hash: bytes, height: int) -> bytes | None:
        """The hash of `block_hash`'s ancestor (or itself) at `height`; None if a link is unknown."""
        while True:
            hit = self.parent_of(block_hash)
            if hit is None:
                return None
            h, parent = hit
            if h == height:
                return block_hash
            if h < height:
                return None
            block_hash = parent

    def weight(self, block_hash: bytes, height: int) -> int:
        """The deposit of the voters whose latest vote is for this block or a descendant."""
        if self.voters is None:
            return 0
        total = 0
        by_key = {v.bls_key: v.deposit for v in self.voters.voters}
        memo: dict[bytes, bool] = {}
        for key, target in self.latest.items():
            if target.height < height:
                continue
            under = memo.get(target.hash)
            if under is None:
                under = memo[target.hash] = self.ancestor_at(target.hash, height) == block_hash
            if under:
                total += by_key.get(key, 0)
        return total

    def aggregates(self, on_chain: Callable[[Checkpoint], bool], targets: list[int]) -> list[Certificate]:
        """For a proposal: the aggregate of every vote counted for each link whose target height is in
        `targets` and whose source and target are on the proposer's chain (`on_chain`)."""
        if self.tally is None:
            return []
        out = []
        for t in targets:
            for source, target in self.tally.links(t):
                if on_chain(source) and on_chain(target):
                    cert = self.tally.certificate(source, target)
                    if cert is not None:
                        out.append(cert)
        return out

    def forget_below(self, height: int) -> None:
        """Drop what only concerns blocks below `height` (the final checkpoint)."""
        if self.tally is not None:
            self.tally.forget_below(height)
        self.parents = {k: v for k, v in self.parents.items() if v[0] >= height}
