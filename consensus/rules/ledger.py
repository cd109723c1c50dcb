"""The state transition: what a transaction, a slot's clearing and a block reward do to the ledger.

Pure functions over a `StateOverlay`; integers only.  Money is conserved:
``sum of balances + escrow + solver deposits + burned + grid_charged ==
minted + grid_credited``, where only block rewards mint and the grid is the
one party outside the chain (delivery settlement, settlement.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .ranking import commitment
from solver import Instance, Participant

from . import committee, finality, keys, schema
from .blocks import HEADER, BlockClearing
from .codec import DecodeError
from .genesis import Genesis
from .charging import session_cost
from .state import ACCOUNT, CANCELLED, CLEARED, OPEN, READING, SESSION_CLOSED, SESSION_EXPIRED, SESSION_OPEN, SESSION_STATUS, SOLVER, Account, BidRecord, Reading, SessionRecord, SolverRecord, StateOverlay, Totals
from .metering import reading_ok
from .units import kwh, price, tokens
from .transactions import BUY, SELL, SIDE_NAMES, Bid, CancelBid, Commit, Evidence, MeterReading, RegisterMeter, RegisterSolver, Reveal, SessionClose, SessionOpen, Transfer, Tx, TxError, WithdrawSolver, bid_lock, escrow_for
from .transactions import VoteEvidence, VoteKey
from .transactions import WALLET


class LedgerError(Exception):
    """A clearing that the ledger cannot settle (a consensus failure, never user input)."""


def apply_genesis(state: StateOverlay, g: Genesis) -> None:
    minted = 0
    for addr, amount in g.balances:
        state.set_account(addr, Account(balance=amount))
        minted += amount
    for addr, deposit in g.solvers:
        state.set_solver(addr, SolverRecord(deposit=deposit, since=0))
        minted += deposit
    for addr, reg in g.vote_keys:  # registered at height 0: they draw tickets from block 1 (committee.py)
        state.set_solver_bls(addr, reg.bls_key)
        state.put(schema.bls_since(addr), schema.u64(0))
    state.set_totals(Totals(minted=minted, burned=0))


def apply_tx(state: StateOverlay, tx: Tx, height: int, g: Genesis) -> int:
    """Apply `tx` as included at `height`; returns its fee.  Raises `TxError` and changes
    nothing the caller cannot roll back (callers checkpoint around it).  Its nonce must be the
    sender's next in the transaction's own sequence (`Tx.space`): the wallet nonce, or for a commit,
    reveal, evidence, finality key or vote evidence the consensus nonce; only that one moves."""
    sender = tx.sender
    acct = state.account(sender)
    expected = acct.nonce_of(tx.space)
    if tx.nonce != expected:
        what = "nonce" if tx.space == WALLET else "consensus nonce"  # a commit, reveal or evidence counts its own
        raise TxError(f"nonce {tx.nonce} is not the account's next {what} {expected}", "nonce")
    cost = tx.fee + _locked_by(tx, height, g, state)
    if acct.balance < cost:
        raise TxError(f"insufficient balance: {tokens(acct.balance)} tokens, the transaction needs {tokens(cost)} tokens",
                      balance=acct.balance, needs=cost)
    acct = replace(acct.after_nonce(tx.space), balance=acct.balance - tx.fee)
    b = tx.body
    if isinstance(b, Transfer):
        acct = replace(acct, balance=acct.balance - b.amount)
        state.set_account(sender, acct)
        to = state.account(b.to)
        state.set_account(b.to, replace(to, balance=to.balance + b.amount))
        return tx.fee
    if isinstance(b, Bid):
        escrow = bid_escrow(b, g)
        acct = replace(acct, balance=acct.balance - escrow, escrowed=acct.escrowed + escrow)
        _count_bid(state, b.slot, b.side, +1)
        state.set_bid(tx.hash, BidRecord(owner=sender, side=b.side, slot=b.slot, wh=b.wh, price=b.price, zone=b.zone,
                                         escrow=escrow, included=height, preferences=b.preferences))
    elif isinstance(b, CancelBid):
        rec = state.bid(b.bid)
        assert rec is not None  # checked by _locked_by
        acct = replace(acct, balance=acct.balance + rec.escrow, escrowed=acct.escrowed - rec.escrow)
        state.set_bid(b.bid, replace(rec, status=CANCELLED, escrow=0))
        _count_bid(state, rec.slot, rec.side, -1)
    elif isinstance(b, RegisterSolver):
        acct = replace(acct, balance=acct.balance - b.deposit)
        old = state.solver(sender)
        state.set_solver(sender, SolverRecord(deposit=b.deposit + (old.deposit if old else 0),
                                              since=old.since if old else height))
    elif isinstance(b, Commit):
        state.put(schema.commit(b.height, sender), b.commitment + bytes([schema.COMMIT_PENDING]))
    elif isinstance(b, Reveal):
        state.put(schema.commit(b.height, sender), commitment(b.clearing_hash, sender, b.salt)
                  + bytes([schema.COMMIT_REVEALED]))
    elif isinstance(b, WithdrawSolver):
        rec = state.solver(sender)
        assert rec is not None  # checked by _locked_by
        exit_at = height + g.withdrawal_delay
        state.set_solver(sender, replace(rec, exit_at=exit_at))
        state.put(schema.solver_exit(exit_at, sender), b"")
    elif isinstance(b, Evidence):
        first = HEADER.decode(b.first)
        cheat = keys.address_of(first.proposer)
        acct = replace(acct, balance=acct.balance + _slash(state, cheat))
        state.put(schema.evidence(first.height, cheat), tx.hash)
    elif isinstance(b, VoteKey):
        state.set_solver_bls(sender, b.registration.bls_key)  # the old key stays the sender's (bls_owner)
        state.put(schema.bls_since(sender), schema.u64(height))
    elif isinstance(b, VoteEvidence):
        first, second = finality.decode_vote(b.first), finality.decode_vote(b.second)
        cheat = state.bls_owner(first.voter)
        assert cheat is not None  # checked by _locked_by
        acct = replace(acct, balance=acct.balance + _slash(state, cheat))
        state.put(schema.vote_offence(_offence_height(first, second), first.voter), tx.hash)
    elif isinstance(b, MeterReading):
        state.put(schema.meter(b.slot, sender), READING.encode(Reading(b.imported_wh, b.exported_wh, height)))
    elif isinstance(b, RegisterMeter):
        state.put(schema.meter_key(sender), b.meter)
    state.set_account(sender, acct)
    if isinstance(b, (SessionOpen, SessionClose)):
        _apply_session(state, b, sender, height, g)  # after the station's account is written: it may be the owner
    return tx.fee


def _apply_session(state: StateOverlay, b: SessionOpen | SessionClose, station: bytes, height: int,
                   g: Genesis) -> None:
    """Open: lock the cost of the most the EV may take from the owner.  Close: pay the station for
    what was delivered and give the owner the rest back.  Checked by `_locked_by`."""
    if isinstance(b, SessionOpen):
        owner = b.auth.owner_address
        escrow = escrow_for(b.auth.max_wh, b.price)
        acct = state.account(owner)
        state.set_account(owner, replace(acct, balance=acct.balance - escrow, escrowed=acct.escrowed + escrow))
        state.set_session(b.auth.session_id, SessionRecord(owner=owner, station=station, ev_id=b.auth.ev_id,
                                                           max_wh=b.auth.max_wh, price=b.price, escrow=escrow,
                                                           opened=height, soc_start=b.soc_start))
        state.put(schema.session_deadline(height + g.session_timeout, b.auth.session_id), b"")
        return
    rec = state.session(b.session)
    assert rec is not None
    amount = session_cost(b.delivered_wh, rec.price)
    acct = state.account(rec.owner)
    state.set_account(rec.owner, replace(acct, balance=acct.balance + rec.escrow - amount,
                                         escrowed=acct.escrowed - rec.escrow))
    st = state.account(rec.station)
    state.set_account(rec.station, replace(st, balance=st.balance + amount))
    state.set_session(b.session, replace(rec, status=SESSION_CLOSED, closed=height, delivered_wh=b.delivered_wh,
                                         soc_end=b.soc_end, amount=amount, escrow=0))
    state.delete(schema.session_deadline(rec.opened + g.session_timeout, b.session))


def expire_sessions(state: StateOverlay, height: int) -> None:
    """Sessions whose station has not closed them `session_timeout` blocks after opening end here with
    nothing delivered: the owner's escrow comes back, the station is paid nothing.  (A station that
    charged must close in time; the owner is never left with money locked.)"""
    prefix = schema.session_deadlines(height)
    for key, _ in list(state.items(prefix)):
        session_id = key[len(prefix):]
        rec = state.session(session_id)
        state.delete(key)
        if rec is None or rec.status != SESSION_OPEN:
            continue
        acct = state.account(rec.owner)
        state.set_account(rec.owner, replace(acct, balance=acct.balance + rec.escrow, escrowed=acct.escrowed - rec.escrow))
        state.set_session(session_id, replace(rec, status=SESSION_EXPIRED, closed=height, escrow=0,
                                              soc_end=rec.soc_start))


def upfront_cost(tx: Tx, g: Genesis) -> int:
    """What `tx` takes from its sender's balance when included: the fee, plus the amount sent, the
    escrow locked or the deposit made."""
    b = tx.body
    if isinstance(b, Transfer):
        return tx.fee + b.amount
    if isinstance(b, Bid):
        return tx.fee + bid_escrow(b, g)
    if isinstance(b, RegisterSolver):
        return tx.fee + b.deposit
    return tx.fee


def bid_escrow(b: Bid, g: Genesis) -> int:
    """What a bid locks while it is open: a buy bid's escrow, a sell bid's delivery collateral (bid_lock)."""
    return bid_lock(b.side, b.wh, b.price, g.retail)


def _locked_by(tx: Tx, height: int, g: Genesis, state: StateOverlay) -> int:
    """What `tx` moves out of the sender's balance besides its fee; checks its stateful rules."""
    b = tx.body
    if isinstance(b, Transfer):
        return b.amount
    if isinstance(b, Bid):
        closes = b.slot - g.gate_closure
        if height > closes:
            raise TxError(f"slot {b.slot} closed for bids at height {closes} (gate closure {g.gate_closure} slots "
                          f"ahead); the chain is at height {height}", "gate_closed")
        if b.slot > height + g.bid_horizon:
            raise TxError(f"slot {b.slot} is more than {g.bid_horizon} slots ahead of height {height}")
        if b.expiry < height:
            raise TxError(f"bid expired at height {b.expiry}")
        opposite = bytes([SELL if b.side == BUY else BUY])
        if any(v == opposite for _, v in state.items(schema.owner_bids(tx.sender, b.slot))):
            raise TxError(f"this address already has an open {'sell' if b.side == BUY else 'buy'} bid for slot "
                          f"{b.slot}: one side per slot (cancel it first)")
        if bid_count(state, b.slot, b.side) >= g.max_bids_per_slot:
            raise TxError(f"slot {b.slot} is full: it holds {g.max_bids_per_slot} {SIDE_NAMES[b.side]} bids")
        return bid_escrow(b, g)
    if isinstance(b, CancelBid):
        rec = state.bid(b.bid)
        if rec is None or rec.owner != tx.sender:
            raise TxError(f"no bid {b.bid.hex()} of this address")
        if rec.status != OPEN:
            raise TxError(f"bid {b.bid.hex()} is already {('open', 'cancelled', 'cleared')[rec.status]}", "ended")
        if height > rec.slot - g.gate_closure:
            raise TxError(f"slot {rec.slot} closed at height {rec.slot - g.gate_closure}: its bids are final")
        return 0
    if isinstance(b, RegisterSolver):
        rec = state.solver(tx.sender)
        if rec is None and b.deposit < g.solver_deposit:
            raise TxError(f"a solver's deposit is at least {tokens(g.solver_deposit)} tokens")
        if rec is not None and rec.exit_at:  # a top-up would cancel the exit it still has scheduled
            raise TxError(f"this solver is withdrawing (its deposit returns at height {rec.exit_at})")
        return b.deposit
    if isinstance(b, Commit):
        if state.solver(tx.sender) is None:
            raise TxError("only registered solvers commit solutions")
        if not b.height - g.commit_window <= height <= b.height - 1:
            raise TxError(f"a commit for height {b.height} belongs in blocks {b.height - g.commit_window}.."
                          f"{b.height - 1}; this is height {height}")
        if state.get(schema.commit(b.height, tx.sender)) is not None:
            raise TxError(f"this solver already committed for height {b.height}")
        if committee.started(state, b.height):
            try:
                drawn = committee.check(state, tx.sender, b.height, b.ticket, gate_closure=g.gate_closure,
                                        size=g.committee_size, genesis_hash=g.hash)
            except ValueError as e:
                raise TxError(f"commit for height {b.height}: {e}") from None
            if drawn != committee.MEMBER:
                raise TxError(f"this solver is not in the committee of height {b.height} ({drawn})")
        elif any(b.ticket):
            raise TxError("a commit carries a ticket before committees apply")
        return 0
    if isinstance(b, Reveal):
        raw = state.get(schema.commit(b.height, tx.sender))
        if raw is None or raw[32] != schema.COMMIT_PENDING:
            raise TxError(f"no pending commit of this solver for height {b.height}")
        if not b.height <= height <= b.height + g.reveal_window:
            raise TxError(f"reveals for height {b.height} belong in blocks {b.height}..{b.height + g.reveal_window}")
        if commitment(b.clearing_hash, tx.sender, b.salt) != raw[:32]:
            raise TxError("the revealed clearing and salt do not match the commitment")
        return 0
    if isinstance(b, WithdrawSolver):
        rec = state.solver(tx.sender)
        if rec is None or rec.exit_at:
            raise TxError("not a solver, or already withdrawing")
        return 0
    if isinstance(b, Evidence):
        return _check_evidence(b, state)
    if isinstance(b, VoteKey):
        rec = state.solver(tx.sender)
        if rec is None or rec.exit_at:
            raise TxError("only registered solvers that are not withdrawing register a finality key")
        owner = state.bls_owner(b.registration.bls_key)
        if owner is not None and owner != tx.sender:
            raise TxError("this BLS key is registered to another solver")
        since = state.get(schema.bls_since(tx.sender))
        if state.solver_bls(tx.sender) is not None and since is not None and (
                height < schema.read_u64(since) + g.finality_depth):
            # One key change per finality_depth blocks: key registrations cannot fill blocks' consensus room.
            raise TxError(f"this solver registered a key at height {schema.read_u64(since)}: the next change is "
                          f"possible from height {schema.read_u64(since) + g.finality_depth}")
        return 0
    if isinstance(b, VoteEvidence):
        return _check_vote_evidence(b, state, g)
    if isinstance(b, MeterReading):
        if b.slot >= height:
            raise TxError(f"slot {b.slot} has not been delivered yet (height {height})")
        if height > b.slot + g.meter_window:
            raise TxError(f"readings for slot {b.slot} closed at height {b.slot + g.meter_window} (meter window "
                          f"{g.meter_window} slots); the chain is at height {height}")
        meter = state.meter_key(tx.sender)
        if meter is None:
            raise TxError("no meter is registered to this address (`transx meter register`)")
        if not reading_ok(b, chain_id=g.chain_id, account=tx.sender, meter=meter):
            raise TxError("the reading is not signed by the meter registered to this address")
        if state.get(schema.meter(b.slot, tx.sender)) is not None:
            raise TxError(f"a reading for slot {b.slot} is already on chain")
        return 0
    if isinstance(b, RegisterMeter):
        return 0
    if isinstance(b, SessionOpen):
        a = b.auth
        if b.price > a.max_price:
            raise TxError(f"the station's price {price(b.price)} is above the authorised {price(a.max_price)} tokens "
                          "per kWh")
        if a.expiry < g.slot_start_ms(height):
            raise TxError("the authorisation has expired")
        if state.session(a.session_id) is not None:
            raise TxError("this authorisation was already used (its nonce opened a session before)")
        escrow = escrow_for(a.max_wh, b.price)
        owner = state.account(a.owner_address)
        if owner.balance < escrow + (tx.fee if a.owner_address == tx.sender else 0):
            raise TxError(f"the EV owner's balance {tokens(owner.balance)} tokens does not cover {tokens(escrow)} tokens "
                          f"for {kwh(a.max_wh)} kWh at {price(b.price)} tokens per kWh")
        return 0
    if isinstance(b, SessionClose):
        rec = state.session(b.session)
        if rec is None or rec.station != tx.sender:
            raise TxError(f"no session {b.session.hex()} opened by this station")
        if rec.status != SESSION_OPEN:
            raise TxError(f"session {b.session.hex()} is already {SESSION_STATUS[rec.status]}"
                          + (f" (not closed within {g.session_timeout} slots)" if rec.status == SESSION_EXPIRED else ""), "ended")
        if b.delivered_wh > rec.max_wh:
            raise TxError(f"{kwh(b.delivered_wh)} kWh delivered is more than the authorised {kwh(rec.max_wh)} kWh")
        return 0
    raise TxError(f"unknown transaction kind {type(b).__name__}")  # pragma: no cover - the codec has no others


