"""Decide, exactly and without a solver, whether a clearing is valid and how good.

A clearing is valid when it is exactly feasible on the integers and carries a
certificate: multipliers lambda (sellers) and mu (buyers) with, for every
candidate pair, ``g * max(beta_i / U_i, beta_j / W_j) <= lambda_i + mu_j``,
so that by weak duality its log-objective is within
``gap = sum lambda_i S_i + sum mu_j D_j - sum beta`` of the optimum.  For the
chain (`require_certificate=False`) one clearing is valid without a certificate:
the fallback of solver/fallback.py, fixed by the instance, carrying no
multipliers; it is *uncertified* and ranks below any certified clearing.

The gap must be at most ``tolerance * sum beta`` plus the *grid allowance*:
a clearing lives on whole Wh and whole micro-units, and the bound above is
first-order in how far each surplus sits from the continuous optimum, so
each traded pair may cost ``(g + 1000) * max(beta_i/U_i, beta_j/W_j)``, what
moving it by one Wh and one micro-unit could change, up to 0.01 nats per
unit of weight for any one participant (so tiny surpluses buy no slack).  Without it a seller
whose 1,082 Wh go to two buyers cannot be certified at 1e-3 per participant
(bound 8.2e-3 nats against 4e-3) though its objective is 1.1e-4 nats below
the continuous optimum.

Units (all integers): surpluses U, W in nano-units (1/1000 micro-unit; a
Wh times a price per kWh is a whole number of those), margins g in
micro-units per kWh, multipliers per Wh over `MULTIPLIER_SCALE`.

Consensus-critical: every decision is exact.  Floats only pre-screen the
pair checks with a margin far above their rounding error; anything close is
decided in integers, so the verdict is the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal, localcontext
from fractions import Fraction

import numpy as np

from .clearing import MAX_MULTIPLIER, MULTIPLIER_SCALE, Clearing
from .instance import Instance
from .fallback import fallback_trades
from .pairs import DEFAULT_CAP, Pairs, candidate_pairs

DEFAULT_TOLERANCE = Fraction(1, 1000)  # nats of gap per unit of bargaining weight
DEFAULT_QUANTUM = Decimal("1e-6")  # objective is ranked in steps of this many nats
_SCREEN = 1e-9  # relative margin of the float pre-screen (float error is ~1e-15)
_LN_PREC = 60
_LN_BITS = 256
_ALLOWANCE_SCALE = 10**6
ALLOWANCE_CAP = Fraction(1, 100)  # nats per unit of weight, per participant
_CAP_SCALED = int(ALLOWANCE_CAP * _ALLOWANCE_SCALE)


@dataclass(frozen=True)
class Verdict:
    """The verifier's answer; `objective` is in quanta (an integer) when valid."""

    ok: bool
    reason: str
    objective: int | None = None
    gap: Fraction | None = None
    participants: int = 0  # with a candidate pair: the objective's terms
    weight: int = 0  # their bargaining weights summed (= participants when all are 1)
    seller_surplus: np.ndarray | None = None  # nano-units, canonical seller order
    buyer_surplus: np.ndarray | None = None
    certified: bool = True  # False: valid only as an uncertified clearing (`require_certificate=False`)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def gap_per_weight(self) -> Fraction | None:
        return None if self.gap is None or not self.weight else self.gap / self.weight


def _reject(reason: str) -> Verdict:
    return Verdict(False, reason)


