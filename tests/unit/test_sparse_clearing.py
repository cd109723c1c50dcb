"""A sparse clearing (solver/sparse.py): the same surpluses on fewer pairs, certified as before."""

import numpy as np
import pytest

from solver.generator import generate
from solver.market import clear, float_solve
from solver.pairs import candidate_pairs
from solver.sparse import sparsify
from solver.verifier import DEFAULT_TOLERANCE


@pytest.fixture(scope="module")
def market():
    inst = generate(800, 3)
    pairs = candidate_pairs(inst)
    return inst, pairs, float_solve(inst, pairs, "dual")


def _trading(pairs, x, y):
    return np.count_nonzero((x + y) / (pairs.margin / 1e6) * 1000 > 1e-6)


def test_sparsify_keeps_every_surplus_and_capacity_on_fewer_pairs(market):
    inst, pairs, rel = market
    x, y = sparsify(inst, pairs, rel.x, rel.y)
    assert (x >= 0).all() and (y >= 0).all()
    n_s, n_b = len(inst.sellers), len(inst.buyers)
    for side, old, new, n in ((pairs.seller, rel.x, x, n_s), (pairs.buyer, rel.y, y, n_b)):
        before, after = np.bincount(side, old, n), np.bincount(side, new, n)
        assert np.allclose(after, before, rtol=1e-6, atol=1e-12)
    g = pairs.margin / 1e6
    for side, cap, n in ((pairs.seller, inst.seller_wh, n_s), (pairs.buyer, inst.buyer_wh, n_b)):
        before = np.bincount(side, (rel.x + rel.y) / g * 1000, n)
        after = np.bincount(side, (x + y) / g * 1000, n)
        assert (after <= np.maximum(cap, before) * (1 + 1e-9)).all()  # no capacity is used beyond before
    assert _trading(pairs, x, y) < 0.8 * _trading(pairs, rel.x, rel.y)


def test_clear_trades_fewer_pairs_at_the_same_certified_objective(market):
    inst, pairs, _ = market
    dense = clear(inst, pairs=pairs, solver="dual", sparse=False)
    sparse = clear(inst, pairs=pairs, solver="dual")
    assert sparse.verdict.ok and dense.verdict.ok
    assert len(sparse.clearing.trades) < 0.93 * len(dense.clearing.trades)  # 1,854 against 2,037 with one pair of energy passes
    step = int(DEFAULT_TOLERANCE * sparse.verdict.weight * 10**6)  # one rank step, in quanta
    assert sparse.verdict.objective > dense.verdict.objective - step