def bid_count(state: StateOverlay, slot: int, side: int) -> int:
    raw = state.get(schema.slot_bid_count(slot, side))
    return 0 if raw is None else schema.read_u64(raw)


def _count_bid(state: StateOverlay, slot: int, side: int, delta: int) -> None:
    n = bid_count(state, slot, side) + delta
    state.put(schema.slot_bid_count(slot, side), schema.u64(n) if n else None)


def _check_evidence(b: Evidence, state: StateOverlay) -> int:
    try:
        first, second = HEADER.decode(b.first), HEADER.decode(b.second)
    except DecodeError as e:
        raise TxError(f"evidence: a header does not decode ({e})") from None
    if (first.height, first.parent, first.proposer) != (second.height, second.parent, second.proposer):
        raise TxError("evidence: the headers are not for one height and parent by one solver")
    if first.hash == second.hash:
        raise TxError("evidence: the two headers are the same block")
    if not (first.signature_ok() and second.signature_ok()):
        raise TxError("evidence: a header's signature is not the solver's")
    cheat = keys.address_of(first.proposer)
    if state.solver(cheat) is None:
        raise TxError("evidence: that solver is not registered (or was slashed already)")
    if state.get(schema.evidence(first.height, cheat)) is not None:
        raise TxError("evidence: already punished")
    return 0


