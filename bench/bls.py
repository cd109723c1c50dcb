"""BLS12-381 benchmark: the Python bindings a finality vote could be signed and aggregated with.

    python -P bench/bls.py [--rounds 5] [--quick]

(-P, Python 3.11+: do not put bench/ first on the path, where bench/consensus.py and
bench/solver.py would shadow the packages of the same names; the bindings' columns run either way.)

Every binding is driven through the same byte-level interface, the IETF BLS signature
ciphersuite with proof of possession, minimal-pubkey-size variant
(BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_: 48-byte public keys in G1, 96-byte signatures
in G2), because bytes are what a node receives: each verification parses and subgroup-checks
its inputs.  Rows:

  keygen            IETF KeyGen from a 32-byte seed (HKDF-SHA256, draft-irtf-cfrg-bls-signature-05
                    section 2.3, in Python for every binding: milagro has none, and blspy's key_gen is
                    an earlier draft's) and SkToPk
  sign, verify      one 93-byte message (the size of a vote's signing message: domain tag, chain id,
                    source and target checkpoints)
  pop prove/verify  PopProve / PopVerify (the proof of possession a solver registers)
  aggregate n       Aggregate of n signatures
  fast-agg-verify n FastAggregateVerify: n votes on one link (source, target), one aggregate signature
  ... keys parsed   the same with the n public keys already parsed (a node keeps its voter set's
                    keys as points; only the aggregate signature arrives as bytes)
  agg-verify n      AggregateVerify of n signatures over n distinct messages

The last column is this project's wrapper (consensus/rules/bls.py), which parses with arkworks
and caches parsed keys and signatures by their bytes, as a node sees it once its voter set is
known; a second table times the finality rules built on it (a vote, the tally, a certificate,
a lottery ticket).

`milagro-bls-binding` has no KeyGen, PopProve or PopVerify, so those rows are blank for it;
`py-arkworks-bls12381` is curve arithmetic (points, scalars, hash-to-curve, pairings), so the
ciphersuite is built here from its parts, in the obvious way (sign = sk * H(m); verify = one
multi-pairing check).  Before timing, all bindings must produce byte-identical keys, signatures
and proofs of possession, and a consensus-spec test vector (sign_case_c82df61aa3ee60fb).

The machine may be shared (other test runs on 2 cores): each cell is the median and the minimum
over all timed calls, taken in `--rounds` rounds that go round-robin over the bindings so a burst
of load hits every binding alike; the minimum is the least disturbed call, the median what a
loaded node sees.  The load average before and after is printed.  Times in ms.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import statistics
import sys
import time
from importlib.metadata import PackageNotFoundError, version

DST_SIG = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
DST_POP = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
R = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001  # the order of G1 and G2

# consensus-spec-tests bls/sign/sign_case_c82df61aa3ee60fb
KAT_SK = bytes.fromhex("263dbd792f5b1be47ed85f8938c0f29586af0d3ac7b977f21c278fe1462040e3")
KAT_PK = bytes.fromhex("a491d1b0ecd9bb917989f0e74f0dea0422eac4a873e5e2644f368dffb9a6e20fd6e10c1b77654d067c0618f6e5a7f79a")
KAT_MSG = bytes(32)
# EIP-2333 test case 0: derive_master_SK is the draft-05 KeyGen with empty key_info
EIP2333_SEED = bytes.fromhex("c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141"
                             "630c7a3c4ab7c81b2f001698e7463b04")
EIP2333_SK = 6083874454709270928345386274498605044986640685124978867557563392430687146096
KAT_SIG = bytes.fromhex(
    "b6ed936746e01f8ecf281f020953fbf1f01debd5657c4a383940b020b26507f6076334f91e2366c96e9ab279fb515809"
    "0352ea1c5b0c9274504f4f0e7053af24802e51e4568d164fe986834f41e55c8e850ce1f98458c0cfc9ab380b55285a55")


def ietf_keygen(ikm: bytes, key_info: bytes = b"") -> bytes:
    """KeyGen of draft-irtf-cfrg-bls-signature-05, section 2.3: a 32-byte big-endian secret key."""
    salt = b"BLS-SIG-KEYGEN-SALT-"
    while True:
        salt = hashlib.sha256(salt).digest()
        prk = hmac.new(salt, ikm + b"\x00", hashlib.sha256).digest()
        okm, block, info = b"", b"", key_info + (48).to_bytes(2, "big")
        for i in range(1, 3):
            block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
            okm += block
        sk = int.from_bytes(okm[:48], "big") % R
        if sk:
            return sk.to_bytes(32, "big")


class Blspy:
    name, dist = "blspy", "blspy"

    def __init__(self) -> None:
        import blspy
        self.m, self.S = blspy, blspy.PopSchemeMPL

    def keygen(self, seed):
        sk = ietf_keygen(seed)
        return sk, bytes(self.m.PrivateKey.from_bytes(sk).get_g1())

    def sign(self, sk, msg):
        return bytes(self.S.sign(self.m.PrivateKey.from_bytes(sk), msg))

    def verify(self, pk, msg, sig):
        return self.S.verify(self.m.G1Element.from_bytes(pk), msg, self.m.G2Element.from_bytes(sig))

    def pop_prove(self, sk):
        return bytes(self.S.pop_prove(self.m.PrivateKey.from_bytes(sk)))

    def pop_verify(self, pk, proof):
        return self.S.pop_verify(self.m.G1Element.from_bytes(pk), self.m.G2Element.from_bytes(proof))

    def aggregate(self, sigs):
        return bytes(self.S.aggregate([self.m.G2Element.from_bytes(s) for s in sigs]))

    def parse_pks(self, pks):
        return [self.m.G1Element.from_bytes(p) for p in pks]

    def fast_aggregate_verify(self, pks, msg, sig, parsed=False):
        keys = pks if parsed else self.parse_pks(pks)
        return self.S.fast_aggregate_verify(keys, msg, self.m.G2Element.from_bytes(sig))

    def aggregate_verify(self, pks, msgs, sig):
        return self.S.aggregate_verify(self.parse_pks(pks), list(msgs), self.m.G2Element.from_bytes(sig))


class Milagro:
    name, dist = "milagro-bls-binding", "milagro-bls-binding"

    def __init__(self) -> None:
        import milagro_bls_binding
        self.m = milagro_bls_binding

    def keygen(self, seed):
        sk = ietf_keygen(seed)
        return sk, self.m.SkToPk(sk)

    def sign(self, sk, msg):
        return self.m.Sign(sk, msg)

    def verify(self, pk, msg, sig):
        return self.m.Verify(pk, msg, sig)

    pop_prove = pop_verify = parse_pks = None  # not provided by the binding

    def aggregate(self, sigs):
        return self.m.Aggregate(list(sigs))

    def fast_aggregate_verify(self, pks, msg, sig, parsed=False):
        return self.m.FastAggregateVerify(list(pks), msg, sig)

    def aggregate_verify(self, pks, msgs, sig):
        return self.m.AggregateVerify(list(pks), list(msgs), sig)


class Arkworks:
    name, dist = "py-arkworks-bls12381", "py-arkworks-bls12381"

    def __init__(self) -> None:
        import py_arkworks_bls12381 as a
        self.a, self.neg_g1 = a, -a.G1Point()

    def _sk(self, sk):
        return self.a.Scalar(int.from_bytes(sk, "big"))

    def _pk(self, pk):
        p = self.a.G1Point.from_compressed_bytes(pk)
        if p == self.a.G1Point.identity():
            raise ValueError("identity public key")
        return p

    def keygen(self, seed):
        sk = ietf_keygen(seed)
        return sk, (self.a.G1Point() * self._sk(sk)).to_compressed_bytes()

    def sign(self, sk, msg, dst=DST_SIG):
        return (self.a.G2Point.hash_to_curve(msg, dst) * self._sk(sk)).to_compressed_bytes()

    def _check(self, pk_point, msg, sig, dst=DST_SIG):
        s = self.a.G2Point.from_compressed_bytes(sig)
        return self.a.GT.pairing_check([pk_point, self.neg_g1], [self.a.G2Point.hash_to_curve(msg, dst), s])

    def verify(self, pk, msg, sig):
        return self._check(self._pk(pk), msg, sig)

    def pop_prove(self, sk):
        return self.sign(sk, (self.a.G1Point() * self._sk(sk)).to_compressed_bytes(), DST_POP)

    def pop_verify(self, pk, proof):
        return self._check(self._pk(pk), pk, proof, DST_POP)

    def aggregate(self, sigs):
        acc = self.a.G2Point.identity()
        for s in sigs:
            acc = acc + self.a.G2Point.from_compressed_bytes(s)
        return acc.to_compressed_bytes()

    def parse_pks(self, pks):
        return [self._pk(p) for p in pks]

    def fast_aggregate_verify(self, pks, msg, sig, parsed=False):
        acc = self.a.G1Point.identity()
        for p in (pks if parsed else self.parse_pks(pks)):
            acc = acc + p
        return self._check(acc, msg, sig)

    def aggregate_verify(self, pks, msgs, sig):
        a = self.a
        g1s = self.parse_pks(pks) + [self.neg_g1]
        g2s = [a.G2Point.hash_to_curve(m, DST_SIG) for m in msgs] + [a.G2Point.from_compressed_bytes(sig)]
        return a.GT.pairing_check(g1s, g2s)


class Transx:
    """consensus.rules.bls: the arkworks path with the ciphersuite fixed, and parsed points cached by their bytes."""

    name, dist = "transx bls.py (arkworks, cached)", "py-arkworks-bls12381"
    parse_pks = None

    def __init__(self) -> None:
        from consensus.rules import bls
        self.m = bls

    def keygen(self, seed):
        sk = self.m.keygen(seed)
        return sk, self.m.public_key(sk)

    def sign(self, sk, msg):
        return self.m.sign(sk, msg)

    def verify(self, pk, msg, sig):
        return self.m.verify(pk, msg, sig)

    def pop_prove(self, sk):
        return self.m.pop_prove(sk)

    def pop_verify(self, pk, proof):
        return self.m.pop_verify(pk, proof)

    def aggregate(self, sigs):
        return self.m.aggregate(sigs)

    def fast_aggregate_verify(self, pks, msg, sig, parsed=False):
        return self.m.fast_aggregate_verify(pks, msg, sig)

    def aggregate_verify(self, pks, msgs, sig):
        return self.m.aggregate_verify(pks, msgs, sig)


def finality_table(rounds: int, quick: bool) -> None:
    """What the finality rules cost on top: a vote, counting one, checking a certificate, a lottery ticket.

    finality.py caches signature checks by their bytes (gossip delivers a vote many times, and a
    simulator runs many nodes in one process); the caches are cleared before each timed Tally.add and
    verify_certificate, outside the timing, so those rows are a first check, as a node sees a new vote."""
    from consensus.rules import beacon, bls, finality
    from consensus.rules.finality import Checkpoint, Tally, Voter, VoterSet, make_certificate, verify_certificate, vote

    n = 256
    sks = [bls.keygen(i.to_bytes(32, "big")) for i in range(1, n + 1)]
    voters = VoterSet.of(Voter(i.to_bytes(20, "big"), bls.public_key(sk), 1 + i % 7) for i, sk in enumerate(sks))
    source, target = Checkpoint(0, bytes(32)), Checkpoint(1, bytes(range(32)))  # genesis -> block 1
    votes = [vote(sk, chain_id="transx-bench", source=source, target=target) for sk in sks]
    cert = make_certificate(votes, voters)
    seed = beacon.genesis_beacon(bytes(32))
    tk = beacon.ticket(sks[0], seed, 5)
    pk0 = bls.public_key(sks[0])
    rows: dict[str, list[float]] = {}

    def forget_checks():
        finality._verified.cache_clear()
        finality._aggregate_ok.cache_clear()

    def timed(row, fn, reps, setup=None):
        for _ in range(reps):
            if setup:
                setup()
            t0 = time.perf_counter()
            fn()
            rows.setdefault(row, []).append((time.perf_counter() - t0) * 1e3)

    for _ in range(rounds):
        timed("vote (sign one link)", lambda: vote(sks[1], chain_id="transx-bench", source=source, target=target),
              3 if quick else 20)
        tally = Tally("transx-bench", voters)
        for v in votes[: 32 if quick else n]:
            timed("Tally.add, per vote (256 voters)", lambda v=v: tally.add(v), 1, forget_checks)
        timed("make_certificate of 256 votes", lambda: make_certificate(votes, voters), 3)
        timed("verify_certificate, 256 voters", lambda: verify_certificate(cert, voters), 3 if quick else 10,
              forget_checks)
        timed("ticket", lambda: beacon.ticket(sks[0], seed, 5), 3 if quick else 20)
        timed("verify_ticket", lambda: beacon.verify_ticket(pk0, seed, 5, tk), 3 if quick else 20)
    print(f"Finality rules (consensus.rules.finality, beacon) on bls.py; median / minimum, ms, {rounds} rounds\n")
    print("| operation | ms |\n|---|---:|")
    for row, s in rows.items():
        print(f"| {row} | {statistics.median(s):.2f} / {min(s):.2f} |")
    print(f"\nsizes: a vote {len(votes[0].encoded)} bytes (its signing message {len(votes[0].signing_bytes)}), "
          f"a certificate over 256 voters {len(cert.encoded)} bytes")


def available() -> list:
    out = []
    for cls in (Milagro, Arkworks, Blspy, Transx):
        try:
            b = cls()
            b.version = version(cls.dist)
            out.append(b)
        except (ImportError, PackageNotFoundError) as e:
            hint = " (run with python -P: bench/consensus.py shadows the package)" if "consensus" in str(e) else ""
            print(f"{cls.name}: not importable ({e}){hint}; skipped", file=sys.stderr)
    return out


def check_agreement(bindings: list) -> None:
    """Every binding computes the same bytes (deterministic IETF ciphersuite) and the spec's vectors."""
    assert int.from_bytes(ietf_keygen(EIP2333_SEED), "big") == EIP2333_SK, "KeyGen differs from EIP-2333 test case 0"
    msg = b"transx agreement check"
    ref, pks = None, set()
    for b in bindings:
        pk = b.keygen(bytes(32))[1] if b.name != "blspy" else None
        pks |= {pk} - {None}
        assert len(pks) <= 1, f"{b.name}: public key of the draft-05 KeyGen differs"
        got = [b.sign(KAT_SK, KAT_MSG), b.sign(KAT_SK, msg)]
        assert got[0] == KAT_SIG, f"{b.name}: consensus-spec sign vector differs"
        assert b.verify(KAT_PK, KAT_MSG, KAT_SIG) and not b.verify(KAT_PK, b"\x01" * 32, KAT_SIG), b.name
        if b.pop_prove:
            proof = b.pop_prove(KAT_SK)
            assert b.pop_verify(KAT_PK, proof) and not b.verify(KAT_PK, KAT_PK, proof), b.name
            got.append(proof)
        ref = ref or got
        n = min(len(got), len(ref))
        assert got[:n] == ref[:n], f"{b.name} disagrees"
    if any(b.name == "blspy" for b in bindings):
        blspy = next(b for b in bindings if b.name == "blspy")
        sk = bytes(blspy.S.key_gen(EIP2333_SEED))
        print(f"note: blspy's PopSchemeMPL.key_gen is {'' if int.from_bytes(sk, 'big') == EIP2333_SK else 'not '}"
              "draft-05 KeyGen (EIP-2333 test case 0); every keygen row is the draft-05 KeyGen in Python, then SkToPk", file=sys.stderr)
    print(f"agreement: {', '.join(b.name for b in bindings)} give identical signatures and proofs of possession; "
          "the consensus-spec vector sign_case_c82df61aa3ee60fb and EIP-2333 KeyGen case 0 match", file=sys.stderr)


