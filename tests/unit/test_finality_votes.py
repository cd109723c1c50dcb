"""Finality votes (Casper FFG links), their certificates, offences and evidence, and lottery tickets
(consensus/rules: bls, finality, beacon).

BLS operations take milliseconds, so keys are derived once from fixed seeds, the votes the property
tests use are signed once at import, and those tests run few examples; the whole file runs in a few
seconds.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from py_arkworks_bls12381 import G1Point, G2Point

from consensus.rules import beacon, bls
from consensus.rules.codec import DecodeError, Text
from consensus.rules.finality import (
    CHECKPOINT, KEY_REGISTRATION, VOTE, VOTER_SET, Certificate, Checkpoint, Counted, Equivocation, FinalityError,
    Refused, Tally, Vote, Voter, VoterSet, accountable_safety, certificate_ok, check_aggregate, check_offence,
    check_registration, decode_certificate, decode_vote, double_vote, make_certificate, quorum, register_key,
    signing_message, surround_vote, verify_certificate, vote,
)

FEW = settings(max_examples=15, deadline=None, database=None)
MANY = settings(max_examples=150, deadline=None, database=None)
CHAIN = "transx-test"
H = 7
BLOCK_A, BLOCK_B = b"\xaa" * 32, b"\xbb" * 32
P = 0x1A0111EA397FE69A4B1BA7B6434BACD764774B84F38512BF6730D2A0F6B0F6241EABFFFEB153FFFFB9FEFFFFFFFFAAAB

# consensus-spec-tests bls/sign/sign_case_c82df61aa3ee60fb and the public key of its secret key
KAT_SK = bytes.fromhex("263dbd792f5b1be47ed85f8938c0f29586af0d3ac7b977f21c278fe1462040e3")
KAT_PK = bytes.fromhex("a491d1b0ecd9bb917989f0e74f0dea0422eac4a873e5e2644f368dffb9a6e20fd6e10c1b77654d067c0618f6e5a7f79a")
KAT_SIG = bytes.fromhex(
    "b6ed936746e01f8ecf281f020953fbf1f01debd5657c4a383940b020b26507f6076334f91e2366c96e9ab279fb515809"
    "0352ea1c5b0c9274504f4f0e7053af24802e51e4568d164fe986834f41e55c8e850ce1f98458c0cfc9ab380b55285a55")
# PopProve(KAT_SK) as blspy 2.0.3 (Chia's bls-signatures over BLST, PopSchemeMPL.pop_prove) computes it
KAT_POP = bytes.fromhex(
    "b803eb0ed93ea10224a73b6b9c725796be9f5fefd215ef7a5b97234cc956cf6870db6127b7e4d824ec62276078e787db"
    "05584ce1adbf076bc0808ca0f15b73d59060254b25393d95dfc7abe3cda566842aaedf50bbb062aae1bbb6ef3b1f77e1")
# EIP-2333 test case 0: derive_master_SK is draft-05 KeyGen with empty key_info
EIP2333_SEED = bytes.fromhex("c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141"
                             "630c7a3c4ab7c81b2f001698e7463b04")
EIP2333_SK = 6083874454709270928345386274498605044986640685124978867557563392430687146096

SKS = [bls.keygen(bytes([i + 1]) * 32) for i in range(8)]
PKS = [bls.public_key(sk) for sk in SKS]


def addr(i: int) -> bytes:
    return bytes([i + 1]) * 20


def voter_set(deposits: list[int]) -> VoterSet:
    return VoterSet(tuple(Voter(addr(i), PKS[i], d) for i, d in enumerate(deposits)))


def cp(height: int, fill: int = 0xCC) -> Checkpoint:
    return Checkpoint(height, bytes([fill]) * 32)


GENESIS = cp(0, 0)
S1 = cp(3, 0x33)  # a second source below H
A, B = Checkpoint(H, BLOCK_A), Checkpoint(H, BLOCK_B)  # two blocks at the target height


def v(i: int, target: Checkpoint = A, source: Checkpoint = GENESIS, *, chain: str = CHAIN) -> Vote:
    return vote(SKS[i], chain_id=chain, source=source, target=target)


def span(i: int, s: int, t: int) -> Vote:
    """Voter i's vote from height s to height t."""
    return v(i, cp(t), cp(s))


def signed(i: int, source: Checkpoint, target: Checkpoint, chain: str = CHAIN) -> Vote:
    """A vote validly signed by voter i whatever its heights: what `vote` refuses to make, an attacker can."""
    return Vote(chain, source, target, PKS[i], bls.sign(SKS[i], signing_message(chain, source, target)))


