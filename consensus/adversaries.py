"""Adversarial solvers for the simulator (consensus/sim.py), and the scenarios that measure them (issue 12).

Each adversary is an `Engine` subclass plugged into one node with `Simulation(cfg, engine_for=...)`;
every other node runs the plain `Engine`.  Every adversary behaves as an honest solver until its
attack starts.  The attacks, and what success means for each:

- `WithholdAndRelease`: double-spend.  In a round it expects to win, it pays a merchant node from its
  own account, builds its block on the pre-payment parent with a transfer to itself at the same
  nonce, and withholds it; once the payment has `confirmations` blocks on its chain it releases the
  block.  Success: the payment had that many confirmations on the merchant's node, and in the end
  no honest chain holds it while every honest chain holds the conflicting transfer.
- `Twin`: the cheaper double-spend.  It wins a round honestly with the payment in its block, and
  releases later a twin (same clearing, same salt, the self-transfer instead of the payment) ground
  to a lower block hash.  Success as above; its deposit is slashed for equivocation (the cost).
- `BoundaryRelease`: permanent split.  It withholds a block it expects to win and releases it when the
  honest nodes reach the finality boundary: to a chosen subset just before they adopt the block that
  makes the fork point final, to the rest just after.  Success: two honest nodes end up holding
  different blocks at a height both consider final.
- `CommitCensor`: monopoly.  Leaves every rival's commit out of the blocks it proposes.  Success: its
  share of blocks exceeds 1.5 times its fair share.
- `LotteryGrinder`: lottery grinding.  When it expects to win block h it adds a buy bid of its own for
  slot h + L (the last block that takes bids for it), trying prices until the slot's optimum gives
  it the best ticket for block h + 2L.  Success: share of blocks above 1.5 times the fair share.

Scenario functions (`double_spend`, `twin_double_spend`, `boundary_release`, `partition_heal`,
`commit_censorship`, `lottery_grinding`, `commit_loss`, `honest_control`) run one attack for one seed
and return a `Result`; each states its success criterion in code.  They are built on `play(attack,
cfg, drive, judge, attacker=..., params=...)`, which runs any scenario: an `Arena` with the attacker at
node 0, `drive(sim)` to play it, the common figures (`measure`: the attacker's share of blocks against
1 / nodes, honest commits that never reached their sender's chain, the deepest revert on an honest
node, a conflict between honest nodes at a height both treat as final), then `judge`'s verdict.
`SCENARIOS` lists the benchmark's configurations (bench/attacks.py), after issue 12.  Everything is
deterministic given the seed.

Hooks the adversaries use, to keep working when the engine changes: they override `Engine.tick`,
`Engine._propose` (build a block for a height on the head; called once per (height, parent)) and
call `Engine.receive`, `Engine.registered`, `Engine.solution`, `Engine.salt`, `Engine.reveal_ends`,
the chain's `build_block`, `state`, `tx`, `hash_at`, `block_at`, the mempool's `select` and
`next_nonce`, and `ranking.commitment` with the commit record (`schema.commit`) to see their commit.
What they know of today's lottery (who wins a round, the seed a slot's objective makes) lives in
`expected_winner` and `lottery_seed_for`; on an engine whose lottery these cannot predict they return
None, and the attacks act without the prediction (withhold in the first eligible round, grind
nothing): the attack then fails or succeeds on its merits, it is not skipped.  Measurements are made
by the harness (`Arena`), from the outside: the blocks each node holds, the transactions sent.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from solver import candidate_pairs, verify

from consensus.rules import keys, ledger, ranking, schema
from consensus.rules.blocks import Block, BlockError
from consensus.rules.transactions import BUY, WALLET, Bid, Commit, Transfer, Tx, TxError, decode_tx, sign_tx

from consensus.rules.codec import digest
from consensus.rules.finality import Checkpoint, decode_vote, vote

from .engine import PROPOSAL, TX, VOTE, Engine, Message
from .sim import SimConfig, Simulation

ISSUE_LATENCY_MS = (50, 500)  # issue 12 measured every attack at 50-500 ms


# ------------------------------------------------------------------ today's lottery, in one place
def solvers_of(chain) -> list[bytes]:
    """The registered solvers' addresses at the head, in address order."""
    return [k[len(schema.SOLVERS):] for k, _ in chain.state().items(schema.SOLVERS)
            if len(k) == len(schema.SOLVERS) + 20]


def predictable(chain) -> bool:
    """Whether the chain's lottery is today's, which `expected_winner` and `lottery_seed_for` can predict."""
    return callable(getattr(chain, "lottery_seed", None)) and callable(getattr(ranking, "lottery_ticket", None))


def expected_winner(chain, height: int) -> bytes | None:
    """Who wins block `height` if every solver commits to the same clearing (they solve the same
    instance with the same deterministic solver): today, the lowest lottery ticket, hash(address,
    seed), where the seed is fixed once block height - L is on chain.  None if not yet known, or if
    the chain has no such predictable lottery."""
    if not predictable(chain) or height - chain.genesis.gate_closure > chain.height:
        return None
    try:
        seed = chain.lottery_seed(height)
        return min(solvers_of(chain), key=lambda a: ranking.lottery_ticket(a, seed))
    except (AttributeError, TypeError, AssertionError):
        return None


def lottery_seed_for(genesis, height: int, objective: int | None) -> bytes | None:
    """Today's seed of block `height` when block height - L's clearing has `objective` (None: void),
    as `Chain.lottery_seed` computes it; None if the chain has no such seed."""
    if not callable(getattr(ranking, "lottery_ticket", None)):
        return None
    value = -1 if objective is None else objective
    return schema.u64(height) + value.to_bytes(16, "big", signed=True) + genesis.hash