def verify(
    inst: Instance,
    clearing: Clearing,
    *,
    pairs: Pairs | None = None,
    cap: int = DEFAULT_CAP,
    tolerance: Fraction = DEFAULT_TOLERANCE,
    quantum: Decimal = DEFAULT_QUANTUM,
    require_certificate: bool = True,
) -> Verdict:
    """Check `clearing` against `inst`; never raises on a hostile clearing.

    `pairs` may be passed when the caller already derived the candidate pairs
    of `inst` with the same `cap` (a node does so once per slot).  With
    `require_certificate=False` the fallback clearing (solver/fallback.py)
    without multipliers is valid with ``certified=False`` (the chain's rule:
    it beats a void clearing and loses to any certified one;
    consensus/rules/ranking.py).
    """
    if clearing.slot != inst.slot:
        return _reject(f"clearing is for slot {clearing.slot}, the instance is slot {inst.slot}")
    if pairs is None:
        pairs = candidate_pairs(inst, cap)
    n_s, n_b = len(inst.sellers), len(inst.buyers)
    s_idx, b_idx = inst.seller_index, inst.buyer_index

    # Trades -> index arrays (ids resolved by the canonical index; -1 unknown).
    trades = clearing.trades
    m = len(trades)
    try:
        rows = np.array(
            [(s_idx.get(t.seller, -1), b_idx.get(t.buyer, -1), t.wh, t.payment) for t in trades], dtype=np.int64
        ).reshape(m, 4)
    except (OverflowError, TypeError, ValueError):
        return _reject("a trade's quantity or payment is not a 64-bit integer")
    ts, tb, q, pay = rows.T
    bad = np.flatnonzero((ts < 0) | (tb < 0))
    if len(bad):
        t = trades[int(bad[0])]
        return _reject(f"trade {t.seller}->{t.buyer}: not a seller and buyer of this instance")
    bad = np.flatnonzero((q <= 0) | (q > inst.seller_wh[ts]) | (pay < 0) | (pay > 10**15))
    if len(bad):
        t = trades[int(bad[0])]
        return _reject(f"trade {t.seller}->{t.buyer}: quantity or payment out of range")

    # Every trade is on a distinct candidate pair.
    pair_key = pairs.buyer * n_s + pairs.seller  # sorted ascending
    trade_key = tb * n_s + ts
    if m:
        pos = np.minimum(np.searchsorted(pair_key, trade_key), max(len(pair_key) - 1, 0))
        hit = pair_key[pos] == trade_key if len(pair_key) else np.zeros(m, dtype=bool)
        if not hit.all():
            t = clearing.trades[int(np.flatnonzero(~hit)[0])]
            return _reject(f"trade {t.seller}->{t.buyer}: not a tradable candidate pair")
        # Trades are sorted by (seller, buyer) ids, the canonical order: a pair
        # traded twice shows as two equal neighbours.
        if np.any((ts[1:] == ts[:-1]) & (tb[1:] == tb[:-1])):
            return _reject("a pair is traded twice")

    # Capacities.
    sold = np.zeros(n_s, dtype=np.int64)
    np.add.at(sold, ts, q)
    bought = np.zeros(n_b, dtype=np.int64)
    np.add.at(bought, tb, q)
    over = np.flatnonzero(sold > inst.seller_wh)
    if len(over):
        i = int(over[0])
        return _reject(f"seller {inst.sellers[i].id} sells {int(sold[i])} Wh of {inst.sellers[i].wh}")
    over = np.flatnonzero(bought > inst.buyer_wh)
    if len(over):
        j = int(over[0])
        return _reject(f"buyer {inst.buyers[j].id} buys {int(bought[j])} Wh of {inst.buyers[j].wh}")

    # Individual rationality per pair, in nano-units (values < 2^63 by the ranges above).
    a = inst.seller_limit
    net = inst.net_limit(ts, tb)
    x = 1000 * pay - a[ts] * q  # seller's share of the pair's gain
    y = net * q - 1000 * pay  # buyer's share
    bad = np.flatnonzero((x < 0) | (y < 0))
    if len(bad):
        t = clearing.trades[int(bad[0])]
        return _reject(f"trade {t.seller}->{t.buyer}: payment outside the two limits")
    U = np.zeros(n_s, dtype=np.int64)
    np.add.at(U, ts, x)
    W = np.zeros(n_b, dtype=np.int64)
    np.add.at(W, tb, y)

    # Participants in the objective: those with a candidate pair.
    in_s = np.zeros(n_s, dtype=bool)
    in_s[pairs.seller] = True
    in_b = np.zeros(n_b, dtype=bool)
    in_b[pairs.buyer] = True
    zero = np.flatnonzero(in_s & (U <= 0))
    if len(zero):
        return _reject(f"seller {inst.sellers[int(zero[0])].id} could trade but gets no surplus")
    zero = np.flatnonzero(in_b & (W <= 0))
    if len(zero):
        return _reject(f"buyer {inst.buyers[int(zero[0])].id} could trade but gets no surplus")

    # Certificate.
    lam = _numerators(clearing.lam, inst.sellers, inst.seller_index)
    mu = _numerators(clearing.mu, inst.buyers, inst.buyer_index)
    if isinstance(lam, str) or isinstance(mu, str):
        return _reject(lam if isinstance(lam, str) else mu)  # type: ignore[arg-type]
    weight = int(inst.seller_weight[in_s].sum() + inst.buyer_weight[in_b].sum())
    fail = _certificate_failure(inst, pairs, U, W, lam, mu)
    gap = None
    if fail is None:
        dual = sum(l * w.wh for l, w in zip(lam, inst.sellers)) + sum(u * w.wh for u, w in zip(mu, inst.buyers))
        gap = Fraction(dual, MULTIPLIER_SCALE) - weight
        allowed = tolerance * weight + _grid_allowance(ts, tb, net - a[ts], U, W, inst)
        if gap > allowed:
            fail = f"certificate gap {float(gap):.6g} exceeds the tolerance {float(allowed):.6g}"
    if fail is not None and (require_certificate or clearing.lam or clearing.mu
                             or clearing.trades != fallback_trades(inst, pairs)):
        return _reject(fail)
    objective = log_objective(
        np.concatenate([U[in_s], W[in_b]]),
        np.concatenate([inst.seller_weight[in_s], inst.buyer_weight[in_b]]),
        quantum,
    )
    count = int(in_s.sum() + in_b.sum())
    if fail is not None:
        return Verdict(True, f"valid, not certified: {fail}", objective, None, count, weight, U, W, certified=False)
    return Verdict(True, "valid", objective, gap, count, weight, U, W)


