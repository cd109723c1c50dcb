"""Memory that stays flat (issue 20): after many blocks every per-block structure a node keeps is within
its bound, whatever the number of blocks.

One node of the consensus simulator, with finality votes from block 1, driven as the daemon drives it
(its solutions handed in with `Engine.put_solution`, the path that used to keep one per block), a short
finality depth so that many blocks are many times every window.
"""

from __future__ import annotations

import pytest

from consensus import engine as E
from consensus.chain import chain as C
from consensus.rules import schema, transactions as T, verified
from consensus.rules.blocks import BlockError
from consensus.sim import SimConfig, Simulation

DEPTH = 4
BLOCKS = 80  # 20 finality depths, 5 of the engine's 16-block pruning rounds


class DaemonLikeEngine(E.Engine):
    """Solves what `needed` names and hands it in before each tick, as transxnode/daemon.py does."""

    def tick(self, now_ms: int):
        self.node.now_ms = now_ms
        for h in self.needed():
            market, pairs = self.chain.market(h)
            self.put_solution(h, self.solve(market, pairs, self.chain.genesis))
        return super().tick(now_ms)


@pytest.fixture
def sim(monkeypatch):
    monkeypatch.setattr(C, "RANKS_KEPT", 24)  # small caps, so many blocks overflow them
    monkeypatch.setattr(C, "VERDICTS_KEPT", 24)
    monkeypatch.setattr(T, "_VERIFIED_MAX", 64)
    monkeypatch.setattr(T, "_VERIFIED", {})
    s = Simulation(SimConfig(nodes=1, seed=3, slot_seconds=2, finality_depth=DEPTH, households=4, genesis_keys=True,
                             tick_ms=500),
                   engine_for=lambda i, node, sim: DaemonLikeEngine(node, solve=sim.solve, decode=sim.decode))
    yield s
    s.close()


def sizes(e: E.Engine) -> dict[str, int]:
    c, b = e.chain, e.book
    return {"solutions": len(e.solutions), "committed": len(e.committed), "proposed_on": len(e.proposed_on),
            "seen": len(e.seen), "tickets": len(e._tickets), "arrived": len(e.arrived), "wanted": len(e.wanted),
            "side": len(e.side), "orphans": len(e.orphans), "future": len(e.future), "best": len(e._best),
            "markets": len(c._markets), "ranks": len(c._ranks), "verdicts": len(c._verdicts),
            "parents": len(b.parents), "justified": len(b.justified), "latest": len(b.latest),
            "mempool": len(e.node.mempool), "admitted": len(e.node.mempool.admitted), "verified": len(T._VERIFIED)}


def check_bounds(e: E.Engine) -> None:
    c, g = e.chain, e.chain.genesis
    head = c.height
    prune = 16  # the engine's pruning round (`Engine._forget_old`)
    window = DEPTH + prune  # heights a per-height structure may span below the head
    assert all(k[0] >= head - DEPTH for k in e.solutions), sorted(k[0] for k in e.solutions)
    assert len(e.solutions) <= DEPTH + 2 + g.commit_window
    assert all(k[0] > head - window for k in e.seen)
    assert all(k[0] > head - window for k in e._tickets)
    assert len(e._tickets) <= window + 2 + g.commit_window
    assert len(e.committed) <= 4 * (g.commit_window + g.reveal_window) + g.commit_window
    assert len(e.proposed_on) <= 4 * g.finality_depth + 1
    assert all(s > head - g.finality_depth for s in c._markets)
    assert len(c._markets) <= g.finality_depth + g.gate_closure
    assert all(k[0] > head - g.finality_depth for k in c._verdicts)
    assert len(c._verdicts) <= C.VERDICTS_KEPT and len(c._ranks) <= C.RANKS_KEPT
    # The vote book: parent links and justified checkpoints near the final checkpoint, one vote per voter.
    floor = max(c.finalized().height, head - E.VOTE_AHEAD) - 8 - prune
    assert all(h >= floor for h, _ in e.book.parents.values())
    assert len(e.book.parents) <= head - floor + 2 * len(e.book.latest) + 1
    assert all(cp.height >= floor for cp in e.book.justified.values())
    assert len(e.book.latest) <= len(c.voters().voters)
    assert set(e.arrived) - set(e.node.mempool.by_hash) == set() or len(e.arrived) <= 8 * E.MAX_ORPHANS
    assert len(e.node.mempool) <= 4 * (g.gate_closure + 3) + 4 * (g.commit_window + g.reveal_window)
    assert len(T._VERIFIED) <= 64


def test_per_block_structures_stay_within_their_bounds(sim):
    sim.run_rounds(BLOCKS // 2)
    e = sim.engines[0]
    check_bounds(e)
    half = sizes(e)
    sim.run_rounds(BLOCKS // 2)
    e = sim.engines[0]
    assert e.chain.height >= BLOCKS - 2 and e.final_height() >= BLOCKS - 8  # the run made blocks and votes
    check_bounds(e)
    full = sizes(e)
    # Nothing that grows with the number of blocks: twice the blocks, at most the bound's sawtooth more.
    grown = {k: (half[k], full[k]) for k in full if full[k] > half[k] + 16}
    assert not grown, grown
    assert e.chain._ranks and len(T._VERIFIED) == 64  # the caps were reached, and held


def test_recent_keeps_the_newest():
    d = C._Recent(3)
    for i in range(10):
        d[i] = i
    d[9] = "again"  # an existing key: nothing evicted
    assert list(d) == [7, 8, 9] and d[9] == "again"


def test_below_finality_the_store_keeps_no_undo_records_or_own_proposals(sim):
    """Disk per block (issue 20): a final block is never reverted, and this node never proposes or reveals
    at a final height again, so their undo records and its own proposals and commits are deleted."""
    sim.run_rounds(BLOCKS // 2)
    c = sim.engines[0].chain
    final = c.finalized().height
    assert final >= BLOCKS // 2 - 8 and c.pruned == final
    undo = {k for k, _ in c.store.items(b"cu")}
    held = {h for h in range(1, c.height + 1) if schema.undo(c.hash_at(h)) in undo}
    assert held == set(range(final + 1, c.height + 1))  # every block above the final one stays revertible
    own = [schema.read_u64(k[2:]) for k, _ in [*c.store.items(b"mp"), *c.store.items(b"mc")]]
    assert own and min(own) > final
    c.check(depth=None)  # a pruned store is a sound one
    # A transaction in a pruned block is still found, and a final block still refuses to be reverted.
    h, tx = next((h, c.block_at(h).txs[0]) for h in range(final, 0, -1) if c.block_at(h).txs)
    assert c.tx(tx.hash) == (tx, h, 0)
    while c.height > final:
        c.revert_head()
    with pytest.raises(BlockError, match="is final"):
        c.revert_head()
    assert C.Chain(c.store, c.genesis).pruned == final  # remembered across a restart


def test_forgetting_the_checked_signatures_empties_them_and_the_chain_goes_on(sim):
    """consensus/rules/verified.py: what the daemon calls every 64 blocks (transxnode/heap.py)."""
    sim.run_rounds(12)
    assert verified.held() > 0  # transactions, votes, tickets checked
    verified.forget()
    assert verified.held() == 0
    e = sim.engines[0]
    height, final = e.chain.height, e.final_height()
    sim.run_rounds(8)  # votes and blocks checked again from scratch
    assert e.chain.height >= height + 6 and e.final_height() > final
