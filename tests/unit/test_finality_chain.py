"""Finality on the chain (consensus/rules/checkpoints.py, forkchoice.py, the engine's votes): blocks carry
vote aggregates that justify and finalize, the voter set in force cannot be changed by a branch, the
lottery ticket is the proposer's and nobody else's, and the fork choice weighs votes before rank."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chain_support import Net, addr
from consensus.engine import ACCEPT, IGNORE, REJECT, VOTE, Engine
from consensus.proposer import solve_slot
from consensus.rules import bls, committee, finality, keys, schema
from consensus.rules.blocks import BlockError
from consensus.rules.checkpoints import VOTE_WINDOW
from consensus.rules.finality import Checkpoint
from consensus.rules.transactions import RegisterSolver, VoteKey


@pytest.fixture
def net(tmp_path):
    n = Net(str(tmp_path / "db"))
    yield n
    n.close()


def register_vote_key(net: Net, k) -> None:
    net.submit(k, VoteKey(finality.register_key(keys.vote_secret(k), chain_id=net.g.chain_id, solver=addr(k))))


def build(net: Net, votes=(), key=None, late_ms: int = 0):
    """The next block by `key` (default the genesis solver) carrying `votes`, stamped `late_ms` after its
    slot's start, not connected."""
    h = net.next_height
    market, pairs = net.chain.market(h)
    k = key or net.solver_key
    block, _ = net.chain.build_block(k, solve_slot(market, pairs, net.g).clearing, [], net.now(h) + late_ms,
                                     votes=list(votes), vote_secret=keys.vote_secret(k))
    return block


def connect(net: Net, votes=()):
    block = build(net, votes)
    net.chain.connect(block, net.now(block.height))
    return block


def cp(net: Net, h: int) -> Checkpoint:
    return Checkpoint(h, net.chain.hash_at(h))


def cert(net: Net, source: Checkpoint, target: Checkpoint, signers=None):
    signers = signers or [net.solver_key]
    votes = [finality.vote(keys.vote_secret(k), chain_id=net.g.chain_id, source=source, target=target) for k in signers]
    return finality.make_certificate(votes, net.chain.voters())


def with_voter(net: Net) -> None:
    """The genesis solver registers its vote key; the voter set starts at the next block."""
    register_vote_key(net, net.solver_key)
    net.produce()
    assert net.chain.voters() is None  # the key is in; the set starts as the next block is made
    net.produce()
    assert [v.address for v in net.chain.voters().voters] == [addr(net.solver_key)]


def test_a_quorum_link_justifies_and_a_link_to_the_child_finalizes(net):
    with_voter(net)
    h = net.height
    g0 = net.chain.genesis_checkpoint()
    connect(net, [cert(net, g0, cp(net, h))])
    assert net.chain.justified() == cp(net, h) and net.chain.finalized() == g0
    connect(net, [cert(net, cp(net, h), cp(net, h + 1))])
    assert net.chain.justified() == cp(net, h + 1)
    assert net.chain.finalized() == cp(net, h)  # h's child is justified from h
    # A link that skips a height justifies but finalizes nothing.
    net.produce()
    connect(net, [cert(net, cp(net, h + 1), cp(net, h + 3))])
    assert net.chain.justified() == cp(net, h + 3) and net.chain.finalized() == cp(net, h)


def test_votes_from_a_source_that_is_not_the_justified_checkpoint_justify_nothing(net):
    with_voter(net)
    h = net.height
    connect(net, [cert(net, cp(net, 1), cp(net, h))])  # block 1 was never justified
    assert net.chain.justified() == net.chain.genesis_checkpoint()


