"""Signed transactions: what a user asks the chain to do.

A transaction is a body (transfer, bid, cancel, solver registration,
solution commit, meter registration and reading, charging session, finality
key and vote evidence) plus the envelope every kind shares:
chain id, signer's public key, nonce, fee, Ed25519 signature over the
canonical encoding.  `check_stateless` decides what needs no chain state
(signature, sizes, ranges); the ledger decides the rest.

An account has two nonce sequences (`Tx.space`): what a solver's node signs
itself for the consensus rounds (commit, reveal, evidence, its finality key,
vote evidence) counts the consensus nonce, everything else (what a wallet signs) the wallet nonce.
So a node's own solver never takes, fills or blocks a nonce that a wallet
using the same key signs at.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from solver.instance import ENERGY_KINDS, MAX_KIND, MAX_PREFER, MAX_PRICE, MAX_WH

from . import keys
from .finality import KEY_REGISTRATION, FinalityError, KeyRegistration, check_registration
from .charging import AUTHORISATION, MAX_SESSION_WH, Authorisation
from .codec import ADDRESS, HASH, PUBKEY, SIGNATURE, U8, U32, U64, DecodeError, FixedBytes, ListOf, Record, Tagged, Text, UInt, VarBytes, digest
from .units import tokens

BUY, SELL = 0, 1
SIDES = {"buy": BUY, "sell": SELL}
SIDE_NAMES = {BUY: "buy", SELL: "sell"}
MAX_TX_BYTES = 1024
MAX_AMOUNT = 2**62


class TxError(ValueError):
    """A transaction is invalid; the message says why, for the user who sent it, and `reason` says it
    for programs (the API passes it on): "nonce" (used, pending or too far ahead: sign again at the
    next one), "gate_closed" (the bid's slot no longer takes bids), "ended" (the bid or session it acts
    on is already closed, cancelled, cleared or expired), or "invalid" (anything else).  The message
    says amounts as people read them (tokens, kWh: units.py); `fields` gives programs the integers
    (micro-units, Wh) where a refusal is about an amount, such as an insufficient balance."""

    def __init__(self, message: str, reason: str = "invalid", **fields: int) -> None:
        super().__init__(message)
        self.reason, self.fields = reason, fields


class InvalidTx(TxError):
    """Invalid whatever the chain's state: malformed, badly signed, for another chain.  A peer that
    relays one is at fault; a stateful refusal (a used nonce, say) may just be a race."""


@dataclass(frozen=True)
class Transfer:
    to: bytes
    amount: int


@dataclass(frozen=True)
class Preferences:
    """What a bid would rather trade with (issue 19, item 4).  `prefer`: up to MAX_PREFER account addresses
    whose bids on the other side it prefers, strictly increasing, not the sender's own.  `kind`: a sell
    bid's kind of energy, a buy bid's only kind it takes; 1 + an index of ENERGY_KINDS, 0 for none
    stated (sell) or any (buy).  The candidate rule reads them (solver/pairs.py)."""

    prefer: tuple[bytes, ...] = ()
    kind: int = 0

    def kind_name(self) -> str | None:
        return ENERGY_KINDS[self.kind - 1] if self.kind else None

    def to_json(self, side: int) -> dict:
        """As the API and the quote show them: "prefer" (addresses), and "energy_kind" (a sell bid's kind of
        energy) or "only" (the only kind a buy bid takes), a name or None.  ("kind" is a transaction's.)"""
        return {"prefer": [keys.encode_address(a) for a in self.prefer],
                ("only" if side == BUY else "energy_kind"): self.kind_name()}


NO_PREFERENCES = Preferences()
PREFERENCES = Record(Preferences, {"prefer": ListOf(ADDRESS, MAX_PREFER, key=lambda a: a), "kind": UInt(MAX_KIND)})


def energy_kind(name: str) -> int:
    """The code of an energy kind's name ('solar' -> 1), or ValueError naming the kinds there are."""
    if name not in ENERGY_KINDS:
        raise ValueError(f"unknown energy kind {name!r} (one of {', '.join(ENERGY_KINDS)})")
    return ENERGY_KINDS.index(name) + 1


@dataclass(frozen=True)
class Bid:
    """Offer to sell (or wish to buy) `wh` in `slot` at a limit of `price` micro-units per kWh; optionally
    with preferences (a bid without them is encoded as before they existed: tag 2; with them: tag 15)."""

    side: int
    slot: int
    wh: int
    price: int
    zone: int
    expiry: int  # last block height that may include it
    preferences: Preferences = NO_PREFERENCES


@dataclass(frozen=True)
class CancelBid:
    bid: bytes  # the bid transaction's hash


@dataclass(frozen=True)
class RegisterSolver:
    deposit: int


@dataclass(frozen=True)
class Commit:
    """A solver's commitment to its solution for block `height` (the reveal comes later), with its lottery
    ticket for that height: once committees apply, only a member of the height's committee commits
    (committee.py).  Zeros: no ticket (before committees apply)."""

    height: int
    commitment: bytes
    ticket: bytes = bytes(96)


@dataclass(frozen=True)
class Reveal:
    """A losing solver shows what it committed to for block `height`, so it keeps its deposit."""

    height: int
    clearing_hash: bytes
    salt: bytes


@dataclass(frozen=True)
class WithdrawSolver:
    """Leave the solver set: the deposit comes back `withdrawal_delay` blocks later (it can still be slashed)."""


@dataclass(frozen=True)
class Evidence:
    """Two different headers one solver signed for one height on one parent: it equivocated."""

    first: bytes  # encoded headers
    second: bytes


@dataclass(frozen=True)
class VoteKey:
    """A solver registers (or replaces) the BLS key it signs finality votes with: the registration
    proves the key's possession and binds it to this chain and the sender's address (finality.py)."""

    registration: KeyRegistration


@dataclass(frozen=True)
class VoteEvidence:
    """Two finality votes one key signed that break a voting rule (a double or a surround vote): its
    solver is slashed (finality.check_offence)."""

    first: bytes  # encoded votes
    second: bytes


@dataclass(frozen=True)
class MeterReading:
    """What the sender's registered meter measured in a delivered slot, signed by the meter
    (metering.py); the chain settles the slot's trades against it (settlement.py)."""

    slot: int
    imported_wh: int
    exported_wh: int
    meter_sig: bytes = bytes(64)


@dataclass(frozen=True)
class RegisterMeter:
    """Bind a meter's Ed25519 public key to the sending account, replacing any earlier one."""

    meter: bytes


@dataclass(frozen=True)
class SessionOpen:
    """A station starts charging an EV: the owner's authorisation, the station's price (at most the
    authorisation's), the EV's state of charge (percent)."""

    auth: Authorisation
    price: int
    soc_start: int


@dataclass(frozen=True)
class SessionClose:
    """The station that opened `session` reports what it delivered; the owner pays for that."""

    session: bytes
    delivered_wh: int
    soc_end: int


_AMOUNT = UInt(MAX_AMOUNT)
_BID = {"side": UInt(1), "slot": U64, "wh": UInt(MAX_WH, lo=1), "price": UInt(MAX_PRICE), "zone": U8, "expiry": U64}
BODY = Tagged({
    1: Record(Transfer, {"to": ADDRESS, "amount": UInt(MAX_AMOUNT, lo=1)}),
    2: Record(Bid, _BID, absent=["preferences"]),  # a bid without preferences: the one encoding it ever had
    3: Record(CancelBid, {"bid": HASH}),
    4: Record(RegisterSolver, {"deposit": UInt(MAX_AMOUNT, lo=1)}),
    5: Record(Commit, {"height": U64, "commitment": HASH, "ticket": FixedBytes(96)}),
    6: Record(MeterReading, {"slot": U64, "imported_wh": U32, "exported_wh": U32, "meter_sig": SIGNATURE}),
    7: Record(Reveal, {"height": U64, "clearing_hash": HASH, "salt": HASH}),
    8: Record(WithdrawSolver, {}),
    9: Record(Evidence, {"first": VarBytes(400), "second": VarBytes(400)}),
    10: Record(SessionOpen, {"auth": AUTHORISATION, "price": UInt(MAX_PRICE, lo=1), "soc_start": UInt(100)}),
    11: Record(SessionClose, {"session": HASH, "delivered_wh": UInt(MAX_SESSION_WH), "soc_end": UInt(100)}),
    12: Record(RegisterMeter, {"meter": PUBKEY}),
    13: Record(VoteKey, {"registration": KEY_REGISTRATION}),
    14: Record(VoteEvidence, {"first": VarBytes(400), "second": VarBytes(400)}),
    15: Record(Bid, {**_BID, "preferences": PREFERENCES}, present=["preferences"]),  # a bid with preferences
})
KIND_NAMES = {Transfer: "transfer", Bid: "bid", CancelBid: "cancel", RegisterSolver: "register_solver",
              Commit: "commit", MeterReading: "meter", Reveal: "reveal", WithdrawSolver: "withdraw_solver",
              Evidence: "evidence", SessionOpen: "session_open", SessionClose: "session_close",
              RegisterMeter: "register_meter", VoteKey: "vote_key", VoteEvidence: "vote_evidence"}
Body = (Transfer | Bid | CancelBid | RegisterSolver | Commit | MeterReading | Reveal | WithdrawSolver | Evidence
        | SessionOpen | SessionClose | RegisterMeter | VoteKey | VoteEvidence)


WALLET, CONSENSUS = 0, 1  # nonce spaces (Tx.space)
CONSENSUS_BODIES = (Commit, Reveal, Evidence, VoteKey, VoteEvidence)


@dataclass(frozen=True)
class Tx:
    chain_id: str
    signer: bytes  # Ed25519 public key
    nonce: int
    fee: int
    body: Body
    signature: bytes = bytes(64)

    @cached_property
    def encoded(self) -> bytes:
        return TX.encode(self)

    @cached_property
    def hash(self) -> bytes:
        return digest(self.encoded, b"transx-tx")

    @cached_property
    def sender(self) -> bytes:
        """The signer's 20-byte address."""
        return keys.address_of(self.signer)

    @property
    def kind(self) -> str:
        return KIND_NAMES[type(self.body)]

    @property
    def space(self) -> int:
        """The nonce sequence this transaction's nonce counts in: CONSENSUS for commits, reveals,
        evidence, finality keys and vote evidence, WALLET for the rest.  The body's kind decides (it is
        signed), never a separate field."""
        return CONSENSUS if isinstance(self.body, CONSENSUS_BODIES) else WALLET

    @cached_property
    def signing_bytes(self) -> bytes:
        """What the signature covers: the encoding with the signature (the last field, fixed 64 bytes) zeroed."""
        return b"transx-tx-v1" + self.encoded[:-64] + bytes(64)


_ENVELOPE = {"chain_id": Text(32, min_len=1), "signer": PUBKEY, "nonce": U64, "fee": _AMOUNT, "body": BODY}
TX = Record(Tx, {**_ENVELOPE, "signature": SIGNATURE})


def sign_tx(key, *, chain_id: str, nonce: int, fee: int, body: Body) -> Tx:
    unsigned = Tx(chain_id, keys.public_key(key), nonce, fee, body)
    return replace(unsigned, signature=keys.sign(key, unsigned.signing_bytes))


def decode_tx(raw: bytes) -> Tx:
    """Parse a raw transaction, or `TxError` saying what is malformed."""
    if len(raw) > MAX_TX_BYTES:
        raise InvalidTx(f"transaction is {len(raw)} bytes, the limit is {MAX_TX_BYTES}")
    try:
        return TX.decode(raw)
    except DecodeError as e:
        raise InvalidTx(f"malformed transaction: {e}") from None


def check_stateless(tx: Tx, chain_id: str, zones: int, min_fee: int) -> None:
    """Everything about `tx` that needs no chain state; raises `TxError`."""
    if tx.chain_id != chain_id:
        raise InvalidTx(f"wrong chain id {tx.chain_id!r} (this network is {chain_id!r})")
    if len(tx.encoded) > MAX_TX_BYTES:
        raise InvalidTx(f"transaction is {len(tx.encoded)} bytes, the limit is {MAX_TX_BYTES}")
    if tx.fee < min_fee:
        raise InvalidTx(f"fee {tokens(tx.fee)} tokens is below the minimum {tokens(min_fee)} tokens")
    b = tx.body
    if isinstance(b, Bid) and b.zone >= zones:
        raise InvalidTx(f"zone {b.zone} does not exist (this network has {zones})")
    if isinstance(b, Bid) and tx.sender in b.preferences.prefer:
        raise InvalidTx("a bid cannot prefer its own address")
    if isinstance(b, MeterReading) and b.imported_wh and b.exported_wh:
        raise InvalidTx("a meter reading is either an import or an export for one slot")
    if isinstance(b, SessionOpen):
        if b.auth.chain_id != chain_id:
            raise InvalidTx(f"the authorisation is for chain {b.auth.chain_id!r}, not {chain_id!r}")
        if not b.auth.signature_ok():
            raise InvalidTx("the authorisation's signature does not match its owner")
    if tx.hash in _VERIFIED:
        return
    if not keys.verify_signature(tx.signer, tx.signing_bytes, tx.signature):
        raise InvalidTx("bad signature")
    if isinstance(b, VoteKey):  # after the signature: BLS checks cost milliseconds, unsigned junk gets none
        reg = b.registration
        if reg.solver != tx.sender:
            raise InvalidTx("the key registration is for another address than the sender's")
        try:
            check_registration(reg, chain_id=chain_id)
        except FinalityError as e:
            raise InvalidTx(f"key registration: {e}") from None
    while len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.pop(next(iter(_VERIFIED), None), None)  # the oldest first (forgotten meanwhile: nothing)
    _VERIFIED[tx.hash] = None


def forget_verified() -> None:
    """Forget every transaction checked so far (consensus/rules/verified.py)."""
    _VERIFIED.clear()


# Bitcoin Core's signature cache: a transaction's signatures are checked once in a process, when it is
# admitted, not again when a block carries it.  Keyed by the hash of the whole encoding, signature
# included, and filled only after every check above passed (all of them depend on the bytes alone).
# Bounded by `_VERIFIED_MAX` hashes, the oldest dropped first (an insertion-ordered dict): more than a full
# mempool (20,000), so a pending transaction is still remembered when its block comes; about 100 bytes an
# entry, 3 MB full.  (It was a set of 200,000 emptied when full: ~20 MB reached after 200,000 transactions.)
_VERIFIED: dict[bytes, None] = {}
_VERIFIED_MAX = 32_768


def escrow_for(wh: int, price: int) -> int:
    """Micro-units that `wh` cost at `price` per kWh, rounded up (what an escrow must hold for them)."""
    return -(-wh * price // 1000)


def bid_lock(side: int, wh: int, price: int, retail: int) -> int:
    """What an open bid locks from its owner.  A buy bid: its quantity at its limit, or at the retail
    tariff if that is lower (a buyer never pays more than the grid would charge).  A sell bid: its
    delivery collateral, its quantity at retail less its limit: with the revenue (at least the limit)
    that covers the worst charge at settlement, every Wh undelivered and bought from the grid at
    retail, so a seller's shortfall is always paid."""
    return escrow_for(wh, lock_rate(side, price, retail))


def lock_rate(side: int, price: int, retail: int) -> int:
    """Micro-units per kWh an open bid locks (bid_lock)."""
    return min(price, retail) if side == BUY else max(0, retail - price)


__all__ = ["BUY", "SELL", "NO_PREFERENCES", "Bid", "Body", "Preferences", "energy_kind", "CancelBid", "Commit", "MeterReading", "RegisterMeter", "RegisterSolver",
           "SessionClose",
           "SessionOpen", "Transfer", "Tx", "VoteEvidence", "VoteKey", "CONSENSUS", "WALLET",
           "InvalidTx", "TxError", "check_stateless", "decode_tx", "bid_lock", "escrow_for", "lock_rate", "sign_tx"]
