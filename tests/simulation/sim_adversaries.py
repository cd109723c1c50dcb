"""The adversary harness (consensus/adversaries.py) and issue 12's attacks: each adversary replays the
same run for a seed and never stops the honest chain; the harness's detectors see what is planted in
front of them; and every attack fails, in small configurations over two seeds (bench/attacks.py
runs the full ones over 50).
"""

from __future__ import annotations

import pytest

from consensus import adversaries as adv
from consensus.sim import SimConfig

TINY = {  # small enough to run twice in a few seconds, big enough that the attack acts today
    "withhold-and-release": lambda seed: adv.double_spend(seed, nodes=3, confirmations=2, patience=10, after=2),
    "twin": lambda seed: adv.twin_double_spend(seed, nodes=3, confirmations=2, patience=10, after=2),
    "boundary-release": lambda seed: adv.boundary_release(seed, nodes=4, finality_depth=3, patience=10, after=4),
    "commit-censorship": lambda seed: adv.commit_censorship(seed, nodes=3, rounds=6),
    "lottery-grinding": lambda seed: adv.lottery_grinding(seed, nodes=4, rounds=10),
    "double-vote": lambda seed: adv.double_vote(seed, nodes=4, rounds=6),
}


_RUNS: dict[tuple[str, int], adv.Result] = {}


def run(attack: str, seed: int) -> adv.Result:
    """One run of a tiny scenario, shared by the tests below (each run takes a second or two)."""
    if (attack, seed) not in _RUNS:
        _RUNS[(attack, seed)] = TINY[attack](seed)
    return _RUNS[(attack, seed)]


@pytest.mark.parametrize("attack", sorted(TINY))
def test_an_adversary_replays_the_same_run_for_a_seed_and_the_chain_goes_on(attack):
    seed = 1
    first, again = run(attack, seed), TINY[attack](seed)
    assert first == again, f"seed {seed}: {attack} gave two different runs:\n{first}\n{again}"
    assert first.attack == attack and first.blocks > 0
    assert min(first.detail["heights"]) >= 8, f"seed {seed}: the honest chain stalled: {first.detail['heights']}"


@pytest.mark.parametrize("attack", sorted(TINY))
def test_issue_12s_attacks_fail(attack):
    """Double-spend by a withheld or twin block, a split at finality, commit censorship, lottery
    grinding, double votes: each succeeded (all but the last) before finality votes, the VRF lottery
    and the censorship rule."""
    for seed in (1, 2):
        r = run(attack, seed)
        if attack == "lottery-grinding":
            # Its criterion is a share of blocks, and over ten blocks an honest solver passes 1.5x its fair
            # share by luck about one time in five (seed 2 drew 4 of 10 without ever grinding; the figure
            # over 50 seeds is bench/attacks.py's): what must hold here is that it finds nothing to grind.
            assert not r.attempted, f"seed {seed}: the grinder found a bid that moves its ticket: {r.detail}"
        else:
            assert not r.succeeded, f"seed {seed}: {attack} succeeded: {r.why}"
        assert not r.split, f"seed {seed}: {attack}: honest nodes differ at a final height"


def test_final_conflict_sees_a_difference_only_where_both_nodes_treat_it_as_final():
    a = [b"g", b"x1", b"a2", b"a3"]
    b = [b"g", b"x1", b"b2", b"b3"]
    assert adv.final_conflict([a, b], [1, 3]) is None  # height 2 is not final on node 0
    assert adv.final_conflict([a, b], [2, 2]) == (0, 1, 2)
    assert adv.final_conflict([a, a[:3], b], [3, 2, 1]) is None  # a prefix; b is final only to height 1
    assert adv.final_conflict([a, a[:3], b], [3, 2, 2]) == (0, 2, 2)


def test_the_arena_counts_a_revert_it_is_shown_and_the_commits_sent():
    sim = adv.Arena(SimConfig(nodes=3, seed=2))
    try:
        sim.run_rounds(6)
        assert {n for n, _ in sim.commits_sent} == {0, 1, 2}, "every solver commits"
        before = sim.reverted[1]
        chain = sim.engines[1].chain
        chain.revert_head()
        chain.revert_head()
        sim.send(1, [])  # the arena looks at a node after each call into its engine
        assert sim.reverted[1] == before + 2 and sim.deepest[1] >= 2
    finally:
        sim.close()


def test_the_runner_reports_a_planted_monopoly_as_a_success():
    """Planted: after 4 rounds every node but node 0 goes offline, so node 0 makes every block from
    then on (the chain goes on with most of the deposit offline); the share criterion must call
    that a success.  With no attacker, shares are read from node 0's chain."""
    def drive(sim):
        sim.run_rounds(4)
        sim.online = [True, False, False]
        sim.run_rounds(10)

    r = adv.play("planted", SimConfig(nodes=3, seed=5), drive, adv.share_above(1.5), from_height=4)
    assert r.succeeded and r.attacker_share > 0.9 and r.blocks >= 10, r
    assert not r.split  # the offline nodes hold a prefix of node 0's chain


def test_the_runner_reports_an_honest_run_as_no_success():
    r = adv.commit_loss(4, nodes=3, rounds=6, latency_ms=(50, 500))
    assert r.deepest_revert <= 2 and not r.split
    assert adv.share_above(5.0)(None, r) == (False, f"share {r.attacker_share:.0%} against a fair 33%")