def test_a_link_from_an_earlier_justified_checkpoint_justifies_too(net):
    """Casper FFG counts a quorum link from any justified checkpoint, not only the latest: a branch that
    recorded h+2 justified must still count h -> h+4 (voters whose last source is h would need a surround
    vote to vote from h+2; a healed partition stalled finality for good that way,
    tests/simulation/sim_consensus.py).  A link from a checkpoint never justified still counts nothing."""
    with_voter(net)
    h = net.height
    connect(net, [cert(net, net.chain.genesis_checkpoint(), cp(net, h))])
    net.produce()
    connect(net, [cert(net, cp(net, h), cp(net, h + 2))])
    assert net.chain.justified() == cp(net, h + 2)
    net.produce()
    connect(net, [cert(net, cp(net, h + 1), cp(net, h + 4))])  # h+1: never justified
    assert net.chain.justified() == cp(net, h + 2)
    connect(net, [cert(net, cp(net, h), cp(net, h + 5))])
    assert net.chain.justified() == cp(net, h + 5)
    # And a link to the child of an earlier justified checkpoint makes that one final.
    connect(net, [cert(net, cp(net, h + 2), cp(net, h + 3))])
    assert net.chain.finalized() == cp(net, h + 2) and net.chain.justified() == cp(net, h + 5)


def test_a_block_with_votes_off_its_chain_or_too_old_or_forged_is_refused(net):
    with_voter(net)
    h = net.height
    g0 = net.chain.genesis_checkpoint()
    with pytest.raises(BlockError, match="not on this chain"):
        build(net, [cert(net, g0, Checkpoint(h, b"\x07" * 32))])
    with pytest.raises(BlockError, match="back"):
        build(net, [cert(net, g0, Checkpoint(h + 1, b"\x07" * 32))])  # its own height, or above
    good = cert(net, g0, cp(net, h))
    forged = replace(good, signature=bls.sign(bls.keygen(b"m" * 32), good.signing_bytes))
    with pytest.raises(BlockError, match="aggregate signature"):
        build(net, [forged])
    block = build(net, [good])
    tampered = replace(block, votes=())  # the header commits to the votes
    with pytest.raises(BlockError, match="votes root"):
        net.chain.connect(tampered, net.now(block.height))
    net.produce_until(h + VOTE_WINDOW)
    with pytest.raises(BlockError, match="back"):
        build(net, [good])


def test_the_voter_set_starts_only_when_keyed_solvers_hold_more_than_two_thirds(net):
    """Regression (simulator seed 43): with the registrations of the moment as voters, a branch whose
    first block carried one solver's key had a voter set of one, and justified its own block."""
    other = net.users[0]
    net.submit(other, RegisterSolver(net.g.solver_deposit))
    net.produce()
    register_vote_key(net, net.solver_key)
    net.produce_until(net.height + 3)
    assert net.chain.voters() is None  # one of two equal deposits: not more than 2/3
    register_vote_key(net, other)
    net.produce_until(net.height + 2)
    assert len(net.chain.voters()) == 2


def second_solver_with_key(net: Net):
    """The genesis solver votes; a user registers as a solver with a vote key (not yet in force)."""
    with_voter(net)
    other = net.users[0]
    net.submit(other, RegisterSolver(net.g.solver_deposit))
    net.produce()
    register_vote_key(net, other)
    net.produce()
    return other


def finalize_head(net: Net, signers=None) -> None:
    """Two blocks whose votes justify the head and then make it final."""
    h = net.height
    connect(net, [cert(net, net.chain.justified(), cp(net, h), signers)])
    connect(net, [cert(net, cp(net, h), cp(net, h + 1), signers)])


def test_registrations_come_in_force_only_when_finality_advances(net):
    second_solver_with_key(net)
    assert len(net.chain.voters()) == 1  # registered, not yet in force
    finalize_head(net)  # the head final: the new key comes in force
    assert len(net.chain.voters()) == 2


def test_a_ticket_is_the_proposers_own_vrf_output(net):
    with_voter(net)
    net.produce_until(net.height + committee.lookback(net.g.gate_closure))  # a key draws on later beacons
    block = build(net)
    assert any(block.header.ticket)
    forged = bls.sign(bls.keygen(b"x" * 32), b"anything")
    header = replace(block.header, ticket=forged).signed(net.solver_key)
    with pytest.raises(BlockError, match="ticket does not verify"):
        net.chain.connect(replace(block, header=header), net.now(block.height))
    net.chain.connect(block, net.now(block.height))


