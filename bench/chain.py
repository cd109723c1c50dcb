"""Chain benchmark: transaction throughput, block commit time and store growth.

    python bench/chain.py [--seed 1] [--quick]

Everything runs on a real LevelDB store in a temporary directory, with real
Ed25519 signatures (PyNaCl) and the real solver.  The genesis is a
`dev_genesis` with 1-second slots that started long ago, so every height the
benchmark reaches is already due; blocks are stamped at their slot's start.
The users are seeded keys funded in the genesis; they send a mix of
transfers and bids (buy and sell, spread over several future slots).

Three Markdown tables:

1. Transactions per second, by stage: decode (`decode_tx` from raw bytes),
   stateless check (`check_stateless`, mostly the Ed25519 verify), mempool
   admission (`Node.submit_tx`, with its trial apply), stateful apply
   (`ledger.apply_tx` on one `StateOverlay` of the chain, as a block applies
   them) and end to end (`Chain.build_block` + `Chain.connect` of full blocks).
2. Block commit time against the number of transactions: `build_block` and
   `connect` (checks, signatures, re-execution, synced LevelDB write),
   median over a few blocks; and one block whose slot has a market to clear,
   with the time of `solve_slot` and of the exact re-verification.
3. Store size per 1,000 blocks under a steady load (transfers and bids for
   the next few slots, every slot cleared with trades): bytes on disk while
   the database is open and after it is closed and reopened (LevelDB turns
   its log into a table on reopen), per block and per transaction.

`--quick` shrinks every part so the whole script runs in well under a minute.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version

from nacl.signing import SigningKey


from consensus.proposer import solve_slot
from consensus.rules import keys, ledger
from consensus.rules.blocks import Block
from consensus.chain.chain import Chain, Connected, decode_block
from consensus.rules.genesis import Genesis, dev_genesis, genesis_from_json
from consensus.node import Node
from consensus.chain.store import Store
from consensus.rules.transactions import BUY, SELL, Bid, Transfer, Tx, check_stateless, decode_tx, sign_tx

HISTORY_S = 10**6  # the genesis starts this many seconds (1-s slots) ago: every height we reach is due
FAR_SLOTS = range(500, 510)  # offsets of bids in parts 1-2: no such slot comes due while they run


@dataclass(frozen=True)
class Sizes:
    users: int
    throughput_txs: int  # transactions through each stage of part 1 (whole blocks end to end)
    block_sizes: tuple[int, ...]
    reps: int  # blocks per size in part 2 (median)
    clearing_bids: tuple[int, ...]  # bids in each cleared slot of part 2
    growth_blocks: int
    growth_txs: int  # transactions per block in part 3


FULL = Sizes(users=1_000, throughput_txs=10_000, block_sizes=(0, 100, 1_000, 5_000), reps=3, clearing_bids=(200, 1_000),
             growth_blocks=2_000, growth_txs=20)
QUICK = Sizes(users=200, throughput_txs=2_000, block_sizes=(0, 100, 1_000), reps=2, clearing_bids=(60,),
              growth_blocks=150, growth_txs=20)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------- network
@dataclass
class Net:
    """A fresh chain on a temporary LevelDB store, its solver key and the genesis."""

    path: str
    store: Store
    chain: Chain
    solver: SigningKey

    @property
    def g(self) -> Genesis:
        return self.chain.genesis

    def close(self) -> None:
        self.store.close()
        shutil.rmtree(self.path, ignore_errors=True)


def make_genesis(users: list[SigningKey], solver: SigningKey) -> Genesis:
    funded = [keys.address_of_key(k) for k in users] + [keys.address_of_key(solver)]
    doc = dev_genesis(funded, [keys.address_of_key(solver)], slot_seconds=1, start=int(time.time()) - HISTORY_S)
    return genesis_from_json(doc)


def open_net(g: Genesis, solver: SigningKey) -> Net:
    path = tempfile.mkdtemp(prefix="transx-bench-")
    store = Store(path)
    return Net(path, store, Chain(store, g), solver)


def now_ms() -> int:
    return int(time.time() * 1000)


# ------------------------------------------------------------------ workload
class Workload:
    """Seeded users with a fixed side each; signs transfers and bids in nonce order."""

    def __init__(self, users: list[SigningKey], g: Genesis, rng: random.Random) -> None:
        self.users, self.g, self.rng = users, g, rng
        self.addrs = [keys.address_of_key(k) for k in users]
        self.nonce = [0] * len(users)

    def txs(self, n: int, height: int, bid_share: float, slot_offsets: range) -> list[Tx]:
        """`n` transactions for inclusion from block `height` on, each user's in nonce order."""
        return [self.tx(height, bid_share, slot_offsets) for _ in range(n)]

    def tx(self, height: int, bid_share: float, slot_offsets: range) -> Tx:
        rng, i = self.rng, self.rng.randrange(len(self.users))
        if rng.random() < bid_share:
            body = self.bid(i, height + rng.choice(slot_offsets))
        else:
            body = Transfer(self.addrs[(i + rng.randrange(1, len(self.users))) % len(self.users)],
                            rng.randint(1_000, 10_000_000))
        tx = sign_tx(self.users[i], chain_id=self.g.chain_id, nonce=self.nonce[i], fee=1_000 + rng.randrange(1_000),
                     body=body)
        self.nonce[i] += 1
        return tx

    def bid(self, i: int, slot: int) -> Bid:
        """Even users sell rooftop PV, odd users buy (homes and EV chargers): one side per user and slot."""
        rng, zone, expiry = self.rng, self.rng.randrange(self.g.zones), slot - self.g.gate_closure
        if i % 2 == 0:
            return Bid(SELL, slot, rng.randint(1_000, 10_000), rng.randint(175_000, 450_000), zone, expiry)
        wh = rng.randint(7_000, 22_000) if rng.random() < 0.15 else rng.randint(1_000, 8_000)
        return Bid(BUY, slot, wh, rng.randint(250_000, 570_000), zone, expiry)

    def bids_for(self, n: int, slot: int) -> list[Tx]:
        """`n` bids for one slot from distinct users, half of each side."""
        users = self.rng.sample(range(len(self.users)), n)
        out = []
        for i in users:
            out.append(sign_tx(self.users[i], chain_id=self.g.chain_id, nonce=self.nonce[i], fee=1_000,
                               body=self.bid(i, slot)))
            self.nonce[i] += 1
        return out