def _check_vote_evidence(b: VoteEvidence, state: StateOverlay, g: Genesis) -> int:
    """Two votes of one key that break a voting rule, on this chain, by a key a registered solver
    registered (now or before it replaced it), not punished yet.  The offence need not be recent."""
    try:
        first, second = finality.decode_vote(b.first), finality.decode_vote(b.second)
    except ValueError as e:  # DecodeError, or a source not below its target
        raise TxError(f"vote evidence: a vote does not decode ({e})") from None
    if first.chain_id != g.chain_id:
        raise TxError(f"vote evidence: the votes are for chain {first.chain_id!r}, not {g.chain_id!r}")
    cheat = state.bls_owner(first.voter)
    if cheat is None or state.solver(cheat) is None:
        raise TxError("vote evidence: no registered solver holds that key (or it was slashed already)")
    if state.get(schema.vote_offence(_offence_height(first, second), first.voter)) is not None:
        raise TxError("vote evidence: already punished")
    try:  # last: it verifies two BLS signatures
        finality.check_offence(first, second)
    except finality.FinalityError as e:
        raise TxError(f"vote evidence: {e}") from None
    return 0


def _offence_height(a: finality.Vote, b: finality.Vote) -> int:
    """Where a vote offence is recorded as punished: the higher target height, whichever vote comes
    first (a double vote's two are the same), so the two orders of one pair are one offence."""
    return max(a.target.height, b.target.height)


