"""Ledger state records and the write overlay a block is applied through.

A block never writes to the database directly: the ledger applies it to a
`StateOverlay` over the store, which records every key it changes.  The
store then writes those changes, their undo data and the block in one
atomic batch.  Checkpoints let a block builder try a transaction and drop
it again without copying the state.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import Iterator, Protocol

from . import schema
from .codec import ADDRESS, U32, U64, Bool, ListOf, Optional_, Record, Text, Trailing, UInt, VarBytes, digest
from .transactions import CONSENSUS, NO_PREFERENCES, PREFERENCES, Preferences

OPEN, CANCELLED, CLEARED = 0, 1, 2
STATUS_NAMES = {OPEN: "open", CANCELLED: "cancelled", CLEARED: "cleared"}


@dataclass(frozen=True)
class Account:
    balance: int = 0
    nonce: int = 0  # the wallet nonce: the next one a transfer, bid, ... (Tx.space WALLET) must carry
    escrowed: int = 0  # locked by this account's open buy bids and open charging sessions
    consensus_nonce: int = 0  # the next one a commit, reveal or evidence (Tx.space CONSENSUS) must carry

    def nonce_of(self, space: int) -> int:
        """The next nonce of the sequence `space` (transactions.WALLET or CONSENSUS)."""
        return self.consensus_nonce if space == CONSENSUS else self.nonce

    def after_nonce(self, space: int) -> "Account":
        """This account with the sequence `space` one further (a transaction of that space applied)."""
        if space == CONSENSUS:
            return replace(self, consensus_nonce=self.consensus_nonce + 1)
        return replace(self, nonce=self.nonce + 1)


@dataclass(frozen=True)
class BidRecord:
    owner: bytes
    side: int
    slot: int
    wh: int
    price: int
    zone: int
    escrow: int  # micro-units still locked: a buy bid's escrow, a sell bid's delivery collateral
    included: int  # height of the block that included it
    status: int = OPEN
    traded_wh: int = 0
    amount: int = 0  # micro-units paid (buyer, with network charge) or received (seller)
    preferences: Preferences = NO_PREFERENCES  # the bid's (transactions.Preferences)


@dataclass(frozen=True)
class SolverRecord:
    deposit: int
    since: int  # height of registration
    exit_at: int = 0  # the height its withdrawal completes; 0 while it stays

SESSION_OPEN, SESSION_CLOSED, SESSION_EXPIRED = 0, 1, 2
SESSION_STATUS = {SESSION_OPEN: "open", SESSION_CLOSED: "closed", SESSION_EXPIRED: "expired"}


@dataclass(frozen=True)
class SessionRecord:
    owner: bytes
    station: bytes
    ev_id: str
    max_wh: int
    price: int  # micro-units per kWh
    escrow: int  # locked from the owner while open
    opened: int  # height
    soc_start: int
    status: int = SESSION_OPEN
    closed: int = 0
    delivered_wh: int = 0
    soc_end: int = 0
    amount: int = 0  # paid to the station


@dataclass(frozen=True)
class Reading:
    imported_wh: int
    exported_wh: int
    included: int  # height of the block that carried it


@dataclass(frozen=True)
class Settlement:
    """An account's trades of one slot against what its meter measured (settlement.py)."""

    sold_wh: int  # cleared
    bought_wh: int
    exported_wh: int  # measured (or the default for a missing reading)
    imported_wh: int
    read: bool  # a reading arrived before the deadline
    shortfall_wh: int  # sold but not delivered: replaced from the grid at retail, at the seller's cost
    unused_wh: int  # bought but not taken: it flowed to the grid, credited at the feed-in tariff
    released: int  # the seller's revenue, held since the clearing
    charge: int  # paid to the grid for the shortfall
    credit: int  # paid by the grid for the unused energy
    unpaid: int = 0  # the part of the charge neither the revenue nor the balance covered


