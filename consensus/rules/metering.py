"""Meter readings: what a home's meter signs, and how the chain checks it.

A meter holds an Ed25519 key of its own, registered on chain to one account (`RegisterMeter`).
After a slot is delivered it signs the Wh imported or exported in that slot; the account's node
sends the reading (`MeterReading`) and pays its fee.  The signature covers the chain id and the
account, so a reading cannot be replayed on another network or for another account.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import keys
from .codec import ADDRESS, U32, U64, Record, Text
from .transactions import MeterReading

DOMAIN = b"transx-meter-v1"


@dataclass(frozen=True)
class _Signed:
    chain_id: str
    account: bytes
    slot: int
    imported_wh: int
    exported_wh: int


_SIGNED = Record(_Signed, {"chain_id": Text(32, min_len=1), "account": ADDRESS, "slot": U64, "imported_wh": U32,
                           "exported_wh": U32})


def signing_bytes(chain_id: str, account: bytes, reading: MeterReading) -> bytes:
    return DOMAIN + _SIGNED.encode(_Signed(chain_id, account, reading.slot, reading.imported_wh, reading.exported_wh))


def sign_reading(meter_key, *, chain_id: str, account: bytes, slot: int, imported_wh: int = 0,
                 exported_wh: int = 0) -> MeterReading:
    """A reading for `account`'s slot, signed by its meter's key."""
    unsigned = MeterReading(slot, imported_wh, exported_wh)
    return replace(unsigned, meter_sig=keys.sign(meter_key, signing_bytes(chain_id, account, unsigned)))


def reading_ok(reading: MeterReading, *, chain_id: str, account: bytes, meter: bytes) -> bool:
    """Whether `meter` (a public key) signed this reading for `account` on `chain_id`."""
    return keys.verify_signature(meter, signing_bytes(chain_id, account, reading), reading.meter_sig)


__all__ = ["reading_ok", "sign_reading", "signing_bytes"]