def workload(b, n_max: int):
    keys = [b.keygen(i.to_bytes(32, "big")) for i in range(n_max)]
    return keys


def cases(b, keys, sizes: list[int], quick: bool) -> list[tuple[str, int, object]]:
    """(row, calls per round, thunk) for one binding."""
    msg = b"transx-vote-v2" + bytes(79)  # 93 bytes, as finality.signing_message on chain "transx-bench"
    sk, pk = keys[0]
    sig = b.sign(sk, msg)
    out = [
        ("keygen", 20, lambda: b.keygen(os.urandom(32))),
        ("sign", 20, lambda: b.sign(sk, msg)),
        ("verify", 20, lambda: b.verify(pk, msg, sig)),
    ]
    if b.pop_prove:
        proof = b.pop_prove(sk)
        out += [("pop prove", 20, lambda: b.pop_prove(sk)), ("pop verify", 20, lambda: b.pop_verify(pk, proof))]
    for n in sizes:
        pks = [k[1] for k in keys[:n]]
        sigs = [b.sign(k[0], msg) for k in keys[:n]]
        agg = b.aggregate(sigs)
        assert b.fast_aggregate_verify(pks, msg, agg), b.name
        reps = max(3, 600 // n) if not quick else 3
        out += [(f"aggregate {n}", reps, lambda s=sigs: b.aggregate(s)),
                (f"fast-agg-verify {n}", reps, lambda p=pks, a=agg: b.fast_aggregate_verify(p, msg, a))]
        if b.parse_pks:
            parsed = b.parse_pks(pks)
            out.append((f"fast-agg-verify {n}, keys parsed", reps,
                        lambda p=parsed, a=agg: b.fast_aggregate_verify(p, msg, a, parsed=True)))
    n = sizes[0]
    msgs = [msg[:-4] + i.to_bytes(4, "big") for i in range(n)]
    agg = b.aggregate([b.sign(k[0], m) for k, m in zip(keys, msgs)])
    pks = [k[1] for k in keys[:n]]
    assert b.aggregate_verify(pks, msgs, agg), b.name
    out.append((f"agg-verify {n} distinct msgs", 3 if quick else 10, lambda: b.aggregate_verify(pks, msgs, agg)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="round-robin rounds over the bindings (default 5)")
    ap.add_argument("--quick", action="store_true", help="fewer calls per round")
    args = ap.parse_args()
    bindings = available()
    if not bindings:
        sys.exit("no BLS binding installed")
    check_agreement(bindings)
    sizes = [16, 64, 256]
    load0 = os.getloadavg()
    plans = {b.name: cases(b, workload(b, max(sizes)), sizes, args.quick) for b in bindings}
    samples: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for b in bindings:
            for row, reps, fn in plans[b.name]:
                fn()  # warm
                for _ in range(3 if args.quick and reps > 3 else reps):
                    t0 = time.perf_counter()
                    fn()
                    samples.setdefault((row, b.name), []).append((time.perf_counter() - t0) * 1e3)
    load1 = os.getloadavg()
    rows = [row for row, _, _ in max(plans.values(), key=len)]
    print(f"BLS12-381, IETF PoP ciphersuite (min-pk); Python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} cores, load average {load0[0]:.2f} before, {load1[0]:.2f} after (machine shared with "
          f"other test runs); median / minimum of all calls over {args.rounds} round-robin rounds, ms\n")
    print("| operation | " + " | ".join(f"{b.name} {b.version}" for b in bindings) + " |")
    print("|---|" + "---:|" * len(bindings))
    for row in rows:
        cells = []
        for b in bindings:
            s = samples.get((row, b.name))
            cells.append(f"{statistics.median(s):.2f} / {min(s):.2f}" if s else "n/a")
        print(f"| {row} | " + " | ".join(cells) + " |")
    per = {row: len(s) for (row, _), s in samples.items()}
    print(f"\ncalls timed per cell: {per[rows[0]]} for the single operations, {per[rows[-1]]} for agg-verify, "
          f"{per['fast-agg-verify 256']} for n = 256; n/a: the binding has no such function\n")
    if any(isinstance(b, Transx) for b in bindings):
        finality_table(args.rounds, args.quick)


if __name__ == "__main__":
    main()