def voter_set(state: StateOverlay, seed: bytes, seats: int) -> finality.VoterSet | None:
    """The voting committee now (committee.seats of `voter_pool`, drawn with `seed`), None if the pool is empty."""
    pool = voter_pool(state)
    return committee.seats(pool, seed, seats) if pool else None


def voter_pool(state: StateOverlay) -> list[finality.Voter]:
    """Who may vote now: every registered solver with a BLS key that is not withdrawing, weighted by its
    current deposit (> 0).  Two prefix scans side by side (solver records and keys, both by address),
    nothing per solver.  Slashing, withdrawal and forfeits change it because it reads the current records."""
    bls_keys = {k[len(schema.SOLVER_BLS):]: v for k, v in state.items(schema.SOLVER_BLS)}
    if not bls_keys:
        return []
    voters = []
    for k, raw in state.items(schema.SOLVERS):
        addr = k[len(schema.SOLVERS):]
        bls_key = bls_keys.get(addr)
        if bls_key is None:
            continue
        rec = SOLVER.decode(raw)
        if rec.exit_at == 0 and rec.deposit > 0:
            voters.append(finality.Voter(addr, bls_key, rec.deposit))
    return voters


def may_propose(rec: SolverRecord, height: int, g: Genesis) -> bool:
    """A solver registered at `since` may propose block h only if block h - L was not yet on chain when
    it registered: otherwise it could have ground keys until one drew a good lottery ticket
    seed of block h.  Genesis solvers may always propose; a withdrawing one no longer does."""
    if rec.exit_at:  # a withdrawing solver proposes nothing: it could equivocate at its exit and escape
        return False
    return rec.since == 0 or rec.since < height - g.gate_closure


