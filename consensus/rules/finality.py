"""Finality votes (Casper FFG over block heights): who votes, what a vote says, aggregates, the >2/3 rule, and offences.

The voters are the registered solvers that registered a BLS key with a proof of possession
(`KeyRegistration`), weighted by deposit, in a canonical order (`VoterSet`: by address).  A `Vote`
says: on this chain, from the justified checkpoint `source`, I vote for the block `target` (a
checkpoint is a (height, block hash) pair; every block height is a checkpoint).  Every voter of one
(source, target) link signs the same message, so the votes of a link aggregate into one 96-byte BLS
signature; a `Certificate` is that signature with a bitfield saying who signed.  It is a quorum when
the signers hold strictly more than 2/3 of the voter set's deposit (3 * signed > 2 * total,
integers only).

The rules that make finality safe are FFG's (Buterin and Griffith, "Casper the Friendly Finality
Gadget", 2017): a checkpoint is justified when a quorum link leads to it from a justified checkpoint
(genesis is justified); a justified checkpoint is final when a quorum link leads from it to its
direct child height.  A voter must never sign two votes with the same target height (a double vote)
nor a vote whose (source, target) span strictly surrounds another of its votes (a surround vote).
Two conflicting final blocks need signers of more than 1/3 of the deposit to have done one or the
other (accountable safety), and `check_offence` proves either from the two votes alone.

`Tally` is the sans-IO counter a node feeds votes into: malformed, foreign, duplicate and badly
signed votes are refused with a reason; a voter's second vote for a target height it already voted
at, for another link, or a vote that surrounds or is surrounded by one of its counted votes, is an
`Equivocation` carrying the two votes as evidence.

Messages are domain-separated: a vote's signing message starts with b"transx-vote-v2", a key
registration's with b"transx-bls-key-v1", a lottery ticket's (beacon.py) with b"transx-ticket-v1";
none is a prefix of another, and proofs of possession use their own hash-to-curve tag (bls.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache

from . import bls
from .codec import ADDRESS, HASH, U64, FixedBytes, ListOf, Record, Text, UInt, VarBytes, digest

MAX_VOTERS = 1024
DOMAIN_VOTE = b"transx-vote-v2"
DOMAIN_KEY = b"transx-bls-key-v1"

CHAIN_ID = Text(32, min_len=1)
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


@dataclass(frozen=True, order=True)
class Checkpoint:
    """A block by height and hash: what votes link."""

    height: int
    hash: bytes

    def describe(self) -> str:
        return f"{self.height}:{self.hash.hex()[:12]}"


@dataclass(frozen=True)
class Vote:
    chain_id: str
    source: Checkpoint  # the justified checkpoint the voter votes from
    target: Checkpoint  # the block it votes for
    voter: bytes  # the voter's BLS public key
    signature: bytes = bytes(bls.SIGNATURE_BYTES)

    @cached_property
    def encoded(self) -> bytes:
        return VOTE.encode(self)

    @property
    def link(self) -> tuple[Checkpoint, Checkpoint]:
        return self.source, self.target

    @property
    def signing_bytes(self) -> bytes:
        return signing_message(self.chain_id, self.source, self.target)

    def signature_ok(self) -> bool:
        """Whether `voter` signed this vote; False (never an exception) for a malformed one."""
        try:
            msg = self.signing_bytes
        except ValueError:
            return False
        return _verified(self.voter, msg, self.signature)

    def describe(self) -> str:
        return f"vote {self.source.describe()} -> {self.target.describe()} by {self.voter.hex()[:12]}"


@lru_cache(maxsize=4096)
def _verified(pk: bytes, msg: bytes, sig: bytes) -> bool:
    """One check per (key, message, signature) in a process: gossip delivers each vote many times,
    and a simulator runs many nodes in one process.  Bounded by what a vote is checked for: its
    deliveries within a few heights, at most `voting_seats` (genesis default 256) votes a height, so 4,096 is 16
    heights of a full voter set (65,536 filled for 20,000 blocks at ~0.5 kB an entry: issue 20)."""
    return bls.verify(pk, msg, sig)


def signing_message(chain_id: str, source: Checkpoint, target: Checkpoint) -> bytes:
    """What every voter of this link signs: the same bytes for all, so their signatures aggregate."""
    return DOMAIN_VOTE + _SUBJECT.encode(_Subject(chain_id, source, target))


def vote(sk: bytes, *, chain_id: str, source: Checkpoint, target: Checkpoint) -> Vote:
    """A vote signed with the BLS secret key `sk`; ValueError unless the source is below the target."""
    if not source.height < target.height:
        raise ValueError("a vote's source must be below its target")
    msg = signing_message(chain_id, source, target)
    return Vote(chain_id, source, target, bls.public_key(sk), bls.sign(sk, msg))


def decode_vote(data: bytes) -> Vote:
    """A vote from its encoding; ValueError (DecodeError is one) if malformed or its source is not below its target."""
    v = VOTE.decode(data)
    if not v.source.height < v.target.height:
        raise ValueError("a vote's source must be below its target")
    return v


# ------------------------------------------------------------------ certificates (aggregates)


@dataclass(frozen=True)
class Certificate:
    """Votes of one link: who signed (a bitfield over a voter set) and their aggregate signature.
    A quorum certificate when the signers hold more than 2/3 of the set's deposit."""

    chain_id: str
    source: Checkpoint
    target: Checkpoint
    signers: bytes
    signature: bytes

    @cached_property
    def encoded(self) -> bytes:
        return CERTIFICATE.encode(self)

    @cached_property
    def hash(self) -> bytes:
        return digest(self.encoded, b"transx-cert")

    @property
    def link(self) -> tuple[Checkpoint, Checkpoint]:
        return self.source, self.target

    @property
    def signing_bytes(self) -> bytes:
        return signing_message(self.chain_id, self.source, self.target)


