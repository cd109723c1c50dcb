"""Fuzz target: the clearing verifier (solver/verifier.py), the consensus check of every block's clearing.

Three fixed instances (generated; one with bargaining weights) and their solved, certified clearings
seed the corpus.  The first byte picks the instance (byte % 3) and the form of the rest ((byte // 3) % 3):
  0  a block's clearing (consensus/rules/blocks.py CLEARING): decoded (`DecodeError`), mapped onto the
     instance as `Chain.check_clearing` does (`IndexError` for an index the slot does not have), verified;
  1  a clearing document, the JSON `transx solve` writes: parsed (`ClearingError`, or the JSON's
     `ValueError`), verified;
  2  edits to the instance's solved clearing, 4 bytes each (`edit`): a quantity, a payment or a multiplier
     moved by a little or a lot, a trade dropped or added; so most inputs are near a valid clearing, on
     the edges of its rules.
`verify` must never raise, and its verdict must agree with `reference`, the rules written again here in
plain Python integers from the module doc (no numpy, no float pre-screen): a clearing that breaks a rule
is never accepted, and one that keeps them all is never refused.
"""

from __future__ import annotations

from fractions import Fraction

from fuzz import harness

_ALLOWANCE_SCALE = 10**6


def _instances():
    from solver.generator import generate
    from solver.instance import Instance, Participant

    weighted = Instance(
        slot=7, feed_in=170_000, retail=570_000, network_charge=((10_000, 30_000), (30_000, 10_000)),
        sellers=(Participant("pv-a", 3_000, 200_000, 0, 2), Participant("pv-b", 1_200, 260_000, 1, 1),
                 Participant("pv-c", 150, 180_000, 0, 3)),
        buyers=(Participant("home-1", 2_500, 520_000, 0, 1), Participant("ev-2", 9_000, 480_000, 1, 4),
                Participant("home-3", 800, 400_000, 0, 1)))
    return [generate(6, seed=1, slot=3), generate(14, seed=2, slot=4), weighted]


def seeds(world) -> list[bytes]:
    import json

    from consensus.rules.blocks import CLEARING, BlockClearing
    from solver import clear

    out = []
    for k, inst in enumerate(_instances()):
        c = clear(inst).clearing
        out.append(bytes([k]) + CLEARING.encode(BlockClearing.from_clearing(inst, c)))
        out.append(bytes([k + 3]) + json.dumps(c.to_json()).encode())
        for script in (b"", b"\x00\x00\x00\x01", b"\x01\x01\xff\xff", b"\x0a\x00\x00\x10", b"\x0b\x00\x00\x10",
                       b"\x04\x00\x00\x00", b"\x05\x00\x01\x20", b"\x32\x02\xff\x00\x09\x01\x00\x05"):
            out.append(bytes([k + 6]) + script)
    return out


