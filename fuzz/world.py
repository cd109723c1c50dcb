"""A small real chain for the fuzz targets, and the real encoded objects that seed their corpus.

One node (the genesis solver) on a fresh LevelDB store in a temporary directory, driven on a virtual
clock as the unit tests' `chain_support.Net` is: fixed keys and a fixed genesis second, so every
run builds the same chain, byte for byte.  Its blocks carry what a market's chain carries: bids
that clear into trades, transfers, meter registrations and readings, a charging session, a
solver's finality key and a vote aggregate; `World.samples` keeps every object made on the way,
encoded, by kind (the corpus's seeds, `fuzz/seeds.py`).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from consensus.chain.chain import Chain
from consensus.chain.store import Store
from consensus.node import Node
from consensus.proposer import solve_slot
from consensus.rules import beacon, charging, finality, keys, schema
from consensus.rules import genesis as G
from consensus.rules import transactions as T
from consensus.rules.blocks import CLEARING, HEADER, Block
from consensus.rules.finality import Checkpoint
from consensus.rules.metering import sign_reading
from consensus.rules.state import ACCOUNT, BID, SESSION, SETTLEMENT, SOLVER, TOTALS

START = 1_700_000_000  # the genesis second
FEE = 1_000  # dev_genesis min_fee
SLOTS = (5, 6, 7)  # the slots users bid in (cleared by blocks 5..7)


def key(label: str) -> SigningKey:
    """A deterministic Ed25519 key for `label`."""
    return SigningKey(hashlib.sha256(label.encode()).digest())


def addr(k: SigningKey) -> bytes:
    return keys.address_of_key(k)


@dataclass
class Samples:
    """Encoded objects by kind ("tx", "block", "vote", ...), in the order they were made, no repeats."""

    by_kind: dict[str, list[bytes]] = field(default_factory=dict)

    def add(self, kind: str, raw: bytes) -> None:
        got = self.by_kind.setdefault(kind, [])
        if raw not in got:
            got.append(raw)


class World:
    """The chain, its node and the keys; `users` are funded, `solver` proposes every block."""

    def __init__(self, path: str | None = None, height: int = 9) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="transx-fuzz-") if path is None else None
        self.path = path or self._tmp.name
        self.solver = key("solver")
        self.users = [key(f"user{i}") for i in range(6)]
        doc = G.dev_genesis([addr(k) for k in self.users] + [addr(self.solver)], [addr(self.solver)],
                            slot_seconds=1, start=START)
        self.g = G.genesis_from_json(doc)
        self.store = Store(f"{self.path}/chain")
        self.chain = Chain(self.store, self.g)
        self.node = Node(self.chain, self.solver)
        self.keys = {keys.public_key(k): k for k in [self.solver, *self.users]}
        self.samples = Samples()
        self._nonces: dict[tuple[bytes, int], int] = {}
        self._grow(height)

    def close(self) -> None:
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # ------------------------------------------------------------------ time
    def now(self, height: int | None = None) -> int:
        """The virtual clock when block `height` (default: the head's child) is due."""
        return self.g.slot_start_ms(self.chain.height + 1 if height is None else height)

    # ------------------------------------------------------------ transacting
    def sign(self, k: SigningKey, body, nonce: int | None = None) -> T.Tx:
        """`body` signed by `k` at its next nonce in the body's space (counted here, not on chain)."""
        space = T.CONSENSUS if isinstance(body, T.CONSENSUS_BODIES) else T.WALLET
        slot = (addr(k), space)
        if nonce is None:
            nonce = self._nonces.get(slot, self.chain.state().account(addr(k)).nonce_of(space))
            self._nonces[slot] = nonce + 1
        tx = T.sign_tx(k, chain_id=self.g.chain_id, nonce=nonce, fee=FEE, body=body)
        self.samples.add("tx", tx.encoded)
        return tx

    def resign(self, txs) -> list[T.Tx]:
        """`txs` signed again by the world's key of each signer (the solver's if unknown), as they are
        otherwise; those `check_stateless` refuses left out, as a mempool would have."""
        out = []
        for t in txs:
            again = T.sign_tx(self.keys.get(t.signer, self.solver), chain_id=t.chain_id, nonce=t.nonce, fee=t.fee,
                              body=t.body)
            try:
                T.check_stateless(again, self.g.chain_id, self.g.zones, self.g.min_fee)
            except T.TxError:
                continue
            out.append(again)
        return out

    def submit(self, k: SigningKey, body) -> T.Tx:
        tx = self.sign(k, body)
        self.node.submit_tx(tx)
        return tx

    # -------------------------------------------------------------- producing
    def produce(self, votes: list[finality.Certificate] = ()) -> Block:
        """Solve the head's child for real and connect it, with the mempool's transactions and `votes`."""
        h = self.chain.height + 1
        market, pairs = self.chain.market(h)
        clearing = solve_slot(market, pairs, self.g).clearing
        candidates = self.node.mempool.select(self.g.max_block_txs, self.node.chain_nonce, self.node.not_due(h),
                                              self.g.max_consensus_txs)
        block, _ = self.chain.build_block(self.solver, clearing, candidates, self.now(h), votes=list(votes),
                                          vote_secret=keys.vote_secret(self.solver))
        self.node.after_connect(self.chain.connect(block, self.now(h)))
        self._nonces.clear()
        return block

    def next_block(self) -> Block:
        """A valid child of the head (with a transfer in it), built but not connected."""
        h = self.chain.height + 1
        market, pairs = self.chain.market(h)
        tx = self.sign(self.users[0], T.Transfer(addr(self.users[1]), 12_345))
        block, _ = self.chain.build_block(self.solver, solve_slot(market, pairs, self.g).clearing, [tx], self.now(h),
                                          vote_secret=keys.vote_secret(self.solver))
        self._nonces.clear()
        return block

    def checkpoint(self, height: int) -> Checkpoint:
        return Checkpoint(height, self.chain.hash_at(height))

    def certificate(self, source: Checkpoint, target: Checkpoint) -> finality.Certificate:
        v = finality.vote(keys.vote_secret(self.solver), chain_id=self.g.chain_id, source=source, target=target)
        self.samples.add("vote", v.encoded)
        return finality.make_certificate([v], self.chain.voters())

    def _grow(self, height: int) -> None:
        u, g = self.users, self.g
        self.submit(self.solver, T.VoteKey(finality.register_key(keys.vote_secret(self.solver), chain_id=g.chain_id,
                                                                 solver=addr(self.solver))))
        for k in u[:4]:
            self.submit(k, T.RegisterMeter(keys.public_key(self._meter(k))))
        self.submit(u[0], T.Transfer(addr(u[5]), 5_000_000))
        for n, slot in enumerate(SLOTS):  # sellers in zones 0 and 1, buyers in zones 0 and 2
            self.submit(u[0], T.Bid(T.SELL, slot, 2_000 + 100 * n, 200_000, 0, slot))
            self.submit(u[1], T.Bid(T.SELL, slot, 1_500, 250_000 + 1_000 * n, 1, slot))
            self.submit(u[2], T.Bid(T.BUY, slot, 1_800, 500_000, 0, slot))
            self.submit(u[3], T.Bid(T.BUY, slot, 1_200 + 10 * n, 450_000, 2, slot))
        self.produce()
        self.produce()  # the voter set (the solver alone) comes in force here
        cancelled = self.submit(u[2], T.Bid(T.BUY, 12, 500, 400_000, 0, 12))
        self.produce([self.certificate(self.chain.genesis_checkpoint(), self.checkpoint(self.chain.height))])
        self.submit(u[2], T.CancelBid(cancelled.hash))
        auth = charging.authorise(u[5], chain_id=g.chain_id, ev_id="EV-1", max_wh=30_000, max_price=700_000,
                                  expiry=self.now(40), nonce=1)
        self.samples.add("authorisation", auth.encoded)
        self.submit(u[4], T.SessionOpen(auth, 600_000, 20))
        self.submit(u[3], T.RegisterSolver(100_000_000))
        self.produce()
        self.submit(u[4], T.SessionClose(auth.session_id, 12_000, 80))
        while self.chain.height < height:
            h = self.chain.height
            for k in u[:4]:  # what each meter measured in the last cleared slot
                if h - 1 in SLOTS:
                    self.submit(k, self._reading(k, h - 1))
            self.produce()
        self._sample_chain()

    def _meter(self, k: SigningKey) -> SigningKey:
        return SigningKey(hashlib.sha256(b"meter" + bytes(k)).digest())

    def _reading(self, k: SigningKey, slot: int) -> T.MeterReading:
        side = 1 if k in self.users[:2] else 0  # sellers export, buyers import
        wh = 1_000 + 7 * slot
        return sign_reading(self._meter(k), chain_id=self.g.chain_id, account=addr(k), slot=slot,
                            imported_wh=0 if side else wh, exported_wh=wh if side else 0)

    def _sample_chain(self) -> None:
        """Every block, header, clearing and aggregate on the chain, the state records, and transactions of
        the kinds no block here carries (signed, not submitted)."""
        s, g, u = self.samples, self.g, self.users
        for h in range(1, self.chain.height + 1):
            b = self.chain.block_at(h)
            s.add("block", b.encoded)
            s.add("header", HEADER.encode(b.header))
            s.add("clearing", CLEARING.encode(b.clearing))
            for c in b.votes:
                s.add("certificate", c.encoded)
            for tx in b.txs:
                s.add("tx", tx.encoded)
                if isinstance(tx.body, T.VoteKey):
                    s.add("key_registration", tx.body.registration.encoded)
            if any(b.header.ticket):
                s.add("ticket", b.header.ticket)
            raw = self.store.get(schema.undo(b.hash))
            if raw is not None:
                s.add("changes", raw)
        state = self.chain.state()
        for k in [self.solver, *u]:
            s.add("account", ACCOUNT.encode(state.account(addr(k))))
            rec = state.solver(addr(k))
            if rec is not None:
                s.add("solver", SOLVER.encode(rec))
        for slot in SLOTS:
            for _, rec in state.slot_bids(slot):
                s.add("bid", BID.encode(rec))
            for _, rec in state.settlements_of_slot(slot):
                s.add("settlement", SETTLEMENT.encode(rec))
        for _, raw in state.items(schema.session(b"")):
            s.add("session", SESSION.encode(SESSION.decode(raw)))
        s.add("totals", TOTALS.encode(state.totals()))
        voters = self.store.get(schema.VOTERS)
        if voters is not None:
            s.add("voter_set", voters)
        s.add("checkpoint", finality.CHECKPOINT.encode(self.checkpoint(self.chain.height)))
        receipt = charging.sign_receipt(u[4], charging.Receipt(g.chain_id, keys.public_key(u[4]), bytes(32), 12_000,
                                                               7_200, 20, 80, 5, bytes(64)))
        s.add("receipt", receipt.encoded)
        h = self.chain.height
        headers = [HEADER.encode(self.chain.block_at(h).header), HEADER.encode(self.chain.block_at(h - 1).header)]
        first = finality.vote(keys.vote_secret(self.solver), chain_id=g.chain_id, source=self.checkpoint(0),
                              target=self.checkpoint(h))
        second = finality.vote(keys.vote_secret(self.solver), chain_id=g.chain_id, source=self.checkpoint(1),
                               target=self.checkpoint(h))
        for v in (first, second):
            s.add("vote", v.encoded)
        ticket = beacon.ticket(keys.vote_secret(self.solver), bytes(32), h + 1)
        s.add("ticket", ticket.proof)
        for body in (T.Commit(h + 3, bytes(range(32)), ticket.proof), T.Reveal(h + 1, bytes(32), bytes(range(32))),
                     T.Evidence(*headers), T.VoteEvidence(first.encoded, second.encoded), T.WithdrawSolver()):
            self.sign(self.solver, body)
        self._nonces.clear()
