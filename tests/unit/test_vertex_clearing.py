"""A sparse clearing (solver/vertex.py): the float surpluses on few pairs within the true capacities,
certified as before (issue 19)."""

import numpy as np
import pytest

from solver.generator import generate
from solver.market import clear, float_solve
from solver.pairs import candidate_pairs
from solver.verifier import DEFAULT_TOLERANCE
from solver.vertex import vertex_shares


@pytest.fixture(scope="module", params=[(800, 3), (2500, 1)], ids=["800", "2500"])
def market(request):
    inst = generate(*request.param)
    pairs = candidate_pairs(inst)
    return inst, pairs, float_solve(inst, pairs, "dual")


def _trading(pairs, x, y):
    live = (x + y) / (pairs.margin / 1e6) * 1000 > 1e-6
    return np.count_nonzero(live), len(set(pairs.seller[live])) + len(set(pairs.buyer[live]))


def test_the_windows_pay_the_float_surpluses_within_true_capacities_on_at_most_two_pairs_a_trader(market):
    """2,500 participants span three windows, so pairs that cross a cut are moved in a later round.  The
    smoothed dual's allocation overshoots some capacities; the vertex holds every one."""
    inst, pairs, rel = market
    x, y = vertex_shares(inst, pairs, rel.x, rel.y, window=1000)
    assert (x >= 0).all() and (y >= 0).all()
    n_s, n_b = len(inst.sellers), len(inst.buyers)
    kept = []
    for side, old, new, n in ((pairs.seller, rel.x, x, n_s), (pairs.buyer, rel.y, y, n_b)):
        before, after = np.bincount(side, np.maximum(old, 0), n), np.bincount(side, new, n)
        assert (after <= before * (1 + 1e-9) + 1e-7).all()  # never paid more than at the optimum
        kept.append((after.sum(), before.sum()))
    assert sum(a for a, _ in kept) > 0.98 * sum(b for _, b in kept)  # and nearly all of it
    g = pairs.margin / 1e6
    over = False
    for side, cap, n in ((pairs.seller, inst.seller_wh, n_s), (pairs.buyer, inst.buyer_wh, n_b)):
        before = np.bincount(side, (np.maximum(rel.x, 0) + np.maximum(rel.y, 0)) / g * 1000, n)
        after = np.bincount(side, (x + y) / g * 1000, n)
        over |= (before > cap + 0.5).any()
        assert (after <= cap + 1e-3).all()  # Wh: the simplex tolerance
    assert over  # the float allocation did overshoot somewhere
    trades, traders = _trading(pairs, x, y)
    dense, _ = _trading(pairs, rel.x, rel.y)
    assert trades <= 2 * traders and trades < 0.6 * dense


def test_clear_trades_at_most_two_pairs_a_trader_at_the_same_certified_objective():
    inst = generate(800, 3)
    pairs = candidate_pairs(inst)
    dense = clear(inst, pairs=pairs, solver="dual", sparse=False)
    sparse = clear(inst, pairs=pairs, solver="dual")
    assert sparse.verdict.ok and sparse.verdict.certified and dense.verdict.ok
    traders = {t.seller for t in sparse.clearing.trades} | {t.buyer for t in sparse.clearing.trades}
    assert len(sparse.clearing.trades) <= 2 * len(traders)
    assert len(sparse.clearing.trades) < 0.7 * len(dense.clearing.trades)
    step = int(DEFAULT_TOLERANCE * sparse.verdict.weight * 10**6)  # one rank step, in quanta
    assert sparse.verdict.objective > dense.verdict.objective - step
