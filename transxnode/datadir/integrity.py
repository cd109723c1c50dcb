"""`transx check` and `transx repair`: a stopped node's data directory, verified offline and mended.

`check_datadir` reads everything the node keeps (every block linked to its
parent, the money invariant, every database entry's checksum, the mempool
journal, the keystore) and writes nothing.  `repair_datadir` keeps a damaged
chain database aside, starts a fresh one that re-syncs from peers, and carries
over what this node signed (its proposals, commits, last vote) as far as the
old one can be read; where they cannot all be read, it sets a height (the slot
running now) at and below which the node signs nothing, so a repair never
makes a solver equivocate.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import plyvel

from consensus.chain.chain import Chain
from consensus.chain.store import Store, StoreError
from consensus.journal import Journal
from consensus.rules import schema
from consensus.rules.genesis import load_genesis
from transxnode.datadir.config import load_config
from transxnode.datadir.keystore import Keystore, KeystoreError

_LOCAL = (b"mp", b"mc", schema.LAST_VOTE, schema.SIGN_FLOOR)  # what this node signed: carried by a repair


@dataclass
class Report:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_datadir(datadir: str | Path) -> Report:
    """Verify a stopped node's data directory; raises `StoreError` if the node is running on it."""
    cfg = load_config(datadir)
    genesis = load_genesis(str(cfg.genesis_path))
    report = Report()
    chain_dir, mark = cfg.chain_dir, Path(str(cfg.chain_dir) + ".head")
    if not chain_dir.exists() and not mark.exists():
        report.ok.append("chain: none yet (the node has not run here)")
    else:
        try:
            store = Store(str(chain_dir), watermark=True, upgrade=False)  # a check writes nothing
        except StoreError as e:
            if "another node is using" in str(e):
                raise StoreError(f"{e}: stop the node before checking it") from None
            report.problems.append(f"chain: {e}")
        else:
            try:
                report.ok.append(_check_chain(store, genesis))
                if store.format_behind:
                    report.ok.append(f"chain: {store.format_behind}")
            except StoreError as e:
                report.problems.append(f"chain: {e}")
            finally:
                store.close()
    journal = cfg.datadir / "mempool.journal"
    if journal.exists():
        loaded = Journal(journal).read()
        if loaded.damaged:
            report.problems.append(f"mempool journal: {loaded.damaged} ({len(loaded.records)} whole records "
                                   "before it); the node keeps the file aside at start and restores those")
        elif loaded.torn:
            report.problems.append(f"mempool journal: ends in a partial record of {loaded.torn} bytes (a kill "
                                   f"while writing it, or a cut file: records after it may be lost); the node "
                                   f"keeps the file aside at start and restores the {len(loaded.records)} before it")
        else:
            report.ok.append(f"mempool journal: {len(loaded.records)} pending transactions, checksums good")
    keystore = Keystore(cfg.keystore_dir)
    try:
        for address in keystore.addresses():
            keystore.public_key(address)
        report.ok.append(f"keystore: {len(keystore.addresses())} keys readable (the password is not checked)")
    except KeystoreError as e:
        report.problems.append(f"keystore: {e}")
    return report


def _check_chain(store: Store, genesis) -> str:
    if store.get(schema.GENESIS) is None:
        raise StoreError(f"{store.path} holds no chain (no genesis record)")
    chain = Chain(store, genesis)
    chain.check(depth=None)
    keys = sum(1 for _ in store.items(b""))  # every entry read back, its checksum verified
    return (f"chain: {chain.height + 1} blocks linked from genesis to head {chain.head.hash.hex()[:16]}, "
            f"money adds up, {keys} entries with good checksums")


def repair_datadir(datadir: str | Path, now_ms: int | None = None) -> tuple[Path, int, int]:
    """Keep the chain database aside and start a fresh one; returns (where the old one is, how many
    signing records were carried over, the height up to which this node will sign nothing)."""
    cfg = load_config(datadir)
    genesis = load_genesis(str(cfg.genesis_path))
    chain_dir, mark = cfg.chain_dir, Path(str(cfg.chain_dir) + ".head")
    local, complete = _read_local(chain_dir)  # raises StoreError if a node runs here
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = chain_dir.with_name(f"{chain_dir.name}.damaged-{stamp}")
    if chain_dir.exists():
        chain_dir.rename(aside)
    else:
        aside.mkdir()
    if mark.exists():
        shutil.move(str(mark), aside / "watermark.head")
    floor = 0
    if not complete:  # whatever was signed before the repair was for a height up to the slot now running
        now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        floor = max(0, (now_ms // 1000 - genesis.timestamp) // genesis.slot_seconds)
    old_floor = local.get(schema.SIGN_FLOOR)
    if old_floor is not None:
        floor = max(floor, schema.read_u64(old_floor))
    store = Store(str(chain_dir), watermark=True)
    try:
        Chain(store, genesis)
        for key, value in local.items():
            if key != schema.SIGN_FLOOR:
                store.put_local(key, value)
        store.put_local(schema.SIGN_FLOOR, schema.u64(floor))
    finally:
        store.close()
    return aside, len([k for k in local if k != schema.SIGN_FLOOR]), floor


def _read_local(chain_dir: Path) -> tuple[dict[bytes, bytes], bool]:
    """This node's signing records, read from a damaged database as far as they can be; and whether
    all of them could be read with good checksums (else the signing floor must cover the rest)."""
    if not chain_dir.exists():
        return {}, False
    if not (chain_dir / "CURRENT").exists():
        return {}, False
    try:
        db = plyvel.DB(str(chain_dir), paranoid_checks=False)
    except plyvel.IOError as e:
        text = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        if text.startswith("IO error: lock "):
            raise StoreError(f"another node is using the data directory {chain_dir}: stop it first") from None
        return {}, False
    except plyvel.Error:
        return {}, False
    out: dict[bytes, bytes] = {}
    complete = True
    try:
        for prefix in _LOCAL:
            try:
                for k, v in db.iterator(prefix=prefix, verify_checksums=True):
                    out[k] = v
            except plyvel.Error:
                complete = False  # that part is unreadable: the signing floor covers it
    finally:
        db.close()
    return out, complete