def test_the_fork_choice_weighs_votes_before_rank(tmp_path):
    a, b = Net(str(tmp_path / "a")), Net(str(tmp_path / "b"))
    try:
        for n in (a, b):
            n.produce_until(3)
        x, y = build(a), build(b, late_ms=1)
        better, worse = sorted([x, y], key=lambda blk: (a.chain.rank(blk), blk.hash))
        a.chain.connect(worse, a.now(4))
        status, _ = a.chain.offer(better, a.now(5), lambda *_: 0)
        assert status == "reorg"  # no votes either side: the better rank wins, as before
        a.chain.revert_head()
        a.chain.connect(worse, a.now(4))
        weights = {worse.hash: 5, better.hash: 3}
        status, _ = a.chain.offer(better, a.now(5), lambda h, height: weights.get(h, 0))
        assert status == "worse" and a.chain.head.hash == worse.hash  # the votes stand behind `worse`
        weights = {worse.hash: 3, better.hash: 5}
        status, reverted = a.chain.offer(better, a.now(5), lambda h, height: weights.get(h, 0))
        assert status == "reorg" and reverted == [worse]
    finally:
        a.close()
        b.close()


def test_a_block_this_node_saw_final_stays_though_a_reorg_took_the_state_below_it(tmp_path):
    """Once pruned (its undo record gone), a block is never reverted, whatever the head's state says."""
    a, b = Net(str(tmp_path / "a")), Net(str(tmp_path / "b"))
    try:
        for n in (a, b):
            n.produce_until(3)
        x, y = build(a), build(b, late_ms=1)
        a.chain.connect(x, a.now(4))
        a.chain.store.prune([], (schema.PRUNED, schema.u64(4)))  # as `_prune_final` records block 4 final
        a.chain.reload()
        status, reverted = a.chain.offer(y, a.now(5), lambda h, height: 9 if h == y.hash else 0)
        assert (status, reverted) == ("final", []) and a.chain.head.hash == x.hash
    finally:
        a.close()
        b.close()


def test_the_branch_of_the_highest_justified_checkpoint_wins_over_weight():
    """Reviewer's finding: with 'never leave a justified block' two sides could each hold a block the
    other did not know justified, and stay apart for good.  Now the highest checkpoint known justified
    (a quorum link from a justified source, seen anywhere) picks the branch, then the weights."""
    from consensus.rules.finality import Voter, VoterSet
    from consensus.votes import VoteBook
    sks = [bls.keygen(bytes([i]) * 32) for i in range(1, 4)]
    voters = VoterSet.of([Voter(bytes([i]) * 20, bls.public_key(sk), d) for i, (sk, d) in enumerate(zip(sks, (40, 35, 25)))])
    book = VoteBook("c", lambda h: None)
    book.set_voters(voters)
    g, x, x2, x3, y, y2 = (bytes([c]) * 32 for c in b"gabcde")
    book.parents.update({x: (1, g), x2: (2, x), x3: (3, x2), y: (1, g), y2: (2, y)})
    book.note_justified(Checkpoint(0, g))

    def vote_for(sk, target):
        return finality.vote(sk, chain_id="c", source=Checkpoint(0, g), target=target)

    book.add_vote(vote_for(sks[0], Checkpoint(2, y2)))
    assert book.best == Checkpoint(0, g)  # 40 of 100: no quorum
    book.add_vote(vote_for(sks[1], Checkpoint(2, y2)))
    assert book.best == Checkpoint(2, y2)  # 75 of 100: y2 justified
    book.add_vote(vote_for(sks[0], Checkpoint(3, x3)))  # then 40 vote for a block on x's branch
    assert book.weight(x, 1) == 40 and book.weight(y, 1) == 35
    assert book.prefer(y, 1) > book.prefer(x, 1)  # the justified branch, whatever the weights


