"""The chain manager: validates and connects blocks, reverts them, builds new ones (fork choice: forkchoice.py).

Sans-IO apart from the store: the caller passes the time (`now_ms`), so the
same code runs in the daemon, in tests and in a simulator with a virtual
clock.  Every block, built here or received, goes through `connect`, which
re-derives the slot's instance from the chain and re-verifies its clearing
with the solver-free exact verifier before anything is written.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field

from solver import Pairs, candidate_pairs, verify
from solver.verifier import Verdict

from consensus.rules import beacon, checkpoints, committee, keys, ledger, schema
from consensus.rules.blocks import (BLOCK, MAX_FUTURE_MS, Block, BlockClearing, BlockError, Header, tx_root, vote_order,
                                    votes_root)
from consensus.rules.finality import Certificate, Checkpoint, FinalityError, VoterSet
from consensus.rules.codec import DecodeError
from consensus.rules.ranking import NO_TICKET, Rank
from consensus.rules.genesis import Genesis
from consensus.rules.ledger import SlotMarket
from consensus.rules.settlement import settle_delivery, settled_slot
from consensus.rules.state import SESSION_EXPIRED, SessionRecord, StateOverlay, next_state_hash, session_index_keys
from consensus.rules.transactions import (CONSENSUS, WALLET, Commit, Reveal, SessionClose, SessionOpen, Transfer, Tx, TxError,
                                          check_stateless)

from .forkchoice import ForkChoice
from .store import REPAIR_HINT, Store, StoreCorrupt, StoreError

RANKS_KEPT = 1024  # ranks cached: several heights' proposals, and the side blocks (engine.MAX_SIDE)
VERDICTS_KEPT = 256  # verdicts cached (besides the pruning by height at each connect)
PRUNE_BATCH = 256  # heights pruned at one connect at most: a node syncing years of blocks prunes as it goes


class _Recent(dict):
    """A dict that keeps its `limit` most recently inserted keys: inserting one more drops the oldest."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value) -> None:
        if key not in self and len(self) >= self.limit:
            del self[next(iter(self))]
        super().__setitem__(key, value)


@dataclass
class Connected:
    """What connecting a block did, for logs and callers."""

    block: Block
    fees: int
    verdict: Verdict | None
    market: SlotMarket
    writes: int = 0


@dataclass
class _Execution:
    state: StateOverlay
    fees: int
    applied: list[Tx]
    rejected: list[tuple[Tx, str]] = field(default_factory=list)


