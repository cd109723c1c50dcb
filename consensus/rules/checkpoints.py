"""The chain's justified and final checkpoints: what a block's finality votes do to the state (Casper FFG).

A block carries vote aggregates (blocks.py), each one link source -> target of finality.py.  Each
must be for this chain, have its source and its target on the block's own chain below it, its
target at most `VOTE_WINDOW` blocks back, and a valid aggregate signature by voters of the voter set
of the block's parent state (`ledger.voter_set`).  An aggregate whose signers hold more than 2/3 of
the deposit and whose source is the chain's justified checkpoint justifies its target (if higher);
if the target is the source's direct child, the source becomes final.  The aggregates are applied
in the block's order (by target height), so one block can justify a checkpoint and build on it.

These checkpoints are part of the consensus state (hashed, reverted with their block), so every node
that holds a branch agrees on its justified and final blocks; the fork choice never reverts a
block at or below the final one, nor at or below the justified one.  Genesis is both at first.

The voter set in force (`voters`) is a snapshot in the state, not the registrations of the moment:
it changes only when the final checkpoint advances, to a committee of the solvers with a vote key
then (`ledger.voter_set`: at most `voting_seats` seats, drawn by deposit, committee.py).  So a branch cannot vote itself a friendlier voter set: the solvers that
register, leave or are slashed on it vote, or stop, only once the voters in force have finalized a
block after the change.  It starts when solvers holding more than 2/3 of all solver deposit have
registered vote keys, so two branches that start it differently still share more than 1/3.
"""

from __future__ import annotations

from collections.abc import Callable

from . import committee, ledger, schema
from .finality import VOTER_SET, Certificate, Checkpoint, FinalityError, VoterSet, check_aggregate, quorum
from .state import StateOverlay

VOTE_WINDOW = 8  # a block carries votes for its last this many ancestors


def _read(state: StateOverlay, key: bytes, genesis: Checkpoint) -> Checkpoint:
    raw = state.get(key)
    return genesis if raw is None else Checkpoint(schema.read_u64(raw[:8]), raw[8:40])


def justified(state: StateOverlay, genesis: Checkpoint) -> Checkpoint:
    """The latest justified checkpoint of the chain whose state this is (`genesis`: its block 0)."""
    return _read(state, schema.JUSTIFIED, genesis)


def finalized(state: StateOverlay, genesis: Checkpoint) -> Checkpoint:
    """The latest final checkpoint of the chain whose state this is."""
    return _read(state, schema.FINALIZED, genesis)


def _above_final(state: StateOverlay) -> dict[int, bytes]:
    """The justified checkpoints above the final one, height -> block hash (schema.JUSTIFIED_ABOVE_FINAL)."""
    raw = state.get(schema.JUSTIFIED_ABOVE_FINAL) or b""
    return {schema.read_u64(raw[k:k + 8]): raw[k + 8:k + 40] for k in range(0, len(raw), 40)}


def voters(state: StateOverlay) -> VoterSet | None:
    """The voter set in force: the one a block's votes are counted against; None before it starts."""
    raw = state.get(schema.VOTERS)
    return None if raw is None else VOTER_SET.decode(raw)


def start_voters(state: StateOverlay, seed: bytes, seats: int, committees_from: int) -> None:
    """Before any voter set is in force: start one once the solvers with vote keys hold more than 2/3 of
    all solver deposit (called before each block's votes, and at genesis); its seats drawn with `seed`,
    and proposer committees from height `committees_from` on (committee.py)."""
    if state.get(schema.VOTERS) is not None:
        return
    pool = ledger.voter_pool(state)
    if pool and quorum(sum(v.deposit for v in pool), state.stake()):
        state.put(schema.VOTERS, VOTER_SET.encode(committee.seats(pool, seed, seats)))
        committee.start(state, committees_from)


def apply_votes(state: StateOverlay, height: int, votes: tuple[Certificate, ...], *, chain_id: str,
                voters: VoterSet | None, hash_at: Callable[[int], bytes | None], genesis: Checkpoint,
                seed: bytes, seats: int) -> None:
    """Check block `height`'s vote aggregates against its chain (`hash_at` of heights below it) and
    update the justified and final checkpoints in `state`; FinalityError if one is invalid.  When the final
    checkpoint moves, the voting committee is drawn anew with `seed` (`seats` of them: committee.py)."""
    if not votes:
        return
    if voters is None:
        raise FinalityError("a block carries votes while no solver has a vote key")
    j, f = justified(state, genesis), finalized(state, genesis)
    above = _above_final(state)
    before = dict(above)
    for c in votes:
        if c.chain_id != chain_id:
            raise FinalityError(f"votes for chain {c.chain_id!r}")
        t, s = c.target, c.source
        if not height - VOTE_WINDOW <= t.height < height:
            raise FinalityError(f"votes for block {t.height} in block {height}: at most {VOTE_WINDOW} back")
        if hash_at(t.height) != t.hash or hash_at(s.height) != s.hash:
            raise FinalityError(f"votes {s.describe()} -> {t.describe()} link blocks that are not on this chain")
        signers = check_aggregate(c, voters)
        # Casper FFG: a quorum link from any justified checkpoint of this chain justifies its target, not
        # only one from the latest: a branch that recorded a lower checkpoint justified than the links its
        # voters saw could otherwise never catch up (after a healed partition, voters whose last source
        # is above this chain's latest would need a surround vote, and finality stopped for good).
        if not quorum(voters.deposit_of(signers), voters.total) or not (
                s in (j, f, genesis) or above.get(s.height) == s.hash):
            continue
        above[t.height] = t.hash
        if t.height > j.height:
            j = t
        if t.height == s.height + 1 and s.height > f.height:
            f = s
    above = {h: x for h, x in above.items() if h > f.height}
    if above != before:
        state.put(schema.JUSTIFIED_ABOVE_FINAL, b"".join(schema.u64(h) + above[h] for h in sorted(above)) or None)
    state.put(schema.JUSTIFIED, schema.u64(j.height) + j.hash)
    if f != finalized(state, genesis):
        state.put(schema.FINALIZED, schema.u64(f.height) + f.hash)
        # The final checkpoint moved: the registrations of now come in force, their seats drawn on the beacon
        # after the newly final block (fixed before this block: its proposer cannot redraw them by choosing
        # which votes to carry), or, if that is out of reach, this block's.
        vs = ledger.voter_set(state, (state.get(schema.beacon_at(f.height)) or seed)[:32], seats)
        if vs is not None:
            state.put(schema.VOTERS, VOTER_SET.encode(vs))