def _burn(state: StateOverlay, amount: int) -> None:
    if amount:
        t = state.totals()
        state.set_totals(replace(t, burned=t.burned + amount))


def _slash(state: StateOverlay, cheat: bytes) -> int:
    """Take a solver's whole deposit for an offence: a tenth is the reporter's bounty (returned, the
    caller credits it), the rest is burned, and the solver is removed."""
    rec = state.solver(cheat)
    assert rec is not None  # checked by _locked_by
    bounty = rec.deposit // 10
    _burn(state, rec.deposit - bounty)
    _remove_solver(state, cheat, rec)
    return bounty


def _remove_solver(state: StateOverlay, addr: bytes, rec: SolverRecord) -> None:
    _drop_solver(state, addr)
    if rec.exit_at:
        state.put(schema.solver_exit(rec.exit_at, addr), None)


def _drop_solver(state: StateOverlay, addr: bytes) -> None:
    """The solver's record and its current finality key go (the key stays its own: bls_owner)."""
    state.set_solver(addr, None)
    if state.solver_bls(addr) is not None:
        state.set_solver_bls(addr, None)
        state.put(schema.bls_since(addr), None)


def reveal_in_block(state: StateOverlay, height: int, proposer: bytes, clearing_hash: bytes, salt: bytes) -> None:
    """The winner of `height` revealed its commitment with its block."""
    key = schema.commit(height, proposer)
    raw = state.get(key)
    if (any(salt) and raw is not None and raw[32] == schema.COMMIT_PENDING
            and commitment(clearing_hash, proposer, salt) == raw[:32]):
        state.put(key, raw[:32] + bytes([schema.COMMIT_REVEALED]))


