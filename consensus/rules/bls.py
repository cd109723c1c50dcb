"""BLS12-381 signatures with one ciphersuite fixed: what finality votes and lottery tickets are signed with.

The ciphersuite is the IETF one with proof of possession, minimal-pubkey-size variant,
BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_ (draft-irtf-cfrg-bls-signature-05; the one
Ethereum's consensus layer uses): secret keys are 32-byte big-endian scalars, public keys
48-byte compressed G1 points, signatures 96-byte compressed G2 points.  Proofs of possession
sign the public key under their own tag, BLS_POP_..., so a solver that registers a key proves
it holds its secret, which is what makes FastAggregateVerify (n signatures on one message
checked as one) safe against rogue keys.

Signatures are deterministic and unique: a key has one signature per message, which is what
makes a signature usable as a verifiable random function (beacon.py).

The binding is py-arkworks-bls12381 (arkworks, maintained by the Ethereum Foundation, wheels for
CPython 3.11-3.15 on x86_64, aarch64 and armv7l).  It gives curve arithmetic, RFC 9380
hash-to-curve and pairings, so the ciphersuite's few lines are here: sign is sk * H(m), verify
is one multi-pairing check e(pk, H(m)) * e(-g1, sig) == 1.  bench/bls.py checks that these
bytes equal milagro's and blspy's, and the tests pin consensus-spec vectors.  Parsing is
strict: points must be on the curve, in the prime-order subgroup, and in their one canonical
encoding (arkworks alone accepts several encodings of the point at infinity); public keys must
not be the identity (KeyValidate).  Parsed keys and signatures are cached by their bytes, so a
voter set's keys are parsed once.

Not constant-time: a node's secret key should not share a machine with an untrusted process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from functools import lru_cache

from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar

SECRET_KEY_BYTES = 32
PUBLIC_KEY_BYTES = 48
SIGNATURE_BYTES = 96
DST_SIG = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
DST_POP = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001  # of G1 and G2

_G1 = G1Point()
_NEG_G1 = -_G1
_G1_ZERO = G1Point.identity()
_G2_ZERO = G2Point.identity()


class BLSError(ValueError):
    """Bytes that are not a valid key or signature, or an operation with nothing to work on."""


def keygen(ikm: bytes, key_info: bytes = b"") -> bytes:
    """KeyGen (draft-05, section 2.3): a secret key from at least 32 bytes of key material, deterministically."""
    if not isinstance(ikm, bytes) or len(ikm) < 32:
        raise BLSError("KeyGen needs at least 32 bytes of key material")
    salt = b"BLS-SIG-KEYGEN-SALT-"
    info = key_info + (48).to_bytes(2, "big")
    while True:
        salt = hashlib.sha256(salt).digest()
        prk = hmac.new(salt, ikm + b"\x00", hashlib.sha256).digest()  # HKDF-Extract(salt, IKM || I2OSP(0, 1))
        t1 = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # HKDF-Expand(PRK, info, 48)
        t2 = hmac.new(prk, t1 + info + b"\x02", hashlib.sha256).digest()
        sk = int.from_bytes((t1 + t2)[:48], "big") % ORDER
        if sk:
            return sk.to_bytes(SECRET_KEY_BYTES, "big")


def generate() -> bytes:
    """A fresh secret key from the operating system's randomness."""
    return keygen(secrets.token_bytes(32))


def _scalar(sk: bytes) -> Scalar:
    if not isinstance(sk, bytes) or len(sk) != SECRET_KEY_BYTES:
        raise BLSError("a secret key is 32 bytes")
    n = int.from_bytes(sk, "big")
    if not 0 < n < ORDER:
        raise BLSError("a secret key is an integer in [1, r - 1]")
    return Scalar(n)


def _public_key(pk: bytes) -> G1Point:
    if type(pk) is not bytes or len(pk) != PUBLIC_KEY_BYTES:
        raise BLSError("a public key is 48 bytes")
    return _parse_public_key(pk)


@lru_cache(maxsize=4096)
def _parse_public_key(pk: bytes) -> G1Point:
    try:
        point = G1Point.from_compressed_bytes(pk)  # on the curve and in the subgroup
    except ValueError:
        raise BLSError("not a compressed G1 point in the subgroup") from None
    if point == _G1_ZERO:
        raise BLSError("the identity is not a public key")
    if point.to_compressed_bytes() != pk:
        raise BLSError("non-canonical public key encoding")
    return point


