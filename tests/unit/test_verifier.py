"""Tests of the exact verifier (solver.verifier) and the clearing document.

Clearings come from real CVXPY solves (Clarabel); tampered clearings are
built from them by hand, one change at a time, so each rejection has exactly
one cause.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from decimal import ROUND_FLOOR, Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from market_strategies import FEED_IN, PROPERTY, RETAIL, instances

from solver.clearing import Clearing, Trade, clearing_from_json
from solver.generator import generate
from solver.instance import Instance, InstanceError, Participant
from solver.market import clear
from solver.pairs import candidate_pairs
from solver.verifier import log_objective, verify


def make(sellers, buyers, *, slot: int = 0, charge=((0,),)) -> Instance:
    """Instance from (id, wh, price[, zone]) tuples."""
    return Instance(slot, FEED_IN, RETAIL, charge, tuple(Participant(*s) for s in sellers), tuple(Participant(*b) for b in buyers))


def with_trades(c: Clearing, trades) -> Clearing:
    return Clearing(c.slot, tuple(trades), dict(c.lam), dict(c.mu))


def limits(inst: Instance, t: Trade) -> tuple[int, int]:
    s = next(p for p in inst.sellers if p.id == t.seller)
    b = next(p for p in inst.buyers if p.id == t.buyer)
    return max(s.price, inst.feed_in), min(b.price, inst.retail) - inst.network_charge[s.zone][b.zone]


@pytest.fixture(scope="module")
def solved():
    """A realistic 16-participant instance and its certified clearing."""
    inst = generate(16, seed=1, slot=42)
    r = clear(inst, solver="clarabel")
    assert r.verdict.ok, r.verdict.reason
    assert len(r.clearing.trades) >= 5 and r.clearing.lam and r.clearing.mu
    return inst, r.clearing, r.verdict


# --------------------------------------------------------------------------
# 1. Everything the solver returns verifies.


@pytest.mark.parametrize("solver", ["clarabel", "dual"])
@PROPERTY
@given(inst=instances(weights=True))
def test_verifier_accepts_every_solver_clearing(solver, inst):
    r = clear(inst, solver=solver)
    v = verify(inst, r.clearing)  # fresh: derives the candidate pairs itself
    assert v.ok, v.reason
    assert (v.objective, v.gap, v.participants) == (r.verdict.objective, r.verdict.gap, r.verdict.participants)
    assert v.gap >= 0  # weak duality: the bound is never below the objective
    # As a node receives it: through JSON.
    wire = clearing_from_json(json.loads(json.dumps(r.clearing.to_json())))
    assert verify(inst, wire).objective == v.objective


# --------------------------------------------------------------------------
# 2. Rejections, one cause at a time.


def _capacity_case(side: str, wh: int) -> Instance:
    """One participant on the short side, two counterparties with room to spare."""
    if side == "seller":
        return make([("s", wh, 200_000)], [("b0", 4_000, 450_000), ("b1", 4_000, 400_000)])
    return make([("s0", 4_000, 200_000), ("s1", 4_000, 250_000)], [("b", wh, 450_000)])


@pytest.mark.parametrize("side", ["seller", "buyer"])
def test_one_wh_over_a_capacity_is_rejected(side):
    tight, roomy = _capacity_case(side, 5_000), _capacity_case(side, 5_001)  # differ only in that capacity
    who = "s" if side == "seller" else "b"
    r = clear(tight, solver="clarabel")
    assert r.verdict.ok
    trades = list(r.clearing.trades)
    own = [k for k, t in enumerate(trades) if who in (t.seller, t.buyer)]
    assert sum(trades[k].wh for k in own) == 5_000  # the short side sells/buys exactly its capacity
    assert len(own) == 2  # so no single trade hits the per-trade range check

    # One more Wh on a trade, paid at that pair's midpoint so nothing else degrades.
    k = own[0]
    a, net = limits(tight, trades[k])
    t = trades[k]
    trades[k] = Trade(t.seller, t.buyer, t.wh + 1, t.payment + round((a + net) / 2 / 1000))
    bumped = with_trades(r.clearing, trades)

    v = verify(tight, bumped)
    assert not v.ok
    assert v.reason == f"{side} {who} {'sells' if side == 'seller' else 'buys'} 5001 Wh of 5000"
    # The control: the same clearing against the instance with one more Wh of
    # capacity verifies, so the capacity is the only reason for the rejection.
    ok = verify(roomy, bumped)
    assert ok.ok, ok.reason


def test_forged_certificate_is_rejected(solved):
    inst, c, _ = solved
    forged = Clearing(
        c.slot, c.trades, {k: v * 9 // 10 for k, v in c.lam.items()}, {k: v * 9 // 10 for k, v in c.mu.items()}
    )
    v = verify(inst, forged)
    assert not v.ok and v.objective is None
    assert "certificate" in v.reason


def test_missing_certificate_is_rejected(solved):
    inst, c, _ = solved
    v = verify(inst, Clearing(c.slot, c.trades))
    assert not v.ok and "certificate" in v.reason


def test_inflated_certificate_is_rejected_for_its_gap(solved):
    inst, c, _ = solved
    # Every pair check still holds with bigger multipliers, but the gap bound
    # sum(lambda S) + sum(mu D) - sum(beta) now exceeds the tolerance.
    fat = Clearing(c.slot, c.trades, {k: v * 11 // 10 for k, v in c.lam.items()}, {k: v * 11 // 10 for k, v in c.mu.items()})
    v = verify(inst, fat)
    assert not v.ok and "gap" in v.reason


def test_clearing_of_another_slot_is_rejected(solved):
    inst, c, _ = solved
    later = replace(inst, slot=inst.slot + 1)  # same market, next slot
    v = verify(later, c)
    assert not v.ok and "slot" in v.reason
    assert verify(inst, c).ok


def test_clearing_of_another_instance_is_rejected(solved):
    inst, c, _ = solved
    other = generate(16, seed=2, slot=inst.slot)
    renamed = replace(
        other,
        sellers=tuple(replace(p, id="x" + p.id) for p in other.sellers),
        buyers=tuple(replace(p, id="y" + p.id) for p in other.buyers),
    )
    v = verify(renamed, c)
    assert not v.ok and "not a seller and buyer of this instance" in v.reason


def test_clearing_misses_a_participant_that_joined(solved):
    inst, c, _ = solved
    # Same participants plus a buyer at the retail tariff, who could trade with anyone.
    bigger = replace(inst, buyers=inst.buyers + (Participant("zz-new", 3_000, RETAIL, 0),))
    assert any(bigger.buyers[j].id == "zz-new" for j in candidate_pairs(bigger).buyer.tolist())
    v = verify(bigger, c)
    assert not v.ok and v.reason == "buyer zz-new could trade but gets no surplus"


def test_trade_on_a_pair_that_is_not_a_candidate_is_rejected():
    # s1 asks more than b1 offers: margin 400000 - 450000 < 0.
    inst = make([("s0", 3_000, 200_000), ("s1", 3_000, 450_000)], [("b0", 3_000, 500_000), ("b1", 3_000, 400_000)])
    r = clear(inst, solver="clarabel")
    assert r.verdict.ok
    assert ("s1", "b1") not in {(t.seller, t.buyer) for t in r.clearing.trades}
    v = verify(inst, with_trades(r.clearing, r.clearing.trades + (Trade("s1", "b1", 1, 450),)))
    assert not v.ok and v.reason == "trade s1->b1: not a tradable candidate pair"


def test_pair_traded_twice_is_rejected(solved):
    inst, c, _ = solved
    t = next(t for t in c.trades if t.wh > 100)
    part = t.payment * 100 // t.wh
    split = [Trade(t.seller, t.buyer, t.wh - 100, t.payment - part), Trade(t.seller, t.buyer, 100, part)]
    v = verify(inst, with_trades(c, [u for u in c.trades if u != t] + split))  # same totals, two rows
    assert not v.ok and v.reason == "a pair is traded twice"


def test_tradable_pair_outside_the_cap_is_not_a_candidate():
    # Every pair is tradable, but with cap=1 each buyer gets one seller only.
    inst = make([("s0", 3_000, 200_000), ("s1", 3_000, 210_000)], [("b0", 3_000, 500_000), ("b1", 3_000, 490_000)])
    pairs = candidate_pairs(inst, cap=1)
    cand = {(inst.sellers[i].id, inst.buyers[j].id) for i, j in zip(pairs.seller.tolist(), pairs.buyer.tolist())}
    assert len(cand) == 2
    r = clear(inst, solver="clarabel", cap=1)
    assert verify(inst, r.clearing, cap=1).ok
    s, b = next((s, b) for s in ("s0", "s1") for b in ("b0", "b1") if (s, b) not in cand)
    v = verify(inst, with_trades(r.clearing, r.clearing.trades + (Trade(s, b, 1, 300),)), cap=1)
    assert not v.ok and "not a tradable candidate pair" in v.reason


@pytest.mark.parametrize("where", ["below the seller's limit", "above the buyer's limit net of the charge"])
def test_payment_outside_the_limits_is_rejected(solved, where):
    inst, c, _ = solved
    t = c.trades[0]
    a, net = limits(inst, t)
    lo, hi = -(-a * t.wh // 1000), net * t.wh // 1000  # the whole-micro-unit payments allowed
    assert lo <= t.payment <= hi
    pay = lo - 1 if where.startswith("below") else hi + 1
    v = verify(inst, with_trades(c, (Trade(t.seller, t.buyer, t.wh, pay),) + c.trades[1:]))
    assert not v.ok
    assert v.reason == f"trade {t.seller}->{t.buyer}: payment outside the two limits"


def test_empty_clearing_of_a_tradable_instance_is_rejected(solved):
    inst, c, _ = solved
    v = verify(inst, Clearing(c.slot, ()))
    assert not v.ok and "no surplus" in v.reason


# --------------------------------------------------------------------------
# 3. Determinism.


def test_verify_is_deterministic(solved):
    inst, c, _ = solved
    v1, v2 = verify(inst, c), verify(inst, c)
    assert v1.ok and v2.ok
    assert (v1.objective, v1.gap) == (v2.objective, v2.gap)
    assert v1.seller_surplus.tolist() == v2.seller_surplus.tolist()
    assert v1.buyer_surplus.tolist() == v2.buyer_surplus.tolist()


@pytest.mark.parametrize("seed", [0, 1])
def test_participant_order_does_not_matter(solved, seed):
    inst, c, v = solved
    rng = random.Random(seed)
    sellers, buyers = list(inst.sellers), list(inst.buyers)
    rng.shuffle(sellers)
    rng.shuffle(buyers)
    assert (sellers, buyers) != (list(inst.sellers), list(inst.buyers))
    shuffled = Instance(inst.slot, inst.feed_in, inst.retail, inst.network_charge, tuple(sellers), tuple(buyers))
    assert shuffled == inst  # canonical: sorted by id

    # The same clearing checked against the shuffled instance, with its trades shuffled too.
    trades = list(c.trades)
    rng.shuffle(trades)
    vs = verify(shuffled, Clearing(c.slot, tuple(trades), dict(reversed(c.lam.items())), c.mu))
    assert vs.ok and (vs.objective, vs.gap) == (v.objective, v.gap)

    # And solving the shuffled instance gives the identical verdict.
    rs = clear(shuffled, solver="clarabel")
    assert (rs.verdict.objective, rs.verdict.gap) == (v.objective, v.gap)
    assert rs.clearing == c


# --------------------------------------------------------------------------
# 5. The log objective.


def _arrays():
    rng = np.random.default_rng(7)
    return {
        "one": ([1], [1]),
        "small": ([1_000, 2_000, 3_000], [1, 1, 1]),
        "weighted": ([123_456_789, 10**9 + 7, 5, 10**17], [1, 2, 3, 1000]),
        "realistic": (rng.integers(10**6, 10**10, 40).tolist(), rng.integers(1, 4, 40).tolist()),
        # Products of thousands of bits: ln is taken from the top bits only.
        "huge": (rng.integers(10**17, 10**18, 60).tolist(), rng.integers(1, 3, 60).tolist()),
    }


@pytest.mark.parametrize("name", list(_arrays()))
def test_log_objective_matches_math_log(name):
    u, w = _arrays()[name]
    q = log_objective(np.array(u, dtype=np.int64), np.array(w, dtype=np.int64))
    assert isinstance(q, int)
    exact = math.fsum(wk * math.log(uk) for uk, wk in zip(u, w))
    nats = q * 1e-6
    assert abs(exact - nats) <= 1e-6
    assert -1e-9 <= exact - nats < 1e-6 + 1e-9  # floored to whole quanta


@pytest.mark.parametrize("name", list(_arrays()))
def test_log_objective_is_exactly_reproducible(name):
    u, w = _arrays()[name]
    U, Wt = np.array(u, dtype=np.int64), np.array(w, dtype=np.int64)
    q = log_objective(U, Wt)
    assert log_objective(U.copy(), Wt.copy()) == q
    perm = np.random.default_rng(1).permutation(len(u))
    assert log_objective(U[perm], Wt[perm]) == q  # order of participants is irrelevant
    # The same integer from a 60-digit decimal sum of the individual logarithms.
    with localcontext() as ctx:
        ctx.prec = 60
        total = sum(wk * Decimal(uk).ln() for uk, wk in zip(u, w))
        assert q == int((total / Decimal("1e-6")).to_integral_value(rounding=ROUND_FLOOR))


def test_log_objective_pinned_values():
    # floor(ln(1000) * 1e6) and floor((ln 2 + 2 ln 3) * 1e6), by hand.
    assert log_objective(np.array([1_000]), np.array([1])) == 6_907_755
    assert log_objective(np.array([2, 3]), np.array([1, 2])) == 2_890_371
    assert log_objective(np.array([], dtype=np.int64), np.array([], dtype=np.int64)) == 0


# --------------------------------------------------------------------------
# 6. The clearing document.


def test_clearing_json_round_trip(solved):
    inst, c, v = solved
    doc = c.to_json()
    assert clearing_from_json(doc) == c
    text = json.dumps(doc)
    back = clearing_from_json(json.loads(text))
    assert back == c
    assert json.dumps(back.to_json()) == text  # byte-identical document
    assert (verify(inst, back).objective, verify(inst, back).gap) == (v.objective, v.gap)


def test_empty_clearing_json_round_trip():
    c = Clearing(9, ())
    assert clearing_from_json(json.loads(json.dumps(c.to_json()))) == c


def test_a_trade_with_a_float_or_bool_quantity_cannot_be_built():
    from solver.clearing import ClearingError, Trade

    for wh, payment in ((1.5, 100), (True, 100), (5, 2.0)):
        with pytest.raises(ClearingError):
            Trade("s0", "b0", wh, payment)


# --------------------------------------------------------------------------
# Hostile and extreme clearings (found in review).


def test_tiny_surpluses_buy_no_certificate_slack():
    """A seller left with a few nano-units over ten 1 Wh trades: far from the
    optimum, and the grid allowance must not cover it."""
    from solver.certificate import certify
    from solver.market import build_clearing

    inst = make([("zs", 1_000, 170_999)], [(f"b{k}", 1_000, RETAIL) for k in range(10)])
    pairs = candidate_pairs(inst)
    assert len(pairs) == 10
    q = np.ones(len(pairs), dtype=np.int64)
    a = inst.seller_limit[pairs.seller]
    pay = -(-(a * q) // 1000)  # the lowest payment: the seller keeps 1 nano-unit a trade
    U = np.zeros(1, dtype=np.int64)
    np.add.at(U, pairs.seller, 1000 * pay - a * q)
    W = np.zeros(10, dtype=np.int64)
    np.add.at(W, pairs.buyer, inst.buyer_limit[pairs.buyer] * q - 1000 * pay)
    assert U[0] == 10
    Lam, Mu, _ = certify(inst, pairs, U, W)
    v = verify(inst, build_clearing(inst, pairs, q, pay, Lam, Mu), pairs=pairs)
    assert not v.ok and "certificate gap" in v.reason
    assert clear(inst).verdict.ok  # the honest clearing of the same market is valid


def test_a_thin_market_always_has_a_valid_clearing():
    """One 10 Wh seller, twenty buyers: the candidate rule keeps one buyer, so
    everyone with a candidate pair can gain and the slot clears."""
    inst = make([("s0", 10, 200_000)], [(f"b{k:02}", 1_000, 500_000) for k in range(20)])
    r = clear(inst)
    assert r.verdict.ok and r.verdict.participants == 2
    assert sum(t.wh for t in r.clearing.trades) == 10


def test_hostile_clearing_types_are_refused_at_construction():
    from solver.clearing import ClearingError, Trade

    t = Trade("s0", "b0", 1, 1)
    for bad in (
        dict(slot=1.0, trades=()),
        dict(slot=1, trades=("not a trade",)),
        dict(slot=1, trades=(t,), lam=[1, 2]),
        dict(slot=1, trades=(t,), mu={3: 1}),
        dict(slot=1, trades=(t,), lam={"s0": 1.5}),
    ):
        with pytest.raises(ClearingError):
            Clearing(**bad)


def test_the_objective_ignores_the_callers_decimal_context():
    import decimal

    U = np.array([123_456_789, 987_654_321, 5], dtype=np.int64)
    w = np.array([1, 2, 3], dtype=np.int64)
    expected = log_objective(U, w)
    with decimal.localcontext() as ctx:
        ctx.traps[decimal.Inexact] = True
        ctx.rounding = decimal.ROUND_UP
        ctx.Emax = 5
        assert log_objective(U, w) == expected


def test_instances_built_in_code_are_bounded_like_parsed_ones():
    from solver.instance import MAX_PRICE, MAX_WH

    for sellers in ((Participant("s", MAX_WH + 1, 1),), (Participant("s", 1, MAX_PRICE + 1),),
                    (Participant("s", 1, 1, 0, 0),), (Participant("s p", 1, 1),), (Participant("s", 1.5, 1),)):
        with pytest.raises(InstanceError):
            Instance(0, FEED_IN, RETAIL, ((0,),), sellers, ())
    with pytest.raises(InstanceError):
        Instance(0, FEED_IN, RETAIL, ((-1,),), (), ())


def test_the_grid_allowance_is_capped_per_participant():
    from solver.verifier import ALLOWANCE_CAP, _grid_allowance

    inst = make([("zs", 1_000, 170_999)], [(f"b{k}", 1_000, RETAIL) for k in range(10)])
    ts, tb = np.zeros(10, dtype=np.int64), np.arange(10, dtype=np.int64)
    g = np.full(10, RETAIL - 170_999, dtype=np.int64)
    tiny = _grid_allowance(ts, tb, g, np.array([10]), np.full(10, 10**9), inst)
    assert tiny == ALLOWANCE_CAP  # uncapped it would be ~4e5 nats
    fair = _grid_allowance(ts, tb, g, np.array([10**9]), np.full(10, 10**9), inst)
    assert fair == Fraction(10 * ((RETAIL - 170_999 + 1000) * 10**6 // 10**9), 10**6)


def test_the_pair_check_is_exact_at_the_boundary():
    """One pair, equal surpluses: lambda must reach exactly ceil(2 * SCALE / q);
    one unit less fails, in the integer check behind the float screen."""
    from solver.clearing import MULTIPLIER_SCALE

    inst = make([("s0", 3_000, 200_000)], [("b0", 3_000, 400_000)])
    q, pay = 3_000, 900_000  # midpoint 0.3 token/kWh: each side gains 300,000 micro
    g, U = 200_000, 300_000_000  # margin per kWh; each side's surplus in nano-units
    need = -(-g * MULTIPLIER_SCALE // U)  # ceil(g * beta * SCALE / U)
    ok = verify(inst, Clearing(0, (Trade("s0", "b0", q, pay),), {"s0": need}, {}))
    assert ok.ok, ok.reason
    assert ok.gap == Fraction(need * q, MULTIPLIER_SCALE) - 2  # = 1e-12: all but exact
    short = verify(inst, Clearing(0, (Trade("s0", "b0", q, pay),), {"s0": need - 1}, {}))
    assert not short.ok and "certificate fails" in short.reason


def test_the_clearing_of_another_instance_with_the_same_ids_is_rejected():
    a = generate(30, seed=4)
    r = clear(a)
    cheaper = Instance(a.slot, a.feed_in, a.retail, a.network_charge, a.sellers,
                       tuple(Participant(p.id, p.wh, p.price * 9 // 10, p.zone) for p in a.buyers))
    assert verify(a, r.clearing).ok
    assert not verify(cheaper, r.clearing).ok
