"""A node's view of the finality votes (sans-IO): counting them, the fork choice's weights, aggregates to carry.

Votes come one by one from gossip (`add_vote`, counted by a `finality.Tally` against the head's
voter set) and as aggregates inside blocks (`add_block`).  From both the book keeps each voter's
latest vote, the one with the highest target, and from those the weight the fork choice compares
(forkchoice.py): the weight of block B at height h is the deposit of the voters whose latest vote
is for B or for a descendant of B (LMD-GHOST).  Ancestry comes from the headers of every block the
node has seen, kept here as parent links, and from the chain's store.

Before weight comes justification (`prefer`): the book collects every quorum link it sees (in
gossip or in any block's aggregates) whose source it knows justified, and the branch holding the
highest justified checkpoint so known wins, as in Gasper's filter.  Without it, two sides could each
hold a block the other does not know justified (a voter under 1/3 can arrange that with votes no
rule forbids) and stay apart for good, each refusing to leave its justified block.  A quorum link
from a justified checkpoint to its child makes the source final as soon as the book sees it
(`final`), a block before the chain records it.

What is kept is bounded: parent links and counted votes below the final checkpoint are dropped
(`forget_below`), and a voter has one latest vote.
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.rules.blocks import Block
from consensus.rules.finality import (Certificate, Checkpoint, Counted, FinalityError, Outcome, Tally, Vote, VoterSet,
                                      check_aggregate, quorum)

MAX_PARENTS = 8192  # parent links kept, at most (a node far behind drops the oldest first)


class VoteBook:
    def __init__(self, chain_id: str, stored_parent: Callable[[bytes], tuple[int, bytes] | None]) -> None:
        """`stored_parent(hash)`: (height, parent hash) of a block the chain's store holds, else None."""
        self.chain_id = chain_id
        self._stored_parent = stored_parent
        self.voters: VoterSet | None = None
        self.tally: Tally | None = None
        self._deposit: dict[bytes, int] = {}  # BLS key -> deposit, of the voter set
        self.latest: dict[bytes, Checkpoint] = {}  # BLS key -> target of its latest vote
        self.parents: dict[bytes, tuple[int, bytes]] = {}  # block hash -> (height, parent hash)
        self.version = 0  # bumped whenever a latest vote changes: the weights may have
        self.justified: dict[bytes, Checkpoint] = {}  # target hash -> checkpoint seen justified
        self.best: Checkpoint | None = None  # the highest of them (lower hash on a tie)
        self.final: Checkpoint | None = None  # the highest checkpoint seen final (before a block records it)

    # ------------------------------------------------------------ inputs
    def set_voters(self, voters: VoterSet | None) -> None:
        """The head's voter set; votes are counted against it (a new set starts a new count)."""
        if voters == self.voters:
            return
        self.voters = voters
        self.tally = Tally(self.chain_id, voters) if voters is not None else None
        self._deposit = {v.bls_key: v.deposit for v in voters.voters} if voters is not None else {}
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
            if out.certificate is not None:
                self._justify(v.source, v.target)
        return out

    def add_block(self, block: Block, head_height: int) -> None:
        """Note a block's parent link (the caller checked it is a solver's signed header, not far ahead),
        and the latest votes its aggregates show (those that verify against the head's voter set; the
        chain checks every aggregate when the block is connected).  When full, the links farthest from
        the head go first."""
        h = block.header
        if len(self.parents) >= MAX_PARENTS:
            far = sorted(self.parents, key=lambda k: -abs(self.parents[k][0] - head_height))
            for k in far[:MAX_PARENTS // 4]:
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
            if quorum(self.voters.deposit_of(signers), self.voters.total):
                self._justify(c.source, c.target)

    def note_justified(self, cp: Checkpoint) -> None:
        """A checkpoint known justified otherwise (the chain's own, or genesis)."""
        self._justify(None, cp)

    def _justify(self, source: Checkpoint | None, target: Checkpoint) -> None:
        if source is not None and source.height > 0 and source.hash not in self.justified:
            return  # a quorum link from a source we do not know justified justifies nothing (yet)
        if source is not None and target.height == source.height + 1 and (self.final is None
                                                                        or source.height > self.final.height):
            self.final = source  # FFG: a justified checkpoint with a quorum link to its child is final
        if target.hash in self.justified:
            return
        self.justified[target.hash] = target
        if self.best is None or (target.height, self.best.hash) > (self.best.height, target.hash):
            self.best = target
            self.version += 1

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
            up = self.parent_of(parent)
            if up is not None and up[0] != h - 1:
                return None  # not a chain of heights: a forged link
            block_hash = parent

    def weight(self, block_hash: bytes, height: int) -> int:
        """The deposit of the voters whose latest vote is for this block or a descendant."""
        if self.voters is None:
            return 0
        total = 0
        memo: dict[bytes, bool] = {}
        for key, target in self.latest.items():
            if target.height < height:
                continue
            under = memo.get(target.hash)
            if under is None:
                under = memo[target.hash] = self.ancestor_at(target.hash, height) == block_hash
            if under:
                total += self._deposit.get(key, 0)
        return total

    def prefer(self, block_hash: bytes, height: int) -> tuple[int, int]:
        """What the fork choice compares between two blocks at `height` (higher wins): whether the highest
        checkpoint known justified is this block or below it, then `weight`."""
        best = self.best
        under = best is not None and best.height >= height and self.ancestor_at(best.hash, height) == block_hash
        return int(under), self.weight(block_hash, height)

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
        self.justified = {k: c for k, c in self.justified.items() if c.height >= height or c == self.best}