def settle_solvers(state: StateOverlay, height: int, g: Genesis) -> None:
    """At block `height`: commits for height - reveal_window - 1 that were never revealed forfeit
    `commit_forfeit` of their deposit (burned); withdrawals due now pay the deposit back.  The reveal
    window is longer than the commit window so that one censoring winner cannot make rivals forfeit.
    A withdrawal waits while the solver is in the voter set in force (checkpoints.py)."""
    target = height - g.reveal_window - 1
    if target >= 1:
        for key, raw in list(state.items(schema.commits_for(target))):
            if raw[32] != schema.COMMIT_PENDING:
                continue
            solver = key[-20:]
            state.put(key, raw[:32] + bytes([schema.COMMIT_FORFEITED]))
            rec = state.solver(solver)
            if rec is not None:
                taken = min(rec.deposit, g.commit_forfeit)
                state.set_solver(solver, replace(rec, deposit=rec.deposit - taken))
                _burn(state, taken)
    raw = state.get(schema.VOTERS)
    in_force = {v.address for v in finality.VOTER_SET.decode(raw).voters} if raw is not None else set()
    for key, value in list(state.items(schema.solver_exits(height))):
        solver = key[-20:]
        if solver in in_force:
            # Still a voter in force (the set changes when finality advances): the deposit stays, so
            # that a double or surround vote it signs until then can still be slashed.
            state.put(schema.solver_exit(height + 1, solver), value)
            state.put(key, None)
            continue
        rec = state.solver(solver)
        if rec is not None:
            acct = state.account(solver)
            state.set_account(solver, replace(acct, balance=acct.balance + rec.deposit))
            _drop_solver(state, solver)
        state.put(key, None)


@dataclass(frozen=True)
class SlotMarket:
    """A slot's instance as the chain defines it: every open bid, keyed by its hex bid id."""

    instance: Instance
    bids: dict[str, BidRecord]


