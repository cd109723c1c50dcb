"""EV charging: the owner's signed authorisation, and the station's signed receipt.

An EV owner signs an `Authorisation` ahead of time (kept on an NFC card or phone): up to `max_wh`
at up to `max_price` micro-units per kWh, until `expiry`, usable once (`nonce`).  A station that is
shown it opens a charging session on chain (`SessionOpen`, which carries the authorisation: the
chain checks the owner's signature, the expiry, that the nonce is unused, and locks the cost of
`max_wh` at the station's price from the owner's balance).  `SessionClose` pays for what was
delivered and returns the rest.  The station hands the owner a `Receipt` it signed.

Encodings are canonical (codec.py); signatures are Ed25519 over a domain-separated encoding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from solver.instance import MAX_PRICE

from . import keys
from .codec import HASH, PUBKEY, SIGNATURE, U32, U64, DecodeError, Record, Text, UInt, digest

MAX_SESSION_WH = 1_000_000  # 1 MWh: no EV battery comes near it


class AuthError(ValueError):
    """An authorisation or receipt that is malformed or badly signed; the message says why."""


@dataclass(frozen=True)
class Authorisation:
    chain_id: str
    owner: bytes  # the owner's Ed25519 public key: pays, and signs this
    ev_id: str
    max_wh: int
    max_price: int  # micro-units per kWh
    expiry: int  # unix time in milliseconds
    nonce: int
    signature: bytes = bytes(64)

    @cached_property
    def encoded(self) -> bytes:
        return AUTHORISATION.encode(self)

    @property
    def signing_bytes(self) -> bytes:
        return b"transx-auth-v1" + self.encoded[:-64]

    @property
    def owner_address(self) -> bytes:
        return keys.address_of(self.owner)

    @property
    def session_id(self) -> bytes:
        """One session per authorisation: the chain refuses a second with the same owner and nonce."""
        return session_id(self.owner, self.nonce)

    def signature_ok(self) -> bool:
        return keys.verify_signature(self.owner, self.signing_bytes, self.signature)


@dataclass(frozen=True)
class Receipt:
    chain_id: str
    station: bytes  # the station's public key
    session: bytes
    delivered_wh: int
    amount: int  # micro-units the owner paid
    soc_start: int  # state of charge, percent
    soc_end: int
    closed_at: int  # unix ms
    signature: bytes = bytes(64)

    @cached_property
    def encoded(self) -> bytes:
        return RECEIPT.encode(self)

    @property
    def signing_bytes(self) -> bytes:
        return b"transx-receipt-v1" + self.encoded[:-64]

    def signature_ok(self) -> bool:
        return keys.verify_signature(self.station, self.signing_bytes, self.signature)


AUTHORISATION = Record(Authorisation, {
    "chain_id": Text(32, min_len=1), "owner": PUBKEY, "ev_id": Text(32, min_len=1), "max_wh": UInt(MAX_SESSION_WH, lo=1),
    "max_price": UInt(MAX_PRICE, lo=1), "expiry": U64, "nonce": U64, "signature": SIGNATURE})
RECEIPT = Record(Receipt, {
    "chain_id": Text(32, min_len=1), "station": PUBKEY, "session": HASH, "delivered_wh": U32, "amount": U64,
    "soc_start": UInt(100), "soc_end": UInt(100), "closed_at": U64, "signature": SIGNATURE})


def session_id(owner: bytes, nonce: int) -> bytes:
    return digest(owner + nonce.to_bytes(8, "big"), b"transx-session")


def session_cost(wh: int, price: int) -> int:
    """Micro-units for `wh` at `price` per kWh, rounded down (the escrow rounds up)."""
    return wh * price // 1000


def authorise(key, *, chain_id: str, ev_id: str, max_wh: int, max_price: int, expiry: int, nonce: int) -> Authorisation:
    unsigned = Authorisation(chain_id, keys.public_key(key), ev_id, max_wh, max_price, expiry, nonce)
    return replace(unsigned, signature=keys.sign(key, unsigned.signing_bytes))


def sign_receipt(key, receipt: Receipt) -> Receipt:
    unsigned = replace(receipt, station=keys.public_key(key), signature=bytes(64))
    return replace(unsigned, signature=keys.sign(key, unsigned.signing_bytes))


def decode_authorisation(raw: bytes) -> Authorisation:
    """Parse and check the signature of an authorisation, or `AuthError`."""
    try:
        auth = AUTHORISATION.decode(bytes(raw))
    except DecodeError as e:
        raise AuthError(f"malformed authorisation: {e}") from None
    if not auth.signature_ok():
        raise AuthError("the authorisation's signature does not match its owner")
    return auth


def decode_receipt(raw: bytes) -> Receipt:
    try:
        receipt = RECEIPT.decode(bytes(raw))
    except DecodeError as e:
        raise AuthError(f"malformed receipt: {e}") from None
    if not receipt.signature_ok():
        raise AuthError("the receipt's signature does not match its station")
    return receipt
