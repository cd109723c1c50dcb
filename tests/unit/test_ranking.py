"""The one ranking of proposals for a height (consensus/rules/ranking.py): committed first, then a real
clearing over a void one, then the higher objective step (the verifier's tolerance), then the lower
lottery ticket."""

from hypothesis import given, strategies as st

from consensus.rules import beacon, bls
from consensus.rules.ranking import NO_TICKET, commitment, rank, rank_step

LOW, HIGH = b"\x01" * 32, b"\x02" * 32  # lottery values: lower wins


def test_the_step_is_the_verifiers_tolerance_in_quanta():
    # 1000 ppm of 20 units of weight is 0.02 nats: 20,000 quanta of 1e-6 nats
    assert rank_step(1000, 20, 6) == 20_000
    assert rank_step(1, 1, 0) == 1  # never below one quantum


def test_objectives_within_a_step_tie_and_the_lottery_decides():
    step = rank_step(1000, 20, 6)
    polished = rank(committed=True, objective=5 * step + step - 1, step=step, lottery=HIGH)
    plain = rank(committed=True, objective=5 * step, step=step, lottery=LOW)
    assert plain < polished  # 0.0199 nats of polishing does not beat a better ticket


def test_a_step_or_more_better_wins_whatever_the_tickets():
    step = 1000
    better = rank(committed=True, objective=7 * step, step=step, lottery=HIGH)
    assert better < rank(committed=True, objective=6 * step + step - 1, step=step, lottery=LOW)


def test_committed_beats_uncommitted_and_real_beats_void():
    assert rank(committed=True, objective=None, step=1, lottery=HIGH) < rank(committed=False, objective=10**9, step=1,
                                                                              lottery=LOW)
    assert rank(committed=True, objective=-10**9, step=1, lottery=HIGH) < rank(committed=True, objective=None, step=1,
                                                                                lottery=LOW)


def test_no_vote_key_loses_every_tie():
    assert rank(committed=True, objective=5, step=10, lottery=b"\xfe" * 32) < rank(committed=True, objective=5, step=10,
                                                                                   lottery=NO_TICKET)


@given(st.lists(st.tuples(st.integers(-10**9, 10**9), st.binary(min_size=32, max_size=32)), min_size=2, max_size=8),
       st.integers(1, 10**6))
def test_sorting_is_step_descending_then_ticket(entries, step):
    order = sorted(entries, key=lambda e: rank(committed=True, objective=e[0], step=step, lottery=e[1]))
    for (o1, t1), (o2, t2) in zip(order, order[1:]):
        assert o1 // step >= o2 // step
        if o1 // step == o2 // step:
            assert t1 <= t2


def test_a_ticket_is_the_proposers_and_nobody_elses():
    sk, other = bls.keygen(b"a" * 32), bls.keygen(b"b" * 32)
    b0 = beacon.genesis_beacon(b"g" * 32)
    t = beacon.ticket(sk, b0, 7)
    assert beacon.verify_ticket(bls.public_key(sk), b0, 7, t)
    assert not beacon.verify_ticket(bls.public_key(other), b0, 7, t)
    assert not beacon.verify_ticket(bls.public_key(sk), b0, 8, t)  # not for another height
    assert t == beacon.ticket(sk, b0, 7)  # unique: one ticket per key, beacon and height


def test_a_commitment_binds_the_solver():
    a, b = b"\x01" * 20, b"\x02" * 20
    assert commitment(b"\x00" * 32, a, b"\x01" * 32) != commitment(b"\x00" * 32, b, b"\x01" * 32)
