"""Every LevelDB key TransX writes, built in one place (as py-evm does).

Three namespaces: ``s`` is consensus state (hashed into the state hash,
reverted by undo data), ``i`` is indexes for queries (reverted too, not
hashed), ``c``/``m`` are the chain itself and node metadata.  Heights and
slots are 8-byte big-endian so iteration follows their order.
"""

from __future__ import annotations

import struct

STATE = b"s"
INDEX = b"i"

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")


def u64(n: int) -> bytes:
    return _U64.pack(n)


def read_u64(b: bytes) -> int:
    return _U64.unpack(b)[0]


# --- consensus state -------------------------------------------------------
def account(addr: bytes) -> bytes:
    return b"sa" + addr


def bid(slot: int, bid_id: bytes) -> bytes:
    return b"sb" + u64(slot) + bid_id


def bids_of_slot(slot: int) -> bytes:
    return b"sb" + u64(slot)


def owner_bid(owner: bytes, slot: int, bid_id: bytes) -> bytes:
    """Open bids by owner and slot: the value is the bid's side."""
    return b"so" + owner + u64(slot) + bid_id


def owner_bids(owner: bytes, slot: int | None = None) -> bytes:
    return b"so" + owner + (b"" if slot is None else u64(slot))


def bid_slot(bid_id: bytes) -> bytes:
    """Where a bid lives: bid id -> its slot."""
    return b"sl" + bid_id


def solver(addr: bytes) -> bytes:
    return b"sv" + addr


SOLVERS = b"sv"


def commit(height: int, addr: bytes) -> bytes:
    return b"sc" + u64(height) + addr


def commits_for(height: int) -> bytes:
    """Commits for block `height`: the value is the commitment and a status byte (COMMIT_*)."""
    return b"sc" + u64(height)


COMMIT_PENDING, COMMIT_REVEALED, COMMIT_FORFEITED = 0, 1, 2


def solver_exit(height: int, addr: bytes) -> bytes:
    """Solvers whose withdrawal completes at `height`."""
    return b"sx" + u64(height) + addr


def solver_exits(height: int) -> bytes:
    return b"sx" + u64(height)


def evidence(height: int, addr: bytes) -> bytes:
    """Equivocation already punished: one slashing per solver and height."""
    return EVIDENCE + u64(height) + addr


EVIDENCE = b"se"


def solver_bls(addr: bytes) -> bytes:
    """A solver's current finality key (its 48-byte BLS public key): only while it is a solver."""
    return b"sw" + addr


SOLVER_BLS = b"sw"  # by address, as SOLVERS: the voter set is the two scans side by side


def bls_owner(bls_key: bytes) -> bytes:
    """BLS key -> the address that registered it, for good: a key a solver replaced still
    answers for the votes it signed (vote evidence finds its solver), and no one else registers it."""
    return b"sy" + bls_key


def vote_offence(height: int, bls_key: bytes) -> bytes:
    """A finality vote offence already punished: one slashing per key and (highest) target height."""
    return b"su" + u64(height) + bls_key


def meter_key(addr: bytes) -> bytes:
    """The public key of the meter registered to an account."""
    return b"sm" + addr


def meter(slot: int, addr: bytes) -> bytes:
    """An account's meter reading for a delivered slot (state.READING)."""
    return b"sr" + u64(slot) + addr


def meter_readings(slot: int) -> bytes:
    return b"sr" + u64(slot)


def settlement(slot: int, addr: bytes) -> bytes:
    """How an account's trades of a slot settled against its meter (state.SETTLEMENT)."""
    return b"sp" + u64(slot) + addr


def settlements_of_slot(slot: int) -> bytes:
    return b"sp" + u64(slot)


def party_settlement(addr: bytes, slot: int) -> bytes:
    """The same settlements listed by account (empty values)."""
    return b"sq" + addr + u64(slot)


def party_settlements(addr: bytes) -> bytes:
    return b"sq" + addr


def session(session_id: bytes) -> bytes:
    """An EV charging session (charging.py), by its id."""
    return b"sg" + session_id


def session_deadline(height: int, session_id: bytes) -> bytes:
    """Open sessions by the height at which they expire if their station has not closed them."""
    return b"sk" + u64(height) + session_id


def session_deadlines(height: int) -> bytes:
    return b"sk" + u64(height)


def party_session(party: bytes, session_id: bytes) -> bytes:
    """A session listed under its owner and under its station (`transx ev sessions`)."""
    return b"sd" + party + session_id


def party_sessions(party: bytes) -> bytes:
    return b"sd" + party


TOTALS = b"st"