class Chain(ForkChoice):
    """The chain a node follows, over its store; its fork choice (rank, offer) is in forkchoice.py."""

    def __init__(self, store: Store, genesis: Genesis) -> None:
        self.store, self.genesis = store, genesis
        # Caches, each bounded (tests/unit/test_bounds.py checks it after many blocks):
        # `_markets`: fixed slots only, those at or below head - finality_depth dropped at each connect, so at
        # most finality_depth + gate_closure slots (each with its candidate pairs);
        self._markets: dict[int, tuple[SlotMarket, Pairs]] = {}
        # `_ranks`: block hash -> rank, the RANKS_KEPT most recently ranked (oldest out first: a rank only
        # matters while its block competes, and one evicted early is computed again);
        self._ranks: dict[bytes, Rank] = _Recent(RANKS_KEPT)
        # `_verdicts`: (height, clearing, parent) -> the exact verifier's verdict (it holds per-participant
        # arrays): those at or below head - finality_depth dropped at each connect, and at most VERDICTS_KEPT.
        self._verdicts: dict[tuple[int, bytes, bytes | None], Verdict] = _Recent(VERDICTS_KEPT)
        self._voters: tuple[bytes, VoterSet | None] | None = None  # (head hash, its voter set)
        self._built: tuple[bytes, _Execution] | None = None  # the last block build_block made (encoded), and its execution
        self._checked: tuple | None = None  # (head, encoded block, execution) of the last `validate`
        known = store.get(schema.GENESIS)
        if known is None:
            self._commit_genesis()
        elif known != genesis.hash:
            raise StoreError(f"{store.path} belongs to another network (genesis {known.hex()[:16]}..., "
                             f"this genesis file is {genesis.hash.hex()[:16]}...)")
        self.head = self.header_at_hash(store.get(schema.HEAD))  # type: ignore[arg-type]
        self._pruned = self._read_pruned()

    def reload(self) -> None:
        """Read the head again and forget every cache: after the store was reopened (`Store.recover`),
        which may have kept a write whose sync was not confirmed."""
        self._markets.clear()
        self._ranks.clear()
        self._verdicts.clear()
        self._voters = self._built = self._checked = None
        self.head = self.header_at_hash(self.store.get(schema.HEAD))  # type: ignore[arg-type]
        self._pruned = self._read_pruned()

    def check(self, depth: int | None = 256) -> None:
        """Refuse a damaged store (`StoreCorrupt`, one line): the head agrees with the store's watermark
        (at most one step apart: a kill between the block's write and its record), the last `depth`
        blocks (None: all) are stored, indexed at their heights, linked to their parents and undoable,
        and the money adds up."""
        head = self.head
        mark = self.store.watermark()
        if mark is not None and mark[0] != head.hash and head.parent != mark[0]:
            marked = self.block(mark[0])
            if marked is None or marked.header.parent != head.hash:
                raise StoreCorrupt(f"the chain database {self.store.path} ends at block {head.height}, but this "
                                   f"node had written block {mark[1]}: it lost writes; {REPAIR_HINT}")
        child = head
        low = 0 if depth is None else max(0, head.height - depth)
        for h in range(head.height, low - 1, -1):
            at = self.hash_at(h)
            block = self.block(at) if at is not None else None
            linked = at == head.hash if h == head.height else child.parent == at
            if block is None or block.header.height != h or not linked:
                raise StoreCorrupt(f"the chain database {self.store.path} has a broken chain at block {h} "
                                   f"(head {head.height}): {REPAIR_HINT}")
            if h > self._pruned and self.store.get(schema.undo(block.hash)) is None:
                raise StoreCorrupt(f"the chain database {self.store.path} lost block {h}'s undo record: "
                                   f"{REPAIR_HINT}")
            child = block.header
        held, total = ledger.money_in_state(self.state())
        if held != total:
            raise StoreCorrupt(f"the chain database {self.store.path} does not add up (accounts hold {held}, "
                               f"{total} was minted or paid in, in micro-tokens): {REPAIR_HINT}")

    # ------------------------------------------------------------------ reads
    @property
    def height(self) -> int:
        return self.head.height

    def state(self) -> StateOverlay:
        """A read view of the state at the head (writes to it are never stored)."""
        return StateOverlay(self.store)

    def block(self, block_hash: bytes) -> Block | None:
        raw = self.store.get(schema.block(block_hash))
        return BLOCK.decode(raw) if raw is not None else None

    def hash_at(self, height: int) -> bytes | None:
        return self.store.get(schema.canonical(height))

    def block_at(self, height: int) -> Block | None:
        h = self.hash_at(height)
        return self.block(h) if h is not None else None

    def header_at_hash(self, block_hash: bytes) -> Header:
        b = self.block(block_hash)
        if b is None:
            raise StoreError(f"block {block_hash.hex()} is missing from the store")
        return b.header

    def tx(self, tx_hash: bytes) -> tuple[Tx, int, int] | None:
        """(transaction, height, position) of an included transaction."""
        raw = self.store.get(schema.tx_location(tx_hash))
        if raw is None:
            return None
        height, pos = schema.read_location(raw)
        block = self.block_at(height)
        if block is None or pos >= len(block.txs):
            raise StoreCorrupt(f"the chain database {self.store.path} indexes transaction {tx_hash.hex()[:16]} "
                               f"at block {height}, which does not hold it: {REPAIR_HINT}")
        return block.txs[pos], height, pos

    def has_tx(self, tx_hash: bytes) -> bool:
        """Whether the chain includes the transaction (its index entry alone: no block read)."""
        return self.store.get(schema.tx_location(tx_hash)) is not None

    def sessions_of(self, party: bytes, roles: tuple[int, ...] = (schema.AS_OWNER, schema.AS_STATION),
                    before: tuple[int, bytes] | None = None) -> Iterator[tuple[bytes, SessionRecord]]:
        """A party's charging sessions in `roles` (schema.AS_OWNER, AS_STATION), newest first (by the height
        that opened them, then id, both descending; `before` (opened, id): only those after it in that
        order), each once, read lazily from the index's newest end: a page costs its size, not years."""
        state = self.state()
        merged = heapq.merge(*(self._indexed_sessions(state, party, role, before) for role in roles),
                             key=lambda e: e[:2], reverse=True)
        last = None
        for opened, sid, rec in merged:
            if sid != last:  # a party that is its own station: the same session under both roles, in a row
                yield sid, rec
            last = sid

    def _indexed_sessions(self, state: StateOverlay, party: bytes, role: int, before: tuple[int, bytes] | None
                          ) -> Iterator[tuple[int, bytes, SessionRecord]]:
        prefix = schema.party_sessions_opened(party, role)
        stop = None if before is None else schema.party_session_opened(party, role, *before)
        for key, _ in self.store.items(prefix, reverse=True, stop=stop):
            sid = key[len(prefix) + 8:]  # after the opening height
            rec = state.session(sid)
            # An entry whose block a reorg undid since the scan began, or one a format 6 store's upgrade
            # wrote above the final checkpoint (that block's undo record predates the index, so a revert
            # leaves it): the session is gone, or opened again at another height, listed there.
            if rec is not None and key in session_index_keys(sid, rec):
                yield rec.opened, sid, rec

    # ------------------------------------------------------------- finality
    def genesis_checkpoint(self) -> Checkpoint:
        return Checkpoint(0, self.hash_at(0))  # type: ignore[arg-type]

    def justified(self) -> Checkpoint:
        """The head's latest justified checkpoint (checkpoints.py)."""
        return checkpoints.justified(self.state(), self.genesis_checkpoint())

    def finalized(self) -> Checkpoint:
        """The head's latest final checkpoint: the fork choice never reverts it."""
        return checkpoints.finalized(self.state(), self.genesis_checkpoint())

    def voters(self) -> VoterSet | None:
        """The voter set in force at the head (checkpoints.py): the head's child's votes count against it."""
        key = self.head.hash
        if self._voters is None or self._voters[0] != key:
            self._voters = (key, checkpoints.voters(self.state()))
        return self._voters[1]

    def market(self, slot: int) -> tuple[SlotMarket, Pairs]:
        """Slot `slot`'s instance and candidate pairs, as the chain at its head defines them."""
        hit = self._markets.get(slot)
        if hit is None:
            m = ledger.slot_market(self.state(), slot, self.genesis)
            hit = (m, candidate_pairs(m.instance, self.genesis.candidate_cap))
            if slot <= self.height + self.genesis.gate_closure:  # fixed: no block can add bids to it
                self._markets[slot] = hit
        return hit

    # ------------------------------------------------------------- building
    def build_block(self, key, clearing: BlockClearing, candidates: list[Tx], timestamp_ms: int,
                    salt: bytes = bytes(32), votes: list[Certificate] = (),
                    vote_secret: bytes | None = None) -> tuple[Block, list[tuple[Tx, str]]]:
        """A block on the head: the slot's clearing, the vote aggregates, then every candidate that still
        applies, signed by `key`, with the proposer's lottery ticket if it registered a vote key: drawn
        with `vote_secret` (None: the one derived from `key`, `keys.vote_secret`).

        Returns the block and the candidates left out, with the reason; `BlockError` if the clearing,
        a vote aggregate or the ticket is not valid."""
        height = self.height + 1
        self.check_clearing(height, clearing)
        proposer = keys.address_of_key(key)
        votes = tuple(sorted(votes, key=vote_order))
        ticket = bytes(96)
        state, g = self.state(), self.genesis
        if committee.draw_key(state, proposer, height, g.gate_closure) is not None:
            secret = vote_secret if vote_secret is not None else keys.vote_secret(key)
            ticket = beacon.ticket(secret, committee.ticket_beacon(state, height, g.gate_closure, g.hash), height).proof
        stamp = max(timestamp_ms, g.slot_start_ms(height), self.head.timestamp + 1)
        ex = self._execute(height, proposer, clearing, candidates, strict=False, salt=salt, votes=votes,
                           ticket=ticket, timestamp=stamp)
        header = Header(
            height=height, parent=self.head.hash, timestamp=stamp,
            state_hash=next_state_hash(self.head.state_hash, ex.state.writes), tx_root=tx_root(ex.applied),
            clearing_hash=clearing.hash, proposer=keys.public_key(key), salt=salt, votes_root=votes_root(votes),
            ticket=ticket,
        ).signed(key)
        block = Block(header, tuple(ex.applied), clearing, votes)
        self._built = (block.encoded, ex)
        return block, ex.rejected

    # ----------------------------------------------------------- connecting
    def validate(self, block: Block, now_ms: int) -> None:
        """Every check `connect` makes on `block` as the head's child, without writing it (`BlockError`);
        the execution is kept, so connecting it on this head later costs no second run."""
        self._checked = (self.head.hash, block.encoded, self._validate(block, now_ms))

    def connect(self, block: Block, now_ms: int) -> Connected:
        """Validate `block` as the head's child and write it; raises `BlockError`, writing nothing."""
        checked, self._checked = self._checked, None
        if checked is not None and checked[0] == self.head.hash and checked[1] == block.encoded:
            ex, verdict, market = checked[2]
        else:
            ex, verdict, market = self._validate(block, now_ms)
        h, g = block.header, self.genesis
        changes = dict(ex.state.writes)
        for pos, tx in enumerate(block.txs):
            changes[schema.tx_location(tx.hash)] = schema.location(h.height, pos)  # the bytes are in the block
        changes.update(self._history(block, ex.state, market))
        changes.update(session_index(block, ex.state))
        changes[schema.canonical(h.height)] = block.hash
        changes[schema.HEAD] = block.hash
        self.store.commit(block.hash, block.encoded, changes, h.height)
        self.head = h
        for s in [s for s in self._markets if s <= h.height - g.finality_depth]:  # kept for competing blocks
            del self._markets[s]
        for k in [k for k in self._verdicts if k[0] <= h.height - g.finality_depth]:  # no block there can win
            del self._verdicts[k]
        self._prune_final()
        return Connected(block, ex.fees, verdict, market, len(changes))

    def _validate(self, block: Block, now_ms: int) -> tuple[_Execution, Verdict | None, SlotMarket]:
        h, g = block.header, self.genesis
        if h.height != self.height + 1 or h.parent != self.head.hash:
            raise BlockError(f"block {h.height} does not extend the head ({self.height}, {self.head.hash.hex()[:16]})")
        if h.timestamp < g.slot_start_ms(h.height):
            raise BlockError(f"block {h.height} is stamped before its slot starts")
        if h.timestamp <= self.head.timestamp:
            raise BlockError("block timestamp is not after its parent's")
        if h.timestamp > now_ms + MAX_FUTURE_MS:
            raise BlockError("block is stamped in the future")
        consensus_txs = sum(1 for t in block.txs if t.space == CONSENSUS)
        if len(block.txs) - consensus_txs > g.max_block_txs:
            raise BlockError(f"{len(block.txs) - consensus_txs} transactions, the limit is {g.max_block_txs}")
        if consensus_txs > g.max_consensus_txs:
            raise BlockError(f"{consensus_txs} consensus transactions, the limit is {g.max_consensus_txs}")
        if not h.signature_ok():
            raise BlockError("bad proposer signature")
        if h.tx_root != tx_root(block.txs):
            raise BlockError("transaction root does not match")
        if len({t.hash for t in block.txs}) != len(block.txs):
            raise BlockError("a transaction appears twice")
        if h.clearing_hash != block.clearing.hash:
            raise BlockError("clearing hash does not match")
        if h.votes_root != votes_root(block.votes):
            raise BlockError("votes root does not match")
        proposer = keys.address_of(h.proposer)
        rec = self.state().solver(proposer)
        if rec is None:
            raise BlockError("the proposer is not a registered solver")
        if rec.exit_at:
            raise BlockError("the proposer is withdrawing from the solver set")
        if not ledger.may_propose(rec, h.height, g):
            raise BlockError(f"the proposer registered at height {rec.since}: too late to propose block {h.height}")
        verdict = self.check_clearing(h.height, block.clearing)
        market = self.market(h.height)[0]
        built = self._built
        if built is not None and built[0] == block.encoded:
            self._built = None
            ex = built[1]  # built here on this head, from admitted transactions: executed already
        else:
            for tx in block.txs:
                try:
                    check_stateless(tx, g.chain_id, g.zones, g.min_fee)
                except TxError as e:
                    raise BlockError(f"transaction {tx.hash.hex()[:16]}: {e}") from None
            ex = self._execute(h.height, proposer, block.clearing, list(block.txs), strict=True, salt=h.salt,
                               votes=block.votes, ticket=h.ticket, timestamp=h.timestamp)
        if next_state_hash(self.head.state_hash, ex.state.writes) != h.state_hash:
            raise BlockError("state hash does not match")
        return ex, verdict, market

    def _history(self, block: Block, state: StateOverlay, market: SlotMarket) -> dict[bytes, bytes]:
        """The address history entries (schema.address_tx) of `block`, executed into `state`: for each
        address, in the block's order, its bids the clearing closed, its delivery settlement, its charging
        sessions that expired, and the transactions it sent, received, or was charged by as an EV's owner."""
        height = block.height
        entries: list[tuple[bytes, bytes]] = []
        for pid, rec in market.bids.items():  # every bid of the slot: the clearing closed them all
            entries.append((rec.owner, bytes([schema.HISTORY_TRADE]) + bytes.fromhex(pid)))
        slot = settled_slot(height, self.genesis)
        if slot >= 1:
            for addr, _ in state.settlements_of_slot(slot):
                entries.append((addr, bytes([schema.HISTORY_SETTLEMENT]) + schema.u64(slot)))
        prefix = schema.session_deadlines(height)
        for key, _ in self.store.items(prefix):  # the deadlines before the block: it expired those still open
            rec = state.session(key[len(prefix):])
            if rec is not None and rec.status == SESSION_EXPIRED and rec.closed == height:
                for party in dict.fromkeys((rec.owner, rec.station)):
                    entries.append((party, bytes([schema.HISTORY_SESSION_END]) + key[len(prefix):]))
        for tx in block.txs:
            b = tx.body
            parties = [tx.sender]
            if isinstance(b, Transfer):
                parties.append(b.to)
            elif isinstance(b, SessionOpen):
                parties.append(b.auth.owner_address)
            elif isinstance(b, SessionClose):
                rec = state.session(b.session)
                parties += [rec.owner] if rec is not None else []
            kind = schema.HISTORY_CONSENSUS_TX if isinstance(b, (Commit, Reveal)) else schema.HISTORY_TX
            for party in dict.fromkeys(parties):
                entries.append((party, bytes([kind]) + tx.hash))
        seqs: dict[bytes, int] = {}
        out = {}
        for addr, value in entries:
            seq = seqs[addr] = seqs.get(addr, -1) + 1
            out[schema.address_tx(addr, height, seq)] = value
        return out

    def check_clearing(self, height: int, clearing: BlockClearing) -> Verdict | None:
        """The exact verdict on `clearing` for slot `height`, or `BlockError`; None for a void clearing."""
        key = (height, clearing.hash, self.hash_at(height - 1))
        if key in self._verdicts:
            return self._verdicts[key]
        market, pairs = self.market(height)
        if clearing.void:
            if clearing.trades or clearing.lam or clearing.mu:
                raise BlockError("a void clearing carries no trades or multipliers")
            return None
        try:
            c = clearing.to_clearing(market.instance)
        except IndexError:
            raise BlockError("the clearing names a participant the slot does not have") from None
        g = self.genesis
        v = verify(market.instance, c, pairs=pairs, tolerance=g.tolerance, quantum=g.quantum,
                   require_certificate=False)  # an uncertified clearing is valid and ranks below certified ones
        if not v.ok:
            raise BlockError(f"clearing of slot {height} is invalid: {v.reason}")
        self._verdicts[key] = v  # proposals of one round mostly share a clearing: verify it once
        return v

    def _execute(self, height: int, proposer: bytes, clearing: BlockClearing, txs: list[Tx], strict: bool,
                 salt: bytes = bytes(32), votes: tuple[Certificate, ...] = (), ticket: bytes = bytes(96),
                 timestamp: int | None = None) -> _Execution:
        g = self.genesis
        state = self.state()
        self._check_ticket(state, height, proposer, ticket, timestamp)
        seed = committee.beacon_after(state, height - 1, g.hash)
        if any(ticket):
            seed = beacon.next_beacon(seed, ticket)
        committee.record_beacon(state, height, seed, g.gate_closure)
        try:  # votes first, against the parent's voter set, before the block's transactions change it
            checkpoints.start_voters(state, seed, g.voting_seats, height + committee.lookback(g.gate_closure))
            checkpoints.apply_votes(state, height, votes, chain_id=g.chain_id, voters=checkpoints.voters(state),
                                    hash_at=self.hash_at, genesis=self.genesis_checkpoint(), seed=seed,
                                    seats=g.voting_seats)
        except FinalityError as e:
            raise BlockError(f"block {height}: {e}") from None
        ledger.settle_slot(state, self.market(height)[0], clearing, g)
        ledger.reveal_in_block(state, height, proposer, clearing.hash, salt)
        ledger.settle_solvers(state, height, g)
        settle_delivery(state, height, g)
        ledger.expire_sessions(state, height)
        ex = _Execution(state, 0, [])
        room = {WALLET: g.max_block_txs, CONSENSUS: g.max_consensus_txs}  # each its own budget
        for tx in txs:
            if room[tx.space] <= 0:
                ex.rejected.append((tx, "block full"))
                continue
            mark = state.checkpoint()
            try:
                ex.fees += ledger.apply_tx(state, tx, height, g)
            except TxError as e:
                if strict:
                    raise BlockError(f"transaction {tx.hash.hex()[:16]}: {e}") from None
                state.rollback(mark)
                ex.rejected.append((tx, str(e)))
                continue
            ex.applied.append(tx)
            room[tx.space] -= 1
        ledger.reward(state, proposer, ex.fees, g)
        return ex

    def _check_ticket(self, state: StateOverlay, height: int, proposer: bytes, ticket: bytes,
                      timestamp: int | None) -> None:
        """The proposer's ticket for `height` (committee.py): zeros if it has no key to draw with, else its
        valid ticket.  Once committees apply, a block in time (stamped before slot height + 1 starts)
        needs a member of the height's committee; later, any solver may propose (the committee stayed
        silent).  `timestamp` None: the block is being built, its stamp still to come.  `BlockError`."""
        g = self.genesis
        try:
            drawn = committee.check(state, proposer, height, ticket, gate_closure=g.gate_closure,
                                    size=g.committee_size, genesis_hash=g.hash)
        except ValueError as e:
            raise BlockError(f"block {height}: {e}") from None
        if (drawn != committee.MEMBER and timestamp is not None and timestamp < g.slot_start_ms(height + 1)
                and committee.started(state, height)):
            raise BlockError(f"block {height}: the proposer is not in the height's committee ({drawn}), and the "
                             "slot is not over")

    def ticket_value(self, block: Block) -> bytes:
        """`block`'s lottery value, its parent being the head's ancestor or the head (checked on connect)."""
        return beacon.ticket_value(block.header.ticket) if any(block.header.ticket) else NO_TICKET

    # ---------------------------------------------------------- fork choice
    def precheck(self, block: Block) -> None:
        """The cheap checks, before a block is held, ranked or allowed to cause a revert: a height, the
        proposer's signature, a proposer that may propose it (in the committee or late, on the head).
        Raises `BlockError`."""
        h = block.header
        if h.height < 1:
            raise BlockError("a block below height 1")
        if not h.signature_ok():
            raise BlockError("bad proposer signature")
        proposer = keys.address_of(h.proposer)
        rec = self.state().solver(proposer)
        if rec is None or not ledger.may_propose(rec, h.height, self.genesis):
            # Our head's state is not this block's parent's, unless it extends the head.  A solver slashed on
            # our chain for equivocating was a solver on the branch this block comes from, which need not
            # have slashed it yet (its validity is checked on its parent's state when it connects).
            if h.parent == self.head.hash or not self._slashed(proposer):
                raise BlockError("the proposer may not propose this block")
        if h.parent == self.head.hash:  # on the head, the committee can be checked too (a BLS check, cached)
            self._check_ticket(self.state(), h.height, keys.address_of(h.proposer), h.ticket, h.timestamp)

    def _slashed(self, solver: bytes) -> bool:
        """Whether our chain slashed `solver` for a double proposal (evidence is rare: a scan of it all)."""
        return any(k.endswith(solver) for k, _ in self.state().items(schema.EVIDENCE))

    # --------------------------------------------------------------- pruning
    @property
    def pruned(self) -> int:
        """The height up to which the chain's blocks have no undo record (0: none pruned)."""
        return self._pruned

    def _read_pruned(self) -> int:
        raw = self.store.get(schema.PRUNED)
        return 0 if raw is None else schema.read_u64(raw)

    def _prune_final(self) -> None:
        """Delete what nothing reads again at or below the final checkpoint: each block's undo record (the
        fork choice never reverts a final block) and this node's own proposal and commit there (it never
        proposes or reveals at a final height).  What a block leaves on disk is then the block itself,
        its index entries and its share of the state."""
        top = min(self.finalized().height, self._pruned + PRUNE_BATCH)
        if top <= self._pruned:
            return
        doomed = []
        for h in range(self._pruned + 1, top + 1):
            at = self.hash_at(h)
            if at is not None:
                doomed.append(schema.undo(at))
            doomed += [schema.own_proposal(h), schema.own_commit(h)]
        try:
            self.store.prune(doomed, (schema.PRUNED, schema.u64(top)))
        except StoreError:
            return  # the block is connected; the store now refuses writes, so the next one says why
        self._pruned = top

    # -------------------------------------------------------------- reverting
    def revert_head(self) -> Block:
        """Undo the head block (a reorg's first step); returns it so its transactions can go back to the mempool."""
        if self.height == 0:
            raise BlockError("the genesis block cannot be reverted")
        if self.height <= self._pruned:
            raise BlockError(f"block {self.height} is final: its undo record was pruned")
        block = self.block(self.head.hash)
        assert block is not None
        self.store.revert(block.hash, block.height)
        self._markets.clear()
        self._built = self._checked = None
        self._ranks.clear()
        self._voters = None
        self.head = self.header_at_hash(self.store.get(schema.HEAD))  # type: ignore[arg-type]
        return block

    # --------------------------------------------------------------- genesis
    def _commit_genesis(self) -> None:
        g = self.genesis
        state = StateOverlay(self.store)
        ledger.apply_genesis(state, g)
        committee.record_beacon(state, 0, beacon.genesis_beacon(g.hash), g.gate_closure)
        checkpoints.start_voters(state, beacon.genesis_beacon(g.hash), g.voting_seats, 1)  # if it registers keys
        header = Header(height=0, parent=g.hash, timestamp=g.timestamp * 1000,
                        state_hash=next_state_hash(bytes(32), state.writes), tx_root=tx_root([]),
                        clearing_hash=BlockClearing().hash, proposer=bytes(32))
        block = Block(header, (), BlockClearing())
        changes = dict(state.writes)
        changes.update({schema.canonical(0): block.hash, schema.HEAD: block.hash, schema.GENESIS: g.hash})
        self.store.commit(block.hash, block.encoded, changes, 0)


def session_index(block: Block, state: StateOverlay) -> dict[bytes, bytes]:
    """The index entries (schema.party_session_opened) of the sessions `block` opened, executed into
    `state`: one under the EV's owner and one under the station."""
    out = {}
    for tx in block.txs:
        if isinstance(tx.body, SessionOpen):
            sid = tx.body.auth.session_id
            rec = state.session(sid)
            if rec is not None:
                out.update(dict.fromkeys(session_index_keys(sid, rec), b""))
    return out


def decode_block(raw: bytes) -> Block:
    try:
        return BLOCK.decode(raw)
    except DecodeError as e:
        raise BlockError(f"malformed block: {e}") from None