def _signature(sig: bytes) -> G2Point:
    if type(sig) is not bytes or len(sig) != SIGNATURE_BYTES:
        raise BLSError("a signature is 96 bytes")
    return _parse_signature(sig)


@lru_cache(maxsize=2048)  # signatures are parsed for the votes and tickets of the open heights only
def _parse_signature(sig: bytes) -> G2Point:
    try:
        point = G2Point.from_compressed_bytes(sig)
    except ValueError:
        raise BLSError("not a compressed G2 point in the subgroup") from None
    if point.to_compressed_bytes() != sig:
        raise BLSError("non-canonical signature encoding")
    return point


def key_valid(pk: bytes) -> bool:
    """KeyValidate: a canonical, non-identity point of the G1 subgroup."""
    try:
        _public_key(pk)
        return True
    except BLSError:
        return False


def public_key(sk: bytes) -> bytes:
    """SkToPk."""
    return (_G1 * _scalar(sk)).to_compressed_bytes()


def _sign(sk: bytes, message: bytes, dst: bytes) -> bytes:
    if not isinstance(message, bytes):
        raise BLSError("a message is bytes")
    return (G2Point.hash_to_curve(message, dst) * _scalar(sk)).to_compressed_bytes()


def _check(pk_point: G1Point, message: bytes, sig: bytes, dst: bytes) -> bool:
    return GT.pairing_check([pk_point, _NEG_G1], [G2Point.hash_to_curve(message, dst), _signature(sig)])


def sign(sk: bytes, message: bytes) -> bytes:
    """Sign: the 96-byte signature, the same every time for one key and message."""
    return _sign(sk, message, DST_SIG)


def verify(pk: bytes, message: bytes, signature: bytes) -> bool:
    """Verify; False for any malformed input, never raises."""
    try:
        return isinstance(message, bytes) and _check(_public_key(pk), message, signature, DST_SIG)
    except BLSError:
        return False


def pop_prove(sk: bytes) -> bytes:
    """PopProve: the proof of possession of `sk`'s public key."""
    return _sign(sk, public_key(sk), DST_POP)


def pop_verify(pk: bytes, proof: bytes) -> bool:
    """PopVerify; False for any malformed input."""
    try:
        return _check(_public_key(pk), pk, proof, DST_POP)
    except BLSError:
        return False


def aggregate(signatures: Sequence[bytes]) -> bytes:
    """Aggregate: one signature standing for all of `signatures` (at least one); BLSError on a malformed one."""
    if not signatures:
        raise BLSError("nothing to aggregate")
    acc = _G2_ZERO
    for s in signatures:
        acc = acc + _signature(s)
    return acc.to_compressed_bytes()


def fast_aggregate_verify(pks: Sequence[bytes], message: bytes, signature: bytes) -> bool:
    """FastAggregateVerify: every key in `pks` signed `message`; keys must have passed PopVerify."""
    if not pks or not isinstance(message, bytes):
        return False
    try:
        acc = _G1_ZERO
        for pk in pks:
            acc = acc + _public_key(pk)
        return _check(acc, message, signature, DST_SIG)
    except BLSError:
        return False


def aggregate_verify(pks: Sequence[bytes], messages: Sequence[bytes], signature: bytes) -> bool:
    """AggregateVerify (the PoP scheme's: messages need not differ): key i signed message i."""
    if not pks or len(pks) != len(messages) or not all(isinstance(m, bytes) for m in messages):
        return False
    try:
        g1s = [_public_key(pk) for pk in pks] + [_NEG_G1]
        g2s = [G2Point.hash_to_curve(m, DST_SIG) for m in messages] + [_signature(signature)]
    except BLSError:
        return False
    return GT.pairing_check(g1s, g2s)


__all__ = [
    "BLSError", "DST_POP", "DST_SIG", "PUBLIC_KEY_BYTES", "SECRET_KEY_BYTES", "SIGNATURE_BYTES", "aggregate",
    "aggregate_verify", "fast_aggregate_verify", "generate", "key_valid", "keygen", "pop_prove", "pop_verify",
    "public_key", "sign", "verify",
]