def slot_market(state: StateOverlay, slot: int, g: Genesis) -> SlotMarket:
    """The instance that clears `slot`: its bids but the cancelled ones.  Fixed once height slot - L is
    on chain; after the slot's block it is the same set (cleared now), so a competing block for a slot
    already cleared is checked against the very instance the chain's own block was.  A participant's id
    is its bid id in hex, its owner the bid owner's address in hex, its preferred owners and energy kind
    the bid's (hex sorts as the bytes do), for the candidate rule (solver/pairs.py)."""
    sellers, buyers, bids = [], [], {}
    for bid_id, rec in state.slot_bids(slot):
        if rec.status == CANCELLED:
            continue
        pid = bid_id.hex()
        bids[pid] = rec
        prefs = rec.preferences
        (sellers if rec.side == SELL else buyers).append(Participant(
            pid, rec.wh, rec.price, rec.zone, owner=rec.owner.hex(), prefer=tuple(a.hex() for a in prefs.prefer),
            kind=prefs.kind))
    inst = Instance(slot=slot, feed_in=g.feed_in, retail=g.retail, network_charge=g.network_charge,
                    sellers=tuple(sellers), buyers=tuple(buyers))
    return SlotMarket(inst, bids)


def network_fee(g: Genesis, seller_zone: int, buyer_zone: int, wh: int) -> int:
    """The network charge on a trade, in micro-units (rounded down; the escrow covers it)."""
    return g.network_charge[seller_zone][buyer_zone] * wh // 1000


def settle_slot(state: StateOverlay, market: SlotMarket, clearing: BlockClearing, g: Genesis) -> None:
    """Pay each trade from the buyer's escrow into the seller's (held there, with the collateral of
    what was sold, until the slot's delivery is settled), then close every bid of the slot and return
    the unspent escrow and collateral.  The clearing has
    been verified against `market`."""
    inst = market.instance
    traded: dict[str, list[int]] = {pid: [0, 0] for pid in market.bids}  # wh, amount
    operator_fees = burned = 0
    for t in clearing.trades:
        s, b = inst.sellers[t.seller], inst.buyers[t.buyer]
        fee = network_fee(g, s.zone, b.zone, t.wh)
        traded[s.id][0] += t.wh
        traded[s.id][1] += t.payment
        traded[b.id][0] += t.wh
        traded[b.id][1] += t.payment + fee
        if g.network_operator is None:
            burned += fee
        else:
            operator_fees += fee
    for pid, rec in market.bids.items():
        if rec.status != OPEN:
            raise LedgerError(f"bid {pid} of slot {rec.slot} is settled already")
        wh, amount = traded[pid]
        owner = state.account(rec.owner)
        if rec.side == BUY:
            if amount > rec.escrow:
                raise LedgerError(f"bid {pid} pays {amount}, more than its escrow {rec.escrow}")
            owner = replace(owner, balance=owner.balance + rec.escrow - amount, escrowed=owner.escrowed - rec.escrow)
            kept = 0
        else:  # the revenue, and the collateral of what was sold, held until delivery is settled (settlement.py)
            kept = min(rec.escrow, bid_lock(SELL, wh, rec.price, g.retail))
            owner = replace(owner, balance=owner.balance + rec.escrow - kept,
                            escrowed=owner.escrowed - rec.escrow + kept + amount)
        state.set_account(rec.owner, owner)
        state.set_bid(bytes.fromhex(pid), replace(rec, status=CLEARED, escrow=kept, traded_wh=wh, amount=amount))
    if operator_fees:
        op = state.account(g.network_operator)  # type: ignore[arg-type]
        state.set_account(g.network_operator, replace(op, balance=op.balance + operator_fees))  # type: ignore[arg-type]
    if burned:
        t = state.totals()
        state.set_totals(replace(t, burned=t.burned + burned))


def reward(state: StateOverlay, proposer: bytes, fees: int, g: Genesis) -> None:
    """The block reward (minted) and the block's fees go to its proposer."""
    acct = state.account(proposer)
    state.set_account(proposer, replace(acct, balance=acct.balance + g.block_reward + fees))
    if g.block_reward:
        t = state.totals()
        state.set_totals(replace(t, minted=t.minted + g.block_reward))


def money_in_state(state: StateOverlay) -> tuple[int, int]:
    """(balances + escrow + deposits + burned + paid to the grid, minted + paid by the grid): equal in
    every valid state."""
    accounts = (ACCOUNT.decode(v) for _, v in state.items(b"sa"))
    held = sum(a.balance + a.escrowed for a in accounts)
    held += sum(SOLVER.decode(v).deposit for _, v in state.items(schema.SOLVERS))
    t = state.totals()
    return held + t.burned + t.grid_charged, t.minted + t.grid_credited