def cert_of(signers: list[int], voters: VoterSet, target: Checkpoint = A, source: Checkpoint = GENESIS,
            chain: str = CHAIN) -> Certificate:
    return make_certificate([v(i, target, source, chain=chain) for i in signers], voters)


# ------------------------------------------------------------------ BLS: vectors, PoP, strict parsing


def test_consensus_spec_and_eip2333_vectors():
    assert bls.public_key(KAT_SK) == KAT_PK
    assert bls.sign(KAT_SK, bytes(32)) == KAT_SIG
    assert bls.verify(KAT_PK, bytes(32), KAT_SIG)
    assert bls.pop_prove(KAT_SK) == KAT_POP and bls.pop_verify(KAT_PK, KAT_POP)
    assert int.from_bytes(bls.keygen(EIP2333_SEED), "big") == EIP2333_SK


def test_sign_verify_and_malformed_input():
    msg = b"a message"
    sig = bls.sign(SKS[0], msg)
    assert sig == bls.sign(SKS[0], msg) and len(sig) == 96  # deterministic
    assert bls.verify(PKS[0], msg, sig)
    assert not bls.verify(PKS[1], msg, sig)
    assert not bls.verify(PKS[0], msg + b"!", sig)
    for pk, m, s in [(PKS[0][:47], msg, sig), (bytearray(PKS[0]), msg, sig), (PKS[0], msg, sig[:95]),
                     (PKS[0], "text", sig), (PKS[0], msg, bytes(96))]:
        assert not bls.verify(pk, m, s)
    with pytest.raises(bls.BLSError):
        bls.keygen(bytes(31))  # too little key material
    for sk in (bytes(32), bls.ORDER.to_bytes(32, "big"), b"\x01" * 31):
        with pytest.raises(bls.BLSError):
            bls.sign(sk, msg)


def test_proof_of_possession_is_domain_separated():
    proof = bls.pop_prove(SKS[0])
    assert bls.pop_verify(PKS[0], proof)
    assert not bls.pop_verify(PKS[1], proof)
    assert not bls.pop_verify(PKS[0], bls.sign(SKS[0], PKS[0]))  # a plain signature over the key is not a proof
    assert not bls.verify(PKS[0], PKS[0], proof)  # and a proof is not a signature