def make_certificate(votes: Iterable[Vote], voters: VoterSet) -> Certificate:
    """The aggregate of `votes` (one link, distinct voters of `voters`, signatures already checked)."""
    votes = list(votes)
    if not votes:
        raise FinalityError("no votes")
    first = votes[0]
    idx = []
    for v in votes:
        if (v.chain_id, v.source, v.target) != (first.chain_id, first.source, first.target):
            raise FinalityError("votes for different links do not make one certificate")
        if v.voter not in voters.index:
            raise FinalityError(f"not a voter: {v.voter.hex()[:12]}")
        idx.append(voters.index[v.voter])
    if len(set(idx)) != len(idx):
        raise FinalityError("a voter counted twice")
    return Certificate(first.chain_id, first.source, first.target, voters.bitfield(idx),
                       bls.aggregate([v.signature for v in votes]))


def check_aggregate(cert: Certificate, voters: VoterSet, *, chain_id: str | None = None) -> tuple[int, ...]:
    """The signers' indices in `voters`, or FinalityError unless at least one signed, the aggregate
    signature verifies (FastAggregateVerify), the source is below the target, and (with `chain_id`)
    it is that chain's."""
    if chain_id is not None and cert.chain_id != chain_id:
        raise FinalityError(f"a certificate for chain {cert.chain_id!r}, not {chain_id!r}")
    if not cert.source.height < cert.target.height:
        raise FinalityError("a certificate's source is not below its target")
    signers = voters.signers(cert.signers)
    if not signers:
        raise FinalityError("a certificate nobody signed")
    if not _aggregate_ok(tuple(voters.voters[i].bls_key for i in signers), cert.signing_bytes, cert.signature):
        raise FinalityError("the aggregate signature does not verify")
    return signers


@lru_cache(maxsize=256)  # a certificate or two a block, re-checked when peers relay it: 256 blocks' worth
def _aggregate_ok(pks: tuple[bytes, ...], msg: bytes, sig: bytes) -> bool:
    return bls.fast_aggregate_verify(list(pks), msg, sig)


def verify_certificate(cert: Certificate, voters: VoterSet, *, chain_id: str | None = None) -> None:
    """FinalityError unless `cert` is a valid aggregate (`check_aggregate`) whose signers hold more
    than 2/3 of `voters`' deposit."""
    signers = check_aggregate(cert, voters, chain_id=chain_id)
    signed = voters.deposit_of(signers)
    if not quorum(signed, voters.total):
        raise FinalityError(f"signers hold {signed} of {voters.total} deposit: not more than 2/3")


def certificate_ok(cert: Certificate, voters: VoterSet, *, chain_id: str | None = None) -> bool:
    try:
        verify_certificate(cert, voters, chain_id=chain_id)
        return True
    except FinalityError:
        return False


def decode_certificate(data: bytes) -> Certificate:
    return CERTIFICATE.decode(data)