# --------------------------------------------------------------------- blocks
def clearing_for(chain: Chain, height: int):
    market, pairs = chain.market(height)
    return solve_slot(market, pairs, chain.genesis).clearing


def build(net: Net, txs: list[Tx], clearing=None) -> Block:
    h = net.chain.height + 1
    clearing = clearing if clearing is not None else clearing_for(net.chain, h)
    block, rejected = net.chain.build_block(net.solver, clearing, txs, net.g.slot_start_ms(h))
    assert not rejected, rejected[0][1]
    return block


def add_block(net: Net, txs: list[Tx] = (), clearing=None) -> Connected:
    return net.chain.connect(build(net, list(txs), clearing), now_ms())


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


# ------------------------------------------------------------ 1. throughput
def throughput(net: Net, wl: Workload, n: int) -> list[tuple[str, int, float]]:
    """(stage, transactions, seconds) for each stage over `n` fresh transactions (whole blocks)."""
    g, h = net.g, net.chain.height + 1
    say(f"throughput: signing {n:,} transactions")
    raw = [tx.encoded for tx in wl.txs(n, h, 0.5, FAR_SLOTS)]
    rows = []

    t, decoded = timed(lambda: [decode_tx(r) for r in raw])
    rows.append(("decode (`decode_tx`)", n, t))

    t, _ = timed(lambda: [check_stateless(tx, g.chain_id, g.zones, g.min_fee) for tx in decoded])
    rows.append(("stateless check (`check_stateless`)", n, t))

    block_txs = min(n, g.max_block_txs)
    state = net.chain.state()
    t, _ = timed(lambda: [ledger.apply_tx(state, tx, h, g) for tx in decoded[:block_txs]])
    rows.append((f"stateful apply (`apply_tx`, one overlay of {block_txs:,})", block_txs, t))

    say("throughput: mempool admission")
    node = Node(net.chain, net.solver)
    fresh = [decode_tx(r) for r in raw]
    t, _ = timed(lambda: [node.submit_tx(tx) for tx in fresh])
    rows.append(("mempool admission (`Node.submit_tx`)", n, t))

    total, done = 0.0, 0
    while len(node.mempool):
        say(f"throughput: full block {net.chain.height + 1} ({len(node.mempool):,} in the mempool)")
        clearing = clearing_for(net.chain, net.chain.height + 1)
        candidates = node.mempool.select(g.max_block_txs, node.chain_nonce, consensus_limit=g.max_consensus_txs)
        t, conn = timed(lambda: net.chain.connect(build(net, candidates, clearing), now_ms()))
        node.after_connect(conn)
        total, done = total + t, done + len(conn.block.txs)
    rows.append(("end to end (`build_block` + `connect`, full blocks)", done, total))
    return rows