def _g1_off_subgroup() -> bytes:
    x = 0
    while True:
        x += 1
        rhs = (x ** 3 + 4) % P
        y = pow(rhs, (P + 1) // 4, P)
        if y * y % P == rhs:
            b = bytearray(x.to_bytes(48, "big"))
            b[0] |= 0x80 | (0x20 if y > P - y else 0)
            return bytes(b)


def _f2mul(a, b):
    return (a[0] * b[0] - a[1] * b[1]) % P, (a[0] * b[1] + a[1] * b[0]) % P


def _f2pow(a, e):
    out = (1, 0)
    while e:
        if e & 1:
            out = _f2mul(out, a)
        a, e = _f2mul(a, a), e >> 1
    return out


def _f2sqrt(a):
    """Square root in Fp2 = Fp[i]/(i^2 + 1), p = 3 mod 4 (Adj and Rodriguez-Henriquez, algorithm 9)."""
    a1 = _f2pow(a, (P - 3) // 4)
    alpha = _f2mul(_f2mul(a1, a1), a)
    x0 = _f2mul(a1, a)
    if alpha == (P - 1, 0):
        x = _f2mul((0, 1), x0)
    else:
        x = _f2mul(_f2pow(((1 + alpha[0]) % P, alpha[1]), (P - 1) // 2), x0)
    return x if _f2mul(x, x) == a else None


def _g2_off_subgroup() -> bytes:
    """A point of the twist y^2 = x^3 + 4(1 + i) outside the prime-order subgroup (its cofactor is huge)."""
    k = 0
    while True:
        k += 1
        x = (k, 1)
        rhs = _f2mul(_f2mul(x, x), x)
        rhs = ((rhs[0] + 4) % P, (rhs[1] + 4) % P)
        y = _f2sqrt(rhs)
        if y is not None:
            b = bytearray(x[1].to_bytes(48, "big") + x[0].to_bytes(48, "big"))
            big = y[1] > P - y[1] if y[1] else y[0] > P - y[0]
            b[0] |= 0x80 | (0x20 if big else 0)
            return bytes(b)


def test_points_must_be_in_the_subgroup_canonical_and_not_the_identity():
    msg = b"m"
    g1_bad, g2_bad = _g1_off_subgroup(), _g2_off_subgroup()
    # control: both are points of the curve, just not of the subgroup
    assert not G1Point.from_compressed_bytes_unchecked(g1_bad).is_in_subgroup()
    assert not G2Point.from_compressed_bytes_unchecked(g2_bad).is_in_subgroup()
    assert not bls.key_valid(g1_bad) and not bls.pop_verify(g1_bad, bls.pop_prove(SKS[0]))
    assert not bls.verify(PKS[0], msg, g2_bad)
    with pytest.raises(bls.BLSError):
        bls.aggregate([bls.sign(SKS[0], msg), g2_bad])
    # the identity is no public key, and the identity signature has one encoding (arkworks takes others)
    identity_g1, identity_g2 = b"\xc0" + bytes(47), b"\xc0" + bytes(95)
    assert not bls.key_valid(identity_g1)
    assert not bls.fast_aggregate_verify([identity_g1], msg, identity_g2)
    assert bls.aggregate([identity_g2]) == identity_g2
    for other in (b"\xc0" + b"\x01" * 95, b"\xe0" + bytes(95)):
        G2Point.from_compressed_bytes(other)  # control: arkworks accepts these as the identity
        with pytest.raises(bls.BLSError, match="non-canonical"):
            bls.aggregate([other])


def test_aggregates():
    msg = b"one block"
    sigs = [bls.sign(sk, msg) for sk in SKS[:5]]
    agg = bls.aggregate(sigs)
    assert bls.aggregate(list(reversed(sigs))) == agg  # order does not matter
    assert bls.fast_aggregate_verify(PKS[:5], msg, agg)
    assert not bls.fast_aggregate_verify(PKS[:4], msg, agg)  # one signer unnamed
    assert not bls.fast_aggregate_verify(PKS[:6], msg, agg)  # one named who did not sign
    assert not bls.fast_aggregate_verify(PKS[:5], msg + b"!", agg)
    assert not bls.fast_aggregate_verify([], msg, agg)
    msgs = [bytes([i]) * 3 for i in range(5)]
    agg2 = bls.aggregate([bls.sign(sk, m) for sk, m in zip(SKS, msgs)])
    assert bls.aggregate_verify(PKS[:5], msgs, agg2)
    assert not bls.aggregate_verify(PKS[:5], msgs[::-1], agg2)
    assert not bls.aggregate_verify(PKS[:4], msgs, agg2)
    with pytest.raises(bls.BLSError):
        bls.aggregate([])


# ------------------------------------------------------------------ key registration


def test_key_registration():
    reg = register_key(SKS[0], chain_id=CHAIN, solver=addr(0))
    check_registration(reg, chain_id=CHAIN)
    assert KEY_REGISTRATION.decode(reg.encoded) == reg
    with pytest.raises(FinalityError, match="chain"):
        check_registration(reg, chain_id="other")
    with pytest.raises(FinalityError, match="solver's address"):  # a copied key and proof, for another account
        check_registration(replace(reg, solver=addr(1)), chain_id=CHAIN)
    with pytest.raises(FinalityError, match="proof of possession"):
        check_registration(replace(reg, pop=bls.pop_prove(SKS[1])), chain_id=CHAIN)
    with pytest.raises(FinalityError, match="not a valid"):
        check_registration(replace(reg, bls_key=b"\xc0" + bytes(47)), chain_id=CHAIN)


# ------------------------------------------------------------------ votes


def test_vote_signing_message_is_shared_and_domain_separated():
    a, b = v(0), v(1)
    assert a.signing_bytes == b.signing_bytes == signing_message(CHAIN, GENESIS, A)
    assert a.signing_bytes.startswith(b"transx-vote-v2")
    assert a.link == (GENESIS, A) and a.signature_ok() and b.signature_ok()
    others = [v(0, B), v(0, Checkpoint(H + 1, BLOCK_A)), v(0, A, S1), v(0, A, Checkpoint(0, BLOCK_B)),
              v(0, chain="x")]
    for other in others:
        assert other.signing_bytes != a.signing_bytes and other.signature != a.signature
    assert len({o.signing_bytes for o in others}) == len(others)
    assert not replace(a, target=B).signature_ok()
    assert not replace(a, source=S1).signature_ok()
    assert not replace(a, voter=PKS[1]).signature_ok()
    # malformed: never an exception
    assert not replace(a, chain_id="").signature_ok()
    assert not replace(a, target=Checkpoint(H, BLOCK_A[:31])).signature_ok()
    assert not replace(a, source=Checkpoint(-1, GENESIS.hash)).signature_ok()


def test_a_vote_links_a_lower_source_to_a_higher_target():
    assert vote(SKS[0], chain_id=CHAIN, source=Checkpoint(H - 1, BLOCK_B), target=A).signature_ok()  # control
    for source in (A, B, Checkpoint(H + 1, BLOCK_A)):
        with pytest.raises(ValueError, match="source"):
            vote(SKS[0], chain_id=CHAIN, source=source, target=A)


def test_quorum_arithmetic():
    assert not quorum(2, 3) and quorum(3, 3)
    assert not quorum(6, 9) and quorum(7, 9)
    big = 3 * 10**18
    assert not quorum(2 * 10**18, big) and quorum(2 * 10**18 + 1, big)


# ------------------------------------------------------------------ the tally


def test_tally_certifies_strictly_above_two_thirds():
    voters = voter_set([2, 2, 1, 1])  # total 6: 4 is exactly 2/3 and not enough, 5 is
    t = Tally(CHAIN, voters)
    assert t.certificate(GENESIS, A) is None and t.links(H) == []
    assert t.add(v(0)) == Counted(2)
    assert t.add(v(1)) == Counted(4)
    partial = t.certificate(GENESIS, A)  # the aggregate so far: a good one, but no quorum
    assert check_aggregate(partial, voters, chain_id=CHAIN) == (0, 1) and not certificate_ok(partial, voters)
    out = t.add(v(2))
    assert isinstance(out, Counted) and out.deposit == 5 and out.certificate is not None
    cert = out.certificate
    assert cert.link == (GENESIS, A) and voters.signers(cert.signers) == (0, 1, 2)
    verify_certificate(cert, voters, chain_id=CHAIN)
    assert t.add(v(3)) == Counted(6)  # emitted once; a later certificate carries everyone
    bigger = t.certificate(GENESIS, A)
    assert voters.signers(bigger.signers) == (0, 1, 2, 3) and certificate_ok(bigger, voters)
    assert [x.voter for x in t.votes_for(GENESIS, A)] == PKS[:4]
    assert t.links(H) == [(GENESIS, A)] and t.links(H + 1) == []
    t3 = Tally(CHAIN, voter_set([1, 1, 1]))
    assert t3.add(v(0)).certificate is None and t3.add(v(1)).certificate is None  # 2 of 3 = 2/3
    assert t3.add(v(2)).certificate is not None


def test_tally_counts_links_apart():
    voters = voter_set([1, 1, 1, 1])
    t = Tally(CHAIN, voters)
    nxt = Checkpoint(H + 1, BLOCK_B)
    for vt in (v(0), v(1), v(2, A, S1), v(3, B), v(0, nxt, A)):
        assert isinstance(t.add(vt), Counted)
    assert t.deposit_for(GENESIS, A) == 2 and t.deposit_for(S1, A) == 1 and t.deposit_for(GENESIS, B) == 1
    assert sorted(t.links(H)) == sorted([(GENESIS, A), (S1, A), (GENESIS, B)])
    assert t.links(H + 1) == [(A, nxt)] and t.deposit_for(A, nxt) == 1
    assert t.deposit_for(GENESIS, nxt) == 0 and t.certificate(GENESIS, nxt) is None


def test_tally_refuses_with_reasons():
    voters = voter_set([1, 1, 1, 1])
    t = Tally(CHAIN, voters)
    good = v(0)
    assert t.add(good) == Counted(1)
    loop, down = signed(1, A, A), signed(1, Checkpoint(H + 1, BLOCK_B), A)  # signed, but not links
    assert loop.signature_ok() and down.signature_ok()  # control: only their heights are wrong
    cases = [
        (good, "duplicate"),
        (replace(v(1), signature=bls.sign(SKS[1], b"something else")), "bad signature"),
        (replace(v(1), signature=bytes(96)), "bad signature"),
        (replace(v(1), signature=v(2).signature), "bad signature"),  # another voter's signature of the link
        (replace(v(0, B), signature=bls.sign(SKS[0], b"x")), "bad signature"),  # a forged second vote is no evidence
        (v(4), "not a voter"),  # a valid vote by a key outside the set
        (v(1, chain="another"), "chain"),  # a valid vote for another chain
        (loop, "malformed"),
        (down, "malformed"),
        (replace(v(1), chain_id=""), "malformed"),
        (replace(v(1), target=Checkpoint(H, BLOCK_A[:31])), "malformed"),
        ("not a vote", "malformed"),
    ]
    for bad, reason in cases:
        out = t.add(bad)
        assert isinstance(out, Refused) and out.reason == reason, (reason, out)
    assert t.deposit_for(GENESIS, A) == 1 and t.links(H) == [(GENESIS, A)] and t.links(H + 1) == []
    assert t.add(v(1)) == Counted(2)  # a refusal records nothing: voter 1's own vote still counts


def test_tally_turns_a_second_link_at_one_target_height_into_equivocation():
    voters = voter_set([1, 1, 1, 1])
    t = Tally(CHAIN, voters)
    first = v(0)
    assert t.add(first) == Counted(1)
    for second in (v(0, B), v(0, A, S1)):  # another block, or the same block from another source
        out = t.add(second)
        assert out == Equivocation(first, second)
        assert double_vote(out.first, out.second)
        check_offence(out.first, out.second)
        assert t.deposit_for(*second.link) == 0 and t.votes_for(*second.link) == []  # not counted
        assert t.add(second) == Equivocation(first, second)  # and never will be
    assert t.links(H) == [(GENESIS, A)] and t.deposit_for(GENESIS, A) == 1
    assert t.add(v(1, B)) == Counted(1)  # another voter may vote for it
    assert t.add(v(0, Checkpoint(H + 1, BLOCK_B), A)) == Counted(1)  # another target height is another vote


def test_tally_forgets_below_a_height():
    voters = voter_set([1, 1, 1, 1])
    t = Tally(CHAIN, voters)
    nxt = Checkpoint(H + 1, BLOCK_B)
    for vt in (v(0), v(1), v(2), v(0, nxt, A)):
        assert isinstance(t.add(vt), Counted)
    t.forget_below(H + 1)
    assert t.links(H) == [] and t.votes_for(GENESIS, A) == [] and t.deposit_for(GENESIS, A) == 0
    assert t.certificate(GENESIS, A) is None
    assert t.links(H + 1) == [(A, nxt)] and t.deposit_for(A, nxt) == 1  # what is at or above is kept
    second = v(0, Checkpoint(H + 1, BLOCK_A), A)
    assert t.add(second) == Equivocation(v(0, nxt, A), second)  # and still catches a double vote
    assert t.add(v(0)) == Counted(1)  # below: forgotten, so not a duplicate


# ------------------------------------------------------------------ offences


def test_check_offence_accepts_double_and_surround_votes():
    a = v(0)
    for b in (v(0, B), v(0, A, S1)):  # same target height: another block, or another source
        for x, y in ((a, b), (b, a)):
            assert double_vote(x, y) and not surround_vote(x, y)
            check_offence(x, y)
    for outer, inner in ((span(0, 1, 10), span(0, 2, 9)), (span(0, 0, 3), span(0, 1, 2))):
        for x, y in ((outer, inner), (inner, outer)):
            assert surround_vote(x, y) and not double_vote(x, y)
            check_offence(x, y)


def test_check_offence_refuses_what_proves_nothing():
    a = v(0)
    neither = [
        (a, a),  # one vote twice
        (span(0, 1, 10), span(0, 1, 9)),  # nested, but one source: not strictly surrounded
        (span(0, 1, 5), span(0, 2, 6)),  # increasing, overlapping spans
        (span(0, 1, 5), span(0, 5, 9)),  # the second link continues from the first's target
        (span(0, 1, 5), span(0, 6, 9)),  # disjoint
    ]
    for x, y in neither:
        for p, q in ((x, y), (y, x)):
            assert not double_vote(p, q) and not surround_vote(p, q)
            with pytest.raises(FinalityError, match="neither a double vote nor a surround vote"):
                check_offence(p, q)
    refused = [
        (a, v(1, B), "different keys"),  # a double vote's shape, but two voters
        (span(0, 1, 10), span(1, 2, 9), "different keys"),
        (a, v(0, B, chain="other"), "different chains"),
        (a, replace(v(0, B), signature=bls.sign(SKS[0], b"x")), "does not verify"),
        (replace(a, signature=v(1).signature), v(0, B), "does not verify"),
        (replace(span(0, 1, 10), signature=bytes(96)), span(0, 2, 9), "does not verify"),
    ]
    for x, y, why in refused:
        for p, q in ((x, y), (y, x)):
            with pytest.raises(FinalityError, match=why):
                check_offence(p, q)


def _unsigned(s: int, sh: bytes, t: int, th: bytes) -> Vote:
    return Vote(CHAIN, Checkpoint(s, sh), Checkpoint(t, th), PKS[0])


links = st.tuples(st.integers(0, 12), st.integers(1, 6), st.sampled_from([BLOCK_A, BLOCK_B]),
                  st.sampled_from([BLOCK_A, BLOCK_B])).map(lambda x: _unsigned(x[0], x[2], x[0] + x[1], x[3]))


@MANY
@given(links, links)
def test_property_offences_are_ffg_double_and_surround_votes(a, b):
    sa, ta, sb, tb = a.source.height, a.target.height, b.source.height, b.target.height
    assert double_vote(a, b) == double_vote(b, a) == (ta == tb and a.link != b.link)
    assert surround_vote(a, b) == surround_vote(b, a) == (sa < sb < tb < ta or sb < sa < ta < tb)
    if sa <= sb and ta < tb:  # an honest voter's next vote: neither goes back, the target moves up
        assert not double_vote(a, b) and not surround_vote(a, b)


# ------------------------------------------------------------------ certificates


def test_certificate_verification_fails_on_any_lie():
    voters = voter_set([2, 2, 1, 1])
    cert = cert_of([0, 1, 2], voters)
    verify_certificate(cert, voters, chain_id=CHAIN)
    assert check_aggregate(cert, voters) == (0, 1, 2) and certificate_ok(cert, voters)
    flat = make_certificate([signed(i, B, A) for i in (0, 1, 2)], voters)  # a signed quorum for no link
    lies = [
        (replace(cert, signers=voters.bitfield([0, 1, 2, 3])), "does not verify"),  # names one who did not sign
        (replace(cert, signers=voters.bitfield([0, 1, 3])), "does not verify"),  # same deposit, wrong voter
        (replace(cert, signers=voters.bitfield([0, 1])), "does not verify"),  # leaves a signer out
        (replace(cert, signers=voters.bitfield([])), "nobody signed"),
        (replace(cert, signers=cert.signers + b"\x00"), "bytes, not 2"),
        (replace(cert, signers=bytes([cert.signers[0] | 0x10])), "beyond the last voter"),
        (replace(cert, target=B), "does not verify"),
        (replace(cert, target=Checkpoint(H + 1, BLOCK_A)), "does not verify"),
        (replace(cert, source=S1), "does not verify"),
        (replace(cert, chain_id="another"), "does not verify"),
        (replace(cert, signature=bls.sign(SKS[0], b"x")), "does not verify"),
        (replace(cert, signature=cert_of([0, 1, 3], voters).signature), "does not verify"),
        (replace(cert, signature=cert_of([0, 1, 2], voters, B).signature), "does not verify"),
        (flat, "not below its target"),
    ]
    for bad, why in lies:
        with pytest.raises(FinalityError, match=why):
            check_aggregate(bad, voters)
        with pytest.raises(FinalityError, match=why):
            verify_certificate(bad, voters)
        assert not certificate_ok(bad, voters)
    with pytest.raises(FinalityError, match="chain"):
        verify_certificate(cert, voters, chain_id="another")
    with pytest.raises(FinalityError, match="chain"):
        check_aggregate(cert, voters, chain_id="another")
    assert not certificate_ok(cert, voters, chain_id="another")
    with pytest.raises(FinalityError, match="does not verify"):  # the same signers, another set's keys
        verify_certificate(cert, VoterSet(tuple(replace(x, bls_key=PKS[7 - i]) for i, x in enumerate(voters.voters))))


def test_a_quorum_is_more_than_two_thirds_of_the_deposit():
    voters = voter_set([2, 2, 1, 1])  # total 6
    for signers in ([0, 1, 2], [0, 1, 3], [3, 2, 0, 1]):  # 5, 5, 6 of 6
        assert certificate_ok(cert_of(signers, voters), voters)
    for signers in ([0, 1], [1, 2, 3], [0, 2, 3], [3]):  # 4 of 6 is exactly 2/3, not more; 1 of 6
        cert = cert_of(signers, voters)
        assert check_aggregate(cert, voters, chain_id=CHAIN) == tuple(sorted(signers))  # a good aggregate
        with pytest.raises(FinalityError, match="not more than 2/3"):
            verify_certificate(cert, voters)
        assert not certificate_ok(cert, voters)


def test_make_certificate_refuses_mixed_votes():
    voters = voter_set([1, 1, 1])
    for votes, why in [([v(0), v(1, B)], "different links"), ([v(0), v(1, A, S1)], "different links"),
                       ([v(0), v(1, chain="x")], "different links"), ([v(0), v(0)], "twice"),
                       ([v(0), v(5)], "not a voter"), ([], "no votes")]:
        with pytest.raises(FinalityError, match=why):
            make_certificate(votes, voters)


def test_accountable_safety_names_more_than_a_third():
    voters = voter_set([10, 20, 30, 40])
    a = cert_of([1, 2, 3], voters)
    for b in (cert_of([0, 2, 3], voters, B), cert_of([0, 2, 3], voters, A, S1)):  # another block; another source
        for x, y in ((a, b), (b, a)):
            fault = accountable_safety(x, y, voters)
            assert fault.indices == (2, 3) and fault.deposit == 70 and fault.total == 100
            assert [w.address for w in fault.voters] == [addr(2), addr(3)]
        for i in fault.indices:  # each of them double voted, provably from its two votes
            check_offence(v(i, a.target, a.source), v(i, b.target, b.source))
    refused = [
        (cert_of([0, 1, 3], voters), "same link"),
        (cert_of([0, 2, 3], voters, Checkpoint(H + 1, BLOCK_B), A), "do not conflict"),  # a later height
        (cert_of([0, 2, 3], voters, B, chain="another"), "do not conflict"),
        (cert_of([0, 3], voters, B), "not more than 2/3"),
        (replace(cert_of([0, 2, 3], voters, B), signature=a.signature), "does not verify"),
    ]
    for b, why in refused:
        with pytest.raises(FinalityError, match=why):
            accountable_safety(a, b, voters)
        with pytest.raises(FinalityError, match=why):
            accountable_safety(b, a, voters)


VOTES_A = [v(i) for i in range(6)]
CONFLICTING = [[v(i, B) for i in range(6)], [v(i, A, S1) for i in range(6)]]  # another block; another source


@FEW
@given(st.lists(st.integers(1, 10**6), min_size=3, max_size=6), st.data())
def test_property_tally_threshold_and_quorum_intersection(deposits, data):
    voters = voter_set(deposits)
    n = len(deposits)
    order = data.draw(st.permutations(range(n)))
    t = Tally(CHAIN, voters)
    signed_deposit, certs = 0, []
    for i in order:
        before = quorum(signed_deposit, voters.total)
        signed_deposit += deposits[i]
        out = t.add(VOTES_A[i])
        assert isinstance(out, Counted) and out.deposit == signed_deposit == t.deposit_for(GENESIS, A)
        assert (out.certificate is not None) == (quorum(signed_deposit, voters.total) and not before)
        certs += [out.certificate] if out.certificate else []
    assert len(certs) == 1 and certificate_ok(certs[0], voters)
    other = data.draw(st.sampled_from(CONFLICTING))
    j = data.draw(st.integers(0, n - 1))
    assert t.add(other[j]) == Equivocation(VOTES_A[j], other[j])
    # two quorums for conflicting links overlap in more than a third, whoever they are
    quorate = st.sets(st.integers(0, n - 1), min_size=1).filter(
        lambda s: quorum(sum(deposits[i] for i in s), voters.total))
    qa, qb = data.draw(quorate), data.draw(quorate)
    ca = make_certificate([VOTES_A[i] for i in qa], voters)
    cb = make_certificate([other[i] for i in qb], voters)
    fault = accountable_safety(ca, cb, voters)
    assert set(fault.indices) == qa & qb and 3 * fault.deposit > voters.total


# ------------------------------------------------------------------ lottery tickets


def test_tickets_verify_and_are_unique():
    seed = beacon.genesis_beacon(b"\x01" * 32)
    t = beacon.ticket(SKS[0], seed, 10)
    assert beacon.ticket(SKS[0], seed, 10) == t  # one ticket per key, beacon and height
    assert t.value == beacon.ticket_value(t.proof) and len(t.value) == 32
    assert beacon.verify_ticket(PKS[0], seed, 10, t)
    assert not beacon.verify_ticket(PKS[1], seed, 10, t)
    assert not beacon.verify_ticket(PKS[0], seed, 11, t)
    assert not beacon.verify_ticket(PKS[0], beacon.next_beacon(seed, t.proof), 10, t)
    assert not beacon.verify_ticket(PKS[0], seed[:31], 10, t)
    assert not beacon.verify_ticket(PKS[0], seed, 10, beacon.Ticket(bls.sign(SKS[0], b"other")))
    # a vote's signature is never a ticket, nor a ticket a vote: the messages are domain-separated
    assert beacon.ticket_message(seed, 10).startswith(b"transx-ticket-v1")
    assert not beacon.verify_ticket(PKS[0], seed, 10, beacon.Ticket(v(0).signature))
    values = {beacon.ticket(sk, seed, 10).value for sk in SKS}
    assert len(values) == len(SKS)
    assert beacon.TICKET.decode(beacon.TICKET.encode(t)) == t


def test_beacon_chain():
    b0 = beacon.genesis_beacon(b"\x01" * 32)
    assert b0 != beacon.genesis_beacon(b"\x02" * 32)
    t1 = beacon.ticket(SKS[0], b0, 1)
    b1 = beacon.next_beacon(b0, t1.proof)
    assert b1 == beacon.next_beacon(b0, t1.proof) and len(b1) == 32
    assert b1 != beacon.next_beacon(b0, beacon.ticket(SKS[1], b0, 1).proof)  # the winner's proof moves it
    with pytest.raises(ValueError):
        beacon.next_beacon(b0, t1.proof[:95])


# ------------------------------------------------------------------ encodings


def test_round_trips():
    voters = voter_set([5, 3, 9])
    cert = cert_of([0, 1, 2], voters)
    a = v(0)
    assert decode_vote(a.encoded) == a
    assert decode_certificate(cert.encoded) == cert
    assert VOTER_SET.decode(VOTER_SET.encode(voters)) == voters
    assert CHECKPOINT.decode(CHECKPOINT.encode(A)) == A
    assert len(a.encoded) == 1 + len(CHAIN) + (1 + 32) + (1 + 32) + 48 + 96
    assert len(cert.encoded) == 1 + len(CHAIN) + (1 + 32) + (1 + 32) + 1 + 1 + 96


def test_decode_vote_refuses_a_source_not_below_its_target():
    ok = signed(0, Checkpoint(H - 1, BLOCK_B), A)
    assert decode_vote(VOTE.encode(ok)) == ok  # control
    for source in (A, B, Checkpoint(H + 1, BLOCK_A), Checkpoint(2**64 - 1, BLOCK_A)):
        bad = signed(0, source, A)
        raw = VOTE.encode(bad)
        assert VOTE.decode(raw) == bad and bad.signature_ok()  # well-formed bytes, a good signature
        with pytest.raises(ValueError, match="source"):
            decode_vote(raw)


def _raw_vote(source_height: bytes = b"\x00", target_height: bytes = b"\x07", voter: bytes = PKS[0]) -> bytes:
    return Text(32, min_len=1).encode(CHAIN) + source_height + GENESIS.hash + target_height + BLOCK_A + voter + bytes(96)


def test_non_canonical_bytes_are_refused():
    assert decode_vote(_raw_vote()).link == (GENESIS, A)  # control: the builder makes a valid vote
    a = v(0)
    for bad in [
        a.encoded + b"\x00",  # trailing byte
        a.encoded[:-1],  # truncated
        _raw_vote(target_height=b"\x87\x00"),  # 7 in two bytes
        _raw_vote(source_height=b"\x80\x00"),  # 0 in two bytes
        _raw_vote(target_height=b"\x80" * 9 + b"\x02"),  # 2**64
        _raw_vote(voter=PKS[0][:47]),
        b"\x00" + a.encoded[1:],  # empty chain id
    ]:
        with pytest.raises(DecodeError):
            decode_vote(bad)
    voters = voter_set([1, 2])
    raw = VOTER_SET.encode(voters)
    assert VOTER_SET.decode(raw) == voters
    swapped = raw[:1] + raw[1 + 69:] + raw[1:1 + 69]  # each voter: 20 + 48 + 1 bytes
    same_key = raw[:1] + raw[1:70] + raw[70:90] + raw[21:69] + raw[-1:]
    zero = raw[:-1] + b"\x00"
    for bad, why in [(swapped, "increasing"), (same_key, "share a BLS key"), (zero, "below 1"), (b"\x00", "1..")]:
        with pytest.raises(DecodeError, match=why):
            VOTER_SET.decode(bad)
    with pytest.raises(ValueError):
        VoterSet((Voter(addr(1), PKS[1], 1), Voter(addr(0), PKS[0], 1)))
    assert VoterSet.of([Voter(addr(1), PKS[1], 1), Voter(addr(0), PKS[0], 1)]).voters[0].address == addr(0)


u64 = st.integers(0, 2**64 - 1)
heights = st.one_of(st.integers(0, 3), u64)  # small ones collide often
b32 = st.binary(min_size=32, max_size=32)
chains = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=32)


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


@MANY
@given(chains, heights, b32, heights, b32, st.binary(min_size=48, max_size=48), st.binary(min_size=96, max_size=96),
       st.binary(max_size=128))
def test_property_encodings_round_trip_and_are_unique(chain, sh, sb, th, tb, key, sig, signers):
    source, target = Checkpoint(sh, sb), Checkpoint(th, tb)
    a = Vote(chain, source, target, key, sig)
    raw = VOTE.encode(a)
    assert VOTE.decode(raw) == a
    if sh < th:
        assert decode_vote(raw) == a
    else:
        with pytest.raises(ValueError):
            decode_vote(raw)
    cert = Certificate(chain, source, target, signers, sig)
    assert decode_certificate(cert.encoded) == cert
    assert a.signing_bytes == cert.signing_bytes == signing_message(chain, source, target)
    assert signing_message(chain, Checkpoint(sh, _flip(sb)), target) != a.signing_bytes
    assert signing_message(chain, source, Checkpoint(th, _flip(tb))) != a.signing_bytes
    if source != target:
        assert signing_message(chain, target, source) != a.signing_bytes
