"""A node's Proof-of-Solution rounds, sans-IO: fed the time and messages, it returns messages to send.

For block h (clearing slot h):
  solve   once blocks <= h - L are on chain the instance of h is fixed, and its proposer committee (drawn
          on block h - L - 2, consensus/rules/committee.py) is known; a solver drawn into it solves it;
  commit  while the head is in h - C - 1 .. h - 2 it sends Commit(h, hash(clearing, address, salt), its
          ticket), so the commit can land in one of blocks h - C .. h - 1;
  reveal  at slot h's start a member proposes block h on its head, revealing the clearing and the salt
          (any other solver only once slot h is over without a block h);
  select  proposals for h that arrive in the reveal window (the first half of slot h) are ranked, and
          the best becomes block h; a node relays a proposal only when it ranks above the best one it
          relayed for h, so gossip carries a few proposals per height, not one per proposer;
  vote    once block h is adopted, a solver with a registered vote key signs a finality vote from its
          chain's justified checkpoint to block h and gossips it; the proposer of block h + 1 carries
          the votes it collected, aggregated, and they justify h and make h - 1 final
          (consensus/rules/checkpoints.py).
A proposal that arrives later finds the votes behind the adopted block: the fork choice weighs votes
before rank (forkchoice.py), so a late or twin block cannot replace it, and a node that finds more
votes behind another branch moves to it.  The daemon and the simulator drive the same engine; the
daemon feeds it wall-clock time and libp2p messages, the simulator a virtual clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from consensus.rules import beacon, bls, committee, keys, ledger, schema
from consensus.rules.blocks import HEADER, Block
from consensus.chain.chain import MAX_FUTURE_MS, BlockError, decode_block
from consensus.chain.store import StoreError
from consensus.rules.codec import DecodeError, digest
from consensus.rules.finality import Checkpoint, Counted, Equivocation, Refused, Vote, decode_vote, register_key, vote
from .journal import JournalError
from .node import Node
from .votes import VoteBook
from consensus.rules.transactions import (CONSENSUS, Commit, Evidence, InvalidTx, Reveal, TxError, VoteEvidence, VoteKey,
                                          decode_tx, sign_tx)

from .proposer import Solution, solve_slot
from consensus.rules.ranking import commitment

log = logging.getLogger("transx.consensus")

TX, PROPOSAL, WANT, BLOCK, VOTE = "tx", "proposal", "want", "block", "vote"
ACCEPT, IGNORE, REJECT = "accept", "ignore", "reject"  # what a peer's message was worth (see `judge`)
MAX_ORPHANS = 512
FUTURE_HOLD_MS = 600_000  # a block stamped further ahead than this is not even held
MAX_SIDE = 256  # blocks that lost the fork choice, kept in case the votes turn to them
VOTE_AHEAD = 64  # a vote for a block further above our head than this is ignored


@dataclass(frozen=True)
class Message:
    topic: str
    data: bytes
    to: object | None = None  # None: to every peer; else the peer to answer


@dataclass
class Stats:
    proposed: int = 0
    invalid: int = 0
    reorgs: int = 0
    deepest_reorg: int = 0
    orphans: int = 0
    votes: int = 0
    equivocations: int = 0


Solver = Callable[..., Solution]


@dataclass
class Engine:
    node: Node
    solve: Solver = solve_slot
    decode: Callable[[bytes], Block] = decode_block
    solutions: dict[tuple[int, bytes], Solution] = field(default_factory=dict)
    committed: set[int] = field(default_factory=set)
    proposed_on: set[tuple[int, bytes]] = field(default_factory=set)
    orphans: dict[bytes, dict[bytes, Block]] = field(default_factory=dict)
    waiting: dict[bytes, Block] = field(default_factory=dict)  # proposer -> its proposal on the head, until the window ends
    reveals_checked: bytes | None = None  # the head at which pending commits were last looked at
    future: dict[bytes, Block] = field(default_factory=dict)  # stamped ahead of our clock: held, not refused
    seen: dict[tuple[int, bytes, bytes], bytes] = field(default_factory=dict)  # (height, parent, proposer) -> header
    side: dict[bytes, Block] = field(default_factory=dict)  # lost the fork choice: the votes may turn to them
    arrived: dict[bytes, int] = field(default_factory=dict)  # consensus tx hash -> when we first held it
    wanted: dict[bytes, int] = field(default_factory=dict)  # blocks asked for because votes named them -> height
    stats: Stats = field(default_factory=Stats)
    _fate: dict[bytes, str] | None = None  # while `judge` runs: what became of each block taken
    _weighed: int = -1  # the vote book's version when the side blocks were last weighed
    _last_vote: Vote | None = None  # our latest vote: sent again at each new head while recent
    _tickets: dict[tuple[int, bytes], bytes] = field(default_factory=dict)  # (height, seed) -> our ticket
    _best: dict[int, tuple] = field(default_factory=dict)  # height -> the best rank relayed for it (gossip)
    _owed_at: tuple | None = None  # ((height, head), what a proposal for it owes): `_censors`' cache

    def __post_init__(self) -> None:
        c = self.chain
        self.book = VoteBook(c.genesis.chain_id, self._stored_parent)
        self.vote_key = self.node.vote_secret
        self.vote_public = bls.public_key(self.vote_key)
        self.book.set_voters(c.voters())
        self.book.note_justified(c.genesis_checkpoint())
        self.book.note_justified(c.justified())

    def _stored_parent(self, block_hash: bytes) -> tuple[int, bytes] | None:
        b = self.chain.block(block_hash)
        return None if b is None else (b.height, b.header.parent)

    def finalized(self) -> Checkpoint:
        """The final checkpoint on this node's chain: the chain's own, or a later one the votes already
        make final (a quorum link from it to its child, seen in gossip before a block carries it)."""
        f, seen = self.chain.finalized(), self.book.final
        if seen is not None and seen.height > f.height and self.chain.hash_at(seen.height) == seen.hash:
            return seen
        return f

    def final_height(self) -> int:
        return self.finalized().height

    @property
    def chain(self):
        return self.node.chain

    def registered(self) -> bool:
        """A solver that may propose the next block (registered long enough ago)."""
        rec = self.chain.state().solver(self.node.address)
        return rec is not None and ledger.may_propose(rec, self.chain.height + 1, self.chain.genesis)

    def salt(self, height: int) -> bytes:
        """Secret until revealed, and the same after a restart: derived from the node key."""
        return digest(keys.sign(self.node.key, b"transx-salt" + schema.u64(height)), b"transx-salt")

    def _solution_key(self, height: int) -> tuple[int, bytes]:
        return height, self.chain.hash_at(max(0, height - self.chain.genesis.gate_closure))  # type: ignore[return-value]

    def needed(self) -> list[int]:
        """Heights the next ticks will want a solution for and that have none yet: a daemon solves them
        in a worker thread and hands them over with `put_solution`, so `tick` never blocks on a solve."""
        if not self.registered():
            return []
        head, g = self.chain.height, self.chain.genesis
        now = self.node.now_ms
        late = now is not None and now >= self.reveal_ends(head + 1)  # the committee is silent so far: a fallback
        return [h for h in range(head + 1, head + 2 + g.commit_window) if self._solution_key(h) not in self.solutions
                and (self.member(h) or (h == head + 1 and late))]

    def ticket(self, height: int) -> bytes:
        """Our lottery ticket for `height` (zeros: we have no key to draw it with, or its seed block is out
        of reach), from the head's state, which holds the seed blocks of heights head + 1 .. head + L + 2."""
        c, g = self.chain, self.chain.genesis
        state = c.state()
        key = committee.draw_key(state, self.node.address, height, g.gate_closure)
        if key != self.vote_public:
            return bytes(96)
        try:
            seed = committee.ticket_beacon(state, height, g.gate_closure, g.hash)
        except ValueError:  # the seed block is not in reach of the head (too old, or ahead of it)
            return bytes(96)
        hit = self._tickets.get((height, seed))
        if hit is None:
            if len(self._tickets) > 256:
                self._tickets.clear()
            hit = self._tickets[(height, seed)] = beacon.ticket(self.vote_key, seed, height).proof
        return hit

    def member(self, height: int) -> bool:
        """Whether we may commit to and propose `height` in time: in its committee, or no committee yet."""
        c, g = self.chain, self.chain.genesis
        state = c.state()
        if not committee.started(state, height):
            return True
        proof = self.ticket(height)
        return any(proof) and committee.drawn(state, self.node.address, height, proof, gate_closure=g.gate_closure,
                                              size=g.committee_size)

    def put_solution(self, height: int, solution: Solution) -> None:
        self.solutions[self._solution_key(height)] = solution
        self._forget_solutions()

    def _forget_solutions(self) -> None:
        """Bound on `solutions`: a clearing is only ever proposed for the head's child, so one below
        `head - finality_depth` can never be used again (no reorg goes that deep); what is left is at
        most one per height in head - finality_depth .. head + 1 + commit_window, per fork of its seed
        block (the daemon hands solutions in with `put_solution`, which used to keep them all: one
        Solution, its ClearResult included, per block for ever)."""
        floor = self.chain.height - self.chain.genesis.finality_depth
        if any(k[0] < floor for k in self.solutions):
            self.solutions = {k: v for k, v in self.solutions.items() if k[0] >= floor}

    def solution(self, height: int) -> Solution:
        """Our clearing of slot `height` (its instance must be fixed), solved once per instance."""
        g = self.chain.genesis
        key = self._solution_key(height)
        if key not in self.solutions:
            market, pairs = self.chain.market(height)
            self.solutions[key] = self.solve(market, pairs, g)
            self._forget_solutions()
        return self.solutions[key]

    # ---------------------------------------------------------------- time
    def reveal_ends(self, height: int) -> int:
        g = self.chain.genesis
        return g.slot_start_ms(height) + g.slot_seconds * 500

    def tick(self, now_ms: int) -> list[Message]:
        """Select the best proposal once the reveal window is over; commit to future rounds; propose the
        next block once its slot has started."""
        self.node.now_ms = now_ms  # what the node admits from wallets depends on which block is being built
        out: list[Message] = []
        for b in [b for b in self.future.values() if not self._too_early(b, now_ms)]:
            del self.future[b.hash]
            out += self._take(b, now_ms)
        if self.waiting and now_ms >= self.reveal_ends(self.chain.height + 1):
            out += self._select(now_ms)
        out += self._reweigh(now_ms)
        out += self._vote(now_ms)
        if not self.registered():
            return out
        g, head = self.chain.genesis, self.chain.height
        if self.reveals_checked != self.chain.head.hash:  # once per head: a reorg may have undone a reveal
            out += self._repair_own_queue()
            out += self._resend_own_consensus_txs()
            out += self._resend_last_vote()
            out += self._register_vote_key()
            for r, clearing_hash in self._own_commits(max(1, head - g.reveal_window), head):
                out += self._reveal(r, clearing_hash)
            self.reveals_checked = self.chain.head.hash  # all done (a failed write tries them all again)
        for r in range(head + 2, head + 2 + g.commit_window):
            # Not once block r - 1's slot has begun (as on a node still syncing): its proposals are built,
            # the commit could not get in, and a clearing solved on an old head would not be the one a
            # commit already on the chain we are syncing holds.
            if r not in self.committed and now_ms < g.slot_start_ms(r - 1) and self.member(r):
                out += self._commit(r)
        for b in [b for b in self.future.values() if b.height <= head]:
            del self.future[b.hash]
        if len(self.committed) > 4 * (g.commit_window + g.reveal_window):
            self.committed = {r for r in self.committed if r > head - g.reveal_window}
        if len(self.proposed_on) > 4 * g.finality_depth:  # grows by a head at a time, also while syncing
            self.proposed_on = {k for k in self.proposed_on if k[0] > head - g.finality_depth}
        h = head + 1
        # In time if drawn; else once slot h is over and no block h came (the committee stayed silent).
        if ((h, self.chain.head.hash) not in self.proposed_on
                and now_ms >= (g.slot_start_ms(h) if self.member(h) else g.slot_start_ms(h + 1))):
            out += self._propose(h, now_ms)
        return out

    # ------------------------------------------------------------- finality
    def _register_vote_key(self) -> list[Message]:
        """Register our vote key (with its proof of possession) once we are a solver without it."""
        a = self.node.address
        if self.chain.state().solver_bls(a) == self.vote_public or self._pending(VoteKey):
            return []
        reg = register_key(self.vote_key, chain_id=self.chain.genesis.chain_id, solver=a)
        return self._send_tx(VoteKey(reg))

    def _vote(self, now_ms: int) -> list[Message]:
        """Vote for the head once its reveal window is over (once per height, never lower than a vote
        already cast, never from a lower source: no double and no surround vote, across restarts)."""
        c, g = self.chain, self.chain.genesis
        head = c.head
        if now_ms < self.reveal_ends(head.height) or now_ms >= g.slot_start_ms(head.height + 2):
            return []  # not yet decided, or an old head (we are syncing): a vote would help nobody
        last = c.store.get(schema.LAST_VOTE)
        last_source, last_target = (schema.read_u64(last[:8]), schema.read_u64(last[8:16])) if last else (0, 0)
        if head.height <= max(last_target, self._sign_floor()):
            return []
        voters = c.voters()
        if voters is None or self.vote_public not in voters.index:
            return []
        source = c.justified()
        if source.height < last_source or source.height >= head.height:
            return []
        v = vote(self.vote_key, chain_id=g.chain_id, source=source, target=Checkpoint(head.height, head.hash))
        c.store.put_local(schema.LAST_VOTE, schema.u64(source.height) + schema.u64(head.height))
        self.book.add_vote(v)
        self._last_vote = v
        return [Message(VOTE, v.encoded)]

    def _sign_floor(self) -> int:
        """The height at and below which this node signs no proposal or vote: set by `transx repair`,
        whose fresh store no longer knows what was signed before (schema.SIGN_FLOOR)."""
        raw = self.chain.store.get(schema.SIGN_FLOOR)
        return schema.read_u64(raw) if raw else 0

    def _resend_last_vote(self) -> list[Message]:
        """Our latest vote once more at a new head, if its target is one of the last two blocks: a
        proposer that lost it can still carry it (peers that hold it ignore it)."""
        v = self._last_vote
        return [Message(VOTE, v.encoded)] if v is not None and v.target.height >= self.chain.height - 1 else []

    def _receive_vote(self, data: bytes, sender: object) -> tuple[str, list[Message]]:
        try:
            v = decode_vote(data)
        except (DecodeError, ValueError):
            return REJECT, []
        floor = max(self.chain.finalized().height, self.chain.height - VOTE_AHEAD)
        if not floor < v.target.height <= self.chain.height + VOTE_AHEAD:
            return IGNORE, []  # too old to matter (or counted before), or too far ahead to check
        outcome = self.book.add_vote(v)
        if isinstance(outcome, Counted):
            self.stats.votes += 1
            t = v.target
            out: list[Message] = []
            if not self.book.knows(t.hash) and t.hash not in self.wanted:
                if len(self.wanted) >= MAX_ORPHANS:  # the oldest asks go first
                    floor = sorted(self.wanted.values())[len(self.wanted) // 2]
                    self.wanted = {k: x for k, x in self.wanted.items() if x > floor}
                self.wanted[t.hash] = t.height  # votes for a block we never saw: fetch it, the votes may be right
                out.append(Message(WANT, t.hash, sender))
            return ACCEPT, out
        if isinstance(outcome, Equivocation):
            self.stats.equivocations += 1
            log.warning("double or surround vote: %s and %s", outcome.first.describe(), outcome.second.describe())
            return ACCEPT, self._send_tx(VoteEvidence(outcome.first.encoded, outcome.second.encoded))
        if isinstance(outcome, Refused) and outcome.reason != "duplicate":
            return REJECT, []
        return IGNORE, []

    def _reweigh(self, now_ms: int) -> list[Message]:
        """The votes changed: a block that lost the fork choice may now have more votes behind it."""
        if self.book.version == self._weighed or not self.side:
            return []
        self._weighed = self.book.version
        floor = max(self.chain.finalized().height, self.chain.justified().height)
        out: list[Message] = []
        for b in sorted(self.side.values(), key=lambda b: b.height):
            if b.height <= floor or self.chain.hash_at(b.height) == b.hash:
                self.side.pop(b.hash, None)
                continue
            if self.chain.hash_at(b.height - 1) != b.header.parent:
                continue
            ours = self.chain.hash_at(b.height)
            if self.book.prefer(b.hash, b.height) > self.book.prefer(ours, b.height):  # type: ignore[arg-type]
                self.side.pop(b.hash, None)
                out += self._take(b, now_ms)
        return out

    def _votes_for(self, h: int) -> list:
        """The vote aggregates block `h` carries: every link we counted with a target among the blocks
        h - 1 .. h - 3 of our chain, and the link that justifies each of their sources if the chain
        does not record that yet."""
        c = self.chain

        def on_chain(cp: Checkpoint) -> bool:
            return c.hash_at(cp.height) == cp.hash

        targets = [t for t in (h - 1, h - 2, h - 3) if t >= 1]
        certs = self.book.aggregates(on_chain, targets)
        j = c.justified().height
        sources = sorted({x.source.height for x in certs if x.source.height > j})
        certs += self.book.aggregates(on_chain, sources)
        return certs[:16]

    def _repair_own_queue(self) -> list[Message]:
        """Our pending consensus transactions, tried in nonce order on the head: one that no longer applies
        (a reveal whose commit this chain does not hold, a commit drawn on a replaced seed block) is
        dropped, and those behind it are signed again at the freed nonces; else they would wait behind
        the gap it leaves until their windows close, and we would lose our commits."""
        me, g = self.node.address, self.chain.genesis
        pending = self.node.mempool.pending(me, CONSENSUS)
        if not pending:
            return []
        state, h = self.chain.state(), self.chain.height + 1
        due = self.node.not_due(h)
        for i, tx in enumerate(pending):
            if due(tx):
                return []  # held for a later block: the rest waits for it anyway
            try:
                ledger.apply_tx(state, tx, h, g)
            except TxError as e:
                log.info("our %s %s no longer applies (%s): the ones behind it are signed again", tx.kind,
                         tx.hash.hex()[:16], e)
                break
        else:
            return []
        for tx in pending[i:]:
            self.node.mempool.remove(tx)
        out: list[Message] = []
        for tx in pending[i + 1:]:
            out += self._sign_again(tx, bump=True)  # peers hold the old one at the freed nonce
        return out

    def _sign_again(self, tx, bump: bool) -> list[Message]:
        """`tx`'s body signed again at our next consensus nonce, at a higher fee (so it replaces the old
        one in peers' pools) if `bump`; a commit only if it still draws us, with this chain's ticket (a new
        ticket is a new transaction: a higher fee too)."""
        body, g = tx.body, self.chain.genesis
        fee = tx.fee + g.min_fee if bump else None
        if isinstance(body, Commit):
            if not self.member(body.height):
                return []
            ticket = self._commit_ticket(body.height)
            if ticket != body.ticket:
                fee = tx.fee + g.min_fee
            body = replace(body, ticket=ticket)
        return self._send_tx(body, fee)

    def _resend_own_consensus_txs(self) -> list[Message]:
        """Our commits, reveals and evidence still pending, gossiped again at each new head until a block
        takes them: a peer that missed or refused one (its head was behind) gets another chance, so an
        honest solver does not lose a round to one lost message.  (Peers that hold one ignore it.)"""
        return [Message(TX, t.encoded) for t in self.node.mempool.pending(self.node.address, CONSENSUS)]

    def _pending(self, kind: type, height: int | None = None) -> bool:
        a = self.node.address
        return any(isinstance(t.body, kind) and (height is None or t.body.height == height)
                   for t in self.node.mempool.pending(a, CONSENSUS))

    def _commit(self, r: int) -> list[Message]:
        """Commit to our clearing of `r`, unless the chain or the mempool already holds our commit (as
        after a restart).  The clearing hash is kept on disk for the Reveal."""
        a = self.node.address
        if self.chain.state().get(schema.commit(r, a)) is not None or self._pending(Commit, r):
            self.committed.add(r)
            return []
        clearing_hash = self.solution(r).clearing.hash
        self.chain.store.put_local(schema.own_commit(r), clearing_hash)
        out = self._send_tx(Commit(r, commitment(clearing_hash, a, self.salt(r)), self._commit_ticket(r)))
        self.committed.add(r)  # after the writes: one that failed leaves the commit to be tried again
        return out

    def _commit_ticket(self, r: int) -> bytes:
        """What our commit for `r` carries: our ticket once committees draw `r`, else zeros."""
        return self.ticket(r) if committee.started(self.chain.state(), r) else bytes(96)

    def _own_commits(self, lo: int, hi: int) -> list[tuple[int, bytes]]:
        """(height, clearing hash) of each height in lo..hi this node committed to, by its own records, in
        order: a reveal can be due only there, and a node is drawn for few heights of a long reveal window
        (the devnet's reaches 602).  (From lo up: never over the records pruned below it, which LevelDB
        keeps as deletions for a while.)"""
        n = len(schema.OWN_COMMITS)
        return [(schema.read_u64(key[n:]), clearing_hash) for key, clearing_hash in self.chain.store.items(
            schema.OWN_COMMITS, start=schema.own_commit(lo), stop=schema.own_commit(hi + 1))]

    def _reveal(self, r: int, clearing_hash: bytes) -> list[Message]:
        """Our commit for `r` (to `clearing_hash`) is still pending on this chain (our proposal lost, or a
        reorg replaced the block that held our reveal): show it was honest, or forfeit part of the deposit."""
        a = self.node.address
        raw = self.chain.state().get(schema.commit(r, a))
        if raw is None or raw[32] != schema.COMMIT_PENDING or self._pending(Reveal, r):
            return []
        return self._send_tx(Reveal(r, clearing_hash, self.salt(r)))

    def _send_tx(self, body, fee: int | None = None) -> list[Message]:
        """Sign `body` (a commit, reveal or evidence) at the node key's next consensus nonce and admit it:
        a wallet using the same key counts its own nonces, so the two never take each other's."""
        a, g = self.node.address, self.chain.genesis
        nonce = self.node.mempool.next_nonce(a, self.chain.state().account(a).consensus_nonce, CONSENSUS)
        tx = sign_tx(self.node.key, chain_id=g.chain_id, nonce=nonce, fee=fee or g.min_fee, body=body)
        try:
            self.node.submit_tx(tx)
        except TxError as e:
            log.info("%s not sent: %s", tx.kind, e)
            return []
        self._arrived(tx, self.node.now_ms or 0)
        return [Message(TX, tx.encoded)]

    def _watch_equivocation(self, block: Block) -> list[Message]:
        """Two different proposals from one solver for one height and parent: send the evidence (only
        validly signed headers are remembered, so a forgery cannot blind the watch)."""
        h = block.header
        if not h.signature_ok():
            return []
        key = (h.height, h.parent, h.proposer)
        first = self.seen.setdefault(key, HEADER.encode(h))
        if first == HEADER.encode(h):
            return []
        if len(self.seen) > 4 * MAX_ORPHANS:
            self.seen.clear()
        return self._send_tx(Evidence(first, HEADER.encode(h)))

    def _propose(self, h: int, now_ms: int) -> list[Message]:
        """Propose block `h` on the head, once: a proposal already made on this parent (before a
        restart, say) is sent again as it was, never made anew, which would be equivocation."""
        parent = self.chain.head.hash
        self.proposed_on.add((h, parent))
        try:
            return self._propose_on(h, parent, now_ms)
        except (StoreError, JournalError):
            self.proposed_on.discard((h, parent))  # not made (a failed write): tried again next tick
            raise

    def _propose_on(self, h: int, parent: bytes, now_ms: int) -> list[Message]:
        if h <= self._sign_floor():
            return []  # the store was repaired: what this node signed at such heights before is unknown
        stored = self.chain.store.get(schema.own_proposal(h))
        if stored is not None:
            old = self.decode(stored)
            if old.header.parent == parent:
                self._take(old, now_ms)
                return [Message(PROPOSAL, stored)]
        sol = self.solution(h)
        raw = self.chain.state().get(schema.commit(h, self.node.address))
        committed = raw is not None and raw[:32] == commitment(sol.clearing.hash, self.node.address, self.salt(h))
        salt = self.salt(h) if committed else bytes(32)
        g = self.chain.genesis
        candidates = self.node.mempool.select(g.max_block_txs, self.node.chain_nonce, self.node.not_due(h),
                                              g.max_consensus_txs)
        try:
            try:
                block, rejected = self.chain.build_block(self.node.key, sol.clearing, candidates, now_ms, salt,
                                                         self._votes_for(h), self.vote_key)
            except BlockError as e:  # a vote aggregate the chain refuses: propose without votes
                log.error("block %d without votes: %s", h, e)
                block, rejected = self.chain.build_block(self.node.key, sol.clearing, candidates, now_ms, salt,
                                                         vote_secret=self.vote_key)
        except BlockError as e:  # our own clearing does not verify: propose nothing rather than garbage
            log.error("not proposing block %d: %s", h, e)
            return []
        for tx, reason in rejected:
            log.info("block %d leaves out %s %s: %s", h, tx.kind, tx.hash.hex()[:16], reason)
            self.node.mempool.remove(tx)
        self.stats.proposed += 1
        self.chain.store.put_local(schema.own_proposal(h), block.encoded)
        self._take(block, now_ms)
        return [Message(PROPOSAL, block.encoded)]

    # ------------------------------------------------------------ messages
    def receive(self, topic: str, data: bytes, now_ms: int, sender: object = None) -> list[Message]:
        """Handle a peer's message; returns what to send in answer.  Invalid input is dropped (counted)."""
        if topic == TX:
            try:
                self._arrived(self.node.submit(data).tx, now_ms)
            except (TxError, JournalError):  # a peer's transaction we cannot keep is not ours to keep
                pass
            return []
        if topic in (PROPOSAL, BLOCK):
            try:
                block = self.decode(data)
            except BlockError:
                self.stats.invalid += 1
                return []
            return self._watch_equivocation(block) + self._take(block, now_ms, sender)
        if topic == WANT:
            b = self.chain.block(data) if len(data) == 32 else None
            if b is None and len(data) == 32:
                b = self.side.get(data)
            return [Message(BLOCK, b.encoded, sender)] if b is not None else []
        if topic == VOTE:
            return self._receive_vote(data, sender)[1]
        return []

    def judge(self, topic: str, data: bytes, now_ms: int, sender: object = None) -> tuple[str, list[Message]]:
        """`receive`, and what the message was worth, for the network's relay decision and peer score:
        REJECT if it can never be valid (malformed, badly signed, an invalid block); IGNORE if it is
        merely useless to us (a transaction or block we hold, a transaction that lost a nonce race, a
        block we cannot check yet or that lost the fork choice); else ACCEPT.  Only the message's own
        block counts: an invalid orphan it happens to unlock is not its sender's fault."""
        if topic == TX:
            try:
                tx = decode_tx(data)
                if tx.hash in self.node.mempool:
                    # Valid and pending here: relayed again, so that a resend at a new head reaches peers
                    # that refused it the first time (their head was behind) through us.
                    return ACCEPT, []
                self._arrived(self.node.submit_tx(tx).tx, now_ms)
            except InvalidTx:
                return REJECT, []
            except TxError:
                return IGNORE, []
            return ACCEPT, []
        if topic == VOTE:
            return self._receive_vote(data, sender)
        if topic not in (PROPOSAL, BLOCK):
            return IGNORE, []
        try:
            block = self.decode(data)
        except BlockError:
            self.stats.invalid += 1
            return REJECT, []
        self._fate = {}
        try:
            out = self._watch_equivocation(block) + self._take(block, now_ms, sender)
            fate = self._fate.get(block.hash)
        finally:
            self._fate = None
        if fate == "invalid":
            return REJECT, out
        if fate == "waiting":
            try:
                if topic == PROPOSAL and not self._improves(block, now_ms):
                    return IGNORE, out  # held for the selection, but not relayed: peers have a better one from us
                if topic == BLOCK:
                    self._validate_waiting(block, now_ms)  # relayed as it is: valid in full first
            except BlockError:
                return REJECT, out
        return (ACCEPT if fate in ("waiting", "connected", "reorg") else IGNORE), out

    def _improves(self, block: Block, now_ms: int) -> bool:
        """Whether `block` (a proposal on our head, in its reveal window) ranks above every proposal we
        relayed for its height, by the order of the selection (censoring ones last): only then is it
        worth relaying, so a node forwards a few proposals per height, not one per proposer.  Such a
        block is validated in full first, so an invalid block ranked first cannot stop the relay of the
        valid ones behind it (`BlockError` if it is invalid: dropped)."""
        key = (self._censors(block), self._rank_or_drop(block), block.hash)  # the selection's total order
        best = self._best.get(block.height)
        if best is not None and best[0] == block.header.parent and best[1] <= key:
            return False
        self._validate_waiting(block, now_ms)
        if len(self._best) > 64:
            self._best = {h: v for h, v in self._best.items() if h > self.chain.height - 8}
        self._best[block.height] = (block.header.parent, key)
        return True

    def _rank_or_drop(self, block: Block):
        try:
            return self.chain.rank(block)
        except BlockError:
            self._drop_waiting(block)
            raise

    def _validate_waiting(self, block: Block, now_ms: int) -> None:
        """Every check of a connect on a waiting proposal, before we relay it; `BlockError`: dropped."""
        try:
            self.chain.validate(block, now_ms)
        except BlockError:
            self._drop_waiting(block)
            raise

    def _drop_waiting(self, block: Block) -> None:
        self.stats.invalid += 1
        if self.waiting.get(block.header.proposer) is block:
            del self.waiting[block.header.proposer]

    def _censors(self, block: Block) -> bool:
        """`block` leaves out a consensus transaction it owed (`_owed`) with room to spare."""
        h = block.height
        if self._owed_at is None or self._owed_at[0] != (h, self.chain.head.hash):
            self._owed_at = ((h, self.chain.head.hash), self._owed(h))
        owed = self._owed_at[1]
        # By (sender, nonce), not by hash: a sender that signs two transactions at one nonce and shows
        # each to half the network must not make each half see the other's proposals as censoring.
        carried = {(t.sender, t.nonce) for t in block.txs if t.space == CONSENSUS}
        return bool(owed - carried) and len(carried) < self.chain.genesis.max_consensus_txs

    def _mark(self, block: Block, fate: str) -> None:
        if self._fate is not None:
            self._fate[block.hash] = fate

    def _arrived(self, tx, now_ms: int) -> None:
        if tx.space == CONSENSUS and tx.hash not in self.arrived:
            if len(self.arrived) > 8 * MAX_ORPHANS:
                self.arrived = {k: t for k, t in self.arrived.items() if k in self.node.mempool}
            self.arrived[tx.hash] = now_ms

    def _owed(self, h: int) -> set[tuple[bytes, int]]:
        """The consensus transactions (commits, reveals, vote keys, evidence) block `h` must carry in our
        view: each one next in its sender's line on our head, due in block h, and held by us since
        before block h - 1's slot began, a quarter slot more: so every honest proposer had it in time,
        or its resend at the next head, one lost message later (gossip latency below a quarter slot
        is the assumption); and valid on our head (a proposer's builder drops what is not: a reveal
        whose commit a reorg took away, say)."""
        g = self.chain.genesis
        deadline = g.slot_start_ms(h - 1) - g.slot_seconds * 250
        due = self.node.not_due(h)
        out = set()
        state = None
        for tx in self.node.mempool.by_hash.values():
            if (tx.space == CONSENSUS and self.arrived.get(tx.hash, deadline + 1) <= deadline and not due(tx)
                    and tx.nonce == self.node.chain_nonce(tx.sender, CONSENSUS)):
                state = state or self.chain.state()
                mark = state.checkpoint()
                try:
                    ledger.apply_tx(state, tx, h, g)
                    out.add((tx.sender, tx.nonce))
                except TxError:
                    pass
                finally:
                    state.rollback(mark)
        return out

    def _select(self, now_ms: int) -> list[Message]:
        """Adopt the best valid proposal on the head (an invalid one is dropped, the next tried).  A
        proposal that leaves out a consensus transaction it owed (`_owed`) with room to spare censors:
        it goes after every proposal that does not, so no winner can keep rivals' commits off the
        chain and stay the only committed solver (issue 12's monopoly)."""
        self._owed_at = None  # looked at afresh: what is owed may have changed since the proposals came
        ranked = []
        for b in self.waiting.values():
            if b.header.parent != self.chain.head.hash:
                continue
            try:
                ranked.append((self._censors(b), self.chain.rank(b), b.hash, b))  # else the total order of Chain.offer
            except BlockError:
                self.stats.invalid += 1
        self.waiting.clear()
        ranked.sort()
        for i, (*_, b) in enumerate(ranked):
            try:
                out = self._take(b, now_ms, selecting=True)
            except (StoreError, JournalError):  # a failed write: the selection is made again once it works
                for *_, untried in ranked[i:]:
                    self.waiting.setdefault(untried.header.proposer, untried)
                raise
            if self.chain.head.hash == b.hash:
                return out
        return []

    def _take(self, block: Block, now_ms: int, sender: object = None, selecting: bool = False) -> list[Message]:
        """Offer `block` to the fork choice, then any orphans it unlocks; ask for a missing parent.  A
        proposal on the head inside the reveal window waits for the selection instead, and one stamped
        further ahead of our clock than the allowed drift waits until the clock gets there."""
        h = block.header
        # Below the final checkpoint nothing can change; where nobody votes, below `finality_depth`.
        floor = (self.chain.finalized().height if self.book.voters is not None
                 else self.chain.height - self.chain.genesis.finality_depth)
        if h.height <= floor or not h.signature_ok():
            self.stats.invalid += h.height >= 1 and not h.signature_ok()
            self._mark(block, "invalid" if not h.signature_ok() else "final")
            return []  # below finality, or not signed by its proposer: nothing to hold or rank
        if self._too_early(block, now_ms):
            if len(self.future) < MAX_ORPHANS and h.timestamp <= now_ms + FUTURE_HOLD_MS:
                self.future[block.hash] = block
            self._mark(block, "held")
            return []
        if not selecting and h.parent == self.chain.head.hash and now_ms < self.reveal_ends(block.height):
            try:
                self.chain.precheck(block)
            except BlockError:
                self.stats.invalid += 1
                self._mark(block, "invalid")
                return []
            # One proposal per proposer waits (a second one is equivocation, reported above).
            self.book.add_block(block, self.chain.height)
            self.waiting.setdefault(h.proposer, block)
            self._mark(block, "waiting")
            return []
        try:  # far ahead (we are syncing) it only asks for its ancestors below, and counts in no weight
            if h.height <= self.chain.height + VOTE_AHEAD:
                self.chain.precheck(block)  # a solver's signed header, before it counts in the fork choice
                self.book.add_block(block, self.chain.height)
        except BlockError:
            if self.chain.hash_at(h.height - 1) == h.parent:  # its proposer may not propose on our chain
                self.stats.invalid += 1
                self._mark(block, "invalid")
                return []
            # On a branch we do not hold, the proposer may be registered there: judged when it connects.
        self.wanted.pop(block.hash, None)
        weigh = self.book.prefer if self.book.voters is not None else None
        try:
            status, reverted = self.chain.offer(block, now_ms, weigh)
        except BlockError as e:
            self.stats.invalid += 1
            self._mark(block, "invalid")
            log.debug("invalid block %d from %s: %s", block.height, sender, e)
            return []
        self._mark(block, status)
        if status == "worse":
            if len(self.side) >= MAX_SIDE:
                del self.side[min(self.side, key=lambda k: self.side[k].height)]
            self.side[block.hash] = block
        if status == "orphan":
            if h.height > self.chain.height and sum(len(v) for v in self.orphans.values()) < MAX_ORPHANS:
                self.orphans.setdefault(block.header.parent, {})[block.hash] = block
                self.stats.orphans += 1
            if self.chain.block(block.header.parent) is not None:
                return self._adopt_known_parent(block, now_ms, sender)
            # Ask for the block the whole orphan branch is missing (again at every new orphan: a request
            # or its answer may have been lost).
            return [Message(WANT, self._missing_root(block), sender)]
        if status in ("connected", "reorg"):
            out: list[Message] = []
            if status == "reorg":
                log.info("reorg at height %d: %d block%s replaced by %s's", h.height, len(reverted),
                         "s" * (len(reverted) > 1), keys.encode_address(keys.address_of(h.proposer))[:14])
                self.stats.reorgs += 1
                self.stats.deepest_reorg = max(self.stats.deepest_reorg, len(reverted))
                out += self._rebase_own_consensus_txs(reverted)
            self.node.after_head_change()
            self.book.set_voters(self.chain.voters())
            self.book.note_justified(self.chain.justified())
            if self.chain.height % 16 == 0:
                self._forget_old()
            self.waiting = {p: b for p, b in self.waiting.items() if b.header.parent == self.chain.head.hash}
            floor = self.chain.height - self.chain.genesis.finality_depth
            for parent in [p for p, kids in self.orphans.items() if all(b.height <= floor for b in kids.values())]:
                del self.orphans[parent]
            for child in list(self.orphans.pop(block.hash, {}).values()):
                out += self._take(child, now_ms, sender)
            return out
        return []

    def _forget_old(self) -> None:
        """Every 16 blocks, drop what concerns heights no block can change any more, so the per-height
        structures hold a window of heights, not the whole history (tests/unit/test_bounds.py):
        the vote book below the final checkpoint (or head - VOTE_AHEAD), `wanted` below head - VOTE_AHEAD,
        `seen` (equivocation watch) and `_tickets` below head - finality_depth, `arrived` for what left the
        mempool.  Each also has a cap of its own against a flood within the window."""
        c = self.chain
        head, depth = c.height, c.genesis.finality_depth
        self.book.forget_below(max(c.finalized().height, head - VOTE_AHEAD) - 8)
        self.wanted = {k: x for k, x in self.wanted.items() if x > head - VOTE_AHEAD}
        self.seen = {k: x for k, x in self.seen.items() if k[0] > head - depth}
        self._tickets = {k: x for k, x in self._tickets.items() if k[0] > head - depth}
        self.arrived = {k: t for k, t in self.arrived.items() if k in self.node.mempool}

    def _too_early(self, block: Block, now_ms: int) -> bool:
        """Stamped further ahead of our clock than the drift allowed; and a block stamped after its own slot
        (what a solver outside the committee may propose: committee.py) gets no drift at all, or with
        short slots a non-member could stamp slot h + 1's start during slot h and compete in time."""
        t = block.header.timestamp
        if t >= self.chain.genesis.slot_start_ms(block.height + 1):
            return t > now_ms
        return t > now_ms + MAX_FUTURE_MS

    def _rebase_own_consensus_txs(self, reverted: list[Block]) -> list[Message]:
        """After a reorg the reverted blocks' transactions go back to the mempool, but our own commits,
        reveals and evidence were signed at the old chain's consensus nonces: on this chain they would
        wait behind a nonce gap until their window closed, and an honest solver would forfeit.  So they
        (and those pending in the mempool) are signed again, same bodies in the same order, at this
        chain's next consensus nonces; those this chain no longer takes (a window passed, already on
        chain) are dropped.  A commit carries the ticket of this chain's beacon, and goes only if it still
        draws us (a reorg of the seed block redraws the committee).  Our wallet's transactions count the
        other nonce and go back as they were."""
        me = self.node.address
        ours = []
        for b in reversed(reverted):  # oldest first, so each sender's nonces come back in order
            for tx in b.txs:
                if tx.sender == me and tx.space == CONSENSUS:
                    ours.append(tx)
                    continue
                try:
                    self.node.submit_tx(tx, reverted=True)
                except TxError:
                    pass
        for tx in self.node.mempool.pending(me, CONSENSUS):
            self.node.mempool.remove(tx)
            ours.append(tx)
        self.reveals_checked = None
        out: list[Message] = []
        for tx in ours:
            if isinstance(tx.body, Commit):
                if not self._pending(Commit, tx.body.height):
                    out += self._sign_again(tx, bump=False)  # drawn on this chain's beacon too, or not at all
            elif isinstance(tx.body, Reveal):
                if not self._pending(Reveal, tx.body.height):
                    out += self._send_tx(tx.body)
            elif not any(p.body == tx.body for p in self.node.mempool.pending(me, CONSENSUS)):
                out += self._send_tx(tx.body)  # evidence, a vote key
        return out

    def _missing_root(self, block: Block) -> bytes:
        """The parent hash that the chain of orphans ending in `block` lacks."""
        parent_of = {b.hash: b.header.parent for kids in self.orphans.values() for b in kids.values()}
        missing = block.header.parent
        for _ in range(MAX_ORPHANS):
            if missing not in parent_of:
                break
            missing = parent_of[missing]
        return missing

    def _adopt_known_parent(self, block: Block, now_ms: int, sender: object) -> list[Message]:
        """The parent is stored but off our chain: offer the branch from where it leaves our chain."""
        branch = [block]
        parent = self.chain.block(block.header.parent)
        while parent is not None and self.chain.hash_at(parent.height) != parent.hash and parent.height > 0:
            branch.append(parent)
            parent = self.chain.block(parent.header.parent)
        if parent is None:
            return []
        out: list[Message] = []
        for b in reversed(branch[1:]):
            self.orphans.get(b.header.parent, {}).pop(b.hash, None)
            out += self._take(b, now_ms, sender)
            if self.chain.hash_at(b.height) != b.hash:
                return out  # that branch lost at its first differing height
        return out + self._take(block, now_ms, sender) if self.chain.head.hash == block.header.parent else out