def slot_index(genesis, now_ms: int) -> int:
    """The slot whose time `now_ms` is in (slot h runs from slot_start_ms(h) to slot_start_ms(h + 1))."""
    return (now_ms - genesis.timestamp * 1000) // (genesis.slot_seconds * 1000)


# ---------------------------------------------------------------------------------- adversaries
@dataclass(eq=False)
class Adversary(Engine):
    """Common ground: honest until round `start`; `events` records what the attack did (for reports)."""

    start: int = 6
    seed: int = 0
    events: dict = field(default_factory=dict)

    @property
    def me(self) -> bytes:
        return self.node.address

    def wallet_tx(self, body, nonce: int | None = None) -> Tx:
        """`body` signed by the node key at its next wallet nonce (counting its pending ones), or `nonce`."""
        g = self.chain.genesis
        if nonce is None:
            nonce = self.node.mempool.next_nonce(self.me, self.chain.state().account(self.me).nonce_of(WALLET))
        return sign_tx(self.node.key, chain_id=g.chain_id, nonce=nonce, fee=g.min_fee, body=body)

    def committed_to(self, height: int) -> bool:
        """Whether our commit for `height` is on the chain and matches our clearing and salt."""
        raw = self.chain.state().get(schema.commit(height, self.me))
        want = ranking.commitment(self.solution(height).clearing.hash, self.me, self.salt(height))
        return raw is not None and raw[:32] == want

    def expects_to_win(self, height: int) -> bool:
        """Today's prediction; on a chain whose lottery cannot be predicted, every round from `start`."""
        if not predictable(self.chain):
            return height >= self.start
        return expected_winner(self.chain, height) == self.me

    def candidates(self, leave_out: set[bytes] = frozenset()) -> list[Tx]:
        """What `_propose` would put in a block now, minus `leave_out` (transaction hashes)."""
        g = self.chain.genesis
        due = self.node.not_due(self.chain.height + 1)
        return [t for t in self.node.mempool.select(g.max_block_txs, self.node.chain_nonce, due, g.max_consensus_txs)
                if t.hash not in leave_out]

    def build(self, h: int, txs: list[Tx], now_ms: int) -> Block | None:
        """Our block `h` on the head, with our committed clearing and `txs`; None if it cannot be built."""
        try:
            block, _ = self.chain.build_block(self.node.key, self.solution(h).clearing, txs, now_ms, self.salt(h))
        except BlockError:
            return None
        return block


@dataclass(eq=False)
class _PayThenDoubleSpend(Adversary):
    """Shared by `WithholdAndRelease` and `Twin`: pick a round t it expects to win; during slot t - 1 pay
    `merchant` (after that slot's proposals are built, so the payment goes into block t); keep a block t
    holding, instead of the payment, a transfer to itself at the payment's nonce; release it once the
    payment has `confirmations` blocks on our chain."""

    merchant: bytes = b""
    amount: int = 500_000_000  # 5 solver deposits: the attack's gain does not depend on its cost
    confirmations: int = 11
    target: int | None = None
    payment: Tx | None = None
    conflict: Tx | None = None
    withheld: Block | None = None
    released: bool = False
    attempts: int = 0

    def tick(self, now_ms: int) -> list[Message]:
        out = self._maybe_pay(now_ms)
        out += super().tick(now_ms)
        return out + self._maybe_release(now_ms)

    def _maybe_pay(self, now_ms: int) -> list[Message]:
        g, c = self.chain.genesis, self.chain
        if self.target is not None or self.released or self.attempts >= 5 or not self.registered():
            return []
        t = slot_index(g, now_ms) + 1  # we are in slot t - 1
        ready = now_ms >= g.slot_start_ms(t - 1) + g.slot_seconds * 300  # every node has built its t - 1
        if t < self.start or not ready or c.height < t - 2 or not self.expects_to_win(t):
            return []
        self.target, self.attempts = t, self.attempts + 1
        self.payment = self.wallet_tx(Transfer(self.merchant, self.amount))
        self.conflict = self.wallet_tx(Transfer(self.me, self.amount), nonce=self.payment.nonce)
        try:
            self.node.submit_tx(self.payment)
        except TxError as e:
            self.events["error"] = f"payment refused: {e}"
            self.target = None
            return []
        self.events.update(target=t, payment=self.payment.hash, conflict=self.conflict.hash)
        return [Message(TX, self.payment.encoded)]

    def _abort(self, why: str) -> None:
        """This round will not do: the payment stays a real one; try again in another round."""
        self.events.setdefault("aborted", []).append((self.target, why))
        self.target, self.withheld = None, None

    def _maybe_release(self, now_ms: int) -> list[Message]:
        if self.withheld is None or self.released or self.payment is None:
            return []
        loc = self.chain.tx(self.payment.hash)
        if loc is None or self.chain.height - loc[1] + 1 < self.confirmations:
            return []
        g = self.chain.genesis
        if now_ms < self.reveal_ends(self.chain.height) + g.slot_seconds * 250:
            return []  # a quarter slot after our head's window: the merchant has that block too
        self.released = True
        self.events.update(released_at=self.chain.height, payment_height=loc[1],
                           confirmations=self.chain.height - loc[1] + 1)
        return [Message(PROPOSAL, self.withheld.encoded)] + self.receive(PROPOSAL, self.withheld.encoded, now_ms)