@dataclass(frozen=True)
class Totals:
    minted: int  # genesis supply plus every block reward
    burned: int  # network charges without an operator
    grid_charged: int = 0  # delivery shortfalls paid to the grid (settlement)
    grid_credited: int = 0  # unused energy paid for by the grid (settlement)


ACCOUNT = Record(Account, {"balance": U64, "nonce": U64, "escrowed": U64, "consensus_nonce": U64})
BID = Record(BidRecord, {"owner": ADDRESS, "side": UInt(1), "slot": U64, "wh": U64, "price": U64, "zone": U64,
                         "escrow": U64, "included": U64, "status": UInt(2), "traded_wh": U64, "amount": U64,
                         # a record without preferences is the bytes it was before they existed
                         "preferences": Trailing(PREFERENCES, NO_PREFERENCES)})
SOLVER = Record(SolverRecord, {"deposit": U64, "since": U64, "exit_at": U64})
SESSION = Record(SessionRecord, {
    "owner": ADDRESS, "station": ADDRESS, "ev_id": Text(32, min_len=1), "max_wh": U64, "price": U64, "escrow": U64,
    "opened": U64, "soc_start": UInt(100), "status": UInt(2), "closed": U64, "delivered_wh": U64, "soc_end": UInt(100),
    "amount": U64})
TOTALS = Record(Totals, {"minted": UInt(2**80), "burned": UInt(2**80), "grid_charged": UInt(2**80),
                         "grid_credited": UInt(2**80)})
READING = Record(Reading, {"imported_wh": U32, "exported_wh": U32, "included": U64})
SETTLEMENT = Record(Settlement, {
    "sold_wh": U64, "bought_wh": U64, "exported_wh": U64, "imported_wh": U64, "read": Bool(), "shortfall_wh": U64,
    "unused_wh": U64, "released": U64, "charge": U64, "credit": U64, "unpaid": U64})


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def items(self, prefix: bytes, reverse: bool = False,
              stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]: ...


_ABSENT = object()


@dataclass(frozen=True)
class _Change:
    key: bytes
    value: bytes | None


CHANGE = Record(_Change, {"key": VarBytes(256), "value": Optional_(VarBytes(1 << 20))})
CHANGES = ListOf(CHANGE, 1 << 24)


def encode_changes(changes: dict[bytes, bytes | None]) -> bytes:
    """Canonical bytes of a set of key changes (sorted by key); also the undo record's form."""
    return CHANGES.encode(tuple(_Change(k, changes[k]) for k in sorted(changes)))


def decode_changes(raw: bytes) -> dict[bytes, bytes | None]:
    return {c.key: c.value for c in CHANGES.decode(raw)}


def next_state_hash(parent_state_hash: bytes, writes: dict[bytes, bytes | None]) -> bytes:
    """The state hash after a block: its parent's, chained with the block's state changes."""
    state = {k: v for k, v in writes.items() if k.startswith(schema.STATE)}
    return digest(parent_state_hash + digest(encode_changes(state), b"transx-changes"), b"transx-state")


def _stake(rec: SolverRecord | None) -> int:
    return 0 if rec is None or rec.exit_at else rec.deposit