def slot_bid_count(slot: int, side: int) -> bytes:
    """How many bids of `side` slot `slot` holds: capped by genesis.max_bids_per_slot."""
    return b"sn" + u64(slot) + bytes([side])

# --- indexes -----------------------------------------------------------------
def tx_location(tx_hash: bytes) -> bytes:
    """tx hash -> its location (height, position; 12 bytes); the transaction is read from that block
    (stores before format 6 also kept its encoding after the location)."""
    return b"it" + tx_hash


AS_OWNER, AS_STATION = 0, 1  # a party's role in a session, in party_session_opened


def party_session_opened(party: bytes, role: int, opened: int, session_id: bytes) -> bytes:
    """A session listed under its owner (AS_OWNER) and its station (AS_STATION) by the height that opened
    it (node-local, empty values): a page is read from the newest end and costs its size, not years."""
    return b"io" + party + bytes([role]) + u64(opened) + session_id


def party_sessions_opened(party: bytes, role: int) -> bytes:
    return b"io" + party + bytes([role])


def address_tx(addr: bytes, height: int, seq: int) -> bytes:
    """An address's history: one key per thing block `height` did to it, `seq` counting them in the
    block's order (its bids' clearing, its delivery settlement, its expired charging sessions, then
    the transactions it sent, received or, as an EV's owner, paid for).  The value is a HISTORY_*
    byte and what the entry names: a transaction hash, a bid id, a settled slot (u64), a session id."""
    return b"ix" + addr + u64(height) + _U32.pack(seq)


HISTORY_TX, HISTORY_CONSENSUS_TX, HISTORY_TRADE, HISTORY_SETTLEMENT, HISTORY_SESSION_END = range(5)


def address_txs(addr: bytes) -> bytes:
    return b"ix" + addr


def location(height: int, pos: int) -> bytes:
    return u64(height) + _U32.pack(pos)


def read_location(b: bytes) -> tuple[int, int]:
    return _U64.unpack(b[:8])[0], _U32.unpack(b[8:12])[0]


# --- chain ---------------------------------------------------------------------
def block(block_hash: bytes) -> bytes:
    return b"cb" + block_hash


def undo(block_hash: bytes) -> bytes:
    return b"cu" + block_hash


def canonical(height: int) -> bytes:
    """height -> hash of the block at that height on the chain the node follows."""
    return b"ch" + u64(height)


def own_proposal(height: int) -> bytes:
    """The block this node proposed for `height` (node-local: re-sent, never re-made, after a restart)."""
    return b"mp" + u64(height)


def own_commit(height: int) -> bytes:
    """The clearing hash this node committed to for `height` (node-local, for its Reveal)."""
    return b"mc" + u64(height)


OWN_COMMITS = b"mc"  # the prefix of own_commit


HEAD = b"mhead"
PRUNED = b"mundo"  # u64: the undo records and own proposals and commits of the chain's blocks up to this height are deleted (final: never reverted, never proposed again)
GENESIS = b"mgenesis"
FORMAT = b"mformat"

# --- finality (consensus state) ---------------------------------------------
JUSTIFIED = b"sj"  # the chain's latest justified checkpoint: u64 height + block hash (absent: genesis)
FINALIZED = b"sf"  # the chain's latest final checkpoint, likewise
JUSTIFIED_ABOVE_FINAL = b"sJ"  # every justified checkpoint above the final one: (u64 height + hash)*, by height
VOTERS = b"sVS"  # the voter set in force (finality.VOTER_SET; checkpoints.py), absent until it bootstraps
COMMITTEES_FROM = b"si"  # u64: the first height drawn by committee: L blocks after the voter set came in force
STAKE = b"ss"  # u64: the deposit of every solver not withdrawing (committee.py's denominator), kept by set_solver


def beacon_at(height: int) -> bytes:
    """The lottery beacon after block `height` (32 bytes) and the stake total as that block began (u64):
    kept for the last L + 3 blocks; height h's committee is drawn on the one of block h - L - 2
    (committee.py)."""
    return b"sh" + u64(height)


def bls_since(addr: bytes) -> bytes:
    """u64: the height whose block registered the solver's current BLS key (it draws tickets only on
    beacons made after that block: committee.py).  Its own tag: under ``sb`` (format 5) an address whose
    first 8 bytes a solver ground to a slot number put this record among that slot's bids."""
    return b"sz" + addr


# --- finality (node metadata) ------------------------------------------------
SIGN_FLOOR = b"mfloor"  # u64: no proposal or vote at or below this height (set by `transx repair`: the old store's records may be lost)
LAST_VOTE = b"mvote"  # this node's last finality vote: u64 source height + u64 target height (no double or surround vote after a restart)