@dataclass(eq=False)
class WithholdAndRelease(_PayThenDoubleSpend):
    """Double-spend by withhold-and-release (module docstring): proposes nothing in its round t, keeps a
    committed block t with the self-transfer, releases it after `confirmations`.  Success: the
    merchant's confirmed payment is gone from every honest chain, the self-transfer is on them all."""

    def _propose(self, h: int, now_ms: int) -> list[Message]:
        if h != self.target:
            return super()._propose(h, now_ms)
        self.proposed_on.add((h, self.chain.head.hash))
        if self.withheld is not None:
            return []  # withheld already (the head moved): stay silent in this round
        if self.chain.tx(self.payment.hash) is not None:
            self._abort("the payment got in before the fork point")
            return super()._propose(h, now_ms)
        if not self.committed_to(h):
            self._abort("our commit is not on chain")
            return super()._propose(h, now_ms)
        mine = {t.hash for t in self.node.mempool.pending(self.me, WALLET)}
        block = self.build(h, [self.conflict] + self.candidates(mine), now_ms)
        if block is None or self.conflict not in block.txs:
            self._abort("the conflicting transfer does not apply")
            return super()._propose(h, now_ms)
        self.withheld = block
        self.events["withheld"] = block.hash
        return []


@dataclass(eq=False)
class Twin(_PayThenDoubleSpend):
    """Double-spend by a lower-hash twin (module docstring): its own winning block t carries the payment;
    a twin with the self-transfer, same clearing and salt (the same rank), ground to a lower block
    hash, is released after `confirmations`.  Success as `WithholdAndRelease`; the cost is its deposit."""

    max_grind: int = 1_000  # timestamps within the slot's first half; else another round

    def _propose(self, h: int, now_ms: int) -> list[Message]:
        out = super()._propose(h, now_ms)
        if h != self.target or self.withheld is not None or not out:
            return out
        real = self.decode(out[0].data)
        if self.payment not in real.txs:
            self._abort("the payment is not in our block")
            return out
        txs = [self.conflict] + [t for t in real.txs if t.hash != self.payment.hash]
        for k in range(1, self.max_grind + 1):
            twin = self.build(h, txs, real.header.timestamp + k)
            if twin is not None and self.conflict in twin.txs and twin.hash < real.hash:
                self.withheld = twin
                self.events.update(withheld=twin.hash, grind_tries=k)
                break
        else:
            self._abort("no lower-hash twin found")
        return out


@dataclass(eq=False)
class BoundaryRelease(Adversary):
    """Permanent split (module docstring): withholds a committed block t it expects to win; when its head
    reaches t - 1 + finality_depth (the last head at which the fork point t - 1 is not final), sends the
    block to `first` `early_ms` before the reveal window of the next block ends (they still take it),
    and to `rest` `late_ms` after (they have adopted the next block: the fork point is final there).
    Success: honest nodes hold different blocks at a height both consider final."""

    first: tuple[int, ...] = ()
    rest: tuple[int, ...] = ()
    early_ms: int = 760  # for 50-500 ms latency and 250 ms ticks: it arrives before the window ends
    late_ms: int = 300
    target: int | None = None
    withheld: Block | None = None
    sent_first: bool = False
    sent_rest: bool = False

    def _propose(self, h: int, now_ms: int) -> list[Message]:
        if self.target is None and h >= self.start and self.expects_to_win(h) and self.committed_to(h):
            self.target = h
        if h != self.target:
            return super()._propose(h, now_ms)
        self.proposed_on.add((h, self.chain.head.hash))
        if self.withheld is None:
            self.withheld = self.build(h, self.candidates(), now_ms)
            if self.withheld is None:
                self.target = None
                return super()._propose(h, now_ms)
            self.events.update(target=h, withheld=self.withheld.hash)
        return []

    def tick(self, now_ms: int) -> list[Message]:
        out: list[Message] = []
        if self.withheld is not None and not self.sent_first:
            boundary = self.target - 1 + self.chain.genesis.finality_depth
            if self.chain.height > boundary:
                self.sent_first = self.sent_rest = True  # missed it (we were behind): give up
                self.events["missed"] = self.chain.height
            elif self.chain.height == boundary and now_ms >= self.reveal_ends(boundary + 1) - self.early_ms:
                self.sent_first = True
                self.events.update(boundary=boundary, first=self.first, rest=self.rest)
                out += [Message(PROPOSAL, self.withheld.encoded, j) for j in self.first]
        if self.sent_first and not self.sent_rest and self.withheld is not None:
            boundary = self.target - 1 + self.chain.genesis.finality_depth
            if now_ms >= self.reveal_ends(boundary + 1) + self.late_ms:
                self.sent_rest = True
                out += [Message(PROPOSAL, self.withheld.encoded, j) for j in self.rest]
        return out + super().tick(now_ms)


@dataclass(eq=False)
class CommitCensor(Adversary):
    """Monopoly by commit censorship (module docstring): every block it proposes leaves rivals' commits
    out (commits for r land only in blocks r - C .. r - 1).  Success: block share > 1.5 x fair."""

    def _propose(self, h: int, now_ms: int) -> list[Message]:
        mempool = self.node.mempool
        keep = mempool.select
        mempool.select = lambda limit, nonce, held=None, budget=None: [t for t in keep(limit, nonce, held, budget)
                                                          if not isinstance(t.body, Commit) or t.sender == self.me]
        try:
            return super()._propose(h, now_ms)
        finally:
            del mempool.select  # the instance attribute goes; the class's method shows again


