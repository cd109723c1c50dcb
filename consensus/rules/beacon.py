"""The lottery: tickets from a verifiable random function, on a beacon chained block by block.

A solver's ticket for a height is its BLS signature over (the beacon, the height), and the
ticket's value is the hash of that signature; lower values win.  A BLS signature is unique (one
per key and message, bls.py) and verifiable against the key the solver registered, so the value
is a VRF output: the solver cannot choose among several, nobody can predict it before the solver
reveals it, and everybody can check it.

The beacon is chained: next = hash(previous beacon, the proof of the ticket that won the block).
No proposer can steer it by choosing bids, timestamps or the order of transactions, because none
of those enter it; its one lever is to withhold its block (then the next-best ticket's proof goes
in instead), which costs it that block.  Which beacon a height's tickets use (how many heights
back, so that a ticket is known in time but not too early) is the engine's choice, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

from . import bls
from .codec import HASH, U64, FixedBytes, Record, digest

DOMAIN_TICKET = b"transx-ticket-v1"
BEACON_BYTES = 32


@dataclass(frozen=True)
class Ticket:
    proof: bytes  # the 96-byte BLS signature over ticket_message(beacon, height)

    @cached_property
    def value(self) -> bytes:
        """The ticket's 32-byte value: lower wins."""
        return ticket_value(self.proof)


@dataclass(frozen=True)
class _Subject:
    beacon: bytes
    height: int


_SUBJECT = Record(_Subject, {"beacon": HASH, "height": U64})
TICKET = Record(Ticket, {"proof": FixedBytes(bls.SIGNATURE_BYTES)})


def ticket_message(beacon: bytes, height: int) -> bytes:
    return DOMAIN_TICKET + _SUBJECT.encode(_Subject(beacon, height))


def ticket_value(proof: bytes) -> bytes:
    return digest(proof, b"transx-ticket")


def ticket(sk: bytes, beacon: bytes, height: int) -> Ticket:
    """The ticket of BLS secret key `sk` for `height` on `beacon`: the same every time."""
    return Ticket(bls.sign(sk, ticket_message(beacon, height)))


def verify_ticket(public_key: bytes, beacon: bytes, height: int, t: Ticket) -> bool:
    """Whether `t` is `public_key`'s ticket for `height` on `beacon`; never raises."""
    try:
        msg = ticket_message(beacon, height)
    except ValueError:
        return False
    return type(t) is Ticket and _verified(public_key, msg, t.proof)


@lru_cache(maxsize=2048)
def _verified(pk: bytes, msg: bytes, proof: bytes) -> bool:
    """One check per ticket in a process: every proposal is ranked by every node.  A ticket matters
    while its height is open (a committee's few members a height, their proposals relayed a few
    times), so 2,048 covers many heights; the bound keeps a years-long node flat (issue 20)."""
    return bls.verify(pk, msg, proof)


def next_beacon(prev_beacon: bytes, proof: bytes) -> bytes:
    """The beacon after a block won with the ticket whose proof is `proof`."""
    if len(prev_beacon) != BEACON_BYTES or len(proof) != bls.SIGNATURE_BYTES:
        raise ValueError("a beacon is 32 bytes and a ticket's proof 96")
    return digest(prev_beacon + proof, b"transx-beacon")


def genesis_beacon(genesis_hash: bytes) -> bytes:
    """The first beacon, from the genesis: one chain's beacons are not another's."""
    if len(genesis_hash) != 32:
        raise ValueError("a genesis hash is 32 bytes")
    return digest(genesis_hash, b"transx-beacon0")


__all__ = ["TICKET", "Ticket", "genesis_beacon", "next_beacon", "ticket", "ticket_message", "ticket_value",
           "verify_ticket"]
