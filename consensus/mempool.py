"""Transactions waiting for a block: ordered by fee and nonce, bounded, pruned.

Each sender's transactions form a queue by nonce; a block takes, across
senders, the highest fee among the next transactions in line (a sender's
later nonce never before its earlier one).  When full, a new transaction
displaces the cheapest one at the tail of its sender's queue, or is refused.
Sans-IO: the node tells it the chain's nonces and height.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from consensus.rules.transactions import Bid, Commit, Reveal, Tx, TxError
from consensus.rules.units import tokens


MAX_GAP = 16  # transactions a sender may queue beyond a nonce gap
GAP_TTL = 64  # blocks a transaction behind a gap may wait for it to fill


class Mempool:
    def __init__(self, max_size: int = 20_000, max_per_sender: int = 256) -> None:
        self.max_size, self.max_per_sender = max_size, max_per_sender
        self.by_hash: dict[bytes, Tx] = {}
        self.by_sender: dict[bytes, dict[int, Tx]] = {}
        self.admitted: dict[bytes, int] = {}  # tx hash -> the height the chain was at

    def __len__(self) -> int:
        return len(self.by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self.by_hash

    def get(self, tx_hash: bytes) -> Tx | None:
        return self.by_hash.get(tx_hash)

    def pending(self, sender: bytes) -> list[Tx]:
        """The sender's transactions, by nonce."""
        q = self.by_sender.get(sender, {})
        return [q[n] for n in sorted(q)]

    def next_nonce(self, sender: bytes, chain_nonce: int) -> int:
        """The nonce the sender's next transaction should carry: past its contiguous pending ones."""
        q = self.by_sender.get(sender, {})
        n = chain_nonce
        while n in q:
            n += 1
        return n

    def add(self, tx: Tx, chain_nonce: int, height: int = 0) -> Tx | None:
        """Admit `tx`; returns a transaction it displaced, if any.  Raises `TxError` when refused.

        A transaction behind a nonce gap waits at most `GAP_TTL` blocks, at most `MAX_GAP` of them per
        sender, and never displaces another: it cannot be mined until the gap fills."""
        if tx.hash in self.by_hash:
            raise TxError("already in the mempool")
        if tx.nonce < chain_nonce:
            raise TxError(f"nonce {tx.nonce} was already used (the account is at {chain_nonce})", "nonce")
        if tx.nonce >= chain_nonce + self.max_per_sender:
            raise TxError(f"nonce {tx.nonce} is too far ahead of the account's {chain_nonce}", "nonce")
        gapped = tx.nonce > self.next_nonce(tx.sender, chain_nonce)
        if gapped and tx.nonce > self.next_nonce(tx.sender, chain_nonce) + MAX_GAP:
            raise TxError(f"nonce {tx.nonce} is too far past the sender's next nonce "
                          f"{self.next_nonce(tx.sender, chain_nonce)}", "nonce")
        q = self.by_sender.setdefault(tx.sender, {})
        old = q.get(tx.nonce)
        if old is not None:
            if tx.fee <= old.fee:
                raise TxError(f"a transaction with nonce {tx.nonce} is already pending; replace it with a higher fee",
                              "nonce")
            self._drop(old)
            self._insert(tx, height)
            return old
        displaced = None
        if len(self.by_hash) >= self.max_size:
            victim = None if gapped else self._cheapest_tail(exclude=tx.sender if q else None)
            if victim is None or victim.fee >= tx.fee:
                if not q:
                    del self.by_sender[tx.sender]
                raise TxError(f"mempool full: the fee must beat {tokens(victim.fee if victim else 0)} tokens")
            self._drop(victim)
            displaced = victim
        self._insert(tx, height)
        return displaced

    def select(self, limit: int, chain_nonce: Callable[[bytes], int]) -> list[Tx]:
        """Up to `limit` transactions for a block: highest fee first, each sender in nonce order."""
        heads: list[tuple[int, bytes, bytes, int]] = []
        for sender, q in self.by_sender.items():
            n = chain_nonce(sender)
            if n in q:
                heads.append((-q[n].fee, q[n].hash, sender, n))
        heapq.heapify(heads)
        out: list[Tx] = []
        while heads and len(out) < limit:
            _, _, sender, n = heapq.heappop(heads)
            q = self.by_sender[sender]
            out.append(q[n])
            if n + 1 in q:
                heapq.heappush(heads, (-q[n + 1].fee, q[n + 1].hash, sender, n + 1))
        return out

    def prune(self, next_height: int, chain_nonce: Callable[[bytes], int], gate_closure: int,
              reveal_window: int = 0) -> list[Tx]:
        """Drop what can no longer go into block `next_height` or later: used nonces, expired or closed
        bids, commits and reveals past their window, and transactions that waited more than `GAP_TTL`
        blocks behind a nonce gap.  (A dropped transaction leaves its sender's next nonce free again.)"""
        gone = []
        for sender, q in list(self.by_sender.items()):
            n = chain_nonce(sender)
            ready = self.next_nonce(sender, n)
            for nonce, tx in list(q.items()):
                b = tx.body
                if (nonce < n or (isinstance(b, Bid) and (b.expiry < next_height or b.slot - gate_closure < next_height))
                        or (isinstance(b, Commit) and b.height - 1 < next_height)
                        or (isinstance(b, Reveal) and b.height + reveal_window < next_height)
                        or (nonce > ready and self.admitted.get(tx.hash, 0) + GAP_TTL < next_height)):
                    gone.append(tx)
        for tx in gone:
            self._drop(tx)
        return gone

    def _insert(self, tx: Tx, height: int = 0) -> None:
        self.by_hash[tx.hash] = tx
        self.admitted[tx.hash] = height
        self.by_sender.setdefault(tx.sender, {})[tx.nonce] = tx

    def remove(self, tx: Tx) -> None:
        """Forget `tx` (included in a block, or no longer valid)."""
        self._drop(tx)

    def _drop(self, tx: Tx) -> None:
        self.by_hash.pop(tx.hash, None)
        self.admitted.pop(tx.hash, None)
        q = self.by_sender.get(tx.sender)
        cur = q.get(tx.nonce) if q is not None else None
        if cur is not None and cur.hash == tx.hash:
            del q[tx.nonce]
            if not q:
                del self.by_sender[tx.sender]

    def _cheapest_tail(self, exclude: bytes | None = None) -> Tx | None:
        """The cheapest last-in-line transaction of any sender but `exclude` (evicting the new
        transaction's own predecessor would leave it stranded behind a gap)."""
        tails = [q[max(q)] for sender, q in self.by_sender.items() if q and sender != exclude]
        return min(tails, key=lambda t: (t.fee, t.hash), default=None)