@dataclass(eq=False)
class LotteryGrinder(Adversary):
    """Lottery grinding (module docstring): when it expects to win block h and would not win block
    h + 2L as things stand, it adds one buy bid of its own for slot h + L to its block h, trying
    quantities and prices (at most `max_tries`) until the predicted seed of h + 2L gives it the best
    ticket.  `tries` records the solves each successful grind took.  Success: share > 1.5 x fair."""

    max_tries: int = 48
    tries: list[int] = field(default_factory=list)
    failed: int = 0

    def _propose(self, h: int, now_ms: int) -> list[Message]:
        bid = self._grind(h) if h >= self.start and self.expects_to_win(h) else None
        if bid is None:
            return super()._propose(h, now_ms)
        mempool = self.node.mempool
        keep = mempool.select
        mempool.select = lambda limit, nonce, held=None, budget=None: [t for t in keep(limit, nonce, held, budget)
                                                          if not (t.sender == self.me and t.space == WALLET)] + [bid]
        try:
            return super()._propose(h, now_ms)
        finally:
            del mempool.select

    def _objective(self, slot: int, extra: Tx | None) -> tuple[int | None, bool]:
        """The exact objective of `slot`'s optimum if our block (now) takes the mempool's candidates and
        `extra`; and whether `extra` applied."""
        g, c = self.chain.genesis, self.chain
        state = c.state()
        height = c.height + 1
        txs = [t for t in self.candidates() if not (t.sender == self.me and t.space == WALLET)]
        applied = False
        for tx in txs + ([extra] if extra is not None else []):
            mark = state.checkpoint()
            try:
                ledger.apply_tx(state, tx, height, g)
                applied = tx is extra
            except TxError:
                state.rollback(mark)
        market = ledger.slot_market(state, slot, g)
        pairs = candidate_pairs(market.instance, g.candidate_cap)
        sol = self.solve(market, pairs, g)
        if sol.clearing.void:
            return None, applied
        v = verify(market.instance, sol.clearing.to_clearing(market.instance), pairs=pairs, tolerance=g.tolerance,
                   quantum=g.quantum)
        return (v.objective if v.ok else None), applied

    def _wins_with(self, target: int, objective: int | None) -> bool | None:
        seed = lottery_seed_for(self.chain.genesis, target, objective)
        if seed is None:
            return None
        ticket = ranking.lottery_ticket(self.me, seed)
        return all(ticket < ranking.lottery_ticket(a, seed) for a in solvers_of(self.chain) if a != self.me)

    def _grind(self, h: int) -> Tx | None:
        g = self.chain.genesis
        if self.chain.height != h - 1:
            return None
        slot, target = h + g.gate_closure, h + 2 * g.gate_closure
        base, _ = self._objective(slot, None)
        if self._wins_with(target, base) in (True, None):
            return None  # wins anyway, or no predictable lottery: nothing to grind
        rng = random.Random(f"grind:{self.seed}:{h}")
        nonce = self.chain.state().account(self.me).nonce_of(WALLET)
        for k in range(1, self.max_tries + 1):
            body = Bid(BUY, slot, rng.randint(500, 6_000), rng.randint(200_000, 560_000),
                       rng.randrange(g.zones), h)
            bid = self.wallet_tx(body, nonce=nonce)
            objective, applied = self._objective(slot, bid)
            if applied and self._wins_with(target, objective):
                self.tries.append(k)
                self.events.setdefault("ground", []).append((h, target, k))
                return bid
        self.failed += 1
        return None


# ------------------------------------------------------------------------------------- the arena
@dataclass(eq=False)
class DoubleVoter(Adversary):
    """Signs, beside each honest finality vote, a second vote for another block at the same height, and
    sends each vote to a different half of the network (as an attacker splitting honest nodes would)."""

    nodes: int = 0
    index: int = 0

    def _vote(self, now_ms: int) -> list[Message]:
        out = super()._vote(now_ms)
        if not out:
            return out
        honest = decode_vote(out[0].data)
        twin = vote(self.vote_key, chain_id=honest.chain_id, source=honest.source,
                    target=Checkpoint(honest.target.height, digest(honest.target.hash, b"twin")))
        if honest.target.height < self.start:
            return out
        n = len(self.events.setdefault("double_votes", []))
        self.events["double_votes"].append(honest.target.height)
        peers = [i for i in range(self.nodes) if i != self.index]
        half = set(peers[n % 2::2])
        return ([Message(VOTE, honest.encoded, i) for i in peers if i not in half]
                + [Message(VOTE, twin.encoded, i) for i in half])


class Arena(Simulation):
    """The simulator, watched from outside the engines: after every call into node i's engine (every
    call ends in `send(i, ...)`) it notes whether i's chain left blocks it held (a revert, and how
    deep), the confirmations of watched transactions on watched nodes, and each commit a node sends."""

    def __init__(self, cfg: SimConfig, engine_for=None) -> None:
        self._canon: list[list[bytes]] | None = None
        super().__init__(cfg, engine_for)
        self._canon = [[e.chain.hash_at(0)] for e in self.engines]
        self.deepest = [0] * cfg.nodes  # the deepest revert each node went through
        self.reverted = [0] * cfg.nodes  # blocks each node reverted, in all
        self.commits_sent: set[tuple[int, int]] = set()  # (node, height) of each commit a node sent
        self.watch: dict[tuple[int, bytes], int] = {}  # (node, tx hash) -> most confirmations seen

    def send(self, src: int, msgs: list[Message]) -> None:
        if self._canon is not None:
            self._observe(src)
            me = self.engines[src].node.address
            for m in msgs:
                if m.topic == TX:
                    try:
                        tx = decode_tx(m.data)
                    except TxError:
                        continue
                    if isinstance(tx.body, Commit) and tx.sender == me:
                        self.commits_sent.add((src, tx.body.height))
        super().send(src, msgs)

    def _observe(self, i: int) -> None:
        c, canon = self.engines[i].chain, self._canon[i]
        if c.head.hash != canon[-1]:
            h = min(c.height, len(canon) - 1)
            while h > 0 and c.hash_at(h) != canon[h]:
                h -= 1
            depth = len(canon) - 1 - h
            if depth:
                self.deepest[i] = max(self.deepest[i], depth)
                self.reverted[i] += depth
            del canon[h + 1:]
            canon += [c.hash_at(x) for x in range(h + 1, c.height + 1)]
        for (node, tx_hash), best in list(self.watch.items()):
            if node == i:
                loc = c.tx(tx_hash)
                if loc is not None:
                    self.watch[(node, tx_hash)] = max(best, c.height - loc[1] + 1)