def print_throughput(rows) -> None:
    print("| stage | txs | s | tx/s | µs/tx |")
    print("|---|---:|---:|---:|---:|")
    for stage, n, t in rows:
        print(f"| {stage} | {n:,} | {t:.3f} | {n / t:,.0f} | {1e6 * t / n:,.1f} |")


# ------------------------------------------------------------ 2. commit time
def commit_times(net: Net, peer: Net, wl: Workload, size: int, reps: int) -> tuple[float, float, float, float]:
    """Medians over `reps` blocks of `size` transactions: build_block, connect of the block by the node that
    built it, connect of the same block by a peer (full validation: signatures, re-execution), and the bytes."""
    builds, own, received, nbytes = [], [], [], []
    for _ in range(reps):
        h = net.chain.height + 1
        txs = wl.txs(size, h, 0.5, FAR_SLOTS)
        clearing = clearing_for(net.chain, h)
        t_build, block = timed(build, net, txs, clearing)
        t_own, _ = timed(net.chain.connect, block, now_ms())
        t_received, _ = timed(peer.chain.connect, decode_block(block.encoded), now_ms())
        builds.append(t_build)
        own.append(t_own)
        received.append(t_received)
        nbytes.append(len(block.encoded))
    return (statistics.median(builds), statistics.median(own), statistics.median(received),
            statistics.median(nbytes))


def follow(peer: Net, net: Net) -> None:
    """Bring `peer` to `net`'s head by connecting its blocks, as a node syncing would."""
    while peer.chain.height < net.chain.height:
        peer.chain.connect(decode_block(net.chain.block_at(peer.chain.height + 1).encoded), now_ms())


def clearing_row(net: Net, wl: Workload, n_bids: int) -> dict:
    """Place `n_bids` bids for one slot, advance to it, then time deriving, solving, building, verifying, connecting."""
    g = net.g
    slot = net.chain.height + 1 + g.gate_closure
    add_block(net, wl.bids_for(n_bids, slot))
    while net.chain.height + 1 < slot:
        add_block(net)
    t_market, (market, pairs) = timed(net.chain.market, slot)
    t_solve, sol = timed(solve_slot, market, pairs, g)
    t_build, block = timed(build, net, [], sol.clearing)
    t_verify, _ = timed(net.chain.check_clearing, slot, block.clearing)
    t_connect, _ = timed(net.chain.connect, block, now_ms())
    return dict(bids=n_bids, pairs=len(pairs), trades=len(block.clearing.trades), method=sol.method, market=t_market,
                solve=t_solve, build=t_build, verify=t_verify, connect=t_connect, bytes=len(block.encoded))


def clearing_rows(net: Net, wl: Workload, n_bids: int, reps: int) -> dict:
    """Medians over `reps` cleared slots of `n_bids` bids."""
    rows = [clearing_row(net, wl, n_bids) for _ in range(reps)]
    return {k: rows[-1][k] if k == "method" else statistics.median(r[k] for r in rows) for k in rows[0]}


def clearing_results(net: Net, wl: Workload, sizes: tuple[int, ...], reps: int) -> list[dict]:
    clearing_row(net, wl, 20)  # unreported warm-up: CVXPY's import and first compile
    out = []
    for n in sizes:
        say(f"clearing: {reps} slots of {n:,} bids")
        out.append(clearing_rows(net, wl, n, reps))
    return out


