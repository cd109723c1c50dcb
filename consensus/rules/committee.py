"""Who may propose a height, and who votes: committees drawn by the lottery, weighted by deposit.

A town has thousands of solvers; letting each commit, propose and vote on every block makes the
network's work grow as N^2.  So each height has a *proposer committee* of expected size k
(`Genesis.committee_size`): a solver is in it when its lottery ticket for the height (beacon.py, a
BLS signature, unique and unpredictable to others) has a value below k x its share of the stake,
`value / 2^256 < k x deposit / stake`.  Every solver may be drawn, in proportion to its deposit, and
nobody learns who was drawn before the member shows its ticket.  Only members commit (their
commit carries the ticket) and propose in time; so a block carries about k commits and k reveals
whatever the number of solvers.

The tickets of height h are drawn on the beacon after block h - L - 2 (L = gate closure), two blocks
below the one that fixes slot h's bids: a solver knows both its market and whether it was drawn
when the commit window opens, no proposer of a later block can steer the draw, and the seed block
is usually final by then, so a commit is rarely drawn on a block a reorg replaces (a commit whose
seed block is replaced is void on the winning chain, and its solver, if drawn there too, commits again).  A key draws only on
beacons made after the block that registered it (`bls_since`), so no key can be ground against a
known beacon.

Committees apply from L + 2 blocks after the voter set comes in force (checkpoints.py), so that every
voter's key was registered before the first seed block; before that every solver proposes.  A
network whose genesis file registers its solvers' keys (`vote_keys`) has its voter set, and its
committees, from block 1.

Liveness does not hang on the draw: when no member's block arrives, any solver may propose height h
once a whole slot has passed since its start (stamped at or after the start of slot h + 1); such a
block is uncommitted and ranks below every committed one.

The *voting committee* (the voter set in force, checkpoints.py) has at most
`Genesis.voting_seats` seats: when the pool of keyed solvers is larger, the seats are drawn by
systematic sampling on the line of deposits, in an order and from an offset the seed draws, so each
solver holds its deposit's share of the seats rounded down or up, never more.  A voter's weight is
its seats.  A coalition's expected seats are its deposit share; but a coalition of solvers each
holding less than one seat's worth of deposit gets each seat by chance, so its seats vary around
that share (about like a binomial): with 256 seats, a coalition holding 20% of the deposit holds
more than a third of the seats with a chance of about 1e-7 per draw, at 25% about 1e-3.  Below
`voting_seats` keyed solvers nothing is drawn and the 1/3 bound is exact (README, consensus).

Consensus-critical: integers only, and every input is in the state of the block's parent.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import beacon, schema
from .codec import digest
from .finality import Voter, VoterSet
from .state import StateOverlay

MEMBER, DRAWN, NO_KEY = "member", "drawn", "no key"  # what a proposer's ticket shows (`check`)
SEED_DEPTH = 2  # the seed block lies this many blocks below block h - L: usually final when members commit


def lookback(gate_closure: int) -> int:
    """How many blocks below a height its seed block lies: L + SEED_DEPTH."""
    return gate_closure + SEED_DEPTH


def seed_height(height: int, gate_closure: int) -> int:
    """The block whose beacon height `height`'s tickets are drawn on."""
    return max(0, height - lookback(gate_closure))


def ticket_beacon(state: StateOverlay, height: int, gate_closure: int, genesis_hash: bytes) -> bytes:
    """The beacon height `height`'s tickets are drawn on, from a state at or after its seed block."""
    return _seed(state, height, gate_closure, genesis_hash)[0]


def draw_stake(state: StateOverlay, height: int, gate_closure: int) -> int:
    """The stake total height `height` is drawn against: as it was when its seed block began, so no
    deposit or withdrawal made after the draw was known can push a member out (or a solver in)."""
    return _seed(state, height, gate_closure, b"")[1]


def beacon_after(state: StateOverlay, height: int, genesis_hash: bytes) -> bytes:
    """The lottery beacon after block `height`, one of the last L + 3 (`record_beacon`)."""
    return _record(state, height, genesis_hash)[0]


def _seed(state: StateOverlay, height: int, gate_closure: int, genesis_hash: bytes) -> tuple[bytes, int]:
    return _record(state, seed_height(height, gate_closure), genesis_hash)


def _record(state: StateOverlay, h: int, genesis_hash: bytes) -> tuple[bytes, int]:
    raw = state.get(schema.beacon_at(h))
    if raw is not None:
        return raw[:32], schema.read_u64(raw[32:40])
    if h == 0:
        return beacon.genesis_beacon(genesis_hash), state.stake()
    raise ValueError(f"the beacon after block {h} is not in this state")