def final_height(engine: Engine) -> int:
    """The highest block `engine` treats as final: its own `final_height()` if it has one (an engine
    with explicit finality), else today's rule, head - finality_depth."""
    fh = getattr(engine, "final_height", None)
    if callable(fh):
        return fh()
    return max(0, engine.chain.height - engine.chain.genesis.finality_depth)


def final_conflict(chains: list[list[bytes]], finals: list[int]) -> tuple[int, int, int] | None:
    """Two nodes holding different blocks at a height both treat as final: (node a, node b, height), or
    None.  `chains[i]` is node i's canonical hashes by height, `finals[i]` its final height."""
    for a in range(len(chains)):
        for b in range(a + 1, len(chains)):
            top = min(finals[a], finals[b], len(chains[a]) - 1, len(chains[b]) - 1)
            for h in range(1, top + 1):
                if chains[a][h] != chains[b][h]:
                    return a, b, h
    return None


def canonical(engine: Engine) -> list[bytes]:
    c = engine.chain
    return [c.hash_at(h) for h in range(c.height + 1)]


# ----------------------------------------------------------------------------------- the result
@dataclass
class Result:
    """One attack, one seed.  Shares count blocks `from_height`+1 .. head on the first honest node's chain."""

    attack: str
    seed: int
    nodes: int
    succeeded: bool = False
    why: str = ""  # the success criterion's verdict, in words
    blocks: int = 0
    attacker_blocks: int = 0
    fair_share: float = 0.0
    commits_sent: int = 0  # honest nodes' commits for heights whose window closed
    commits_lost: int = 0  # of those, the ones the sender's own chain never held
    worst_solver_loss: float = 0.0  # the largest share of its commits one honest solver lost
    deepest_revert: int = 0  # blocks, on any honest node
    split: bool = False  # honest nodes hold different blocks at a height both treat as final
    attempted: bool = True  # the attack found its opening (a round it expected to win) and acted
    detail: dict = field(default_factory=dict)

    @property
    def attacker_share(self) -> float:
        return self.attacker_blocks / self.blocks if self.blocks else 0.0


def engines_with(attacker: type[Engine] | None, at: int = 0, params: Callable[[Simulation], dict] | None = None):
    """An `engine_for`: node `at` runs `attacker(node, ..., **params(sim))`, every other node `Engine`."""
    def make(i: int, node, sim: Simulation) -> Engine:
        if attacker is not None and i == at:
            return attacker(node, solve=sim.solve, decode=sim.decode, **(params(sim) if params else {}))
        return Engine(node, solve=sim.solve, decode=sim.decode)
    return make


def measure(sim: Arena, attack: str, attacker_at: int | None, from_height: int) -> Result:
    """The common figures of a finished run (see `Result`), the verdict left to the caller;
    `attacker_at` None: no attacker (node 0's share is reported, as a control)."""
    honest = [i for i in range(sim.cfg.nodes) if i != attacker_at]
    ref = sim.engines[honest[0]].chain
    who = sim.engines[attacker_at if attacker_at is not None else 0].node.address
    proposers = [keys.address_of(ref.block_at(h).header.proposer) for h in range(from_height + 1, ref.height + 1)]
    commits_of: dict[bytes, set[tuple[bytes, int]]] = {}  # block hash -> (sender, height) of its commits
    sent = lost = 0
    worst = 0.0
    for i in honest:
        c = sim.engines[i].chain
        landed: set[tuple[bytes, int]] = set()
        for h in range(1, c.height + 1):
            bh = c.hash_at(h)
            if bh not in commits_of:
                commits_of[bh] = {(t.sender, t.body.height) for t in c.block(bh).txs if isinstance(t.body, Commit)}
            landed |= commits_of[bh]
        me = sim.engines[i].node.address
        mine = [r for (n, r) in sim.commits_sent if n == i and from_height < r <= c.height]
        gone = [r for r in mine if (me, r) not in landed]
        sent, lost = sent + len(mine), lost + len(gone)
        worst = max(worst, len(gone) / len(mine) if mine else 0.0)
    conflict = final_conflict([canonical(sim.engines[i]) for i in honest], [final_height(sim.engines[i]) for i in honest])
    d: dict = {"heights": [sim.engines[i].chain.height for i in honest]}
    if conflict is not None:
        d["final_conflict"] = (honest[conflict[0]], honest[conflict[1]], conflict[2])
    return Result(attack, sim.cfg.seed, sim.cfg.nodes, blocks=len(proposers), attacker_blocks=proposers.count(who),
                  fair_share=1 / sim.cfg.nodes, commits_sent=sent, commits_lost=lost, worst_solver_loss=worst,
                  deepest_revert=max(sim.deepest[i] for i in honest), split=conflict is not None, detail=d)


