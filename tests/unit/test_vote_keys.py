"""Finality keys and vote evidence on chain: VoteKey, the voter set, VoteEvidence (ledger, transactions).

A solver registers the BLS key it votes with (a proof of possession bound to its address); the
voter set is the registered solvers with a key that are not withdrawing, by current deposit; two
votes of one key that break a voting rule slash its solver, once.  Every refusal is checked against
its control (the same transaction made right applies), so each test fails without its rule.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from chain_support import FEE, Net, addr

from consensus.rules import beacon, bls, committee, finality, ledger, schema
from consensus.rules import transactions as T
from consensus.rules.blocks import HEADER, Header
from consensus.rules.finality import Checkpoint, Voter
from consensus.rules.transactions import (CONSENSUS, Commit, Evidence, InvalidTx, RegisterSolver, TxError, VoteEvidence,
                                          VoteKey, WithdrawSolver, check_stateless, decode_tx)

SKS = [bls.keygen(bytes([0x40 + i]) * 32) for i in range(4)]
PKS = [bls.public_key(sk) for sk in SKS]
A, B = b"\xaa" * 32, b"\xbb" * 32
CHAIN = "transx-dev"  # the test network's (chain_support.Net): the chain the votes are for


@pytest.fixture
def net(tmp_path):
    n = Net(str(tmp_path / "db"))
    assert n.g.chain_id == CHAIN
    yield n
    n.close()


# ------------------------------------------------------------------ helpers
def reg(net: Net, k, sk: bytes) -> finality.KeyRegistration:
    """`sk`'s key registered to `k`'s address on `net`'s chain."""
    return finality.register_key(sk, chain_id=net.g.chain_id, solver=addr(k))


def make_solver(net: Net, k) -> None:
    net.submit(k, RegisterSolver(net.g.solver_deposit))
    net.produce()
    assert net.state().solver(addr(k)) is not None


def give_key(net: Net, k, sk: bytes) -> T.Tx:
    tx = net.submit(k, VoteKey(reg(net, k, sk)))
    assert tx in net.produce().block.txs
    if k is net.solver_key:  # the block producer now draws its lottery tickets with this key
        net.node.vote_secret = sk
    return tx


def vote(sk: bytes, source: int, target: int, block: bytes = A, chain_id: str | None = None) -> finality.Vote:
    return finality.vote(sk, chain_id=chain_id or CHAIN, source=Checkpoint(source, bytes(32)),
                         target=Checkpoint(target, block))


def evidence(a: finality.Vote, b: finality.Vote) -> VoteEvidence:
    return VoteEvidence(a.encoded, b.encoded)


def refused(net: Net, tx, match: str) -> None:
    """The node refuses `tx` with a message matching `match`, and so does the ledger, writing nothing."""
    with pytest.raises(TxError, match=match):
        net.node.submit_tx(tx)
    overlay = net.state()
    with pytest.raises(TxError, match=match):
        ledger.apply_tx(overlay, tx, net.next_height, net.g)
    assert overlay.writes == {}


def applies(net: Net, tx) -> None:
    """The control: `tx` would go into the next block (on an overlay, nothing kept)."""
    assert ledger.apply_tx(net.state(), tx, net.next_height, net.g) == tx.fee


def stateless(net: Net, tx) -> None:
    check_stateless(tx, net.g.chain_id, net.g.zones, net.g.min_fee)


def voters(net: Net) -> dict[bytes, tuple[bytes, int]]:
    """The voter set now, as address -> (BLS key, deposit); {} when there is none."""
    return {v.address: (v.bls_key, v.deposit) for v in ledger.voter_pool(net.state())}


# ------------------------------------------------------------------ VoteKey
def test_a_solver_registers_its_finality_key_in_the_consensus_nonce_space_and_votes(net):
    s = net.solver_key
    assert ledger.voter_pool(net.state()) == []  # no solver has a key: no voters
    tx = net.tx(s, VoteKey(reg(net, s, SKS[0])))
    assert (tx.kind, tx.space) == ("vote_key", CONSENSUS)
    assert decode_tx(tx.encoded) == tx and len(tx.encoded) <= T.MAX_TX_BYTES
    stateless(net, tx)
    net.node.submit_tx(tx)
    assert tx in net.produce().block.txs
    st = net.state()
    assert (st.solver_bls(addr(s)), st.bls_owner(PKS[0])) == (PKS[0], addr(s))
    assert (net.account(s).nonce, net.account(s).consensus_nonce) == (0, 1)
    assert ledger.voter_pool(st) == [Voter(addr(s), PKS[0], st.solver(addr(s)).deposit)]