def test_votes_are_judged_for_relay_and_peer_score(net):
    with_voter(net)
    eng = Engine(net.node)
    now = net.now()
    v = finality.vote(keys.vote_secret(net.solver_key), chain_id=net.g.chain_id,
                      source=net.chain.genesis_checkpoint(), target=cp(net, net.height))
    assert eng.judge(VOTE, b"\x00garbage", now, "p")[0] == REJECT
    forged = replace(v, signature=bls.sign(bls.keygen(b"m" * 32), v.signing_bytes))
    assert eng.judge(VOTE, forged.encoded, now, "p")[0] == REJECT
    stranger = finality.vote(bls.keygen(b"s" * 32), chain_id=net.g.chain_id, source=v.source, target=v.target)
    assert eng.judge(VOTE, stranger.encoded, now, "p")[0] == REJECT  # not a voter
    assert eng.judge(VOTE, v.encoded, now, "p")[0] == ACCEPT
    assert eng.judge(VOTE, v.encoded, now, "p")[0] == IGNORE  # a duplicate earns nothing
    assert eng.book.weight(v.target.hash, v.target.height) == net.g.solver_deposit
    # A second vote for another block at the same height: evidence, sent as a transaction.
    other = finality.vote(keys.vote_secret(net.solver_key), chain_id=net.g.chain_id,
                          source=v.source, target=Checkpoint(v.target.height, b"\x05" * 32))
    verdict, out = eng.judge(VOTE, other.encoded, now, "p")
    assert verdict == ACCEPT and [m.topic for m in out] == ["tx"]
    assert any(t.kind == "vote_evidence" for t in net.node.mempool.by_hash.values())


def test_a_surround_vote_in_gossip_is_evidence():
    from consensus.rules.finality import Equivocation, Tally, Voter, VoterSet
    sk = bls.keygen(b"v" * 32)
    tally = Tally("c", VoterSet.of([Voter(b"\x01" * 20, bls.public_key(sk), 10)]))

    def span(s, t):
        return finality.vote(sk, chain_id="c", source=Checkpoint(s, bytes([s]) * 32), target=Checkpoint(t, bytes([t]) * 32))

    assert not isinstance(tally.add(span(2, 3)), Equivocation)
    out = tally.add(span(1, 4))  # surrounds 2 -> 3
    assert isinstance(out, Equivocation)
    finality.check_offence(out.first, out.second)  # the two votes prove it
    assert not isinstance(tally.add(span(3, 5)), Equivocation)  # moving forward is no offence


def test_a_voter_in_force_gets_its_deposit_back_only_once_the_set_no_longer_holds_it(net):
    from consensus.rules.transactions import WithdrawSolver
    other = second_solver_with_key(net)
    finalize_head(net)
    assert len(net.chain.voters()) == 2  # both in force
    before = net.account(other).balance
    net.submit(other, WithdrawSolver())
    net.produce_until(net.height + net.g.withdrawal_delay + 2)
    assert net.account(other).balance < before + net.g.solver_deposit  # still held: it is a voter in force
    assert net.state().solver(addr(other)) is not None
    finalize_head(net, [net.solver_key, other])  # the genesis solver alone is not 2/3 of 2: both sign
    assert [v.address for v in net.chain.voters().voters] == [addr(net.solver_key)]
    net.produce_until(net.height + 2)
    assert net.state().solver(addr(other)) is None
    assert net.account(other).balance >= before + net.g.solver_deposit - 10 * net.g.min_fee


def test_votes_seen_in_gossip_make_a_block_final_before_a_block_records_it(net):
    with_voter(net)
    h = net.height
    connect(net, [cert(net, net.chain.genesis_checkpoint(), cp(net, h))])  # h justified on chain
    eng = Engine(net.node)
    assert eng.final_height() == 0 and net.chain.justified() == cp(net, h)
    v = finality.vote(keys.vote_secret(net.solver_key), chain_id=net.g.chain_id, source=cp(net, h),
                      target=cp(net, h + 1))
    assert eng.judge(VOTE, v.encoded, net.now(), "p")[0] == ACCEPT
    assert eng.final_height() == h and net.chain.finalized().height == 0  # final by the votes, not yet on chain
    assert eng.finalized() == cp(net, h)
