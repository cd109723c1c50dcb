"""The one ranking of proposals for a height (consensus/rules/ranking.py): committed first, then a real
clearing over a void one, then the higher exact objective, then the lower lottery ticket."""

from consensus.rules.ranking import lottery_ticket, rank

A, B = b"\x01" * 20, b"\x02" * 20
SEED = b"seed"


def test_higher_objective_ranks_first_whatever_the_tickets():
    hi, lo = rank(committed=True, objective=1_000_001, solver=A, seed=SEED), rank(committed=True, objective=1_000_000,
                                                                                   solver=B, seed=SEED)
    assert hi < lo
    hi_b, lo_a = rank(committed=True, objective=1_000_001, solver=B, seed=SEED), rank(committed=True,
                                                                                       objective=1_000_000, solver=A,
                                                                                       seed=SEED)
    assert hi_b < lo_a


def test_equal_objectives_go_to_the_lower_ticket_and_a_tie_is_not_better():
    a, b = rank(committed=True, objective=5, solver=A, seed=SEED), rank(committed=True, objective=5, solver=B, seed=SEED)
    assert (a < b) == (lottery_ticket(A, SEED) < lottery_ticket(B, SEED))
    assert not a < rank(committed=True, objective=5, solver=A, seed=SEED)


def test_committed_beats_uncommitted_and_real_beats_void():
    assert rank(committed=True, objective=None, solver=A, seed=SEED) < rank(committed=False, objective=10**9,
                                                                            solver=B, seed=SEED)
    assert rank(committed=True, objective=-10**9, solver=A, seed=SEED) < rank(committed=True, objective=None,
                                                                              solver=B, seed=SEED)


def test_sorting_orders_objective_descending_then_ticket():
    entries = [(3, A), (7, B), (3, B), (7, A)]
    order = sorted(entries, key=lambda e: rank(committed=True, objective=e[0], solver=e[1], seed=SEED))
    assert [o for o, _ in order] == [7, 7, 3, 3]
    for (o1, s1), (o2, s2) in zip(order, order[1:]):
        if o1 == o2:
            assert lottery_ticket(s1, SEED) < lottery_ticket(s2, SEED)