def test_re_registering_replaces_the_key_and_the_old_one_stays_the_solvers(net):
    """The voter set takes the new key; the old one still names its solver (its votes stay slashable)
    and no other solver may take it."""
    s, u = net.solver_key, net.users[0]
    make_solver(net, u)
    give_key(net, s, SKS[0])
    since = net.height
    # One change per finality_depth blocks, so key registrations cannot fill the consensus room of blocks.
    refused(net, net.tx(s, VoteKey(reg(net, s, SKS[1]))), f"next change is possible from height {since + net.g.finality_depth}$")
    net.produce_until(since + net.g.finality_depth - 1)
    give_key(net, s, SKS[1])
    st = net.state()
    assert st.solver_bls(addr(s)) == PKS[1]
    assert (st.bls_owner(PKS[0]), st.bls_owner(PKS[1])) == (addr(s), addr(s))
    assert voters(net)[addr(s)][0] == PKS[1]
    refused(net, net.tx(u, VoteKey(reg(net, u, SKS[0]))), "^this BLS key is registered to another solver$")
    net.produce_until(net.height + net.g.finality_depth)
    applies(net, net.tx(s, VoteKey(reg(net, s, SKS[0]))))  # its own old key it may take back


def test_a_key_another_solver_holds_is_refused(net):
    s, u = net.solver_key, net.users[0]
    make_solver(net, u)
    give_key(net, s, SKS[0])
    # u holds SKS[0] too (a shared or stolen key) and binds it to its own address: valid, but taken.
    tx = net.tx(u, VoteKey(reg(net, u, SKS[0])))
    stateless(net, tx)
    refused(net, tx, "^this BLS key is registered to another solver$")
    applies(net, net.tx(u, VoteKey(reg(net, u, SKS[1]))))


def test_another_solvers_registration_is_refused_by_the_stateless_check(net):
    """A registration copied from another solver's VoteKey names that solver; re-addressed to the sender
    its binding (the key's signature over the address) no longer verifies."""
    s, u = net.solver_key, net.users[0]
    make_solver(net, u)
    theirs = reg(net, s, SKS[0])
    copied = net.tx(u, VoteKey(theirs))
    with pytest.raises(InvalidTx, match="^the key registration is for another address than the sender's$"):
        stateless(net, copied)
    readdressed = net.tx(u, VoteKey(replace(theirs, solver=addr(u))))
    with pytest.raises(InvalidTx, match="^key registration: the key's signature over the solver's address does not "
                                        "verify$"):
        stateless(net, readdressed)
    with pytest.raises(InvalidTx, match="does not verify"):
        net.node.submit_tx(readdressed)
    stateless(net, net.tx(u, VoteKey(reg(net, u, SKS[0]))))  # the control: its own binding of the key


def test_a_registration_with_a_bad_proof_of_possession_or_for_another_chain_is_refused(net):
    s = net.solver_key
    good = reg(net, s, SKS[0])
    stateless(net, net.tx(s, VoteKey(good)))
    bad_pop = net.tx(s, VoteKey(replace(good, pop=reg(net, s, SKS[1]).pop)))
    with pytest.raises(InvalidTx, match="^key registration: bad proof of possession$"):
        stateless(net, bad_pop)
    with pytest.raises(InvalidTx, match="bad proof of possession"):
        net.node.submit_tx(bad_pop)
    foreign = finality.register_key(SKS[0], chain_id="transx-main", solver=addr(s))
    with pytest.raises(InvalidTx, match="^key registration: a key registration for chain 'transx-main', not "
                                        "'transx-dev'$"):
        stateless(net, net.tx(s, VoteKey(foreign)))


def test_a_key_from_a_non_solver_or_a_withdrawing_solver_is_refused(net):
    u = net.users[0]
    msg = "^only registered solvers that are not withdrawing register a finality key$"
    refused(net, net.tx(u, VoteKey(reg(net, u, SKS[0]))), msg)
    make_solver(net, u)
    applies(net, net.tx(u, VoteKey(reg(net, u, SKS[0]))))
    net.submit(u, WithdrawSolver())
    net.produce()
    refused(net, net.tx(u, VoteKey(reg(net, u, SKS[0]))), msg)


def test_keys_beyond_the_voting_seats_register_and_the_voting_committee_stays_bounded(net, monkeypatch):
    """A town has more solvers than voting seats: every one may register a key (it draws proposer
    tickets with it); the voter set in force is the seats drawn from them (committee.py)."""
    s, u = net.solver_key, net.users[0]
    make_solver(net, u)
    give_key(net, s, SKS[0])
    give_key(net, u, SKS[1])
    assert len(ledger.voter_pool(net.state())) == 2
    one_seat = ledger.voter_set(net.state(), bytes(32), 1)
    assert len(one_seat) == 1 and one_seat.total == 1


