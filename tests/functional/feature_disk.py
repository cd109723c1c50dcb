"""A node on a full disk, and on a damaged data directory (issue 17): a real node on a tmpfs of its own.

Under a steady load of transfers the disk fills: the node stops producing, says why on /api/health and
answers 503 with "kept": false, resumes by itself once space is freed, and after a restart every
transaction it answered 202 is in a block or its mempool, and none it refused is anywhere.
"""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from consensus.rules.keys import decode_address
from consensus.rules.transactions import Transfer, sign_tx
from fault_support import mounted
from node_support import PASSWORD, NodeProcess, transx, wait_for
from transxnode.datadir.config import load_config
from transxnode.datadir.keystore import Keystore

class Load:
    """Transfers from the node's key as fast as the API answers, each at the next nonce the node
    holds; every answer is recorded: (status, kept, hash)."""

    def __init__(self, node: NodeProcess) -> None:
        cfg = load_config(node.datadir)
        self.node, self.key = node, Keystore(cfg.keystore_dir).unlock(cfg.key, PASSWORD)
        info = node.get("/api/node")
        self.chain_id, self.payee = info["chain_id"], decode_address(info["address"])
        self.nonce = node.get(f"/api/address/{cfg.key}")["pending_nonce"]
        self.answers: list[tuple[int, bool | None, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        amount = 1
        while not self.stop.is_set():
            amount += 1  # a new transaction each time: a refused one is never sent again
            tx = sign_tx(self.key, chain_id=self.chain_id, nonce=self.nonce, fee=1000, body=Transfer(self.payee, amount))
            try:
                status, doc = self.node.submit(tx.encoded)
            except OSError:
                time.sleep(0.05)
                continue
            self.answers.append((status, doc.get("kept"), tx.hash.hex()))
            if status == 202:
                self.nonce += 1
            elif status == 422 and doc.get("reason") == "nonce":
                self.nonce = self.node.get(f"/api/address/{load_config(self.node.datadir).key}")["pending_nonce"]
            time.sleep(0.02)


@pytest.fixture
def disk(tmp_path):
    yield from mounted(tmp_path, 24)


@pytest.fixture
def started():
    """Nodes a test starts; whatever it leaves running (a failed assertion) is killed after it."""
    nodes: list[NodeProcess] = []
    yield nodes
    for n in nodes:
        if n.proc is not None and n.proc.poll() is None:
            n.kill()


def test_a_full_disk_stops_production_loudly_and_loses_no_acknowledged_transaction(disk, tmp_path, started):
    node = NodeProcess.init_dev(disk.path / "data")
    started.append(node)
    node.log_path = tmp_path / "node.log"  # the log is not on the disk that fills
    node.start()
    node.wait_height(2)
    load = Load(node)
    load.thread.start()
    wait_for(lambda: sum(s == 202 for s, _, _ in load.answers) >= 10, 30, "transactions accepted")
    disk.fill()
    health = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(node.request("GET", "/api/health")), 30,
                      "/api/health to say the store is failing")
    assert any("write" in p for p in health[1]["problems"]), health
    refused = wait_for(lambda: [a for a in load.answers if a[0] == 503], 30, "a transaction refused with 503")
    assert refused[0][1] is False  # "kept": false, so the client knows to sign it anew
    stalled_at = node.height
    time.sleep(3)
    assert node.height <= stalled_at + 1
    disk.free()
    wait_for(lambda: node.request("GET", "/api/health")[0] == 200, 90, "the node to resume by itself")
    node.wait_height(node.height + 2, timeout=60)
    n = len(load.answers)
    wait_for(lambda: sum(s == 202 for s, _, _ in load.answers[n:]) >= 5, 30, "transactions accepted again")
    load.stop.set()
    load.thread.join(10)
    assert node.stop() == 0
    node.start()
    node.wait_height(node.height + 1, timeout=60)
    statuses = {}
    for status, kept, h in load.answers:
        try:
            statuses[h] = (status, kept, node.get(f"/api/tx/{h}")["status"])
        except OSError:  # 404: not on chain, not pending
            statuses[h] = (status, kept, None)
    lost = [h for h, (s, _, where) in statuses.items() if s == 202 and where not in ("included", "pending")]
    assert not lost, f"{len(lost)} transactions answered 202 were lost"
    twice = [h for h, (s, kept, where) in statuses.items() if s != 202 and kept is False and where is not None]
    assert not twice, f"{len(twice)} transactions answered 'not kept' went in all the same"
    log = node.log()
    assert "Traceback" not in log
    assert sum("not producing" in line for line in log.splitlines()) <= 3  # once, then once a minute
    assert "takes writes again" in log
    node.stop()


def test_check_and_repair_a_damaged_data_directory(tmp_path, started):
    node = NodeProcess.init_dev(tmp_path / "data")
    started.append(node)
    node.start()
    node.wait_height(3)
    assert node.stop() == 0
    r = transx("check", *node.dd)
    assert r.returncode == 0 and "is sound" in r.stdout, r.stdout + r.stderr
    # Lost writes: the chain directory goes missing.  The node refuses to start, in one line.
    chain_dir = node.datadir / "chain"
    shutil.move(str(chain_dir), str(tmp_path / "elsewhere"))
    r = transx("node", *node.dd, timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and "transx repair" in r.stderr, r.stderr
    r = transx("check", *node.dd)
    assert r.returncode != 0 and "DAMAGED" in r.stdout
    shutil.move(str(tmp_path / "elsewhere"), str(chain_dir))
    assert transx("check", *node.dd).returncode == 0
    # Repair keeps the old database aside; the fresh one starts at genesis, and the node runs on it.
    (chain_dir / "CURRENT").unlink()
    r = transx("node", *node.dd, timeout=60)
    assert r.returncode != 0 and "lost its CURRENT file" in r.stderr
    r = transx("repair", "--yes", *node.dd)
    assert r.returncode == 0, r.stderr
    assert any(p.name.startswith("chain.damaged-") for p in node.datadir.iterdir())
    assert "signs no block or vote up to height" in r.stdout  # the old records were unreadable
    node.start()
    wait_for(lambda: node.request("GET", "/api/health")[1]["height"] >= 0, 10, "the API")
    node.stop()
