"""The genesis file: a network's parameters, first balances and first solvers.

Every consensus parameter lives here, so two nodes that agree on the genesis
hash agree on every rule.  The hash is over the canonical JSON form (sorted
keys, no spaces), so reformatting the file does not change the network.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from solver.documents import DocumentError, read_json, require_int
from solver.instance import MAX_PER_SIDE

from .codec import digest
from .codec import DecodeError
from .finality import KEY_REGISTRATION, MAX_VOTERS, FinalityError, KeyRegistration, check_registration
from .keys import AddressError, decode_address, encode_address

DEFAULT_MAX_BIDS = 50_000  # per side and slot: ~100,000 participants clear in about 100 s (README)
DEFAULT_METER_WINDOW = 6  # slots a meter reading may take to reach the chain
DEFAULT_SESSION_TIMEOUT = 48  # slots an EV charging session may stay open
DEFAULT_COMMITTEE = 16  # expected proposers drawn per height (committee.py)
DEFAULT_VOTING_SEATS = 256  # seats of the voting committee (committee.py)
MAX_SUPPLY = 2**62  # every balance, escrow and deposit sums below this: no u64 overflow anywhere
_FIELDS = {
    "chain_id", "timestamp", "slot_seconds", "gate_closure", "commit_window", "finality_depth",
    "bid_horizon", "tolerance_ppm", "quantum_exp", "candidate_cap", "grid", "network_charge",
    "block_reward", "min_fee", "solver_deposit", "max_block_txs", "max_bids_per_slot", "network_operator",
    "commit_forfeit", "withdrawal_delay", "reveal_window", "meter_window", "session_timeout",
    "committee_size", "voting_seats", "max_consensus_txs", "balances", "solvers", "vote_keys",
}


class GenesisError(DocumentError):
    """The genesis file is malformed; the message names the field."""


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    timestamp: int  # seconds since the epoch: when slot 0 starts
    slot_seconds: int
    gate_closure: int  # L: a bid for slot s must be in a block of height <= s - L
    commit_window: int  # C: commits for height h are in blocks h - C .. h - 1
    finality_depth: int
    bid_horizon: int  # a bid may target at most this many slots past the block that includes it
    tolerance_ppm: int  # certificate tolerance, 1e-6 nats per unit of weight
    quantum_exp: int  # objectives rank in steps of 10^-quantum_exp nats
    candidate_cap: int
    feed_in: int
    retail: int
    network_charge: tuple[tuple[int, ...], ...]
    block_reward: int
    min_fee: int
    solver_deposit: int
    max_block_txs: int
    max_bids_per_slot: int  # per side: bounds the instance a slot's solvers face
    commit_forfeit: int  # taken from the deposit of a solver that committed and did not reveal
    reveal_window: int  # a losing solver's Reveal for h belongs in blocks h .. h + reveal_window
    withdrawal_delay: int  # blocks between a solver's withdrawal and its deposit's return
    meter_window: int  # readings for slot s belong in blocks s+1 .. s+meter_window; block s+meter_window+1 settles s
    session_timeout: int  # a charging session its station has not closed this many blocks after opening expires
    committee_size: int  # k: the expected size of each height's proposer committee (committee.py)
    voting_seats: int  # the voting committee's seats, drawn by deposit when finality advances
    max_consensus_txs: int  # commits, reveals, keys, evidence per block: a budget of their own, beside bids
    network_operator: bytes | None  # receives network charges; None burns them
    balances: tuple[tuple[bytes, int], ...]
    solvers: tuple[tuple[bytes, int], ...]
    vote_keys: tuple[tuple[bytes, KeyRegistration], ...] = ()  # genesis solvers' BLS keys, in force from block 1
    hash: bytes = b""

    @property
    def zones(self) -> int:
        return len(self.network_charge)

    @property
    def tolerance(self) -> Fraction:
        return Fraction(self.tolerance_ppm, 10**6)

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.quantum_exp)

    def slot_start_ms(self, slot: int) -> int:
        """When `slot` begins, in ms: the earliest timestamp of the block that clears it."""
        return (self.timestamp + slot * self.slot_seconds) * 1000

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "timestamp": self.timestamp,
            "slot_seconds": self.slot_seconds,
            "gate_closure": self.gate_closure,
            "commit_window": self.commit_window,
            "finality_depth": self.finality_depth,
            "bid_horizon": self.bid_horizon,
            "tolerance_ppm": self.tolerance_ppm,
            "quantum_exp": self.quantum_exp,
            "candidate_cap": self.candidate_cap,
            "grid": {"feed_in": self.feed_in, "retail": self.retail},
            "network_charge": [list(r) for r in self.network_charge],
            "block_reward": self.block_reward,
            "min_fee": self.min_fee,
            "solver_deposit": self.solver_deposit,
            "max_block_txs": self.max_block_txs,
            "max_bids_per_slot": self.max_bids_per_slot,
            "commit_forfeit": self.commit_forfeit,
            "reveal_window": self.reveal_window,
            "withdrawal_delay": self.withdrawal_delay,
            "meter_window": self.meter_window,
            "session_timeout": self.session_timeout,
            "committee_size": self.committee_size,
            "voting_seats": self.voting_seats,
            "max_consensus_txs": self.max_consensus_txs,
            "network_operator": encode_address(self.network_operator) if self.network_operator else None,
            "balances": {encode_address(a): v for a, v in self.balances},
            "solvers": {encode_address(a): v for a, v in self.solvers},
            "vote_keys": {encode_address(a): r.encoded.hex() for a, r in self.vote_keys},
        }


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _int(doc: dict, name: str, lo: int, hi: int) -> int:
    if name not in doc:
        raise GenesisError(f"genesis.{name}: missing field")
    return require_int(doc[name], f"genesis.{name}", lo, hi, GenesisError)


def _address(text: Any, where: str) -> bytes:
    try:
        return decode_address(text)
    except AddressError as e:
        raise GenesisError(f"{where}: {e}") from None


def _allocations(doc: Any, where: str, lo: int) -> tuple[tuple[bytes, int], ...]:
    if not isinstance(doc, dict):
        raise GenesisError(f"{where}: expected an object of address -> amount")
    out = {}
    for k, v in doc.items():
        out[_address(k, f"{where}.{k}")] = require_int(v, f"{where}.{k}", lo, MAX_SUPPLY, GenesisError)
    return tuple(sorted(out.items()))


def _vote_keys(doc: Any, chain_id: str, solvers: tuple[tuple[bytes, int], ...]) -> tuple[tuple[bytes, KeyRegistration], ...]:
    """Genesis solvers' vote key registrations (hex of finality.KEY_REGISTRATION), each checked in full."""
    if not isinstance(doc, dict):
        raise GenesisError("genesis.vote_keys: expected an object of solver address -> key registration (hex)")
    out, seen, solver_set = {}, set(), {a for a, _ in solvers}
    for k, v in doc.items():
        addr, where = _address(k, f"genesis.vote_keys.{k}"), f"genesis.vote_keys.{k}"
        try:
            reg = KEY_REGISTRATION.decode(bytes.fromhex(v) if isinstance(v, str) else b"")
            check_registration(reg, chain_id=chain_id)
        except (ValueError, DecodeError, FinalityError) as e:
            raise GenesisError(f"{where}: not a valid key registration: {e}") from None
        if reg.solver != addr or addr not in solver_set:
            raise GenesisError(f"{where}: the registration is for another address, or it is not a genesis solver")
        if reg.bls_key in seen:
            raise GenesisError(f"{where}: a BLS key registered twice")
        seen.add(reg.bls_key)
        out[addr] = reg
    return tuple(sorted(out.items()))