# ------------------------------------------------------------------ the voter set
def test_the_voter_set_follows_registration_withdrawal_forfeit_and_slashing(net):
    s, u0, u1, u2 = net.solver_key, *net.users[:3]
    g = net.g
    for u in (u0, u1, u2):
        make_solver(net, u)
    assert ledger.voter_pool(net.state()) == []  # solvers, but none with a key
    for k, sk in zip((s, u0, u1, u2), SKS):
        give_key(net, k, sk)
    dep = g.solver_deposit
    assert voters(net) == {addr(s): (PKS[0], net.state().solver(addr(s)).deposit), addr(u0): (PKS[1], dep),
                           addr(u1): (PKS[2], dep), addr(u2): (PKS[3], dep)}
    assert ledger.voter_set(net.state(), bytes(32), net.g.voting_seats).total == sum(d for _, d in voters(net).values())

    # Withdrawal: out at once, though still bonded; its key goes with its record at the exit.
    net.submit(u0, WithdrawSolver())
    exit_at = net.produce().block.height + g.withdrawal_delay
    assert addr(u0) not in voters(net) and net.state().solver(addr(u0)) is not None
    # Forfeit: a commit never revealed costs commit_forfeit of the deposit, and so of the weight.
    h = net.next_height + 1
    seed = committee.ticket_beacon(net.state(), h, g.gate_closure, g.hash)
    drawn = committee.started(net.state(), h)  # a ticket once committees draw, zeros before
    net.submit(u1, Commit(h, b"\x01" * 32, beacon.ticket(SKS[2], seed, h).proof if drawn else bytes(96)))
    net.produce_until(h + g.reveal_window + 1)
    assert voters(net)[addr(u1)] == (PKS[2], dep - g.commit_forfeit)
    # Slashing (a double proposal): out.
    first = Header(net.next_height, net.chain.head.hash, 1, bytes(32), bytes(32), bytes(32), bytes(32)).signed(u2)
    net.submit(u0, Evidence(HEADER.encode(first), HEADER.encode(replace(first, timestamp=2).signed(u2))))
    net.produce()
    assert addr(u2) not in voters(net) and net.state().solver_bls(addr(u2)) is None
    assert net.state().bls_owner(PKS[3]) == addr(u2)

    net.produce_until(max(exit_at, net.height))
    st = net.state()
    # u0 is still in the voter set in force (no finality here renews it), so its exit waits, its deposit
    # slashable (tests/unit/test_finality_chain.py follows it out once finality advances).
    assert st.solver(addr(u0)) is not None and st.bls_owner(PKS[1]) == addr(u0)
    assert set(voters(net)) == {addr(s), addr(u1)}
    held, minted = ledger.money_in_state(st)
    assert held == minted


def test_the_voter_set_reads_nothing_per_solver(net, monkeypatch):
    """Two prefix scans, no point reads: it runs at every block connect."""
    s, u = net.solver_key, net.users[0]
    make_solver(net, u)
    give_key(net, s, SKS[0])
    give_key(net, u, SKS[1])
    st = net.state()
    monkeypatch.setattr(type(st), "get", lambda *_: pytest.fail("voter_set read a key by itself"))
    assert len(ledger.voter_pool(st)) == 2


# ------------------------------------------------------------------ VoteEvidence
def test_vote_evidence_slashes_the_keys_solver_once(net):
    s, u, reporter = net.solver_key, net.users[0], net.users[1]
    make_solver(net, u)
    give_key(net, u, SKS[1])
    a, b = vote(SKS[1], 0, 5, A), vote(SKS[1], 0, 5, B)  # a double vote at target height 5, long ago
    net.produce_until(12)
    deposit = net.state().solver(addr(u)).deposit
    before, burned = net.account(reporter).balance, net.state().totals().burned
    tx = net.tx(reporter, evidence(a, b))
    assert (tx.kind, tx.space) == ("vote_evidence", CONSENSUS) and decode_tx(tx.encoded) == tx
    net.node.submit_tx(tx)
    assert tx in net.produce().block.txs
    st = net.state()
    assert st.solver(addr(u)) is None and addr(u) not in voters(net)
    assert net.account(reporter).balance == before - FEE + deposit // 10
    assert st.totals().burned == burned + deposit - deposit // 10
    assert st.get(schema.vote_offence(5, PKS[1])) == tx.hash
    held, minted = ledger.money_in_state(st)
    assert held == minted

    # It comes back with the same key: the punished offence, in either order, is not punished again ...
    make_solver(net, u)
    give_key(net, u, SKS[1])
    for ev in (evidence(a, b), evidence(b, a)):
        refused(net, net.tx(reporter, ev), "^vote evidence: already punished$")
    # ... another offence is; an offence is recorded at its higher target height, so a surround vote
    # of 1 -> 4 inside 0 -> 5 counts as punished at 5 (it is the 0 -> 5 vote's) whichever vote comes first.
    applies(net, net.tx(reporter, evidence(vote(SKS[1], 0, 9), vote(SKS[1], 1, 8))))
    refused(net, net.tx(reporter, evidence(vote(SKS[1], 1, 4), a)), "^vote evidence: already punished$")
    assert net.state().solver(addr(s)) is not None  # the genesis solver, untouched, kept proposing


