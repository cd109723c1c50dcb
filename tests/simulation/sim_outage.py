"""An honest solver that goes down for a few slots and restarts loses none of its deposit (issue 17).

Its commits for the rounds it missed are revealed when it is back (the clearing hash is a node-local
record, the salt is derived from its key), as long as it returns inside the reveal window; people's
networks get a window that outlasts a ten-minute outage (`genesis.outage_reveal_window`).  The short
window of the control shows what the test would catch: the same outage then costs forfeits.
"""

from __future__ import annotations

import pytest

from consensus.rules import schema
from consensus.sim import SimConfig, Simulation


def _forfeits(sim: Simulation) -> int:
    st = sim.engines[0].chain.state()
    return sum(v[32] == schema.COMMIT_FORFEITED for _, v in st.items(b"sc"))


@pytest.mark.parametrize("seed, reveal_window, forfeits", [(1, 3, True), (1, 14, False), (2, 14, False)])
def test_a_solver_down_for_some_slots_reveals_its_commits_when_back(seed, reveal_window, forfeits):
    sim = Simulation(SimConfig(nodes=3, seed=seed, reveal_window=reveal_window, finality_depth=8))
    try:
        sim.run_rounds(3)
        sim.stop(2)
        sim.run_rounds(6)  # longer than the short window, shorter than the long one
        sim.start(2)
        sim.run_rounds(reveal_window + 4)
        assert sim.engines[2].chain.head.hash == sim.engines[0].chain.head.hash, f"seed {seed}: not back in sync"
        lost = _forfeits(sim)
        assert (lost > 0) == forfeits, f"seed {seed}, reveal window {reveal_window}: {lost} commits forfeited"
        deposit = sim.engines[0].chain.state().solver(sim.engines[2].node.address).deposit
        assert (deposit < sim.genesis.solver_deposit) == forfeits
    finally:
        sim.close()