Verdict = tuple[bool, str]  # (succeeded, why)


SIM_OVERRIDES: dict[str, object] = {}  # applied to every scenario's SimConfig: bench/attacks.py --committee, --mesh


def play(attack: str, cfg: SimConfig, drive: Callable[[Arena], None], judge: Callable[[Arena, Result], Verdict], *,
         attacker: type[Engine] | None = None, params: Callable[[Simulation], dict] | None = None, at: int = 0,
         from_height: int = 4) -> Result:
    """Run one scenario: an `Arena` on `cfg` with `attacker` at node `at` (None: every node honest),
    `drive(sim)` to play it, then the common figures (`measure`, counted from `from_height`) and
    `judge(sim, result)`'s verdict.  The attacker's `events` go into the result's detail."""
    sim = Arena(replace(cfg, **SIM_OVERRIDES), engines_with(attacker, at, params))
    try:
        drive(sim)
        r = measure(sim, attack, at if attacker is not None else None, from_height)
        if attacker is not None:
            r.detail.update(getattr(sim.engines[at], "events", {}))
        r.succeeded, r.why = judge(sim, r)
        return r
    finally:
        sim.close()


def run_slots(sim: Simulation, n: int) -> None:
    """Run `n` slots of simulated time (unlike `run_rounds`, which counts from the highest head: after
    a deep reorg that head is far behind the clock, and a round would pass at once)."""
    sim.run_until(sim.now + n * sim.genesis.slot_seconds * 1000)


def run_until(sim: Simulation, done: Callable[[], bool], max_rounds: int) -> int:
    """Run a round at a time until `done()` or `max_rounds`; returns the rounds run."""
    n = 0
    while n < max_rounds and not done():
        sim.run_rounds(1)
        n += 1
    return n


def share_above(factor: float = 1.5) -> Callable[[Arena, Result], Verdict]:
    """Success when the attacker's (or node 0's) share of blocks exceeds `factor` times its fair share."""
    def judge(sim: Arena, r: Result) -> Verdict:
        r.detail["share_factor"] = factor  # for the bench's count of what luck alone gives this criterion
        return r.attacker_share > factor * r.fair_share, f"share {r.attacker_share:.0%} against a fair {r.fair_share:.0%}"
    return judge


def split_judge(sim: Arena, r: Result) -> Verdict:
    """Success when two honest nodes hold different blocks at a height both treat as final."""
    if r.split:
        a, b, h = r.detail["final_conflict"]
        return True, f"honest nodes {a} and {b} hold different blocks at height {h}, final on both"
    return False, "no two honest nodes differ below their finality"


# ------------------------------------------------------------------------------------- scenarios
def _double_spend(attack: str, cls: type[_PayThenDoubleSpend], seed: int, nodes: int, confirmations: int,
                  finality_depth: int, latency_ms: tuple[int, int], loss: float, after: int, patience: int) -> Result:
    cfg = SimConfig(nodes=nodes, seed=seed, latency_ms=latency_ms, loss=loss, finality_depth=finality_depth)
    merchant = 1
    start = cls.start - 2

    def drive(sim: Arena) -> None:
        bad: _PayThenDoubleSpend = sim.engines[0]  # type: ignore[assignment]
        sim.run_rounds(start)

        def released() -> bool:
            if bad.payment is not None and (merchant, bad.payment.hash) not in sim.watch:
                sim.watch[(merchant, bad.payment.hash)] = 0  # the merchant's confirmations, watched from now
            return bad.released

        run_until(sim, released, patience + confirmations)
        run_slots(sim, after)

    def judge(sim: Arena, r: Result) -> Verdict:
        bad: _PayThenDoubleSpend = sim.engines[0]  # type: ignore[assignment]
        honest = sim.engines[1:]
        r.attempted = bad.released
        r.detail["slashed"] = honest[0].chain.state().solver(bad.me) is None
        pay, conflict = bad.payment, bad.conflict
        if pay is None or conflict is None:
            return False, "found no round to attack"
        confirmed = sim.watch.get((merchant, pay.hash), 0)
        kept = sum(e.chain.tx(pay.hash) is not None for e in honest)
        spent = sum(e.chain.tx(conflict.hash) is not None for e in honest)
        # Success: the merchant saw its payment with `confirmations` blocks, and in the end no honest
        # chain holds it, every honest chain holding the attacker's conflicting transfer instead.
        ok = bad.released and confirmed >= confirmations and kept == 0 and spent == len(honest)
        return ok, (f"the merchant saw the payment with {confirmations if confirmed >= confirmations else confirmed}"
                    f"{'+' if confirmed >= confirmations else ''} confirmations; in the end it is on {kept} of "
                    f"{len(honest)} honest chains, the conflicting transfer on {spent}")

    return play(attack, cfg, drive, judge, attacker=cls, from_height=start, params=lambda s: dict(
        seed=seed, confirmations=confirmations, merchant=keys.address_of_key(s.keys[merchant])))


def double_spend(seed: int, *, nodes: int = 5, confirmations: int = 11, finality_depth: int = 32,
                 latency_ms: tuple[int, int] = ISSUE_LATENCY_MS, loss: float = 0.0, after: int = 3,
                 patience: int = 30) -> Result:
    """Attack 1: `WithholdAndRelease` at node 0, the merchant at node 1 (success criterion in `_double_spend`)."""
    return _double_spend("withhold-and-release", WithholdAndRelease, seed, nodes, confirmations, finality_depth,
                         latency_ms, loss, after, patience)