def test_a_solver_that_replaced_its_key_is_still_slashed_for_the_old_keys_votes(net):
    u, reporter = net.users[0], net.users[1]
    make_solver(net, u)
    give_key(net, u, SKS[1])
    net.produce_until(net.height + net.g.finality_depth)
    give_key(net, u, SKS[2])
    tx = net.submit(reporter, evidence(vote(SKS[1], 0, 3, A), vote(SKS[1], 0, 3, B)))
    assert tx in net.produce().block.txs
    assert net.state().solver(addr(u)) is None


def test_two_votes_that_are_no_offence_are_refused(net):
    u, reporter = net.users[0], net.users[1]
    make_solver(net, u)
    give_key(net, u, SKS[1])
    give_key(net, net.solver_key, SKS[0])
    a = vote(SKS[1], 0, 5, A)
    cases = {
        "^vote evidence: the votes are neither a double vote nor a surround vote$": [
            (a, a), (a, vote(SKS[1], 5, 6)), (vote(SKS[1], 0, 4), vote(SKS[1], 2, 6)), (vote(SKS[1], 1, 5), vote(SKS[1], 0, 4))],
        "^vote evidence: the votes are by different keys$": [(a, vote(SKS[0], 0, 5, B))],
        "^vote evidence: a vote's signature does not verify$": [(a, replace(vote(SKS[1], 0, 5, B), signature=a.signature))],
        "^vote evidence: the votes are for chain 'transx-main', not 'transx-dev'$": [
            (vote(SKS[1], 0, 5, A, "transx-main"), vote(SKS[1], 0, 5, B, "transx-main"))],
        "^vote evidence: the votes are for different chains$": [(a, vote(SKS[1], 0, 5, B, "transx-main"))],
    }
    for match, pairs in cases.items():
        for x, y in pairs:
            refused(net, net.tx(reporter, evidence(x, y)), match)
    refused(net, net.tx(reporter, VoteEvidence(a.encoded, a.encoded[:-1])), r"^vote evidence: a vote does not decode \(")
    applies(net, net.tx(reporter, evidence(a, vote(SKS[1], 0, 5, B))))  # the controls: a double vote ...
    applies(net, net.tx(reporter, evidence(vote(SKS[1], 1, 4), vote(SKS[1], 0, 6))))  # ... and a surround vote


def test_vote_evidence_against_a_key_no_solver_holds_is_refused(net):
    u, reporter = net.users[0], net.users[1]
    msg = r"^vote evidence: no registered solver holds that key \(or it was slashed already\)$"
    offence = evidence(vote(SKS[1], 0, 5, A), vote(SKS[1], 0, 5, B))
    refused(net, net.tx(reporter, offence), msg)  # nobody registered it
    make_solver(net, u)
    give_key(net, u, SKS[1])
    applies(net, net.tx(reporter, offence))
    net.submit(u, WithdrawSolver())
    exit_at = net.produce().block.height + net.g.withdrawal_delay
    applies(net, net.tx(reporter, offence))  # slashable while it withdraws
    net.produce_until(exit_at)
    assert net.state().solver(addr(u)) is None
    refused(net, net.tx(reporter, offence), msg)  # gone with its deposit


def test_signatures_and_key_proofs_are_checked_once_per_process(net, monkeypatch):
    """Bitcoin Core's signature cache: a transaction admitted to the mempool is not checked again when a
    block carries it (a vote key's BLS proofs cost milliseconds); a changed signature is a new
    transaction, checked in full."""
    s = net.solver_key
    tx = net.tx(s, VoteKey(reg(net, s, SKS[0])))
    stateless(net, tx)
    monkeypatch.setattr(T.keys, "verify_signature", lambda *_: pytest.fail("a signature checked twice"))
    monkeypatch.setattr(T, "check_registration", lambda *_a, **_k: pytest.fail("a key proof checked twice"))
    stateless(net, tx)
    forged = decode_tx(tx.encoded[:-1] + bytes([tx.encoded[-1] ^ 1]))
    monkeypatch.undo()
    with pytest.raises(InvalidTx, match="bad signature"):
        stateless(net, forged)


def test_a_withdrawing_solver_cannot_top_up_and_cancel_its_exit(net):
    """Review of issue 13: a top-up wrote a fresh record without the exit, so a withdrawing solver was a
    full solver again (drawn, proposing, in the stake total) until its scheduled payout."""
    u = net.users[0]
    make_solver(net, u)
    net.submit(u, WithdrawSolver())
    net.produce()
    refused(net, net.tx(u, RegisterSolver(net.g.solver_deposit)), "^this solver is withdrawing")
