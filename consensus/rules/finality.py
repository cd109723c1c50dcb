"""Finality votes: who votes, what a vote says, the certificate of a >2/3 deposit quorum, and the evidence that slashes.

The voters of a height are the registered solvers, each with the BLS key it registered (with a
proof of possession, `KeyRegistration`) and its deposit, in a canonical order (`VoterSet`: by
address).  A `Vote` says, Tendermint-style: on this chain, at this height and round, I prevote
(or precommit) this block.  Every voter signs the same message for the same block, so the votes
for one block aggregate into one 96-byte BLS signature; a `Certificate` is that signature with a
bitfield saying who signed.  It counts when the signers hold strictly more than 2/3 of the
height's deposit (3 * signed > 2 * total, integers only).  A precommit certificate makes its block
final.

`Tally` is the sans-IO counter a node feeds votes into, one at a time: malformed, foreign,
duplicate and badly signed votes are refused with a reason; a voter's second vote at the same
(kind, height, round) for another block is turned into `DoubleVote` evidence that anyone can check
from the two votes alone; the vote that lifts a block over 2/3 yields its certificate.

Accountable safety: two certificates of one kind for different blocks at one height, checked
against that height's voter set, have signers in common holding more than 1/3 of the deposit
(each side holds > 2/3).  `accountable_safety` names them.  When both certificates are of the
same round every one of those voters signed two votes for one (kind, height, round): that is
slashable from the two certificates alone.  Across rounds it is not, yet: Tendermint lets a voter
precommit again in a later round after a newer prevote quorum; proving such a voter wrong needs
the quorum it claims (the "amnesia" case), which the engine's rules must make part of a vote.

Messages are domain-separated: a vote's signing message starts with b"transx-vote-v1", a key
registration's with b"transx-bls-key-v1", a lottery ticket's (beacon.py) with b"transx-ticket-v1";
none is a prefix of another, and proofs of possession use their own hash-to-curve tag (bls.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from . import bls
from .codec import ADDRESS, HASH, U32, U64, FixedBytes, ListOf, Record, Text, UInt, VarBytes, digest

PREVOTE, PRECOMMIT = 1, 2
KIND_NAMES = {PREVOTE: "prevote", PRECOMMIT: "precommit"}
FINALITY_KIND = PRECOMMIT  # a precommit certificate makes its block final
MAX_VOTERS = 1024
DOMAIN_VOTE = b"transx-vote-v1"
DOMAIN_KEY = b"transx-bls-key-v1"

CHAIN_ID = Text(32, min_len=1)
KIND = UInt(PRECOMMIT, lo=PREVOTE)
BLS_KEY = FixedBytes(bls.PUBLIC_KEY_BYTES)
BLS_SIGNATURE = FixedBytes(bls.SIGNATURE_BYTES)
DEPOSIT = UInt(lo=1)


class FinalityError(ValueError):
    """A certificate, registration or piece of evidence that does not hold; the message says why."""


def quorum(signed: int, total: int) -> bool:
    """Strictly more than 2/3 of `total`, in integers."""
    return 3 * signed > 2 * total


# ------------------------------------------------------------------ registration


@dataclass(frozen=True)
class KeyRegistration:
    """What a solver registers: its BLS key, the key's proof of possession (PopProve), and a signature
    by the key over (chain id, solver address, key), so a key copied from another solver's
    registration cannot be registered to a second account and count twice."""

    chain_id: str
    solver: bytes  # the solver's 20-byte address
    bls_key: bytes
    pop: bytes
    binding: bytes

    @cached_property
    def encoded(self) -> bytes:
        return KEY_REGISTRATION.encode(self)


def binding_message(chain_id: str, solver: bytes, bls_key: bytes) -> bytes:
    return DOMAIN_KEY + _BINDING.encode(_Binding(chain_id, solver, bls_key))


def register_key(sk: bytes, *, chain_id: str, solver: bytes) -> KeyRegistration:
    """The registration of `sk`'s public key to the solver at address `solver`."""
    pk = bls.public_key(sk)
    return KeyRegistration(chain_id, solver, pk, bls.pop_prove(sk), bls.sign(sk, binding_message(chain_id, solver, pk)))


