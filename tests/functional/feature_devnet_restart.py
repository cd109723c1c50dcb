"""`transx devnet` through a node's restart (issue 17, item 6): node 1 is killed (-9) and started again by
hand; the driver says so, reads on from node 2 meanwhile, says when node 1 answers again, and stops only on
Ctrl-C.  It used to exit as soon as node 1 stopped answering."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time

from node_support import ENV, TRANSX


def test_the_devnet_survives_node_1_being_killed_and_restarted(tmp_path):
    d = tmp_path / "devnet"
    proc = subprocess.Popen([*TRANSX, "devnet", "--dir", str(d), "--nodes", "2", "--homes", "2", "--slot-seconds", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    lines: list[str] = []
    fresh: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            fresh.put(line)

    threading.Thread(target=read, daemon=True).start()

    def expect(test, seconds: float, what: str) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = fresh.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if test(line):
                return line
        raise AssertionError(f"no {what} in {seconds} s:\n{''.join(lines)}")

    restarted = None
    try:
        expect(lambda ln: ln.startswith("slot "), 40, "slot line")
        node1 = d / "node1"
        os.kill(json.loads((node1 / "node.json").read_text())["pid"], signal.SIGKILL)
        expect(lambda ln: ln.startswith("node node1 stopped answering"), 15, "word of node 1")
        expect(lambda ln: ln.startswith("slot "), 15, "slot line from node 2")  # the driver goes on
        # An operator starts it again by hand (its config names the devnet's password file).
        with open(node1 / "node.log", "ab") as log:
            restarted = subprocess.Popen([*TRANSX, "node", "--datadir", str(node1)], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL,
                                         env={k: v for k, v in ENV.items() if k != "TRANSX_PASSWORD"})
        back = expect(lambda ln: ln.startswith("node node1 answers again at http://127.0.0.1:"), 60, "node 1 back")
        assert proc.poll() is None, "".join(lines)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        finally:
            if restarted is not None:
                restarted.send_signal(signal.SIGINT)
                restarted.wait(30)
    said = "".join(lines)
    assert proc.returncode == 0, said
    assert said.count("stopped answering") == 1 and said.count("answers again") == 1, said
    assert "reading the chain from node node2" in said, said
    assert json.loads((d / "devnet.json").read_text())["nodes"][0]["api"] == back.split(" at ")[1].split()[0]
