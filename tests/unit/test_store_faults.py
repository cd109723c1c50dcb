"""The store and the journal on a bad day: a full disk, damaged files, a read-only mount (issue 17).

Real LevelDB on a real tmpfs that the tests fill and free; real damage done to the files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chain_support import Net
from consensus.chain.chain import Chain
from consensus.chain.store import Store, StoreCorrupt, StoreError, StoreWriteError
from consensus.journal import Journal, JournalError
from fault_support import disk as disk, flip_byte  # disk: a fixture


def _reopen(net: Net, path: str) -> Chain:
    net.close()
    net.store = Store(path, watermark=True)
    net.chain = Chain(net.store, net.g)
    return net.chain


def test_a_failed_block_write_holds_the_store_until_it_is_reopened(disk):
    path = str(disk.path / "db")
    net = Net(path, watermark=True)
    net.produce_until(2)
    disk.fill()
    with pytest.raises(StoreWriteError, match="No space left"):
        net.produce()
    assert net.height == 2
    disk.free()
    # LevelDB's log may end in a torn record: a write appended behind it would be lost at the next
    # open, so none is taken before the store is reopened.
    with pytest.raises(StoreWriteError):
        net.produce()
    assert net.store.recover()
    net.chain.reload()
    net.produce_until(4)
    chain = _reopen(net, path)
    assert chain.height == 4
    chain.check(depth=None)
    net.close()


def test_recover_keeps_trying_while_the_disk_is_full(disk):
    path = str(disk.path / "db")
    net = Net(path, watermark=True)
    net.produce_until(1)
    disk.fill()
    with pytest.raises(StoreWriteError):
        net.produce_until(30)  # enough writes to need a new log file or a compaction
    assert net.store.unwritable
    assert not net.store.recover() or net.store.unwritable is None  # reopening may itself need space
    disk.free()
    assert net.store.recover()
    net.chain.reload()
    net.produce()
    net.chain.check(depth=None)
    net.close()


def test_a_failed_journal_append_is_cut_off_and_later_records_are_kept(disk):
    j = Journal(disk.path / "mempool.journal")
    for i in range(3):
        j.append(bytes([i]) * 100)
    size = (disk.path / "mempool.journal").stat().st_size
    disk.fill()
    with pytest.raises(JournalError, match="No space left"):
        j.append(b"x" * 50_000)
    assert (disk.path / "mempool.journal").stat().st_size == size
    disk.free()
    j.append(b"after1")
    j.append(b"after2")
    assert Journal(disk.path / "mempool.journal").load()[-2:] == [b"after1", b"after2"]
    assert len(Journal(disk.path / "mempool.journal").load()) == 5
    j.close()


def test_a_journal_that_cannot_be_written_refuses_the_transaction_and_keeps_none(disk, tmp_path):
    net = Net(str(tmp_path / "db"))
    net.node.journal = Journal(disk.path / "mempool.journal")
    from consensus.rules.transactions import Transfer
    from chain_support import addr
    disk.fill()
    tx = net.tx(net.users[0], Transfer(addr(net.users[1]), 5))
    with pytest.raises(JournalError):
        net.node.submit_tx(tx)
    assert tx.hash not in net.node.mempool
    disk.free()
    net.node.submit_tx(tx)
    assert tx.hash in net.node.mempool
    net.close()


# ------------------------------------------------------------------ damage
def _chain(tmp_path: Path, blocks: int = 4) -> tuple[Net, str]:
    path = str(tmp_path / "db")
    net = Net(path, watermark=True)
    net.produce_until(blocks)
    return net, path


def test_a_lost_current_file_is_refused_not_recreated(tmp_path):
    net, path = _chain(tmp_path)
    net.close()
    (Path(path) / "CURRENT").unlink()
    with pytest.raises(StoreCorrupt, match="lost its CURRENT file.*transx repair"):
        Store(path, watermark=True)
    assert not (Path(path) / "CURRENT").exists()


def test_a_deleted_chain_database_is_refused_when_the_node_had_one(tmp_path):
    net, path = _chain(tmp_path)
    net.close()
    shutil.rmtree(path)
    with pytest.raises(StoreCorrupt, match="missing or empty, but this node wrote block 4"):
        Store(path, watermark=True)


def test_a_truncated_log_that_lost_blocks_is_refused(tmp_path):
    net, path = _chain(tmp_path, 6)
    net.close()
    (log,) = Path(path).glob("*.log")
    data = log.read_bytes()
    log.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(StoreCorrupt):  # lost writes, or a torn record the paranoid open refuses
        Chain(Store(path, watermark=True), net.g).check()


def test_a_flipped_bit_in_a_table_is_caught_on_read(tmp_path):
    net, path = _chain(tmp_path, 6)
    net.store.db.compact_range()  # the data into table files
    net.close()
    tables = sorted(Path(path).glob("*.ldb"), key=lambda p: p.stat().st_size)
    flip_byte(tables[-1], tables[-1].stat().st_size // 3)
    with pytest.raises(StoreCorrupt, match="damaged"):
        store = Store(path, watermark=True)
        Chain(store, net.g).check(depth=None)
        list(store.items(b""))


def test_a_read_only_data_directory_is_named_as_such(disk):
    path = str(disk.path / "db")
    Net(path).close()
    disk.read_only(True)
    try:
        with pytest.raises(StoreError, match="read-only file system") as e:
            Store(path)
        assert "another node" not in str(e.value)
    finally:
        disk.read_only(False)


def test_a_node_already_running_is_named_as_such(tmp_path):
    net, path = _chain(tmp_path, 1)
    with pytest.raises(StoreError, match="another node is using"):
        Store(path)
    net.close()


# ------------------------------------------------------- outages and exits
def test_peoples_networks_get_a_reveal_window_that_outlasts_a_restart_and_exits_wait_for_forfeits():
    from consensus.rules import genesis as G

    for slot in (1, 2, 5, 60, 3600):
        g = G.genesis_from_json(G.dev_genesis([bytes(20)], [bytes(20)], slot_seconds=slot, outage_proof=True))
        assert g.reveal_window * g.slot_seconds >= G.OUTAGE_SECONDS or g.reveal_window == 10_000
        # A solver that commits and then withdraws is still bonded when its last commit can forfeit.
        assert g.withdrawal_delay >= g.commit_window + g.reveal_window + 1
    doc = G.dev_genesis([bytes(20)], [bytes(20)], slot_seconds=2)
    doc["withdrawal_delay"] = doc["finality_depth"]  # the old default: an exit could outrun a forfeit
    with pytest.raises(G.GenesisError, match="withdrawal_delay"):
        G.genesis_from_json(doc)


# ------------------------------------------------------------ the journal
def _journal_with_transfers(tmp_path, n: int = 4):
    from chain_support import addr
    from consensus.rules.transactions import Transfer

    net = Net(str(tmp_path / "db"))
    net.node.journal = Journal(tmp_path / "mempool.journal")
    txs = [net.submit(net.users[0], Transfer(addr(net.users[1]), 5 + k)) for k in range(n)]
    net.node.journal.close()
    return net, txs


@pytest.mark.parametrize("damage", ["flip", "cut"])
def test_a_damaged_journal_is_kept_aside_with_a_warning_not_compacted_away(tmp_path, caplog, damage):
    from consensus.node import Node

    net, txs = _journal_with_transfers(tmp_path)
    path = tmp_path / "mempool.journal"
    size = path.stat().st_size
    if damage == "flip":
        flip_byte(path, size * 3 // 4)
    else:
        path.write_bytes(path.read_bytes()[: size * 3 // 4])
    with caplog.at_level("WARNING", "transx.node"):
        node = Node(net.chain, net.solver_key, journal=Journal(path))
    assert "mempool journal" in caplog.text and "kept as" in caplog.text
    (aside,) = tmp_path.glob("mempool.journal.damaged-*")
    assert aside.stat().st_size == (size if damage == "flip" else size * 3 // 4)  # the file as it was
    restored = [t for t in txs if t.hash in node.mempool]
    assert 0 < len(restored) < len(txs)  # the records before the damage
    assert Journal(path).read().damaged is None and Journal(path).read().torn == 0
    net.close()


def test_a_truncated_table_is_named_as_damage_with_what_to_do(tmp_path):
    net, path = _chain(tmp_path, 6)
    net.store.db.compact_range()
    net.close()
    for table in Path(path).glob("*.ldb"):
        table.write_bytes(table.read_bytes()[:50])
    with pytest.raises(StoreCorrupt, match="damaged.*transx repair"):
        store = Store(path, watermark=True)
        Chain(store, net.g).check(depth=None)
        list(store.items(b""))


def test_health_says_when_the_clock_is_behind_the_chain_and_when_the_store_cannot_be_written(tmp_path):
    from transxnode.health import health

    net, _ = _chain(tmp_path, 3)
    status, doc = health(net.chain, now_ms=lambda: net.g.slot_start_ms(3) + 100)
    assert status == 200 and doc["problems"] == []
    status, doc = health(net.chain, now_ms=lambda: net.g.slot_start_ms(3) - 62_000)  # stepped back 62 s
    assert status == 503 and any("clock is 62 s behind" in p for p in doc["problems"])
    net.store.unwritable = "cannot write the chain database: No space left on device"
    status, doc = health(net.chain, now_ms=lambda: net.g.slot_start_ms(3) + 100)
    assert status == 503 and not doc["store_writable"]
    net.store.unwritable = None
    net.close()