def check_registration(reg: KeyRegistration, *, chain_id: str) -> None:
    """FinalityError unless `reg` is for `chain_id`, its key valid, its proof of possession and binding good."""
    if reg.chain_id != chain_id:
        raise FinalityError(f"a key registration for chain {reg.chain_id!r}, not {chain_id!r}")
    if not bls.key_valid(reg.bls_key):
        raise FinalityError("not a valid BLS public key")
    if not bls.pop_verify(reg.bls_key, reg.pop):
        raise FinalityError("bad proof of possession")
    if not bls.verify(reg.bls_key, binding_message(reg.chain_id, reg.solver, reg.bls_key), reg.binding):
        raise FinalityError("the key's signature over the solver's address does not verify")


# ------------------------------------------------------------------ voter set


@dataclass(frozen=True)
class Voter:
    address: bytes  # the solver's account
    bls_key: bytes  # registered with a proof of possession
    deposit: int


@dataclass(frozen=True)
class VoterSet:
    """A height's voters, by address (strictly increasing), keys distinct, deposits positive."""

    voters: tuple[Voter, ...]

    def __post_init__(self) -> None:
        vs = self.voters
        if not isinstance(vs, tuple) or not 0 < len(vs) <= MAX_VOTERS:
            raise ValueError(f"a voter set is a tuple of 1..{MAX_VOTERS} voters")
        if any(a.address >= b.address for a, b in zip(vs, vs[1:])):
            raise ValueError("voters are not in strictly increasing address order")
        if len({v.bls_key for v in vs}) != len(vs):
            raise ValueError("two voters share a BLS key")

    @classmethod
    def of(cls, voters: Iterable[Voter]) -> VoterSet:
        """The voter set of `voters` in any order."""
        return cls(tuple(sorted(voters, key=lambda v: v.address)))

    @cached_property
    def total(self) -> int:
        return sum(v.deposit for v in self.voters)

    @cached_property
    def index(self) -> dict[bytes, int]:
        """BLS key -> position."""
        return {v.bls_key: i for i, v in enumerate(self.voters)}

    @cached_property
    def hash(self) -> bytes:
        return digest(VOTER_SET.encode(self), b"transx-voters")

    def __len__(self) -> int:
        return len(self.voters)

    def bitfield(self, indices: Iterable[int]) -> bytes:
        """The signer bitfield of `indices`: bit i (byte i // 8, bit i % 8, least significant first)."""
        out = bytearray((len(self.voters) + 7) // 8)
        for i in indices:
            if not 0 <= i < len(self.voters):
                raise ValueError(f"voter index {i} outside the set of {len(self.voters)}")
            out[i >> 3] |= 1 << (i & 7)
        return bytes(out)

    def signers(self, bitfield: bytes) -> tuple[int, ...]:
        """The indices a bitfield names; FinalityError unless it is exactly this set's length, padding bits zero."""
        n = len(self.voters)
        if len(bitfield) != (n + 7) // 8:
            raise FinalityError(f"a signer bitfield over {n} voters is {(n + 7) // 8} bytes, not {len(bitfield)}")
        if n % 8 and bitfield[-1] >> (n % 8):
            raise FinalityError("signer bitfield has bits set beyond the last voter")
        return tuple(i for i in range(n) if bitfield[i >> 3] >> (i & 7) & 1)

    def deposit_of(self, indices: Iterable[int]) -> int:
        return sum(self.voters[i].deposit for i in indices)


# ------------------------------------------------------------------ votes


@dataclass(frozen=True)
class Vote:
    chain_id: str
    kind: int  # PREVOTE or PRECOMMIT
    height: int
    round: int
    block_hash: bytes
    voter: bytes  # the voter's BLS public key
    signature: bytes = bytes(bls.SIGNATURE_BYTES)

    @cached_property
    def encoded(self) -> bytes:
        return VOTE.encode(self)

    @property
    def signing_bytes(self) -> bytes:
        return signing_message(self.chain_id, self.kind, self.height, self.round, self.block_hash)

    @property
    def slot(self) -> tuple[int, int, int]:
        """(kind, height, round): a voter has one vote per slot."""
        return self.kind, self.height, self.round

    def signature_ok(self) -> bool:
        """Whether `voter` signed this vote; False (never an exception) for a malformed one."""
        try:
            msg = self.signing_bytes
        except ValueError:
            return False
        return bls.verify(self.voter, msg, self.signature)

    def describe(self) -> str:
        return (f"{KIND_NAMES.get(self.kind, self.kind)} h{self.height} r{self.round} for {self.block_hash.hex()[:12]}"
                f" by {self.voter.hex()[:12]}")


def signing_message(chain_id: str, kind: int, height: int, round: int, block_hash: bytes) -> bytes:
    """What every voter for this block signs: the same bytes for all, so their signatures aggregate."""
    return DOMAIN_VOTE + _SUBJECT.encode(_Subject(chain_id, kind, height, round, block_hash))


def vote(sk: bytes, *, chain_id: str, kind: int, height: int, block_hash: bytes, round: int = 0) -> Vote:
    """A vote signed with the BLS secret key `sk`."""
    msg = signing_message(chain_id, kind, height, round, block_hash)
    return Vote(chain_id, kind, height, round, block_hash, bls.public_key(sk), bls.sign(sk, msg))


def decode_vote(data: bytes) -> Vote:
    return VOTE.decode(data)


# ------------------------------------------------------------------ certificates


@dataclass(frozen=True)
class Certificate:
    """Votes of one (kind, height, round) for one block: who signed (a bitfield over the height's
    voter set) and their aggregate signature."""

    chain_id: str
    kind: int
    height: int
    round: int
    block_hash: bytes
    signers: bytes
    signature: bytes

    @cached_property
    def encoded(self) -> bytes:
        return CERTIFICATE.encode(self)

    @cached_property
    def hash(self) -> bytes:
        return digest(self.encoded, b"transx-cert")

    @property
    def signing_bytes(self) -> bytes:
        return signing_message(self.chain_id, self.kind, self.height, self.round, self.block_hash)

    @property
    def final(self) -> bool:
        """Whether this kind of certificate makes its block final (it still has to verify)."""
        return self.kind == FINALITY_KIND


def make_certificate(votes: Iterable[Vote], voters: VoterSet) -> Certificate:
    """The certificate of `votes` (one subject, distinct voters, signatures already checked)."""
    votes = list(votes)
    if not votes:
        raise FinalityError("no votes")
    first = votes[0]
    subject = (first.chain_id, first.kind, first.height, first.round, first.block_hash)
    idx = []
    for v in votes:
        if (v.chain_id, v.kind, v.height, v.round, v.block_hash) != subject:
            raise FinalityError("votes for different subjects do not make one certificate")
        if v.voter not in voters.index:
            raise FinalityError(f"not a voter: {v.voter.hex()[:12]}")
        idx.append(voters.index[v.voter])
    if len(set(idx)) != len(idx):
        raise FinalityError("a voter counted twice")
    return Certificate(*subject, voters.bitfield(idx), bls.aggregate([v.signature for v in votes]))


def verify_certificate(cert: Certificate, voters: VoterSet, *, chain_id: str | None = None) -> None:
    """FinalityError unless `cert`'s signers hold more than 2/3 of `voters`' deposit and their
    aggregate signature verifies (FastAggregateVerify); with `chain_id`, it must be that chain's."""
    if chain_id is not None and cert.chain_id != chain_id:
        raise FinalityError(f"a certificate for chain {cert.chain_id!r}, not {chain_id!r}")
    signers = voters.signers(cert.signers)
    signed = voters.deposit_of(signers)
    if not quorum(signed, voters.total):
        raise FinalityError(f"signers hold {signed} of {voters.total} deposit: not more than 2/3")
    if not bls.fast_aggregate_verify([voters.voters[i].bls_key for i in signers], cert.signing_bytes, cert.signature):
        raise FinalityError("the aggregate signature does not verify")


def certificate_ok(cert: Certificate, voters: VoterSet, *, chain_id: str | None = None) -> bool:
    try:
        verify_certificate(cert, voters, chain_id=chain_id)
        return True
    except FinalityError:
        return False


def decode_certificate(data: bytes) -> Certificate:
    return CERTIFICATE.decode(data)


# ------------------------------------------------------------------ evidence and accountable safety


@dataclass(frozen=True)
class DoubleVote:
    """Two votes one key signed for one (kind, height, round) and two blocks, the smaller encoding
    first (so one offence has one encoding).  `check_double_vote` says whether it proves the offence."""

    first: Vote
    second: Vote

    def __post_init__(self) -> None:
        if not self.first.encoded < self.second.encoded:
            raise ValueError("a double vote's votes are in increasing order of their encodings")

    @classmethod
    def of(cls, a: Vote, b: Vote) -> DoubleVote:
        return cls(a, b) if a.encoded < b.encoded else cls(b, a)

    @property
    def offender(self) -> bytes:
        """The BLS key that signed both."""
        return self.first.voter

    @cached_property
    def encoded(self) -> bytes:
        return DOUBLE_VOTE.encode(self)

    @cached_property
    def hash(self) -> bytes:
        return digest(self.encoded, b"transx-evidence")


def check_double_vote(ev: DoubleVote) -> None:
    """FinalityError unless `ev` proves one key signed two blocks for one (chain, kind, height, round)."""
    a, b = ev.first, ev.second
    if a.voter != b.voter:
        raise FinalityError("the votes are by different keys")
    if (a.chain_id, a.slot) != (b.chain_id, b.slot):
        raise FinalityError("the votes are for different chains, kinds, heights or rounds")
    if a.block_hash == b.block_hash:
        raise FinalityError("the votes are for the same block")
    if not (a.signature_ok() and b.signature_ok()):
        raise FinalityError("a vote's signature does not verify")


def decode_double_vote(data: bytes) -> DoubleVote:
    return DOUBLE_VOTE.decode(data)


@dataclass(frozen=True)
class SafetyFault:
    """Who signed both of two conflicting certificates."""

    indices: tuple[int, ...]  # positions in the voter set
    voters: tuple[Voter, ...]
    deposit: int  # theirs: always > total / 3
    total: int
    same_round: bool  # then each of them signed two votes for one (kind, height, round): slashable as it stands


def accountable_safety(cert_a: Certificate, cert_b: Certificate, voters: VoterSet) -> SafetyFault:
    """The voters in both of two valid certificates of one kind for different blocks at one height.

    By quorum intersection they hold more than 1/3 of the deposit (checked, not assumed).
    FinalityError when either certificate does not verify against `voters` or the two do not conflict.
    """
    a, b = cert_a, cert_b
    if (a.chain_id, a.kind, a.height) != (b.chain_id, b.kind, b.height):
        raise FinalityError("certificates for different chains, kinds or heights do not conflict")
    if a.block_hash == b.block_hash:
        raise FinalityError("certificates for the same block do not conflict")
    verify_certificate(a, voters)
    verify_certificate(b, voters)
    both = tuple(sorted(set(voters.signers(a.signers)) & set(voters.signers(b.signers))))
    deposit = voters.deposit_of(both)
    if not 3 * deposit > voters.total:  # cannot happen: (> 2/3) + (> 2/3) - 1 > 1/3
        raise AssertionError("quorum intersection failed: the voter set's arithmetic is broken")
    return SafetyFault(both, tuple(voters.voters[i] for i in both), deposit, voters.total, a.round == b.round)


# ------------------------------------------------------------------ the tally


@dataclass(frozen=True)
class Counted:
    """The vote counts.  `deposit`: what its block now has in this (kind, round); `certificate`: set
    by the one vote that lifted the block over 2/3."""

    deposit: int
    certificate: Certificate | None = None


@dataclass(frozen=True)
class Refused:
    """The vote is not counted.  `reason`: "malformed", "chain", "height", "not a voter", "duplicate" or
    "bad signature".  A duplicate is harmless gossip; the others are the sender's fault."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Equivocation:
    """The vote is its voter's second, for another block, in one (kind, round): not counted, evidence."""

    evidence: DoubleVote


Outcome = Counted | Refused | Equivocation


class Tally:
    """The votes of one height on one chain, counted against the height's voter set (sans-IO)."""

    def __init__(self, chain_id: str, height: int, voters: VoterSet) -> None:
        self.chain_id, self.height, self.voters = chain_id, height, voters
        self._first: dict[tuple[int, int, int], Vote] = {}  # (kind, round, voter index) -> its counted vote
        self._for: dict[tuple[int, int, bytes], dict[int, Vote]] = {}  # (kind, round, block) -> voter index -> vote
        self._certified: set[tuple[int, int, bytes]] = set()
        self._evidence: dict[bytes, DoubleVote] = {}

    def add(self, v: Vote) -> Outcome:
        if type(v) is not Vote:
            return Refused("malformed", "not a vote")
        try:
            _ = v.encoded
        except ValueError as e:
            return Refused("malformed", str(e))
        if v.chain_id != self.chain_id:
            return Refused("chain", f"a vote for chain {v.chain_id!r}")
        if v.height != self.height:
            return Refused("height", f"a vote for height {v.height}; this tally counts {self.height}")
        i = self.voters.index.get(v.voter)
        if i is None:
            return Refused("not a voter", f"{v.voter.hex()[:12]} is not a voter at height {self.height}")
        first = self._first.get((v.kind, v.round, i))
        if first == v:
            return Refused("duplicate", v.describe())
        if not v.signature_ok():
            return Refused("bad signature", v.describe())
        if first is not None:  # a valid second vote: BLS signatures are unique, so it is for another block
            ev = DoubleVote.of(first, v)
            if ev.hash in self._evidence:
                return Refused("duplicate", f"already evidence: {v.describe()}")
            self._evidence[ev.hash] = ev
            return Equivocation(ev)
        self._first[(v.kind, v.round, i)] = v
        key = (v.kind, v.round, v.block_hash)
        votes = self._for.setdefault(key, {})
        votes[i] = v
        deposit = self.voters.deposit_of(votes)
        if key in self._certified or not quorum(deposit, self.voters.total):
            return Counted(deposit)
        self._certified.add(key)
        return Counted(deposit, self.certificate(v.kind, v.round, v.block_hash))

    def deposit_for(self, kind: int, round: int, block_hash: bytes) -> int:
        return self.voters.deposit_of(self._for.get((kind, round, block_hash), {}))

    def certificate(self, kind: int, round: int, block_hash: bytes) -> Certificate | None:
        """The certificate of every vote counted so far for this block, once they hold > 2/3."""
        votes = self._for.get((kind, round, block_hash))
        if not votes or not quorum(self.voters.deposit_of(votes), self.voters.total):
            return None
        return make_certificate((votes[i] for i in sorted(votes)), self.voters)

    @property
    def evidence(self) -> tuple[DoubleVote, ...]:
        return tuple(self._evidence.values())


# ------------------------------------------------------------------ encodings


@dataclass(frozen=True)
class _Subject:
    chain_id: str
    kind: int
    height: int
    round: int
    block_hash: bytes


@dataclass(frozen=True)
class _Binding:
    chain_id: str
    solver: bytes
    bls_key: bytes


_SUBJECT = Record(_Subject, {"chain_id": CHAIN_ID, "kind": KIND, "height": U64, "round": U32, "block_hash": HASH})
_BINDING = Record(_Binding, {"chain_id": CHAIN_ID, "solver": ADDRESS, "bls_key": BLS_KEY})
KEY_REGISTRATION = Record(KeyRegistration, {"chain_id": CHAIN_ID, "solver": ADDRESS, "bls_key": BLS_KEY,
                                            "pop": BLS_SIGNATURE, "binding": BLS_SIGNATURE})
VOTER = Record(Voter, {"address": ADDRESS, "bls_key": BLS_KEY, "deposit": DEPOSIT})
VOTER_SET = Record(VoterSet, {"voters": ListOf(VOTER, MAX_VOTERS, key=lambda v: v.address)})
VOTE = Record(Vote, {"chain_id": CHAIN_ID, "kind": KIND, "height": U64, "round": U32, "block_hash": HASH,
                     "voter": BLS_KEY, "signature": BLS_SIGNATURE})
CERTIFICATE = Record(Certificate, {"chain_id": CHAIN_ID, "kind": KIND, "height": U64, "round": U32, "block_hash": HASH,
                                   "signers": VarBytes(MAX_VOTERS // 8), "signature": BLS_SIGNATURE})
DOUBLE_VOTE = Record(DoubleVote, {"first": VOTE, "second": VOTE})

__all__ = [
    "CERTIFICATE", "DOUBLE_VOTE", "FINALITY_KIND", "KEY_REGISTRATION", "MAX_VOTERS", "PRECOMMIT", "PREVOTE", "VOTE",
    "VOTER_SET", "Certificate", "Counted", "DoubleVote", "Equivocation", "FinalityError", "KeyRegistration", "Outcome",
    "Refused", "SafetyFault", "Tally", "Vote", "Voter", "VoterSet", "accountable_safety", "certificate_ok",
    "check_double_vote", "check_registration", "decode_certificate", "decode_double_vote", "decode_vote",
    "make_certificate", "quorum", "register_key", "signing_message", "verify_certificate", "vote",
]
