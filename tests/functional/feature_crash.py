"""A writer killed with SIGKILL at random instants leaves a store that replays to the same state.

A separate process builds and connects blocks (transfers, bids, clearings)
as fast as it can; it is killed after a random delay.  The store must reopen
at a whole block, and replaying that chain's blocks on a fresh store from
genesis must give exactly the same state and indexes: nothing half-written,
nothing lost from a committed block.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

from consensus.rules import schema
from consensus.chain.chain import Chain
from consensus.rules.genesis import genesis_from_json
from consensus.chain.store import Store

WRITER = r"""
import json, random, sys, time
from nacl.signing import SigningKey
from consensus.proposer import solve_slot
from consensus.rules import keys
from consensus.chain.chain import Chain
from consensus.rules.genesis import genesis_from_json
from consensus.node import Node
from consensus.chain.store import Store
from consensus.rules.transactions import BUY, SELL, Bid, Transfer, sign_tx

path, genesis_file, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
g = genesis_from_json(json.load(open(genesis_file)))
users = [SigningKey(bytes([k + 1]) * 32) for k in range(8)]
solver = SigningKey(bytes([99]) * 32)
chain = Chain(Store(path), g)
node = Node(chain, solver)
rng = random.Random(seed)
ready = False
while True:
    h = chain.height + 1
    for k, u in enumerate(users):
        a = keys.address_of_key(u)
        nonce = node.mempool.next_nonce(a, chain.state().account(a).nonce)
        slot = h + g.gate_closure + rng.randrange(3)
        body = (Bid(SELL if k % 2 else BUY, slot, rng.randint(500, 5000), rng.randint(200_000, 500_000), 0, slot - 3)
                if rng.random() < 0.5 else Transfer(keys.address_of_key(rng.choice(users)), rng.randint(1, 10**6)))
        try:
            node.submit_tx(sign_tx(u, chain_id=g.chain_id, nonce=nonce, fee=1000, body=body))
        except Exception:
            pass
    market, pairs = chain.market(h)
    node.propose(solve_slot(market, pairs, g), g.slot_start_ms(h))
    if not ready:  # after the first block (the solver's first import is slow on a loaded machine)
        print("ready", flush=True)
        ready = True
"""


@pytest.fixture(scope="module")
def genesis_file(tmp_path_factory):
    import json

    from nacl.signing import SigningKey

    from consensus.rules import keys
    from consensus.rules.genesis import dev_genesis

    users = [keys.address_of_key(SigningKey(bytes([k + 1]) * 32)) for k in range(8)]
    solver = keys.address_of_key(SigningKey(bytes([99]) * 32))
    doc = dev_genesis(users + [solver], [solver], slot_seconds=1, start=int(time.time()) - 10**6)
    path = tmp_path_factory.mktemp("genesis") / "genesis.json"
    path.write_text(json.dumps(doc))
    return path


def _snapshot(store: Store) -> dict[bytes, bytes]:
    return {k: v for prefix in (schema.STATE, schema.INDEX, b"ch", schema.HEAD) for k, v in store.items(prefix)}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_writer_leaves_a_store_that_replays_exactly(tmp_path, genesis_file, seed):
    import json

    g = genesis_from_json(json.loads(genesis_file.read_text()))
    path = str(tmp_path / "db")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path, str(genesis_file), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    time.sleep(random.Random(seed).uniform(1.0, 3.0))
    proc.kill()
    proc.wait()

    crashed = Store(path)
    try:
        chain = Chain(crashed, g)
        assert chain.height > 0, "the writer committed no block before the kill"
        blocks = [chain.block_at(h) for h in range(1, chain.height + 1)]
        assert all(b is not None for b in blocks)
        assert all(b.header.parent == p.hash for p, b in zip([chain.block_at(0)] + blocks, blocks))
        assert crashed.get(schema.canonical(chain.height + 1)) is None
        survived = _snapshot(crashed)
    finally:
        crashed.close()

    replay = Store(str(tmp_path / "replay"))
    try:
        again = Chain(replay, g)
        for b in blocks:
            again.connect(b, g.slot_start_ms(b.height) + 1000)
        assert _snapshot(replay) == survived
    finally:
        replay.close()
