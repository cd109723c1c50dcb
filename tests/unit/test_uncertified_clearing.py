"""A slot with a candidate pair never clears void: the fallback clearing, valid without a certificate.

The chain's rule (solver/fallback.py, consensus/rules/ranking.py): besides certified clearings, one
clearing fixed by the instance is valid without a certificate, ranked below any certified clearing and
above a void one; nothing else uncertified is valid, so a proposer has no choice in it.  It is what a
slot gets when no method certifies: the four extreme markets that no rounding certifies (integer-grid
cases, README "Solver benchmark") are now certified by the search near the optimum (solver/small.py),
so the tests that need a market nothing certifies turn that search off.
"""

from dataclasses import replace

import pytest

from consensus.proposer import solve_slot
from consensus.rules.genesis import dev_genesis, genesis_from_json
from consensus.rules.ledger import SlotMarket
from consensus.rules.ranking import rank
from solver.clearing import Clearing
from solver.fallback import fallback_trades
from solver.generator import extreme, generate
from solver.market import clear, fallback
from solver.pairs import candidate_pairs
from solver.relaxation import SolverError
from solver.verifier import verify

UNCERTIFIABLE = (62, 1404, 2153, 2918)  # extreme(seed) markets no rounding of the default method certifies


@pytest.fixture
def no_search(monkeypatch):
    """clear() without its search near the optimum: the four markets then certify by no method."""
    monkeypatch.setattr("solver.market.SMALL_MAX_PAIRS", 0)


@pytest.mark.parametrize("seed", UNCERTIFIABLE)
def test_the_markets_no_rounding_certifies_are_certified_by_a_search_near_the_optimum(seed):
    inst = extreme(seed)
    got = clear(inst)
    assert got.verdict.ok and got.verdict.certified and "search" in got.timings  # the search found it


@pytest.mark.parametrize("seed", UNCERTIFIABLE[:2])
def test_a_market_no_method_certifies_clears_with_the_fallback(seed, no_search):
    inst = extreme(seed)
    pairs = candidate_pairs(inst)
    with pytest.raises(SolverError, match="certificate"):
        clear(inst, pairs=pairs)  # the strict answer
    got = fallback(inst, pairs)  # what a proposer puts in its block when no method certifies
    assert got.verdict.ok and not got.verdict.certified and got.status == "fallback"
    assert got.clearing.trades == fallback_trades(inst, pairs)  # the solver's and the verifier's rule agree
    assert not got.clearing.lam and not got.clearing.mu
    assert not verify(inst, got.clearing, pairs=pairs).ok  # valid for the chain, not certified


@pytest.mark.parametrize("make", [lambda: generate(300, 5), lambda: extreme(7), lambda: extreme(62)])
def test_the_fallback_is_valid_on_any_market_with_a_pair(make):
    inst = make()
    pairs = candidate_pairs(inst)
    assert len(pairs)
    f = fallback(inst, pairs)
    assert f.verdict.ok, f.verdict.reason
    traded = {(t.seller, t.buyer) for t in f.clearing.trades}
    assert len(traded) == len(pairs)  # every candidate pair trades: everyone who can trade gains


def test_no_other_uncertified_clearing_is_valid():
    """A forged certificate on honest trades, the fallback's trades with a payment moved by one micro-unit,
    the fallback carrying multipliers that fail: all invalid even for the chain."""
    inst = extreme(UNCERTIFIABLE[0])
    pairs = candidate_pairs(inst)
    c = fallback(inst, pairs).clearing
    moved = (replace(c.trades[0], payment=c.trades[0].payment + 1),) + c.trades[1:]
    for bad in (Clearing(c.slot, moved), Clearing(c.slot, c.trades, {inst.sellers[0].id: 1})):
        v = verify(inst, bad, pairs=pairs, require_certificate=False)
        assert not v.ok and "certificate" in v.reason
    inst2 = generate(200, 2)
    good = clear(inst2).clearing
    forged = Clearing(good.slot, good.trades, {k: v * 9 // 10 for k, v in good.lam.items()}, good.mu)
    assert not verify(inst2, forged, require_certificate=False).ok


def test_certified_beats_uncertified_beats_void_whatever_the_objective():
    ticket = b"\x00" * 32
    certified_low = rank(committed=True, objective=100, step=1, lottery=b"\xff" * 32)
    uncertified_high = rank(committed=True, objective=10**9, step=1, lottery=ticket, certified=False)
    void = rank(committed=True, objective=None, step=1, lottery=ticket)
    assert certified_low < uncertified_high < void
    assert rank(committed=True, objective=None, step=1, lottery=ticket, certified=False) == void  # void is void
    assert "uncertified" in uncertified_high.describe()


def test_a_proposer_proposes_the_best_valid_clearing_not_a_void_one(no_search):
    g = genesis_from_json(dev_genesis([], []))
    inst = extreme(UNCERTIFIABLE[0])
    pairs = candidate_pairs(inst, g.candidate_cap)
    sol = solve_slot(SlotMarket(inst, {}), pairs, g)
    assert not sol.clearing.void and sol.clearing.trades
    assert sol.method == "fallback, uncertified" and not sol.result.verdict.certified
