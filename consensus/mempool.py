"""Transactions waiting for a block: ordered by fee and nonce, bounded, pruned.

Each sender's transactions form a queue by nonce, one queue per nonce space
(`Tx.space`: its wallet transactions, and its commits, reveals and evidence,
which count a nonce of their own); a block takes, across queues, the
highest fee among the next transactions in line (a queue's later nonce
never before its earlier one).  When full, a new transaction displaces the
cheapest one at the tail of another queue, or is refused.  Sans-IO: the
node tells it the chain's nonces (per sender and space) and height.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from consensus.rules.transactions import CONSENSUS, WALLET, Bid, Commit, Reveal, Tx, TxError
from consensus.rules.units import tokens


MAX_GAP = 16  # transactions a sender may queue beyond a nonce gap (in each nonce space)
GAP_TTL = 64  # blocks a transaction behind a gap may wait for it to fill


class Mempool:
    def __init__(self, max_size: int = 20_000, max_per_sender: int = 256) -> None:
        self.max_size, self.max_per_sender = max_size, max_per_sender
        self.by_hash: dict[bytes, Tx] = {}
        self.by_sender: dict[tuple[bytes, int], dict[int, Tx]] = {}  # (sender, nonce space) -> nonce -> tx
        self.admitted: dict[bytes, int] = {}  # tx hash -> the height the chain was at

    def __len__(self) -> int:
        return len(self.by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self.by_hash

    def get(self, tx_hash: bytes) -> Tx | None:
        return self.by_hash.get(tx_hash)

    def pending(self, sender: bytes, space: int | None = None) -> list[Tx]:
        """The sender's transactions of nonce space `space` (default: both, wallet first), by nonce."""
        out = []
        for sp in (WALLET, CONSENSUS) if space is None else (space,):
            q = self.by_sender.get((sender, sp), {})
            out += [q[n] for n in sorted(q)]
        return out

    def next_nonce(self, sender: bytes, chain_nonce: int, space: int = WALLET) -> int:
        """The nonce the sender's next transaction of `space` should carry (`chain_nonce` is the chain's
        for that space): past its contiguous pending ones."""
        q = self.by_sender.get((sender, space), {})
        n = chain_nonce
        while n in q:
            n += 1
        return n

    def add(self, tx: Tx, chain_nonce: int, height: int = 0) -> Tx | None:
        """Admit `tx`; returns a transaction it displaced, if any.  Raises `TxError` when refused.
        `chain_nonce` is the sender's next nonce on chain in the transaction's own space.

        A transaction behind a nonce gap waits at most `GAP_TTL` blocks, at most `MAX_GAP` of them per
        sender and space, and never displaces another: it cannot be mined until the gap fills."""
        if tx.hash in self.by_hash:
            raise TxError("already in the mempool")
        if tx.nonce < chain_nonce:
            raise TxError(f"nonce {tx.nonce} was already used (the account is at {chain_nonce})", "nonce")
        if tx.nonce >= chain_nonce + self.max_per_sender:
            raise TxError(f"nonce {tx.nonce} is too far ahead of the account's {chain_nonce}", "nonce")
        ready = self.next_nonce(tx.sender, chain_nonce, tx.space)
        gapped = tx.nonce > ready
        if gapped and tx.nonce > ready + MAX_GAP:
            raise TxError(f"nonce {tx.nonce} is too far past the sender's next nonce {ready}", "nonce")
        queue = (tx.sender, tx.space)
        q = self.by_sender.setdefault(queue, {})
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
            victim = None if gapped else self._cheapest_tail(exclude=queue if q else None)
            if victim is None or victim.fee >= tx.fee:
                if not q:
                    del self.by_sender[queue]
                raise TxError(f"mempool full: the fee must beat {tokens(victim.fee if victim else 0)} tokens")
            self._drop(victim)
            displaced = victim
        self._insert(tx, height)
        return displaced

    def select(self, limit: int, chain_nonce: Callable[[bytes, int], int],
               held: Callable[[Tx], bool] | None = None, consensus_limit: int | None = None) -> list[Tx]:
        """Up to `limit` transactions for a block: highest fee first, each queue in nonce order
        (`chain_nonce(sender, space)`: the chain's next nonce of that sender and space).  A transaction
        `held(tx)` says is not yet due (a commit whose window opens after this block) stops its queue.
        With `consensus_limit`, the consensus transactions have that budget of their own and `limit`
        counts the others only (a block's two budgets: no commit crowds out a bid, nor the reverse)."""
        room = {WALLET: limit, CONSENSUS: limit} if consensus_limit is None else {WALLET: limit,
                                                                                  CONSENSUS: consensus_limit}
        shared = consensus_limit is None
        heads: list[tuple[int, bytes, tuple[bytes, int], int]] = []
        for queue, q in self.by_sender.items():
            n = chain_nonce(*queue)
            if n in q and not (held and held(q[n])):
                heads.append((-q[n].fee, q[n].hash, queue, n))
        heapq.heapify(heads)
        out: list[Tx] = []
        while heads and (len(out) < limit if shared else any(room.values())):
            _, _, queue, n = heapq.heappop(heads)
            q = self.by_sender[queue]
            space = queue[1]
            if not shared:
                if room[space] <= 0:
                    continue
                room[space] -= 1
            out.append(q[n])
            if n + 1 in q and not (held and held(q[n + 1])):
                heapq.heappush(heads, (-q[n + 1].fee, q[n + 1].hash, queue, n + 1))
        return out

    def prune(self, next_height: int, chain_nonce: Callable[[bytes, int], int], gate_closure: int,
              reveal_window: int = 0) -> list[Tx]:
        """Drop what can no longer go into block `next_height` or later: used nonces, expired or closed
        bids, commits and reveals past their window, and transactions that waited more than `GAP_TTL`
        blocks behind a nonce gap.  (A dropped transaction leaves its sender's next nonce free again.)"""
        gone = []
        for (sender, space), q in list(self.by_sender.items()):
            n = chain_nonce(sender, space)
            ready = self.next_nonce(sender, n, space)
            for nonce, tx in list(q.items()):
                if (nonce < n or too_late(tx, next_height, gate_closure, reveal_window)
                        or (nonce > ready and self.admitted.get(tx.hash, 0) + GAP_TTL < next_height)):
                    gone.append(tx)
        for tx in gone:
            self._drop(tx)
        return gone

    def _insert(self, tx: Tx, height: int = 0) -> None:
        self.by_hash[tx.hash] = tx
        self.admitted[tx.hash] = height
        self.by_sender.setdefault((tx.sender, tx.space), {})[tx.nonce] = tx

    def remove(self, tx: Tx) -> None:
        """Forget `tx` (included in a block, or no longer valid)."""
        self._drop(tx)

    def _drop(self, tx: Tx) -> None:
        self.by_hash.pop(tx.hash, None)
        self.admitted.pop(tx.hash, None)
        queue = (tx.sender, tx.space)
        q = self.by_sender.get(queue)
        cur = q.get(tx.nonce) if q is not None else None
        if cur is not None and cur.hash == tx.hash:
            del q[tx.nonce]
            if not q:
                del self.by_sender[queue]

    def _cheapest_tail(self, exclude: tuple[bytes, int] | None = None) -> Tx | None:
        """The cheapest last-in-line transaction of any queue but `exclude` (evicting the new
        transaction's own predecessor would leave it stranded behind a gap)."""
        tails = [q[max(q)] for queue, q in self.by_sender.items() if q and queue != exclude]
        return min(tails, key=lambda t: (t.fee, t.hash), default=None)


def too_late(tx: Tx, next_height: int, gate_closure: int, reveal_window: int) -> bool:
    """`tx` can go into no block from `next_height` on, whatever the nonces: a bid expired or past its
    slot's gate closure, a commit or reveal past its window."""
    b = tx.body
    return ((isinstance(b, Bid) and (b.expiry < next_height or b.slot - gate_closure < next_height))
            or (isinstance(b, Commit) and b.height - 1 < next_height)
            or (isinstance(b, Reveal) and b.height + reveal_window < next_height))
