"""The per-slot fairness report (solver.report.slot_report) and `transx solve --report`.

Expected values are worked out by hand in the tests (units: Wh, micro-units per kWh, payments in
micro-units, gains in nano-units), not read back from the report's own helpers.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from solver import candidate_pairs, clear, verify
from solver.clearing import Clearing, Trade
from solver.generator import extreme, generate
from solver.instance import Instance, Participant
from solver.pairs import MIN_PAIR_GAIN, MIN_TRADE_WH
from solver.report import jain_index, outcomes, slot_report, tradable_sellers

FEED_IN, RETAIL = 100_000, 500_000


def one_seller_two_buyers() -> tuple[Instance, Clearing]:
    """1 kWh at 0.20 for two buyers at 0.40 and 0.30, split half and half at 0.25 per kWh.

    Gains (nano-units): seller 2 x (125e6 - 100e6) = 50e6; b1 200e6 - 125e6 = 75e6; b2 150e6 - 125e6
    = 25e6.  Welfare 150e6; the LP gives the whole kWh to b1: 200e6, a price of fairness of 25%.
    Jain = (150e6)^2 / (3 x (50^2 + 75^2 + 25^2) 1e12) = 22500 / 26250 = 6/7.
    """
    inst = Instance(0, FEED_IN, RETAIL, ((0,),), (Participant("s", 1000, 200_000),),
                    (Participant("b1", 1000, 400_000), Participant("b2", 1000, 300_000)))
    clearing = Clearing(0, (Trade("s", "b1", 500, 125_000), Trade("s", "b2", 500, 125_000)))
    return inst, clearing


def test_jain_index_by_hand():
    assert jain_index([5, 5, 5, 5]) == 1.0
    assert jain_index([7, 0, 0, 0]) == 0.25
    assert jain_index([1, 2, 3]) == pytest.approx(36 / 42)
    assert jain_index([]) is None and jain_index([0, 0]) is None


def test_report_of_a_hand_built_clearing():
    inst, clearing = one_seller_two_buyers()
    r = slot_report(inst, clearing)
    assert (r.pairs, r.trades, r.traders, r.able) == (2, 2, 3, 3)
    assert r.welfare_nano == 150_000_000
    assert r.lp_welfare_nano == 200_000_000
    assert r.lp_traders == 2  # the LP's optimum leaves b2 out
    assert r.price_of_fairness == pytest.approx(0.25)
    assert r.jain == pytest.approx(6 / 7)
    assert r.trades_per_trader == pytest.approx(2 / 3)
    assert (r.tradable_sellers, r.left_out_sellers, r.left_out_share) == (1, 0, 0.0)
    # No multipliers: the verifier rejects the certificate, so the report has no objective.
    assert not r.certified and r.objective is None
    # Gains against the grid: the seller gets 0.25 token for what the grid pays 0.10 for; each
    # buyer pays 0.125 token for what the grid sells at 0.25.
    vs_grid = {o.id: o.return_vs_grid for o in r.outcomes}
    assert vs_grid == {"s": 150_000, "b1": 125_000, "b2": 125_000}
    assert r.to_json()["return_vs_grid"] == vs_grid
    assert r.to_json()["price_of_fairness"] == 0.25


def test_report_of_a_certified_clearing():
    inst = generate(40, 3)
    pairs = candidate_pairs(inst)
    result = clear(inst, pairs=pairs, solver="clarabel")
    r = slot_report(inst, result.clearing, pairs=pairs)
    v = verify(inst, result.clearing, pairs=pairs)
    assert r.certified and r.objective == v.objective
    assert r.welfare_nano == int(v.seller_surplus.sum()) + int(v.buyer_surplus.sum())
    # The clearing is a feasible point of the welfare LP: the LP's optimum is at least its welfare.
    assert r.lp_welfare_nano >= r.welfare_nano
    assert 0 <= r.price_of_fairness < 1
    assert r.able == v.participants and r.traders == r.able  # everyone with a pair trades
    assert 1 / r.able <= r.jain <= 1
    # Gain against the grid: the report's rows are outcomes(), sellers then buyers.
    assert r.outcomes == tuple(outcomes(inst, result.clearing))
    for o in r.outcomes:
        assert o.return_vs_grid == (o.paid - o.grid if o.side == "sell" else o.grid - o.paid)
    assert r.left_out_sellers == 0


def _tradable_by_brute_force(inst: Instance) -> np.ndarray:
    a, b, charge = inst.seller_limit, inst.buyer_limit, inst.charge_matrix
    out = np.zeros(len(inst.sellers), dtype=bool)
    for i, s in enumerate(inst.sellers):
        for j, buyer in enumerate(inst.buyers):
            if getattr(buyer, "kind", 0) not in (0, getattr(s, "kind", 0)):
                continue  # a buyer that takes one kind of energy only
            margin = int(b[j]) - int(charge[inst.seller_zone[i], inst.buyer_zone[j]]) - int(a[i])
            reach = min(int(inst.seller_wh[i]), int(inst.buyer_wh[j]), MIN_TRADE_WH)
            out[i] |= margin > 0 and margin * reach >= MIN_PAIR_GAIN
    return out


@pytest.mark.parametrize("make", [lambda s: generate(60, s), extreme], ids=["generated", "extreme"])
def test_tradable_sellers_match_the_rule_pair_by_pair(make):
    for seed in range(12):
        inst = make(seed)
        assert (tradable_sellers(inst) == _tradable_by_brute_force(inst)).all(), seed


def test_tradable_sellers_respect_the_kind_a_buyer_takes():
    if "kind" not in Participant.__dataclass_fields__:
        pytest.skip("instances have no kinds of energy yet")
    rng = np.random.default_rng(5)
    for seed in range(8):
        inst = generate(40, seed)
        kinds = rng.integers(0, 3, len(inst.sellers) + len(inst.buyers)).tolist()
        inst = Instance(inst.slot, inst.feed_in, inst.retail, inst.network_charge,
                        tuple(dataclasses.replace(p, kind=k) for p, k in zip(inst.sellers, kinds)),
                        tuple(dataclasses.replace(p, kind=k) for p, k in zip(inst.buyers, kinds[len(inst.sellers):])))
        assert (tradable_sellers(inst) == _tradable_by_brute_force(inst)).all(), seed
    # One seller of kind 2, one buyer taking only kind 1: no trade, however good the prices.
    only = Instance(0, FEED_IN, RETAIL, ((0,),), (Participant("s", 1000, 150_000, kind=2),),
                    (Participant("b", 1000, 450_000, kind=1),))
    assert not tradable_sellers(only).any()


def test_solve_report_flag(tmp_path):
    from transx_cli.main import main

    inst, _ = one_seller_two_buyers()
    path = tmp_path / "market.json"
    path.write_text(json.dumps(inst.to_json()))
    runner = CliRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = runner.invoke(main, ["solve", str(path), "--report", "--solver", "clarabel"])
        doc = runner.invoke(main, ["solve", str(path), "--report", "--json", "--solver", "clarabel"])
    assert text.exit_code == 0, text.output
    assert "price of fairness" in text.output and "Jain" in text.output
    assert doc.exit_code == 0, doc.output
    report = json.loads(doc.output)["report"]
    assert report["lp_welfare_nano"] == 200_000_000  # 1 kWh at a margin of 0.20 per kWh
    assert isinstance(report["welfare_nano"], int) and report["welfare_nano"] <= report["lp_welfare_nano"]
    assert report["certified"] and report["traders"] == 3
