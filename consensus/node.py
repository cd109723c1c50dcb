"""The node's core, without I/O: admits transactions, proposes and connects blocks.

The daemon drives it from the trio loop (time, the solver thread, HTTP);
tests and a simulator drive it directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from consensus.proposer import Solution

from consensus.rules import keys, ledger
from consensus.chain.chain import Chain, Connected
from .journal import Journal, JournalError
from .mempool import Mempool, too_late
from consensus.rules.state import StateOverlay
from consensus.rules.transactions import WALLET, Bid, Commit, Tx, TxError, check_stateless, decode_tx
from consensus.rules.units import tokens

log = logging.getLogger("transx.node")
EARLY_COMMIT_BLOCKS = 2  # a commit this many blocks before its window opens is held for it


def _held_commit(tx: Tx, height: int, commit_window: int) -> bool:
    """`tx` is a commit whose window opens after block `height`, but at most `EARLY_COMMIT_BLOCKS` after."""
    return isinstance(tx.body, Commit) and height < tx.body.height - commit_window <= height + EARLY_COMMIT_BLOCKS


@dataclass
class Admitted:
    tx: Tx
    displaced: Tx | None


class Node:
    def __init__(self, chain: Chain, key, mempool: Mempool | None = None, journal: Journal | None = None) -> None:
        self.chain, self.key = chain, key
        self.address = keys.address_of_key(key)
        self.mempool = mempool if mempool is not None else Mempool()
        self.journal = journal
        self.on_local_tx: list[Callable[[Tx], None]] = []  # told of each transaction a client submits here
        self.now_ms: int | None = None  # the clock at the consensus engine's last look (None: no engine)
        self.vote_secret = keys.vote_secret(key)  # the BLS key it votes and draws tickets with, if registered
        if journal is not None:
            self._replay(journal)

    def _replay(self, journal: Journal) -> None:
        """Re-admit the journal's transactions (those still valid), then compact it.  A damaged or
        cut journal is kept aside with a warning, never compacted away in silence."""
        loaded = journal.read()
        kept = 0
        for raw in loaded.records:
            try:
                self._admit(decode_tx(raw))
                kept += 1
            except TxError:
                pass
        if loaded.damaged or loaded.torn:
            why = loaded.damaged or (f"it ends in a partial record of {loaded.torn} bytes (a kill while writing "
                                     f"it, or a cut file)")
            aside = journal.keep_aside(f"damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            log.warning("mempool journal %s: %s; %d whole records read, %d transactions restored; the file is "
                        "kept as %s", journal.path, why, len(loaded.records), kept, aside)
        self._compact(journal)
        if kept:
            log.info("mempool: %d pending transactions restored from the journal", kept)

    @property
    def genesis(self):
        return self.chain.genesis

    def chain_nonce(self, addr: bytes, space: int = WALLET) -> int:
        """The account's next nonce on chain in `space` (its wallet's, or its consensus transactions')."""
        return self.chain.state().account(addr).nonce_of(space)

    def next_block(self) -> int:
        """The first block a wallet's transaction admitted now can still enter: the head's child, or,
        once the child's slot has begun by the engine's clock, the one after: the child's proposals are
        built then (this node's own among them), so a bid only the child could take would be dropped
        when it lands, after the sender was told it was sent.  Such a bid is refused instead."""
        h = self.chain.height + 1
        return h + 1 if self.now_ms is not None and self.now_ms >= self.genesis.slot_start_ms(h) else h

    def submit(self, raw: bytes) -> Admitted:
        """Admit a peer's raw signed transaction to the mempool (journaled, not synced), or raise
        `TxError` with the reason."""
        tx = decode_tx(raw)
        return self.submit_tx(tx, durable=False)

    def submit_local(self, tx: Tx) -> Admitted:
        """Admit a transaction from this node's own client (the API), on disk before it returns (the
        API's 202), and announce it (to the network)."""
        admitted = self.submit_tx(tx)
        for listener in self.on_local_tx:
            listener(tx)
        return admitted

    def submit_tx(self, tx: Tx, reverted: bool = False, durable: bool = True) -> Admitted:
        """Admit `tx` and journal it (synced if `durable`).  `reverted`: it comes back from a block a
        reorg undid, and is tried at the head's child, its last chance perhaps (this node may still
        propose that block late)."""
        return self._admit(tx, reverted, self.journal, durable)

    def _admit(self, tx: Tx, reverted: bool = False, journal: Journal | None = None, durable: bool = True) -> Admitted:
        """Check `tx` against the head and the pool, write it to `journal` (`JournalError`: the disk
        refused it, and it is not admitted either), then add it to the pool."""
        g = self.genesis
        if tx.hash in self.mempool:  # before the signature check: gossip delivers duplicates often
            raise TxError("already in the mempool")
        check_stateless(tx, g.chain_id, g.zones, g.min_fee)
        if self.chain.has_tx(tx.hash):
            raise TxError("already on chain")
        state = self.chain.state()
        acct = state.account(tx.sender)
        # The sender must afford everything it has pending plus this: nothing free sits in the pool.
        others = [p for p in self.mempool.pending(tx.sender) if (p.space, p.nonce) != (tx.space, tx.nonce)]
        owed = ledger.upfront_cost(tx, g) + sum(ledger.upfront_cost(p, g) for p in others)
        if owed > acct.balance:
            what = f"with {len(others)} pending, the transactions need" if others else "the transaction needs"
            raise TxError(f"insufficient balance: {tokens(acct.balance)} tokens, {what} {tokens(owed)} tokens",
                          balance=acct.balance, needs=owed)
        # A wallet's transaction is tried at the first block it can still enter; the engine's own
        # (consensus space) at the head's child, their windows are its to keep.
        height = self.next_block() if tx.space == WALLET and not reverted else self.chain.height + 1
        nonce = acct.nonce_of(tx.space)
        b = tx.body
        if _held_commit(tx, height, g.commit_window):
            # Gossiped by a peer a block or two ahead of us: held until its window opens, not refused (a
            # refused commit is not sent again, and its solver would lose the round).
            height = b.height - g.commit_window
        if nonce <= tx.nonce <= self.mempool.next_nonce(tx.sender, nonce, tx.space):  # next in line, or a replacement
            self._trial(state, tx, height)
        elif isinstance(b, Bid) and too_late(tx, height, g.gate_closure, g.reveal_window):  # behind a gap: no trial
            if b.slot - g.gate_closure < height:
                raise TxError(f"slot {b.slot} closed for bids at height {b.slot - g.gate_closure} (gate closure "
                              f"{g.gate_closure} slots ahead); the next block that can take a bid is {height}",
                              "gate_closed")
            raise TxError(f"bid expired at height {b.expiry}; the next block that can take it is {height}")
        if journal is not None:
            journal.append(tx.encoded, sync=None if durable else False)  # first: what the pool holds is kept
        displaced = self.mempool.add(tx, nonce, self.chain.height)
        return Admitted(tx, displaced)

    def _trial(self, state: StateOverlay, tx: Tx, height: int) -> None:
        """Apply the sender's pending transactions of the same nonce space (as the head's child would:
        they may be in it), then `tx` as block `height` would: its errors are the user's."""
        for prior in self.mempool.pending(tx.sender, tx.space):
            if prior.nonce >= tx.nonce:
                break
            try:
                ledger.apply_tx(state, prior, self.chain.height + 1, self.genesis)
            except TxError:
                return  # an earlier pending transaction fails: the block builder will sort it out
        ledger.apply_tx(state, tx, height, self.genesis)

    def not_due(self, height: int):
        """For `Mempool.select`: is a transaction held for a later block than `height`, a commit whose
        window opens at most `EARLY_COMMIT_BLOCKS` after it?  Only that close: a commit further ahead
        (one that slipped in behind a nonce gap, untried) is not held but offered, refused by the
        block builder and dropped, so no sender can park a queue behind it for ever."""
        return lambda tx: _held_commit(tx, height, self.genesis.commit_window)

    def propose(self, solution: Solution, now_ms: int) -> Connected:
        """Build the next block from `solution` and the mempool, connect it, prune the mempool."""
        g = self.genesis
        candidates = self.mempool.select(g.max_block_txs, self.chain_nonce, self.not_due(self.chain.height + 1),
                                         g.max_consensus_txs)
        block, rejected = self.chain.build_block(self.key, solution.clearing, candidates, now_ms,
                                                 vote_secret=self.vote_secret)
        for tx, reason in rejected:
            log.info("dropped %s from the mempool: %s", tx.hash.hex()[:16], reason)
            self.mempool.remove(tx)
        done = self.chain.connect(block, now_ms)
        self.after_connect(done)
        return done

    def after_connect(self, done: Connected) -> None:
        for tx in done.block.txs:
            self.mempool.remove(tx)
        self.after_head_change()

    def after_head_change(self) -> None:
        """The head moved (a block, or a reorg): drop what can no longer be mined, compact the journal."""
        self.mempool.prune(self.chain.height + 1, self.chain_nonce, self.genesis.gate_closure,
                           self.genesis.reveal_window)
        if self.journal is not None and self.journal.records > 2 * len(self.mempool) + 1000:
            self._compact(self.journal)

    def _compact(self, journal: Journal) -> None:
        """Rewrite the journal with just the pool; if the disk refuses, the longer old one stays."""
        try:
            journal.rewrite([t.encoded for t in self.mempool.by_hash.values()])
        except JournalError as e:
            log.warning("%s; it is kept as it was", e)