def record_beacon(state: StateOverlay, height: int, value: bytes, gate_closure: int) -> None:
    """Keep the beacon after block `height` with the stake total as the block began, and forget the ones
    no later height draws on."""
    state.put(schema.beacon_at(height), value + schema.u64(state.stake()))
    if height > lookback(gate_closure):
        state.put(schema.beacon_at(height - lookback(gate_closure) - 1), None)


def started(state: StateOverlay, height: int) -> bool:
    """Whether height `height` is drawn by committee: from L + 2 blocks after the voter set came in force, so
    every voter's key was registered before the seed block (before that, all solvers are in)."""
    raw = state.get(schema.COMMITTEES_FROM)
    return raw is not None and height >= schema.read_u64(raw)


def start(state: StateOverlay, first: int) -> None:
    """The voter set came in force: committees draw from height `first` on (L + 2 blocks after the block
    that started it; height 1 when the genesis did)."""
    state.put(schema.COMMITTEES_FROM, schema.u64(first))


def draw_key(state: StateOverlay, solver: bytes, height: int, gate_closure: int) -> bytes | None:
    """The BLS key `solver` draws height `height`'s ticket with: its current key, if the genesis or a
    block before the seed block registered it; else None (it draws nothing)."""
    key = state.solver_bls(solver)
    since = state.get(schema.bls_since(solver))
    if key is None or since is None:
        return None
    at = schema.read_u64(since)  # 0: in the genesis file, which the first beacon hashes: it cannot be ground
    return key if at == 0 or at < seed_height(height, gate_closure) else None


def is_member(value: bytes, deposit: int, stake: int, size: int) -> bool:
    """Whether a ticket of `value` draws a solver with `deposit` of `stake` into a committee of expected
    `size`: value / 2^256 < size x deposit / stake, in integers."""
    return stake > 0 and int.from_bytes(value, "big") * stake < (size * deposit) << 256


def check(state: StateOverlay, solver: bytes, height: int, proof: bytes, *, gate_closure: int, size: int,
          genesis_hash: bytes) -> str:
    """What `solver`'s ticket `proof` for `height` shows, in the parent's state: MEMBER, DRAWN (a valid
    ticket that missed the committee) or NO_KEY (it has no draw key, and the proof is all zeros).
    ValueError if the proof is not its ticket."""
    key = draw_key(state, solver, height, gate_closure)
    if key is None:
        if any(proof):
            raise ValueError("a ticket from a solver without a key to draw it")
        return NO_KEY
    seed = ticket_beacon(state, height, gate_closure, genesis_hash)
    if not beacon.verify_ticket(key, seed, height, beacon.Ticket(proof)):
        raise ValueError("the lottery ticket does not verify")
    return MEMBER if drawn(state, solver, height, proof, gate_closure=gate_closure, size=size) else DRAWN


def drawn(state: StateOverlay, solver: bytes, height: int, proof: bytes, *, gate_closure: int, size: int) -> bool:
    """Whether the (valid) ticket `proof` draws `solver` into height `height`'s committee: its deposit now
    (0 if withdrawing) against the stake total of the seed block."""
    rec = state.solver(solver)
    deposit = rec.deposit if rec is not None and not rec.exit_at else 0
    return is_member(beacon.ticket_value(proof), deposit, draw_stake(state, height, gate_closure), size)


def seats(pool: Sequence[Voter], seed: bytes, n: int) -> VoterSet:
    """The voting committee of `pool` (deposit-weighted voters): the whole pool by deposit if it has at
    most `n` voters; else `n` seats by systematic sampling on the deposits in address order, from an
    offset drawn by `seed`, each voter weighted by its seats (those with none are left out)."""
    if len(pool) <= n:
        return VoterSet.of(pool)
    # The line's order is drawn by the seed too: with a fixed order (by address, which a solver picks) a
    # coalition could place many small solvers so that one offset gives seats to all of them at once.
    voters = sorted(pool, key=lambda v: digest(seed + v.address, b"transx-seatorder"))
    total = sum(v.deposit for v in voters)
    offset = int.from_bytes(digest(seed, b"transx-seats"), "big") % total
    # Points offset + i * total (i < n) on a line where voter j holds [n * C_j, n * C_j+1), C its cumulative deposit.
    out, cum = [], 0
    for v in voters:
        lo, hi = n * cum, n * (cum + v.deposit)
        cum += v.deposit
        count = _points_below(hi, offset, total, n) - _points_below(lo, offset, total, n)
        if count:
            out.append(Voter(v.address, v.bls_key, count))
    return VoterSet.of(out)


def _points_below(x: int, offset: int, step: int, n: int) -> int:
    """How many of offset + i * step, 0 <= i < n, are below x."""
    if x <= offset:
        return 0
    return min(n, (x - offset + step - 1) // step)


__all__ = ["DRAWN", "MEMBER", "NO_KEY", "beacon_after", "check", "draw_key", "draw_stake", "drawn", "is_member", "record_beacon",
           "seats", "seed_height", "start", "started", "ticket_beacon"]
