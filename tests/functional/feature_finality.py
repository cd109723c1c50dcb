"""Finality with a byzantine solver among real node processes (issue 12): one of four solvers withholds a
block that double-spends a payment and releases it after the payment's two confirmations.  The honest
nodes' votes stand behind the block they adopted, so the late block loses: the merchant keeps its
payment, no honest node reverts a final block, and all of them agree on every final block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from node_support import wait_for
from transxnode.client.devnet import PASSWORD, Devnet, DevnetNode

HERE = Path(__file__).parent


def get(node: DevnetNode, path: str):
    with urllib.request.urlopen(node.api + path, timeout=10) as r:
        return json.loads(r.read())


class WithAttacker(Devnet):
    """A devnet whose first node runs the byzantine engine (byzantine_node.py), the merchant its second."""

    def start_node(self, n: DevnetNode) -> None:
        if n is not self.nodes[0]:
            return super().start_node(n)
        (n.datadir / "node.json").unlink(missing_ok=True)
        env = {**os.environ, "TRANSX_PASSWORD": PASSWORD}
        log = open(n.datadir / "node.log", "ab")
        n.proc = subprocess.Popen([sys.executable, str(HERE / "byzantine_node.py"), str(n.datadir), self.nodes[1].address],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
        log.close()


def test_a_byzantine_solver_process_cannot_double_spend_a_confirmed_payment(tmp_path):
    net = WithAttacker(tmp_path / "devnet", nodes=4, homes=0, slot_seconds=2, seed=12, say=lambda s: None)
    net.create()
    bad, honest = net.nodes[0], net.nodes[1:]
    report = bad.datadir / "attack.json"
    try:
        net.start(timeout=120)
        finals: dict[int, str] = {}

        def check_finals() -> None:
            """Every final block every honest node reports stays the one first seen final at its height."""
            for n in honest:
                f = get(n, "/api/node")["finalized"]["height"]
                for h in range(max(1, f - 3), f + 1):
                    got = get(n, f"/api/block/{h}")["hash"]
                    assert finals.setdefault(h, got) == got, f"{n.datadir.name} changed final block {h}"

        def released() -> bool:
            check_finals()
            return report.exists() and json.loads(report.read_text())["released"]

        wait_for(released, 150, "the attacker to release its withheld block", interval=1.0)
        attack = json.loads(report.read_text())
        assert attack["withheld"], attack
        after = attack["events"]["released_at"] + 3  # the released block reaches everyone, and loses

        def past_release() -> bool:
            check_finals()
            return min(get(n, "/api/node")["finalized"]["height"] for n in honest) >= after

        wait_for(past_release, 60, "finality past the release on every honest node", interval=0.5)
        for n in honest:
            tx = get(n, f"/api/tx/{attack['payment']}")
            assert tx.get("status") == "included", (n.datadir.name, tx)
            assert get(n, f"/api/block/{tx['height']}")["final"], (n.datadir.name, tx)
            conflict = _status(n, attack["conflict"])
            assert conflict != "included", f"{n.datadir.name} holds the conflicting transfer"
            assert get(n, f"/api/block/{attack['events']['target']}")["hash"] != attack["withheld"]
    finally:
        net.stop()


def _status(n: DevnetNode, tx_hash: str) -> str:
    try:
        return get(n, f"/api/tx/{tx_hash}").get("status", "")
    except urllib.error.HTTPError as e:
        return "unknown" if e.code == 404 else f"HTTP {e.code}"