class StateOverlay:
    """Reads through to `base`, buffers writes, and can roll back to a checkpoint."""

    def __init__(self, base: Reader) -> None:
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}
        self._journal: list[tuple[bytes, object]] = []
        self._sorted: list[bytes] = []  # the keys of `writes`, sorted: prefix scans stay O(log n + hits)

    # raw access
    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        old = self.writes.get(key, _ABSENT)
        self._journal.append((key, old))
        if old is _ABSENT:
            bisect.insort(self._sorted, key)
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.put(key, None)

    def items(self, prefix: bytes, reverse: bool = False,
              stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) under `prefix` in key order (`reverse`: newest key first; `stop`, a key under
        `prefix`: only the keys below it), with this overlay's writes applied.  The overlay's writes in
        the range are taken when iteration starts.  A reverse or stopped scan (the API's pages) reads
        the store as far as its caller reads: the newest 20 of an account's years of settlements read
        20 keys.  A forward scan of a whole prefix (the rules' scans, of one slot's or height's records)
        reads it at once, as it always did, so the rules never run with a store iterator open."""
        lo = bisect.bisect_left(self._sorted, prefix)
        hi = lo
        while hi < len(self._sorted) and self._sorted[hi].startswith(prefix):
            hi += 1
        if stop is not None:
            assert stop.startswith(prefix)
            hi = bisect.bisect_left(self._sorted, stop, lo, hi)
        mine = [(k, self.writes[k]) for k in self._sorted[lo:hi]]
        if reverse:
            mine.reverse()
        base = self.base.items(prefix, reverse=reverse, stop=stop)
        if not reverse and stop is None:
            base = iter(list(base))
        at = next(base, None)
        i = 0
        while i < len(mine) or at is not None:
            if i < len(mine) and (at is None or mine[i][0] == at[0] or (mine[i][0] > at[0]) == reverse):
                k, v = mine[i]  # the overlay's write comes first, and replaces the store's value of its key
                i += 1
                if at is not None and at[0] == k:
                    at = next(base, None)
                if v is not None:
                    yield k, v
            else:
                yield at  # type: ignore[misc]
                at = next(base, None)

    def checkpoint(self) -> int:
        return len(self._journal)

    def rollback(self, mark: int) -> None:
        while len(self._journal) > mark:
            key, old = self._journal.pop()
            if old is _ABSENT:
                del self.writes[key]
                del self._sorted[bisect.bisect_left(self._sorted, key)]
            else:
                self.writes[key] = old  # type: ignore[assignment]

    # typed access
    def account(self, addr: bytes) -> Account:
        raw = self.get(schema.account(addr))
        return ACCOUNT.decode(raw) if raw is not None else Account()

    def set_account(self, addr: bytes, acct: Account) -> None:
        self.put(schema.account(addr), ACCOUNT.encode(acct) if acct != Account() else None)

    def bid(self, bid_id: bytes) -> BidRecord | None:
        slot = self.get(schema.bid_slot(bid_id))
        if slot is None:
            return None
        raw = self.get(schema.bid(schema.read_u64(slot), bid_id))
        return BID.decode(raw) if raw is not None else None

    def set_bid(self, bid_id: bytes, rec: BidRecord) -> None:
        self.put(schema.bid_slot(bid_id), schema.u64(rec.slot))
        self.put(schema.bid(rec.slot, bid_id), BID.encode(rec))
        self.put(schema.owner_bid(rec.owner, rec.slot, bid_id), bytes([rec.side]) if rec.status == OPEN else None)

    def slot_bids(self, slot: int) -> list[tuple[bytes, BidRecord]]:
        """Every bid for `slot` (any status), by bid id."""
        prefix = schema.bids_of_slot(slot)
        return [(k[len(prefix):], BID.decode(v)) for k, v in self.items(prefix)]

    def solver(self, addr: bytes) -> SolverRecord | None:
        raw = self.get(schema.solver(addr))
        return SOLVER.decode(raw) if raw is not None else None

    def set_solver(self, addr: bytes, rec: SolverRecord | None) -> None:
        """Write (None: remove) a solver's record, keeping the stake total (`stake`) in step."""
        old = self.solver(addr)
        delta = _stake(rec) - _stake(old)
        if delta:
            self.put(schema.STAKE, schema.u64(self.stake() + delta))
        self.put(schema.solver(addr), SOLVER.encode(rec) if rec is not None else None)

    def stake(self) -> int:
        """The deposit of every solver that is not withdrawing: what proposer committees are drawn against."""
        raw = self.get(schema.STAKE)
        return 0 if raw is None else schema.read_u64(raw)

    def solver_bls(self, addr: bytes) -> bytes | None:
        """The solver's current BLS key (VoteKey), or None."""
        return self.get(schema.solver_bls(addr))

    def bls_owner(self, bls_key: bytes) -> bytes | None:
        """The address that registered `bls_key`, or None: kept when the solver replaces the key or leaves."""
        return self.get(schema.bls_owner(bls_key))

    def set_solver_bls(self, addr: bytes, bls_key: bytes | None) -> None:
        """Make `bls_key` the solver's current key (None: it has none now).  The key becomes `addr`'s for
        good; a key it had before stays its own too (bls_owner), so rotating keys never hides an offence."""
        self.put(schema.solver_bls(addr), bls_key)
        if bls_key is not None:
            self.put(schema.bls_owner(bls_key), addr)

    def session(self, session_id: bytes) -> SessionRecord | None:
        raw = self.get(schema.session(session_id))
        return SESSION.decode(raw) if raw is not None else None

    def set_session(self, session_id: bytes, rec: SessionRecord) -> None:
        self.put(schema.session(session_id), SESSION.encode(rec))
        self.put(schema.party_session(rec.owner, session_id), b"")
        self.put(schema.party_session(rec.station, session_id), b"")

    def meter_key(self, addr: bytes) -> bytes | None:
        return self.get(schema.meter_key(addr))

    def reading(self, slot: int, addr: bytes) -> Reading | None:
        raw = self.get(schema.meter(slot, addr))
        return READING.decode(raw) if raw is not None else None

    def readings_of_slot(self, slot: int) -> list[tuple[bytes, Reading]]:
        prefix = schema.meter_readings(slot)
        return [(k[len(prefix):], READING.decode(v)) for k, v in self.items(prefix)]

    def set_settlement(self, slot: int, addr: bytes, s: Settlement) -> None:
        self.put(schema.settlement(slot, addr), SETTLEMENT.encode(s))
        self.put(schema.party_settlement(addr, slot), b"")

    def settlements_of_slot(self, slot: int) -> list[tuple[bytes, Settlement]]:
        """(account, settlement) of every account that traded in `slot`, once the slot is settled."""
        prefix = schema.settlements_of_slot(slot)
        return [(k[len(prefix):], SETTLEMENT.decode(v)) for k, v in self.items(prefix)]

    def settled_slots(self, addr: bytes, last: int | None = None, before: int | None = None) -> list[int]:
        """The slots an account was settled in, newest first (`last`: at most that many; `before`: only
        slots below it), read from the index's newest end: the cost is what is returned, not the history."""
        prefix = schema.party_settlements(addr)
        stop = schema.party_settlement(addr, before) if before is not None else None
        slots: list[int] = []
        for k, _ in self.items(prefix, reverse=True, stop=stop):
            if last is not None and len(slots) >= last:
                break
            slots.append(schema.read_u64(k[len(prefix):]))
        return slots

    def settlements_of(self, addr: bytes, last: int | None = None) -> list[tuple[int, Settlement]]:
        """(slot, settlement) of an account, oldest first (`last`: only the newest that many, and only
        those are read)."""
        out = []
        for slot in reversed(self.settled_slots(addr, last)):
            raw = self.get(schema.settlement(slot, addr))
            if raw is not None:
                out.append((slot, SETTLEMENT.decode(raw)))
        return out

    def totals(self) -> Totals:
        raw = self.get(schema.TOTALS)
        return TOTALS.decode(raw) if raw is not None else Totals(0, 0)

    def set_totals(self, t: Totals) -> None:
        self.put(schema.TOTALS, TOTALS.encode(t))


def session_index_keys(session_id: bytes, rec: SessionRecord) -> list[bytes]:
    """The session's node-local index keys (schema.party_session_opened): under its owner and its station."""
    return [schema.party_session_opened(rec.owner, schema.AS_OWNER, rec.opened, session_id),
            schema.party_session_opened(rec.station, schema.AS_STATION, rec.opened, session_id)]


__all__ = ["ACCOUNT", "BID", "READING", "SESSION", "SETTLEMENT", "Account", "BidRecord", "Reading", "SessionRecord",
           "Settlement", "SolverRecord", "StateOverlay", "Totals",
           "session_index_keys"]