def genesis_from_json(doc: Any) -> Genesis:
    """Parse and check a genesis document, or raise `GenesisError` naming the field."""
    if not isinstance(doc, dict):
        raise GenesisError("genesis: expected an object")
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise GenesisError(f"genesis.{unknown[0]}: unknown field")
    cid = doc.get("chain_id")
    if not isinstance(cid, str) or not 0 < len(cid) <= 32 or not all("!" <= c <= "~" for c in cid):
        raise GenesisError("genesis.chain_id: expected 1..32 printable ASCII characters, no spaces")
    grid = doc.get("grid")
    if not isinstance(grid, dict) or set(grid) != {"feed_in", "retail"}:
        raise GenesisError("genesis.grid: expected {feed_in, retail}")
    feed_in = _int(grid, "feed_in", 0, 10**9)
    retail = _int(grid, "retail", feed_in, 10**9)
    charge = doc.get("network_charge", [[0]])
    if not isinstance(charge, list) or not 0 < len(charge) <= 64 or not all(
        isinstance(r, list) and len(r) == len(charge) for r in charge
    ):
        raise GenesisError("genesis.network_charge: expected a square matrix of 1..64 zones")
    rows = tuple(
        tuple(require_int(v, f"genesis.network_charge[{i}][{j}]", 0, 10**9, GenesisError) for j, v in enumerate(r))
        for i, r in enumerate(charge)
    )
    L = _int(doc, "gate_closure", 3, 10_000)
    C = _int(doc, "commit_window", 2, 10_000)
    if C >= L:
        raise GenesisError("genesis.commit_window: must be below gate_closure (the brief: L > C)")
    op = doc.get("network_operator")
    solvers = _allocations(doc.get("solvers", {}), "genesis.solvers", 1)
    finality = _int(doc, "finality_depth", 1, 10_000)
    deposit = _int(doc, "solver_deposit", 1, 10**15)
    committee = require_int(doc.get("committee_size", DEFAULT_COMMITTEE), "genesis.committee_size", 1, 10_000,
                            GenesisError)
    reveal = require_int(doc.get("reveal_window", finality), "genesis.reveal_window", C + 1, 10_000, GenesisError)
    g = Genesis(
        chain_id=cid,
        timestamp=_int(doc, "timestamp", 0, 2**40),
        slot_seconds=_int(doc, "slot_seconds", 1, 86_400),
        gate_closure=L,
        commit_window=C,
        finality_depth=finality,
        bid_horizon=_int(doc, "bid_horizon", L, 100_000),
        tolerance_ppm=_int(doc, "tolerance_ppm", 1, 10**6),
        quantum_exp=_int(doc, "quantum_exp", 0, 12),
        candidate_cap=_int(doc, "candidate_cap", 1, 1024),
        feed_in=feed_in,
        retail=retail,
        network_charge=rows,
        block_reward=_int(doc, "block_reward", 0, 10**15),
        min_fee=_int(doc, "min_fee", 0, 10**12),
        solver_deposit=deposit,
        max_block_txs=_int(doc, "max_block_txs", 1, 100_000),
        max_bids_per_slot=require_int(doc.get("max_bids_per_slot", DEFAULT_MAX_BIDS), "genesis.max_bids_per_slot", 1,
                                      MAX_PER_SIDE, GenesisError),
        commit_forfeit=require_int(doc.get("commit_forfeit", deposit // 100), "genesis.commit_forfeit", 0, deposit,
                                   GenesisError),
        reveal_window=reveal,
        # Past every forfeit the solver's last commits can still owe (a commit C blocks ahead, forfeited
        # reveal_window + 1 blocks after its height): an exit never outruns a forfeit.
        withdrawal_delay=require_int(doc.get("withdrawal_delay", max(finality, C + reveal + 1)),
                                     "genesis.withdrawal_delay", max(finality, C + reveal + 1), 10**6, GenesisError),
        meter_window=require_int(doc.get("meter_window", DEFAULT_METER_WINDOW), "genesis.meter_window", 1, 10_000,
                                 GenesisError),
        session_timeout=require_int(doc.get("session_timeout", DEFAULT_SESSION_TIMEOUT), "genesis.session_timeout", 1,
                                    10**6, GenesisError),
        committee_size=committee,
        voting_seats=require_int(doc.get("voting_seats", DEFAULT_VOTING_SEATS), "genesis.voting_seats", 4,
                                 MAX_VOTERS, GenesisError),
        max_consensus_txs=require_int(doc.get("max_consensus_txs", 4 * committee + 16), "genesis.max_consensus_txs",
                                      4, 100_000, GenesisError),
        network_operator=None if op is None else _address(op, "genesis.network_operator"),
        balances=_allocations(doc.get("balances", {}), "genesis.balances", 1),
        solvers=solvers,
        vote_keys=_vote_keys(doc.get("vote_keys", {}), cid, solvers),
    )
    total = sum(v for _, v in g.balances) + sum(v for _, v in g.solvers)
    if total > MAX_SUPPLY // 2:
        raise GenesisError(f"genesis.balances: the supply {total} leaves too little room for rewards")
    h = digest(canonical_json(g.to_json()), b"transx-genesis")
    object.__setattr__(g, "hash", h)
    return g


def load_genesis(path: str) -> Genesis:
    return genesis_from_json(read_json(path, GenesisError))


OUTAGE_SECONDS = 600  # a solver down this long (a reboot, an update) still reveals its commits when back


def outage_reveal_window(slot_seconds: int, finality_depth: int) -> int:
    """A reveal window (in blocks) that outlasts an `OUTAGE_SECONDS` outage: an honest solver that
    restarts within it reveals its pending commits (the engine does so at each head) and forfeits
    nothing.  At hour-long slots `finality_depth` already covers a day."""
    return min(10_000, max(finality_depth, -(-OUTAGE_SECONDS // slot_seconds) + 2))


def dev_genesis(
    funded: list[bytes], solvers: list[bytes], *, slot_seconds: int = 5, chain_id: str = "transx-dev",
    start: int | None = None, outage_proof: bool = False,
) -> dict[str, Any]:
    """A development network: starts now, short slots, the given addresses funded and solving.
    `outage_proof`: a reveal window that outlasts a restart (`outage_reveal_window`), as people's
    devnets need; the tests' short chains keep the default (finality_depth), to reach its end fast."""
    doc = {
        "chain_id": chain_id,
        "timestamp": int(time.time()) if start is None else start,
        "slot_seconds": slot_seconds,
        "gate_closure": 3,
        "commit_window": 2,
        "finality_depth": 12,
        "bid_horizon": 1000,
        "tolerance_ppm": 1000,
        "quantum_exp": 6,
        "candidate_cap": 16,
        "grid": {"feed_in": 170000, "retail": 570000},
        "network_charge": [[10000, 30000, 30000], [30000, 10000, 30000], [30000, 30000, 10000]],
        "block_reward": 1_000_000,
        "min_fee": 1_000,
        "solver_deposit": 100_000_000,
        "max_block_txs": 5_000,
        "max_bids_per_slot": DEFAULT_MAX_BIDS,
        "network_operator": None,
        "balances": {encode_address(a): 1_000_000_000_000 for a in funded},
        "solvers": {encode_address(a): 100_000_000 for a in solvers},
    }
    if outage_proof:
        doc["reveal_window"] = outage_reveal_window(slot_seconds, doc["finality_depth"])
    return doc