def twin_double_spend(seed: int, *, nodes: int = 5, confirmations: int = 11, finality_depth: int = 32,
                      latency_ms: tuple[int, int] = ISSUE_LATENCY_MS, loss: float = 0.0, after: int = 3,
                      patience: int = 30) -> Result:
    """Attack 1, the twin: `Twin` at node 0, the merchant at node 1 (same success criterion)."""
    return _double_spend("twin", Twin, seed, nodes, confirmations, finality_depth, latency_ms, loss, after, patience)


def boundary_release(seed: int, *, nodes: int = 8, finality_depth: int = 4,
                     latency_ms: tuple[int, int] = ISSUE_LATENCY_MS, after: int | None = None,
                     patience: int = 30) -> Result:
    """Attack 2: `BoundaryRelease` at node 0; the honest nodes are split at random (by the seed) into
    the `first` (half, rounded down) and the `rest`.  Success criterion: `split_judge`."""
    cfg = SimConfig(nodes=nodes, seed=seed, latency_ms=latency_ms, finality_depth=finality_depth)
    honest = list(range(1, nodes))
    first = tuple(sorted(random.Random(f"boundary:{seed}").sample(honest, len(honest) // 2)))
    rest = tuple(i for i in honest if i not in first)
    start = BoundaryRelease.start - 2

    def drive(sim: Arena) -> None:
        bad: BoundaryRelease = sim.engines[0]  # type: ignore[assignment]
        sim.run_rounds(start)
        run_until(sim, lambda: bad.sent_rest, patience + finality_depth)
        run_slots(sim, after if after is not None else finality_depth + 3)  # the first side re-grows past D

    def judge(sim: Arena, r: Result) -> Verdict:
        bad: BoundaryRelease = sim.engines[0]  # type: ignore[assignment]
        r.attempted = bad.sent_rest and "missed" not in bad.events
        return split_judge(sim, r)

    # Sent at the last tick from which it still arrives in time (ticks every tick_ms), and once the rest
    # have all had a tick past the window's end.
    early, late = latency_ms[1] + cfg.tick_ms + 10, cfg.tick_ms + 50
    return play("boundary-release", cfg, drive, judge, attacker=BoundaryRelease, from_height=start,
                params=lambda s: dict(seed=seed, first=first, rest=rest, early_ms=early, late_ms=late))


def partition_heal(seed: int, *, nodes: int = 7, minority: int = 3, finality_depth: int = 6, loss: float = 0.01,
                   rounds: int | None = None, latency_ms: tuple[int, int] = ISSUE_LATENCY_MS,
                   after: int | None = None) -> Result:
    """Attack 2 without an attacker: nodes 0..minority-1 are cut off for `rounds` (default
    finality_depth - 1) rounds, then the partition heals; message loss `loss` throughout.  Success
    (of the fault) criterion: `split_judge`."""
    cfg = SimConfig(nodes=nodes, seed=seed, latency_ms=latency_ms, finality_depth=finality_depth, loss=loss)
    start = 4

    def drive(sim: Arena) -> None:
        sim.run_rounds(start)
        sim.partition(set(range(minority)), set(range(minority, nodes)))
        sim.run_rounds(rounds if rounds is not None else finality_depth - 1)
        sim.heal()
        run_slots(sim, after if after is not None else finality_depth + 4)  # every head passes fork + D

    return play("partition-heal", cfg, drive, split_judge, from_height=start)


def _share_attack(attack: str, cls: type[Adversary], seed: int, nodes: int, rounds: int,
                  latency_ms: tuple[int, int], finality_depth: int) -> Result:
    cfg = SimConfig(nodes=nodes, seed=seed, latency_ms=latency_ms, finality_depth=finality_depth)
    start = cls.start - 2
    judge_share = share_above(1.5)

    def judge(sim: Arena, r: Result) -> Verdict:
        bad = sim.engines[0]
        if isinstance(bad, LotteryGrinder):
            r.detail.update(grinds=len(bad.tries), tries=sorted(bad.tries), grind_failed=bad.failed)
            r.attempted = bool(bad.tries) or bad.failed > 0
        c = sim.engines[1].chain
        streak = 0
        while streak < c.height and keys.address_of(c.block_at(c.height - streak).header.proposer) == bad.node.address:
            streak += 1
        r.detail["final_streak"] = streak  # blocks in a row the attacker won at the end
        # Success: the attacker's share of blocks exceeds 1.5 times its fair share (issue 12's bound).
        return judge_share(sim, r)

    return play(attack, cfg, lambda sim: sim.run_rounds(start + rounds), judge, attacker=cls, from_height=start,
                params=lambda s: dict(seed=seed))


def commit_censorship(seed: int, *, nodes: int = 5, rounds: int = 30, latency_ms: tuple[int, int] = ISSUE_LATENCY_MS,
                      finality_depth: int = 32) -> Result:
    """Attack 3: `CommitCensor` at node 0 (success criterion in `_share_attack`)."""
    return _share_attack("commit-censorship", CommitCensor, seed, nodes, rounds, latency_ms, finality_depth)


def lottery_grinding(seed: int, *, nodes: int = 5, rounds: int = 30, latency_ms: tuple[int, int] = ISSUE_LATENCY_MS,
                     finality_depth: int = 32) -> Result:
    """Attack 4: `LotteryGrinder` at node 0 (success criterion in `_share_attack`)."""
    return _share_attack("lottery-grinding", LotteryGrinder, seed, nodes, rounds, latency_ms, finality_depth)


def commit_loss(seed: int, *, nodes: int = 5, rounds: int = 20, latency_ms: tuple[int, int] = (5, 50),
                loss: float = 0.0, finality_depth: int = 32) -> Result:
    """Attack 5 (no attacker: the honest protocol's own fairness): every node honest; node 0's share
    is reported as a control."""
    cfg = SimConfig(nodes=nodes, seed=seed, latency_ms=latency_ms, loss=loss, finality_depth=finality_depth)
    start = 4

    def judge(sim: Arena, r: Result) -> Verdict:
        # Success (of the fault): at least one honest commit whose window closed never reached its
        # sender's chain.
        return r.commits_lost > 0, f"{r.commits_lost} of {r.commits_sent} honest commits lost"

    return play("commit-loss", cfg, lambda sim: sim.run_rounds(start + rounds), judge, from_height=start)


def double_vote(seed: int, *, nodes: int = 5, rounds: int = 12, latency_ms: tuple[int, int] = ISSUE_LATENCY_MS) -> Result:
    """Double vote: `DoubleVoter` at node 0.  Success: it is still a solver on every honest chain at the
    end (its double votes were not turned into evidence and slashed), or two honest nodes hold
    different blocks at a height both treat as final."""
    cfg = SimConfig(nodes=nodes, seed=seed, latency_ms=latency_ms)
    start = DoubleVoter.start - 2

    def judge(sim: Arena, r: Result) -> Verdict:
        bad = sim.engines[0]
        kept = [e.chain.state().solver(bad.node.address) is not None for e in sim.engines[1:]]
        r.attempted = bool(bad.events.get("double_votes"))
        r.detail["slashed"] = not any(kept)
        if r.split:
            return split_judge(sim, r)
        return any(kept), (f"slashed on {kept.count(False)} of {len(kept)} honest chains after "
                           f"{len(bad.events.get('double_votes', []))} double votes")

    return play("double-vote", cfg, lambda sim: sim.run_rounds(start + rounds), judge, attacker=DoubleVoter,
                from_height=start, params=lambda s: dict(seed=seed, nodes=s.cfg.nodes, index=0))


def honest_control(seed: int, *, nodes: int = 5, rounds: int = 30, latency_ms: tuple[int, int] = ISSUE_LATENCY_MS,
                   finality_depth: int = 32) -> Result:
    """No attacker, the share attacks' configuration: node 0's share, a control for them.  Success:
    node 0's share above 1.5 times fair (which an honest run should rarely show)."""
    cfg = SimConfig(nodes=nodes, seed=seed, latency_ms=latency_ms, finality_depth=finality_depth)
    return play("honest", cfg, lambda sim: sim.run_rounds(4 + rounds), share_above(1.5), from_height=4)


@dataclass(frozen=True)
class Scenario:
    """A benchmark row: `run(seed, **params)` for each seed; `extra` rows run fewer seeds by default."""

    label: str
    run: Callable[..., Result]
    params: dict = field(default_factory=dict)
    issue: str = ""  # what issue 12 measured, for comparison
    extra: bool = False

    @property
    def nodes(self) -> int:
        default = {boundary_release: 8, partition_heal: 7}.get(self.run, 5)
        return self.params.get("nodes", default)


SCENARIOS: list[Scenario] = [
    Scenario("1 withhold-and-release, k=11", double_spend, dict(confirmations=11),
             "10 of 10 seeds; every honest node reverted 11 blocks"),
    Scenario("1 twin (lower hash), k=11", twin_double_spend, dict(confirmations=11),
             "succeeds; costs the deposit"),
    Scenario("2 boundary release, depth 4", boundary_release, dict(finality_depth=4), "19 of 20 split"),
    Scenario("2 partition D-1 rounds + heal, depth 6, 5% loss", partition_heal, dict(loss=0.05),
             "7 of 20 split (depth not stated)"),
    Scenario("3 commit censorship", commit_censorship, dict(nodes=5), "77% of blocks (fair 20%)"),
    Scenario("4 lottery grinding", lottery_grinding, dict(nodes=5), "65% (fair 20%), 3-11 tries; honest 23%"),
    Scenario("5 commit loss, 5-50 ms, honest", commit_loss, dict(nodes=5), "16.8% lost; worst solvers 36-69%"),
    Scenario("6 double vote (slashed?)", double_vote, dict(nodes=5), "no finality votes then"),
    # extra rows: other depths, latencies, sizes; the honest control (bench/attacks.py --extra-seeds N)
    Scenario("2 partition D-1 rounds + heal, depth 6, 1% loss", partition_heal, dict(loss=0.01),
             "3 of 20 split (depth not stated)", extra=True),
    Scenario("1 withhold-and-release, depth 24, k=23", double_spend, dict(confirmations=23, finality_depth=24),
             "2 of 2", extra=True),
    Scenario("2 boundary release, depth 12", boundary_release, dict(finality_depth=12), "8 of 10 split", extra=True),
    Scenario("2 partition D-1 rounds + heal, depth 4, 30% loss", partition_heal, dict(finality_depth=4, loss=0.3),
             "3 of 11 split", extra=True),
    Scenario("3 commit censorship, 5-50 ms", commit_censorship, dict(nodes=5, latency_ms=(5, 50)),
             "77% (fair 20%)", extra=True),
    Scenario("3 commit censorship, 10 nodes, 5-50 ms", commit_censorship, dict(nodes=10, latency_ms=(5, 50)),
             "85% (fair 10%)", extra=True),
    Scenario("4 lottery grinding, 10 nodes", lottery_grinding, dict(nodes=10), "50% (fair 10%)", extra=True),
    Scenario("control: honest, 50-500 ms", honest_control, dict(nodes=5), "23% (node 0)", extra=True),
]
