"""Blocks: a header, the transactions, and the slot's clearing.

The clearing is stored by participant index into the slot's canonical
instance (sellers and buyers sorted by bid id), as columns a verifier reads
in one pass: a trade is (seller index, buyer index, Wh, payment), the
multipliers are sparse (index, numerator) pairs.  Both lists must be in
strictly increasing order, so a clearing has one encoding.  `void` marks a
slot nobody could clear (a solver failure): it refunds every escrow and
ranks below any real clearing.

A block also carries finality votes (finality.py): aggregates, one per (source, target) link, of
the votes its proposer collected for recent blocks of its own chain; the header commits to them
(`votes_root`).  They make each branch carry the votes that chose it, so a node that fetches a
branch learns its weight and its justified and final checkpoints from the chain itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from solver import Clearing, Instance, Trade
from solver.clearing import MAX_MULTIPLIER

from . import keys
from .finality import BLS_SIGNATURE, CERTIFICATE, Certificate
from .codec import HASH, PUBKEY, SIGNATURE, U64, Bool, ListOf, Record, UInt, digest
from .transactions import TX, Tx

MAX_TRADES = 2**22
MAX_BLOCK_TXS = 100_000
MAX_BLOCK_VOTES = 16  # vote aggregates a block may carry
MAX_FUTURE_MS = 15_000  # a block stamped further ahead of a node's clock than this is held back


class BlockError(ValueError):
    """A block is invalid; the message says which rule it breaks."""


@dataclass(frozen=True, order=True)
class TradeRow:
    seller: int
    buyer: int
    wh: int
    payment: int


@dataclass(frozen=True, order=True)
class Multiplier:
    index: int
    value: int


@dataclass(frozen=True)
class BlockClearing:
    trades: tuple[TradeRow, ...] = ()
    lam: tuple[Multiplier, ...] = ()
    mu: tuple[Multiplier, ...] = ()
    void: bool = False

    @cached_property
    def hash(self) -> bytes:
        return digest(CLEARING.encode(self), b"transx-clearing")

    def to_clearing(self, inst: Instance) -> Clearing:
        """The solver's id-keyed form, for the verifier; `IndexError` on an index outside `inst`."""
        s, b = inst.sellers, inst.buyers
        return Clearing(
            slot=inst.slot,
            trades=tuple(Trade(s[t.seller].id, b[t.buyer].id, t.wh, t.payment) for t in self.trades),
            lam={s[m.index].id: m.value for m in self.lam},
            mu={b[m.index].id: m.value for m in self.mu},
        )

    @classmethod
    def from_clearing(cls, inst: Instance, c: Clearing) -> "BlockClearing":
        si, bi = inst.seller_index, inst.buyer_index
        trades = sorted(TradeRow(si[t.seller], bi[t.buyer], t.wh, t.payment) for t in c.trades)
        return cls(
            trades=tuple(trades),
            lam=tuple(sorted(Multiplier(si[k], v) for k, v in c.lam.items() if v)),
            mu=tuple(sorted(Multiplier(bi[k], v) for k, v in c.mu.items() if v)),
        )


@dataclass(frozen=True)
class Header:
    height: int
    parent: bytes
    timestamp: int  # milliseconds since the epoch
    state_hash: bytes  # hash(parent's state hash, this block's state changes)
    tx_root: bytes
    clearing_hash: bytes
    proposer: bytes  # Ed25519 public key of the solver
    signature: bytes = bytes(64)
    salt: bytes = bytes(32)  # reveals the proposer's commitment to this clearing; zeros: uncommitted
    votes_root: bytes = bytes(32)  # votes_root(the block's vote aggregates)
    ticket: bytes = bytes(96)  # the proposer's lottery ticket (beacon.py); zeros: it has no vote key

    @cached_property
    def hash(self) -> bytes:
        """The block's identity: the header without its signature."""
        return digest(HEADER.encode(replace(self, signature=bytes(64))), b"transx-block")

    def signing_bytes(self) -> bytes:
        return b"transx-block-v1" + self.hash

    def signed(self, key) -> "Header":
        """This header with `key` as its proposer, signed by it."""
        h = replace(self, proposer=keys.public_key(key))
        return replace(h, signature=keys.sign(key, h.signing_bytes()))

    def signature_ok(self) -> bool:
        return self._signature_valid

    @cached_property
    def _signature_valid(self) -> bool:
        return keys.verify_signature(self.proposer, self.signing_bytes(), self.signature)


@dataclass(frozen=True)
class Block:
    header: Header
    txs: tuple[Tx, ...]
    clearing: BlockClearing
    votes: tuple[Certificate, ...] = ()

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    @cached_property
    def encoded(self) -> bytes:
        return BLOCK.encode(self)


def merkle_root(leaves: list[bytes]) -> bytes:
    """Binary Merkle root of 32-byte leaves, bound to their count; the empty root is 32 zero bytes.

    An odd node is paired with itself, so [a, b, c] and [a, b, c, c] share a tree: hashing the count in
    makes their roots differ (Bitcoin's CVE-2012-2459 came from leaving it out)."""
    if not leaves:
        return bytes(32)
    level = [digest(b"\x00" + x, b"transx-merkle") for x in leaves]
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [digest(b"\x01" + level[k] + level[k + 1], b"transx-merkle") for k in range(0, len(level), 2)]
    return digest(b"\x02" + len(leaves).to_bytes(8, "big") + level[0], b"transx-merkle")


def votes_root(votes: tuple[Certificate, ...] | list[Certificate]) -> bytes:
    return merkle_root([c.hash for c in votes])


def vote_order(c: Certificate) -> tuple:
    """A block's aggregates are in strictly increasing order of this: one per link, one encoding."""
    return c.target.height, c.target.hash, c.source.height, c.source.hash


def tx_root(txs: tuple[Tx, ...] | list[Tx]) -> bytes:
    return merkle_root([t.hash for t in txs])


_INDEX = UInt(MAX_TRADES)
CLEARING = Record(BlockClearing, {
    "trades": ListOf(Record(TradeRow, {"seller": _INDEX, "buyer": _INDEX, "wh": UInt(10**12, lo=1),
                                       "payment": UInt(10**15)}),
                     MAX_TRADES, key=lambda t: (t.seller, t.buyer)),
    "lam": ListOf(Record(Multiplier, {"index": _INDEX, "value": UInt(MAX_MULTIPLIER, lo=1)}), MAX_TRADES,
                  key=lambda m: m.index),
    "mu": ListOf(Record(Multiplier, {"index": _INDEX, "value": UInt(MAX_MULTIPLIER, lo=1)}), MAX_TRADES,
                 key=lambda m: m.index),
    "void": Bool(),
})
HEADER = Record(Header, {"height": U64, "parent": HASH, "timestamp": U64, "state_hash": HASH, "tx_root": HASH,
                         "clearing_hash": HASH, "proposer": PUBKEY, "signature": SIGNATURE, "salt": HASH,
                         "votes_root": HASH, "ticket": BLS_SIGNATURE})
BLOCK = Record(Block, {"header": HEADER, "txs": ListOf(TX, MAX_BLOCK_TXS), "clearing": CLEARING,
                       "votes": ListOf(CERTIFICATE, MAX_BLOCK_VOTES, key=vote_order)})
