"""Ed25519 keys and addresses.

An address is the 20-byte BLAKE2b digest of an Ed25519 public key, shown to
people as Bech32 (BIP-173) with the prefix ``trx``: a typo is caught by the
checksum instead of sending money nowhere.
"""

from __future__ import annotations

import hashlib

import bech32
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

ADDRESS_HRP = "trx"
ADDRESS_BYTES = 20
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class AddressError(ValueError):
    """A string is not a TransX address."""


def address_of(public_key: bytes) -> bytes:
    """The 20-byte address of a 32-byte Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return hashlib.blake2b(public_key, digest_size=ADDRESS_BYTES, person=b"transx-address").digest()


def encode_address(raw: bytes) -> str:
    """The Bech32 form of a 20-byte address."""
    if len(raw) != ADDRESS_BYTES:
        raise ValueError("an address is 20 bytes")
    return bech32.bech32_encode(ADDRESS_HRP, bech32.convertbits(raw, 8, 5))


def decode_address(text: str) -> bytes:
    """The 20 bytes of a Bech32 address, or `AddressError` saying what is wrong."""
    if not isinstance(text, str) or not text.lower().startswith(ADDRESS_HRP + "1"):
        raise AddressError(f"not a TransX address (they start with {ADDRESS_HRP}1): {str(text)[:80]!r}")
    hrp, data = bech32.bech32_decode(text)
    if hrp is None or data is None:
        raise AddressError(f"bad address checksum or characters: {text[:80]!r}")
    raw = bech32.convertbits(data, 5, 8, False)
    if hrp != ADDRESS_HRP or raw is None or len(raw) != ADDRESS_BYTES:
        raise AddressError(f"not a TransX address: {text[:80]!r}")
    return bytes(raw)


def generate() -> SigningKey:
    return SigningKey.generate()


def public_key(key: SigningKey) -> bytes:
    return bytes(key.verify_key)


def address_of_key(key: SigningKey) -> bytes:
    return address_of(public_key(key))


def sign(key: SigningKey, message: bytes) -> bytes:
    """A detached 64-byte Ed25519 signature."""
    return key.sign(message).signature


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is `public_key`'s signature of `message`; never raises."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        VerifyKey(public_key).verify(message, signature)
        return True
    except (BadSignatureError, ValueError, TypeError):
        return False


def vote_secret(key: SigningKey) -> bytes:
    """The BLS secret key a node votes and draws lottery tickets with, derived from its node key (HKDF,
    bls.keygen): one secret to keep, and a restart votes with the same key."""
    from . import bls  # BLS is needed only by solvers that vote; keep it off the import path of keys
    return bls.keygen(bytes(key), b"transx-vote-key")