def print_commit(rows, reps: int) -> None:
    print(f"Block commit time, transactions only (half transfers, half bids); median of {reps} blocks. "
          "connect (own): the node that built the block; connect (received): a peer validating it in full:")
    print()
    print("| txs | block bytes | build_block ms | connect (own) ms | connect (received) ms | received µs/tx |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size, b, own, rec, nbytes in rows:
        per = f"{1e6 * rec / size:,.0f}" if size else "-"
        print(f"| {size:,} | {nbytes:,.0f} | {1e3 * b:,.1f} | {1e3 * own:,.1f} | {1e3 * rec:,.1f} | {per} |")


def print_clearing(results: list[dict], reps: int) -> None:
    print(f"A block clearing its slot (no transactions; bids placed gate-closure blocks earlier); median of {reps} "
          "slots. connect includes the exact re-verification; the slot's market was derived before (cached):")
    print()
    print("| bids | pairs | trades | method | block bytes | derive market + pairs ms | solve_slot ms | build_block ms "
          "| exact verify (check_clearing) ms | connect ms |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['bids']:,.0f} | {r['pairs']:,.0f} | {r['trades']:,.0f} | {r['method']} | {r['bytes']:,.0f} "
              f"| {1e3 * r['market']:,.1f} | {1e3 * r['solve']:,.1f} | {1e3 * r['build']:,.1f} "
              f"| {1e3 * r['verify']:,.1f} | {1e3 * r['connect']:,.1f} |")


# ------------------------------------------------------------- 3. store size
def disk_bytes(path: str) -> tuple[int, int]:
    """(apparent bytes, allocated bytes as `du` counts them) of the files in `path`."""
    files = [e.stat() for e in os.scandir(path) if e.is_file()]
    return sum(s.st_size for s in files), sum(s.st_blocks * 512 for s in files)


def reopened_bytes(net: Net) -> tuple[int, int]:
    """Close the store, reopen it (LevelDB writes its log out as a table) and close again; the size after."""
    net.store.close()
    Store(net.path).close()
    return disk_bytes(net.path)


def grow(g: Genesis, solver: SigningKey, wl: Workload, blocks: int, per_block: int) -> dict:
    """A fresh chain grown by `blocks` blocks of `per_block` transactions, half bids for the next 3-5 slots."""
    net = open_net(g, solver)
    base = reopened_bytes(net)
    net.store = Store(net.path)
    net.chain = Chain(net.store, g)
    txs = trades = chain_bytes = 0
    t0 = time.perf_counter()
    for k in range(blocks):
        if k % 100 == 0:
            say(f"store growth: block {k:,} of {blocks:,}")
        h = net.chain.height + 1
        conn = add_block(net, wl.txs(per_block, h, 0.5, range(g.gate_closure, g.gate_closure + 3)))
        txs += len(conn.block.txs)
        trades += len(conn.block.clearing.trades)
        chain_bytes += len(conn.block.encoded)
    elapsed = time.perf_counter() - t0
    live = disk_bytes(net.path)
    closed = reopened_bytes(net)
    shutil.rmtree(net.path, ignore_errors=True)
    return dict(blocks=blocks, txs=txs, trades=trades, chain_bytes=chain_bytes, base=base, live=live, closed=closed,
                seconds=elapsed)


def print_growth(r: dict) -> None:
    n, txs = r["blocks"], r["txs"]
    print(f"{n:,} blocks of {txs / n:.0f} transactions (half bids), {r['trades'] / n:.1f} trades per block, "
          f"grown in {r['seconds']:.1f} s ({n / r['seconds']:.1f} blocks/s); encoded blocks alone: "
          f"{r['chain_bytes'] * 1000 / n / 1e6:.2f} MB per 1,000 blocks")
    print()
    print("| store | MB per 1,000 blocks | bytes per block | bytes per tx |")
    print("|---|---:|---:|---:|")
    for label, key, idx in (("open, apparent size", "live", 0), ("open, du", "live", 1),
                            ("closed + reopened, apparent size", "closed", 0), ("closed + reopened, du", "closed", 1)):
        grown = r[key][idx] - r["base"][idx]
        print(f"| {label} | {grown * 1000 / n / 1e6:,.2f} | {grown / n:,.0f} | {grown / txs:,.0f} |")


# ----------------------------------------------------------------------- main
def machine() -> str:
    return (f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
            f"plyvel {version('plyvel')}, PyNaCl {version('PyNaCl')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke check in well under a minute")
    args = ap.parse_args()
    sz = QUICK if args.quick else FULL
    rng = random.Random(args.seed)
    users = [SigningKey(rng.randbytes(32)) for _ in range(sz.users)]
    solver = SigningKey(rng.randbytes(32))
    g = make_genesis(users, solver)
    started = time.perf_counter()

    print(f"{machine()}; seed {args.seed}, {sz.users:,} funded users{' (--quick)' if args.quick else ''}")
    print()
    net = open_net(g, solver)
    wl = Workload(users, g, rng)
    try:
        print_throughput(throughput(net, wl, sz.throughput_txs))
        print()
        rows = []
        peer = open_net(g, solver)
        try:
            follow(peer, net)
            for size in sz.block_sizes:
                say(f"commit time: {sz.reps} blocks of {size:,} transactions")
                rows.append((size, *commit_times(net, peer, wl, size, sz.reps)))
        finally:
            peer.close()
        print_commit(rows, sz.reps)
        print()
        print_clearing(clearing_results(net, wl, sz.clearing_bids, sz.reps), sz.reps)
        print()
    finally:
        net.close()
    print_growth(grow(g, solver, Workload(users, g, rng), sz.growth_blocks, sz.growth_txs))
    print()
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