def _grid_allowance(ts, tb, g, U, W, inst: Instance) -> Fraction:
    """The grid allowance in nats (see module doc), computed in int64.

    Each trade's term ``(g + 1000) * max(beta_i/U_i, beta_j/W_j)`` is charged to
    the side that attains the max, floored to 1e-6 nats; a participant's
    charges are capped at `ALLOWANCE_CAP` nats per unit of its weight, so tiny
    surpluses cannot buy slack (the bound is first-order only where U >> g).
    (g + 1000) * beta * 10^6 < 2^63 for every g and beta an instance admits.
    """
    if not len(ts):
        return Fraction(0)
    g1 = (g + 1000) * _ALLOWANCE_SCALE
    bs, bb = inst.seller_weight[ts], inst.buyer_weight[tb]
    term_s = np.minimum(g1 * bs // U[ts], bs * _CAP_SCALED)
    term_b = np.minimum(g1 * bb // W[tb], bb * _CAP_SCALED)
    to_seller = term_s >= term_b
    per_s = np.zeros(len(inst.sellers), dtype=np.int64)
    np.add.at(per_s, ts[to_seller], term_s[to_seller])
    per_b = np.zeros(len(inst.buyers), dtype=np.int64)
    np.add.at(per_b, tb[~to_seller], term_b[~to_seller])
    per_s = np.minimum(per_s, inst.seller_weight * _CAP_SCALED)
    per_b = np.minimum(per_b, inst.buyer_weight * _CAP_SCALED)
    return Fraction(int(per_s.sum()) + int(per_b.sum()), _ALLOWANCE_SCALE)


def _numerators(given: dict[str, int], side, index: dict[str, int]) -> list[int] | str:
    """Multiplier numerators in canonical order; unknown ids are an error."""
    for k, v in given.items():
        if k not in index:
            return f"multiplier for unknown participant {k!r}"
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_MULTIPLIER:
            return f"multiplier for {k!r} is not an integer in [0, {MAX_MULTIPLIER}]"
    return [given.get(p.id, 0) for p in side]


def _certificate_failure(inst: Instance, pairs: Pairs, U, W, lam: list[int], mu: list[int]) -> str | None:
    bad = pair_violations(inst, pairs, U, W, lam, mu, first_only=True)
    if not bad:
        return None
    i, j = int(pairs.seller[bad[0]]), int(pairs.buyer[bad[0]])
    return f"certificate fails on pair {inst.sellers[i].id}->{inst.buyers[j].id}"


def pair_violations(
    inst: Instance, pairs: Pairs, U, W, lam: list[int], mu: list[int], *, first_only: bool = False
) -> list[int]:
    """Indices of pairs whose dual constraint fails, decided exactly.

    ``g * beta * SCALE <= (Lambda_i + M_j) * surplus`` for the seller's and
    the buyer's side of every pair.  A float pass with a wide margin clears
    the pairs that are obviously fine; the rest are checked in integers.
    """
    out: list[int] = []
    if not len(pairs):
        return out
    S, B, g = pairs.seller, pairs.buyer, pairs.margin
    rhs_sum = np.array(lam, dtype=float)[S] + np.array(mu, dtype=float)[B]
    for side_idx, surplus, weight in ((S, U, inst.seller_weight), (B, W, inst.buyer_weight)):
        lhs = g.astype(float) * weight[side_idx].astype(float) * float(MULTIPLIER_SCALE)
        rhs = rhs_sum * surplus[side_idx].astype(float)
        for k in np.flatnonzero(lhs > rhs * (1 - _SCREEN)).tolist():
            v = int(side_idx[k])
            if int(g[k]) * int(weight[v]) * MULTIPLIER_SCALE > (lam[int(S[k])] + mu[int(B[k])]) * int(surplus[v]):
                out.append(k)
                if first_only:
                    return out
    return sorted(set(out))


def _tree_product(values: list[int]) -> int:
    """Product of many integers, balanced so big-integer work stays near-linear."""
    if not values:
        return 1
    while len(values) > 1:
        nxt = [values[k] * values[k + 1] for k in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


def _ln_int(n: int) -> Decimal:
    """ln(n) for a positive integer, from its top bits; deterministic everywhere."""
    shift = max(n.bit_length() - _LN_BITS, 0)
    return Decimal(n >> shift).ln() + shift * Decimal(2).ln()


def log_objective(surplus: np.ndarray, weight: np.ndarray, quantum: Decimal = DEFAULT_QUANTUM) -> int:
    """sum weight * ln(surplus in nano-units), as a whole number of quanta (floor).

    Computed as ln of an exact integer product per weight class, in `decimal`
    at fixed precision: no platform logarithm decides anything.
    """
    # An explicit context: the caller's (traps, rounding, exponent range) must
    # not change a consensus value.
    with localcontext(Context(prec=_LN_PREC, rounding=ROUND_HALF_EVEN, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[])):
        total = Decimal(0)
        for w in sorted(set(weight.tolist())):
            total += w * _ln_int(_tree_product([int(u) for u in surplus[weight == w]]))
        return int((total / quantum).to_integral_value(rounding="ROUND_FLOOR"))