# ------------------------------------------------------------------ offences and accountable safety


def double_vote(a: Vote, b: Vote) -> bool:
    """Two different links with one target height."""
    return a.target.height == b.target.height and a.link != b.link


def surround_vote(a: Vote, b: Vote) -> bool:
    """One vote's span strictly surrounds the other's: s1 < s2 and t2 < t1."""
    def around(x: Vote, y: Vote) -> bool:
        return x.source.height < y.source.height and y.target.height < x.target.height
    return around(a, b) or around(b, a)


def check_offence(a: Vote, b: Vote) -> None:
    """FinalityError unless `a` and `b` prove one key broke a voting rule: the same key and chain, both
    validly signed, and a double vote or a surround vote."""
    if a.voter != b.voter:
        raise FinalityError("the votes are by different keys")
    if a.chain_id != b.chain_id:
        raise FinalityError("the votes are for different chains")
    if not (double_vote(a, b) or surround_vote(a, b)):
        raise FinalityError("the votes are neither a double vote nor a surround vote")
    if not (a.signature_ok() and b.signature_ok()):
        raise FinalityError("a vote's signature does not verify")


@dataclass(frozen=True)
class SafetyFault:
    """Who signed both of two conflicting quorum certificates."""

    indices: tuple[int, ...]  # positions in the voter set
    voters: tuple[Voter, ...]
    deposit: int  # theirs: always > total / 3
    total: int


def accountable_safety(cert_a: Certificate, cert_b: Certificate, voters: VoterSet) -> SafetyFault:
    """The voters in both of two valid quorum certificates for different blocks at one target height:
    each of them double voted.  By quorum intersection they hold more than 1/3 of the deposit
    (checked, not assumed).  FinalityError when either does not verify or the two do not conflict."""
    a, b = cert_a, cert_b
    if a.chain_id != b.chain_id or a.target.height != b.target.height:
        raise FinalityError("certificates for different chains or target heights do not conflict")
    if a.link == b.link:
        raise FinalityError("certificates for the same link do not conflict")
    verify_certificate(a, voters)
    verify_certificate(b, voters)
    both = tuple(sorted(set(voters.signers(a.signers)) & set(voters.signers(b.signers))))
    deposit = voters.deposit_of(both)
    if not 3 * deposit > voters.total:  # cannot happen: (> 2/3) + (> 2/3) - 1 > 1/3
        raise AssertionError("quorum intersection failed: the voter set's arithmetic is broken")
    return SafetyFault(both, tuple(voters.voters[i] for i in both), deposit, voters.total)


# ------------------------------------------------------------------ the tally


@dataclass(frozen=True)
class Counted:
    """The vote counts.  `deposit`: what its link now has; `certificate`: set by the one vote that
    lifted the link over 2/3."""

    deposit: int
    certificate: Certificate | None = None


