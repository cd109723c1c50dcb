"""Random sequences of transactions, blocks, reverts and restarts against one real chain (hypothesis).

A `RuleBasedStateMachine` drives a node on a real LevelDB store: users transfer, bid and cancel,
blocks are solved and committed, the head is reverted (as a reorg would), and the node is closed
and reopened on the same directory.  After every step the ledger's invariants hold, and a replay of
the whole chain on a fresh store reaches exactly the same state.
"""

from __future__ import annotations

import shutil
import tempfile

from chain_support import Net, addr, escrow_in_accounts, escrow_in_bids
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from consensus.rules import ledger, schema
from consensus.chain.chain import Chain
from consensus.node import Node
from consensus.chain.store import Store
from consensus.rules.transactions import BUY, SELL, Bid, CancelBid, Transfer, TxError


class ChainMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="transx-machine-")
        self.net = Net(f"{self.dir}/db", n_users=4)

    def teardown(self) -> None:
        self.net.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _try(self, k, body) -> None:
        try:
            self.net.submit(k, body)
        except TxError:
            pass  # refused with a reason and no state change: another test's business

    @rule(i=st.integers(0, 3), j=st.integers(0, 3), amount=st.integers(1, 10**9))
    def transfer(self, i, j, amount):
        self._try(self.net.users[i], Transfer(addr(self.net.users[j]), amount))

    @rule(i=st.integers(0, 3), ahead=st.integers(0, 3), wh=st.integers(100, 8_000), spread=st.integers(0, 150_000))
    def bid(self, i, ahead, wh, spread):
        """Odd users sell above the feed-in tariff, even users buy below retail: most pairs can trade."""
        slot = self.net.next_height + self.net.g.gate_closure + ahead
        side = SELL if i % 2 else BUY
        price = self.net.g.feed_in + spread if side == SELL else self.net.g.retail - spread
        self._try(self.net.users[i], Bid(side, slot, wh, price, i % self.net.g.zones, slot - self.net.g.gate_closure))

    @rule(i=st.integers(0, 3), pick=st.integers(0, 10))
    def cancel(self, i, pick):
        owner = addr(self.net.users[i])
        open_bids = [k[-32:] for k, _ in self.net.state().items(schema.owner_bids(owner))]
        if open_bids:
            self._try(self.net.users[i], CancelBid(open_bids[pick % len(open_bids)]))

    @rule()
    def produce(self):
        done = self.net.produce()
        event(f"block with {'trades' if done.block.clearing.trades else 'no trades'}")

    @rule()
    def produce_until_bids_clear(self):
        """Enough blocks that every bid placed so far reaches its slot."""
        for _ in range(self.net.g.gate_closure + 4):
            self.produce()

    @precondition(lambda self: self.net.height > 1)
    @rule()
    def revert(self):
        block = self.net.chain.revert_head()
        for tx in block.txs:  # as a reorg does: its transactions go back to the mempool
            try:
                self.net.node.submit_tx(tx)
            except TxError:
                pass

    @rule()
    def restart(self):
        """Close the node and open it again on the same directory (the mempool is not kept here)."""
        self.net.store.close()
        self.net.store = Store(f"{self.dir}/db")
        self.net.chain = Chain(self.net.store, self.net.g)
        self.net.node = Node(self.net.chain, self.net.solver_key)

    @invariant()
    def money_is_conserved(self):
        held, minted = ledger.money_in_state(self.net.state())
        assert held == minted
        assert self.net.state().totals().minted == sum(v for _, v in self.net.g.balances) + sum(
            v for _, v in self.net.g.solvers) + self.net.g.block_reward * self.net.height

    @invariant()
    def escrow_is_accounted_once(self):
        state = self.net.state()
        assert escrow_in_accounts(state) == escrow_in_bids(state)

    def check_replay(self):
        """Replaying the chain's blocks from genesis on a fresh store gives the same state."""
        c = self.net.chain
        path = tempfile.mkdtemp(dir=self.dir)
        fresh = Store(path)
        try:
            again = Chain(fresh, self.net.g)
            for h in range(1, c.height + 1):
                b = c.block_at(h)
                again.connect(b, self.net.g.slot_start_ms(h) + 1000)
            assert dict(fresh.items(schema.STATE)) == dict(self.net.store.items(schema.STATE))
            assert again.head.hash == c.head.hash
        finally:
            fresh.close()
            shutil.rmtree(path, ignore_errors=True)

    @precondition(lambda self: self.net.height > 0)
    @rule()
    def replay_matches(self):
        self.check_replay()


ChainMachine.TestCase.settings = settings(max_examples=20, stateful_step_count=40, deadline=None, database=None,
                                          suppress_health_check=[HealthCheck.too_slow])
TestChainMachine = ChainMachine.TestCase