def setup(world):
    import json

    from consensus.rules.blocks import CLEARING
    from consensus.rules.codec import DecodeError
    from solver import ClearingError, candidate_pairs, clear, clearing_from_json, verify
    from solver.verifier import DEFAULT_TOLERANCE

    instances = [(inst, candidate_pairs(inst), clear(inst).clearing) for inst in _instances()]

    def one_input(data: bytes) -> None:
        if not data:
            return
        inst, pairs, solved = instances[data[0] % 3]
        form = (data[0] // 3) % 3
        try:
            if form == 0:
                clearing = CLEARING.decode(data[1:]).to_clearing(inst)
            elif form == 1:
                clearing = clearing_from_json(json.loads(data[1:]))
            else:
                clearing = edit(inst, solved, data[1:])
        except (DecodeError, IndexError, ClearingError, ValueError, RecursionError):
            return
        v = verify(inst, clearing, pairs=pairs)
        broken = reference(inst, pairs, clearing, DEFAULT_TOLERANCE)
        if v.ok and broken is not None:
            raise harness.Finding(f"the verifier accepts a clearing that breaks a rule: {broken}")
        if not v.ok and broken is None:
            raise harness.Finding(f"the verifier refuses a clearing that keeps every rule: {v.reason}")

    return one_input


def edit(inst, clearing, script: bytes):
    """`clearing` changed by `script`, 4 bytes an edit: (op, index, a signed 16-bit amount).  op % 6: a
    trade's quantity moved by the amount; its payment by the amount times 10^(op >> 3 & 7); a seller's or a
    buyer's multiplier by the amount times 10^(op >> 3 & 15); the trade dropped; a trade added between
    seller `index` and buyer `amount` (high byte) of the amount's low byte + 1 Wh at a payment in the middle
    of the pair's limits."""
    from dataclasses import replace

    from solver import Clearing, Trade

    trades, lam, mu = list(clearing.trades), dict(clearing.lam), dict(clearing.mu)
    sellers, buyers = inst.sellers, inst.buyers
    for k in range(0, len(script) - 3, 4):
        op, index = script[k], script[k + 1]
        amount = int.from_bytes(script[k + 2:k + 4], "big", signed=True)
        kind, scale = op % 6, op >> 3
        if kind in (0, 1, 4) and trades:
            t = index % len(trades)
            if kind == 0:
                trades[t] = replace(trades[t], wh=trades[t].wh + amount)
            elif kind == 1:
                trades[t] = replace(trades[t], payment=trades[t].payment + amount * 10 ** (scale & 7))
            else:
                del trades[t]
        elif kind == 2 and sellers:
            p = sellers[index % len(sellers)].id
            lam[p] = lam.get(p, 0) + amount * 10 ** (scale & 15)
        elif kind == 3 and buyers:
            p = buyers[index % len(buyers)].id
            mu[p] = mu.get(p, 0) + amount * 10 ** (scale & 15)
        elif kind == 5 and sellers and buyers:
            s, b = sellers[index % len(sellers)], buyers[(amount >> 8) % len(buyers)]
            wh = (amount & 0xFF) + 1
            ask = max(s.price, inst.feed_in)
            bid = min(b.price, inst.retail) - inst.network_charge[s.zone][b.zone]
            trades.append(Trade(s.id, b.id, wh, (ask + bid) * wh // 2000))
    return Clearing(clearing.slot, tuple(trades), lam, mu)


def reference(inst, pairs, clearing, tolerance: Fraction) -> str | None:
    """The first rule `clearing` breaks (solver/verifier.py's module doc), or None: plain integers."""
    from solver.clearing import MAX_MULTIPLIER, MULTIPLIER_SCALE
    from solver.verifier import ALLOWANCE_CAP

    cap = int(ALLOWANCE_CAP * _ALLOWANCE_SCALE)  # per participant, per unit of weight

    if clearing.slot != inst.slot:
        return "another slot"
    sellers, buyers = inst.sellers, inst.buyers
    s_at = {p.id: k for k, p in enumerate(sellers)}
    b_at = {p.id: k for k, p in enumerate(buyers)}
    margin = {(int(i), int(j)): int(g) for i, j, g in zip(pairs.seller, pairs.buyer, pairs.margin)}
    ask = [max(p.price, inst.feed_in) for p in sellers]
    sold, bought = [0] * len(sellers), [0] * len(buyers)
    U, W = [0] * len(sellers), [0] * len(buyers)
    traded = []
    for t in clearing.trades:
        i, j = s_at.get(t.seller), b_at.get(t.buyer)
        if i is None or j is None:
            return "a trade names someone else"
        if (i, j) not in margin:
            return "a trade off the candidate pairs"
        if (i, j) in {(a, b) for a, b, _ in traded}:
            return "a pair traded twice"
        if not (t.wh >= 1 and 0 <= t.payment <= 10**15):
            return "a quantity or payment out of range"
        net = min(buyers[j].price, inst.retail) - inst.network_charge[sellers[i].zone][buyers[j].zone]
        x, y = 1000 * t.payment - ask[i] * t.wh, net * t.wh - 1000 * t.payment
        if x < 0 or y < 0:
            return "a payment outside the two limits"
        sold[i] += t.wh
        bought[j] += t.wh
        U[i] += x
        W[j] += y
        traded.append((i, j, net - ask[i]))
    if any(q > p.wh for q, p in zip(sold, sellers)) or any(q > p.wh for q, p in zip(bought, buyers)):
        return "a capacity exceeded"
    in_s, in_b = {i for i, _ in margin}, {j for _, j in margin}
    if any(U[i] <= 0 for i in in_s) or any(W[j] <= 0 for j in in_b):
        return "a participant with a candidate pair gains nothing"
    for given, index in ((clearing.lam, s_at), (clearing.mu, b_at)):
        if any(k not in index or not 0 <= v <= MAX_MULTIPLIER for k, v in given.items()):
            return "a multiplier for nobody, or out of range"
    lam = [clearing.lam.get(p.id, 0) for p in sellers]
    mu = [clearing.mu.get(p.id, 0) for p in buyers]
    for (i, j), g in margin.items():
        for surplus, weight in ((U[i], sellers[i].weight), (W[j], buyers[j].weight)):
            if g * weight * MULTIPLIER_SCALE > (lam[i] + mu[j]) * surplus:
                return "the certificate fails on a pair"
    weight = sum(sellers[i].weight for i in in_s) + sum(buyers[j].weight for j in in_b)
    dual = sum(lam[i] * p.wh for i, p in enumerate(sellers)) + sum(mu[j] * p.wh for j, p in enumerate(buyers))
    gap = Fraction(dual, MULTIPLIER_SCALE) - weight
    per_s, per_b = [0] * len(sellers), [0] * len(buyers)
    for i, j, g in traded:  # the grid allowance: each trade charged to the side its term is larger on
        g1 = (g + 1000) * _ALLOWANCE_SCALE
        bs, bb = sellers[i].weight, buyers[j].weight
        term_s, term_b = min(g1 * bs // U[i], bs * cap), min(g1 * bb // W[j], bb * cap)
        if term_s >= term_b:
            per_s[i] += term_s
        else:
            per_b[j] += term_b
    allowance = sum(min(v, p.weight * cap) for v, p in zip(per_s, sellers))
    allowance += sum(min(v, p.weight * cap) for v, p in zip(per_b, buyers))
    if gap > tolerance * weight + Fraction(allowance, _ALLOWANCE_SCALE):
        return "the certificate's gap exceeds the tolerance"
    return None


if __name__ == "__main__":
    harness.main("verifier")