@dataclass(frozen=True)
class Refused:
    """The vote is not counted.  `reason`: "malformed", "chain", "not a voter", "duplicate" or "bad
    signature".  A duplicate is harmless gossip; the others are the sender's fault."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Equivocation:
    """The vote is its voter's second at one target height, for another link, or a surround vote: not
    counted; the two votes are the evidence (`check_offence` holds for them)."""

    first: Vote
    second: Vote


Outcome = Counted | Refused | Equivocation


class Tally:
    """Votes counted against one voter set (sans-IO): per link, who voted; per (target height, voter), its vote."""

    def __init__(self, chain_id: str, voters: VoterSet) -> None:
        self.chain_id, self.voters = chain_id, voters
        self._first: dict[tuple[int, int], Vote] = {}  # (target height, voter index) -> its counted vote
        self._for: dict[tuple[Checkpoint, Checkpoint], dict[int, Vote]] = {}  # link -> voter index -> vote
        self._certified: set[tuple[Checkpoint, Checkpoint]] = set()
        self._of: dict[int, list[Vote]] = {}  # voter index -> its counted votes (for surround votes)

    def add(self, v: Vote) -> Outcome:
        if type(v) is not Vote:
            return Refused("malformed", "not a vote")
        try:
            _ = v.encoded
        except ValueError as e:
            return Refused("malformed", str(e))
        if not v.source.height < v.target.height:
            return Refused("malformed", "source not below target")
        if v.chain_id != self.chain_id:
            return Refused("chain", f"a vote for chain {v.chain_id!r}")
        i = self.voters.index.get(v.voter)
        if i is None:
            return Refused("not a voter", f"{v.voter.hex()[:12]} is not a voter")
        first = self._first.get((v.target.height, i))
        if first == v:
            return Refused("duplicate", v.describe())
        if not v.signature_ok():
            return Refused("bad signature", v.describe())
        if first is not None:
            return Equivocation(first, v)
        around = next((w for w in self._of.get(i, ()) if surround_vote(w, v)), None)
        if around is not None:
            return Equivocation(around, v)
        self._first[(v.target.height, i)] = v
        self._of.setdefault(i, []).append(v)
        votes = self._for.setdefault(v.link, {})
        votes[i] = v
        deposit = self.voters.deposit_of(votes)
        if v.link in self._certified or not quorum(deposit, self.voters.total):
            return Counted(deposit)
        self._certified.add(v.link)
        return Counted(deposit, self.certificate(v.source, v.target))

    def votes_for(self, source: Checkpoint, target: Checkpoint) -> list[Vote]:
        votes = self._for.get((source, target), {})
        return [votes[i] for i in sorted(votes)]

    def links(self, target_height: int) -> list[tuple[Checkpoint, Checkpoint]]:
        return [k for k in self._for if k[1].height == target_height]

    def deposit_for(self, source: Checkpoint, target: Checkpoint) -> int:
        return self.voters.deposit_of(self._for.get((source, target), {}))

    def certificate(self, source: Checkpoint, target: Checkpoint) -> Certificate | None:
        """The aggregate of every vote counted so far for this link (None if none)."""
        votes = self.votes_for(source, target)
        return make_certificate(votes, self.voters) if votes else None

    def forget_below(self, height: int) -> None:
        """Drop what is counted for targets below `height` (they are final, or will never be)."""
        self._first = {k: v for k, v in self._first.items() if k[0] >= height}
        self._for = {k: v for k, v in self._for.items() if k[1].height >= height}
        self._certified = {k for k in self._certified if k[1].height >= height}
        self._of = {i: [v for v in vs if v.target.height >= height] for i, vs in self._of.items()}


# ------------------------------------------------------------------ encodings


CHECKPOINT = Record(Checkpoint, {"height": U64, "hash": HASH})


@dataclass(frozen=True)
class _Subject:
    chain_id: str
    source: Checkpoint
    target: Checkpoint


@dataclass(frozen=True)
class _Binding:
    chain_id: str
    solver: bytes
    bls_key: bytes


_SUBJECT = Record(_Subject, {"chain_id": CHAIN_ID, "source": CHECKPOINT, "target": CHECKPOINT})
_BINDING = Record(_Binding, {"chain_id": CHAIN_ID, "solver": ADDRESS, "bls_key": BLS_KEY})
KEY_REGISTRATION = Record(KeyRegistration, {"chain_id": CHAIN_ID, "solver": ADDRESS, "bls_key": BLS_KEY,
                                            "pop": BLS_SIGNATURE, "binding": BLS_SIGNATURE})
VOTER = Record(Voter, {"address": ADDRESS, "bls_key": BLS_KEY, "deposit": DEPOSIT})
VOTER_SET = Record(VoterSet, {"voters": ListOf(VOTER, MAX_VOTERS, key=lambda v: v.address)})
VOTE = Record(Vote, {"chain_id": CHAIN_ID, "source": CHECKPOINT, "target": CHECKPOINT, "voter": BLS_KEY,
                     "signature": BLS_SIGNATURE})
CERTIFICATE = Record(Certificate, {"chain_id": CHAIN_ID, "source": CHECKPOINT, "target": CHECKPOINT,
                                   "signers": VarBytes(MAX_VOTERS // 8), "signature": BLS_SIGNATURE})

__all__ = [
    "CERTIFICATE", "CHECKPOINT", "KEY_REGISTRATION", "MAX_VOTERS", "VOTE", "VOTER_SET", "Certificate", "Checkpoint",
    "Counted", "Equivocation", "FinalityError", "KeyRegistration", "Outcome", "Refused", "SafetyFault", "Tally", "Vote",
    "Voter", "VoterSet", "accountable_safety", "certificate_ok", "check_aggregate", "check_offence",
    "check_registration", "decode_certificate", "decode_vote", "double_vote", "make_certificate", "quorum",
    "register_key", "signing_message", "surround_vote", "verify_certificate", "vote",
]
