"""A small real network for the chain tests: a LevelDB store, PyNaCl keys, the real solver.

Keys come from fixed seeds and the genesis starts at a fixed second, so every
run builds the same chain.  Time is virtual: block h is stamped at the start
of slot h (`Genesis.slot_start_ms`), the earliest moment it may carry, and the
node's clock reads the same, as a daemon proposing on time would see it.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, Phase, settings
from nacl.signing import SigningKey

from consensus.proposer import solve_slot
from consensus.rules import genesis as G
from consensus.rules import keys, schema
from consensus.rules import transactions as T
from consensus.chain.chain import Chain, Connected
from consensus.rules.metering import sign_reading
from consensus.node import Node
from consensus.rules.state import StateOverlay
from consensus.chain.store import Store

START = 1_700_000_000  # genesis timestamp (seconds)
FEE = 1_000  # dev_genesis min_fee
POOR_BALANCE = 20_000

# Slow properties (they build chains and call the solver): few, fixed examples.
CHAIN_PROPERTY = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def key(label: str) -> SigningKey:
    """A deterministic Ed25519 key for `label`."""
    return SigningKey(hashlib.sha256(label.encode()).digest())


def addr(k: SigningKey) -> bytes:
    return keys.address_of_key(k)


class Net:
    """One node (the genesis solver) on a fresh chain in `path`.

    `users` are funded with 10^12 micro-units each, `poor` with POOR_BALANCE,
    `stranger` with nothing.
    """

    def __init__(self, path: str, n_users: int = 6, watermark: bool = False, **genesis_overrides) -> None:
        self.solver_key = key("solver")
        self.users = [key(f"user{i}") for i in range(n_users)]
        self.poor = key("poor")
        self.stranger = key("stranger")
        doc = G.dev_genesis([addr(k) for k in self.users] + [addr(self.solver_key)], [addr(self.solver_key)],
                            slot_seconds=1, start=START)
        doc["balances"][keys.encode_address(addr(self.poor))] = POOR_BALANCE
        doc.update(genesis_overrides)
        self.g = G.genesis_from_json(doc)
        self.store = Store(path, watermark=watermark)
        self.chain = Chain(self.store, self.g)
        self.node = Node(self.chain, self.solver_key)

    def close(self) -> None:
        self.store.close()

    # ---------------------------------------------------------------- reading
    @property
    def height(self) -> int:
        return self.chain.height

    @property
    def next_height(self) -> int:
        return self.chain.height + 1

    def now(self, height: int | None = None) -> int:
        """The virtual clock when block `height` (default: the next) is due."""
        return self.g.slot_start_ms(self.next_height if height is None else height)

    def state(self) -> StateOverlay:
        return self.chain.state()

    def account(self, k: SigningKey):
        return self.state().account(addr(k))

    def next_nonce(self, k: SigningKey, space: int = T.WALLET) -> int:
        return self.node.mempool.next_nonce(addr(k), self.account(k).nonce_of(space), space)

    # ------------------------------------------------------------ transacting
    def tx(self, k: SigningKey, body, *, fee: int = FEE, nonce: int | None = None, chain_id: str | None = None):
        """`body` signed by `k`, by default at its next nonce of the body's space (consensus for a commit,
        reveal or evidence, else wallet)."""
        space = T.CONSENSUS if isinstance(body, T.CONSENSUS_BODIES) else T.WALLET
        return T.sign_tx(k, chain_id=chain_id or self.g.chain_id,
                         nonce=self.next_nonce(k, space) if nonce is None else nonce, fee=fee, body=body)

    def submit(self, k: SigningKey, body, **kw) -> T.Tx:
        tx = self.tx(k, body, **kw)
        self.node.submit_tx(tx)
        return tx

    def meter_key(self, k: SigningKey) -> SigningKey:
        """The meter of `k`'s home (a key of its own, derived here for repeatable runs)."""
        return SigningKey(hashlib.sha256(b"meter" + bytes(k)).digest())

    def register_meter(self, k: SigningKey, **kw) -> T.Tx:
        return self.submit(k, T.RegisterMeter(keys.public_key(self.meter_key(k))), **kw)

    def reading(self, k: SigningKey, slot: int, imported_wh: int = 0, exported_wh: int = 0) -> T.MeterReading:
        """A reading of `k`'s slot signed by its meter."""
        return sign_reading(self.meter_key(k), chain_id=self.g.chain_id, account=addr(k), slot=slot,
                            imported_wh=imported_wh, exported_wh=exported_wh)

    def bid(self, k: SigningKey, side: int, slot: int, wh: int, price: int, zone: int = 0,
            expiry: int | None = None, **kw) -> T.Tx:
        return self.submit(k, T.Bid(side, slot, wh, price, zone, slot if expiry is None else expiry), **kw)

    # -------------------------------------------------------------- producing
    def produce(self) -> Connected:
        """Solve the next slot for real and propose its block (with the mempool's transactions)."""
        h = self.next_height
        market, pairs = self.chain.market(h)
        solution = solve_slot(market, pairs, self.g)
        return self.node.propose(solution, self.now(h))

    def produce_until(self, height: int) -> list[Connected]:
        return [self.produce() for _ in range(height - self.height)]


@pytest.fixture
def net(tmp_path):
    n = Net(str(tmp_path / "db"))
    yield n
    n.close()


def counting_scans(store: Store, monkeypatch) -> list[bytes]:
    """The keys `store`'s scans hand out from now on, in order: what a read costs."""
    read: list[bytes] = []
    items = store.items

    def counting(*args, **kwargs):
        for kv in items(*args, **kwargs):
            read.append(kv[0])
            yield kv
    monkeypatch.setattr(store, "items", counting)
    return read


def snapshot(store: Store, prefixes: tuple[bytes, ...] = (schema.STATE, schema.INDEX, b"ch")) -> dict:
    """Every key and value under `prefixes`, plus the head pointer."""
    snap = {p: dict(store.items(p)) for p in prefixes}
    snap[schema.HEAD] = store.get(schema.HEAD)
    return snap


def whole_db(store: Store) -> dict[bytes, bytes]:
    return dict(store.items(b""))


def escrow_in_bids(state: StateOverlay) -> int:
    """What bids hold: buy bids' escrow, and sellers' revenue until their slot's delivery is settled."""
    from consensus.rules.state import BID, CLEARED

    total = 0
    for _, v in state.items(b"sb"):
        rec = BID.decode(v)
        total += rec.escrow
        if rec.side == T.SELL and rec.status == CLEARED and state.get(schema.settlement(rec.slot, rec.owner)) is None:
            total += rec.amount
    return total


def escrow_in_accounts(state: StateOverlay) -> int:
    from consensus.rules.state import ACCOUNT

    return sum(ACCOUNT.decode(v).escrowed for _, v in state.items(b"sa"))
