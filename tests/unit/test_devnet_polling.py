"""The devnet driver's view of its nodes (issue 17, item 6): a node that stops answering is said once and
asked again, said again when it answers (at the API its node.json gives then), the chain read from another
node meanwhile; the driver gives up only when every node is gone for good.  The nodes are real processes:
small HTTP servers that answer /api/node and write node.json as a node does (the real ones take seconds to
start: tests/functional/feature_devnet_restart.py runs those)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from transxnode.client.devnet import POLL_SECONDS, Devnet, DevnetError, DevnetNode

FAKE_NODE = r"""
import http.server, json, os, sys
datadir, height = sys.argv[1], int(sys.argv[2])
class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"height": height, "chain_id": "transx-devnet"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Api)
tmp = os.path.join(datadir, "node.json.tmp")
with open(tmp, "w") as f:
    json.dump({"api": f"http://127.0.0.1:{server.server_port}", "pid": os.getpid()}, f)
os.replace(tmp, os.path.join(datadir, "node.json"))
server.serve_forever()
"""


def start_fake(datadir: Path, height: int) -> tuple[subprocess.Popen, str]:
    """A node process that answers /api/node with `height` once its node.json is written: (process, api)."""
    (datadir / "node.json").unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", FAKE_NODE, str(datadir), str(height)])
    deadline = time.monotonic() + 10
    while not (datadir / "node.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the fake node did not start"
        time.sleep(0.01)
    return proc, json.loads((datadir / "node.json").read_text())["api"]


def kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


@pytest.fixture
def devnet(tmp_path):
    """A devnet driver over two fake node processes (heights 10 and 20); the processes it leaves running
    are stopped afterwards."""
    said: list[str] = []
    net = Devnet(tmp_path / "devnet", nodes=2, homes=0, say=said.append, gone_after=0.5)
    net.dir.mkdir()
    procs = []
    for k, height in enumerate((10, 20)):
        d = net.dir / f"node{k + 1}"
        d.mkdir()
        proc, api = start_fake(d, height)
        procs.append(proc)
        net.nodes.append(DevnetNode(d, f"addr{k}", proc=proc, api=api))
    net._read_from(0)
    yield net, said, procs
    for p in procs:
        if p.poll() is None:
            kill(p)


def test_a_node_that_stops_answering_is_said_once_and_again_when_it_is_back(devnet):
    net, said, procs = devnet
    assert net.answering()["height"] == 10 and not said
    node1 = net.nodes[0]
    kill(procs[0])
    for _ in range(3):  # asked several times: said once
        assert net.answering()["height"] == 20  # read from node 2 meanwhile
    assert [s for s in said if "stopped answering" in s] == [
        f"node node1 stopped answering at {node1.api} (its process exited; see {node1.datadir / 'node.log'}); "
        "asking it again every second"], said
    assert said.count("reading the chain from node node2") == 1 and net.client.url == net.nodes[1].api
    assert list(net.down) == [0]

    # Restarted by hand (not by the driver), on another port.
    proc, api = start_fake(node1.datadir, 11)
    procs.append(proc)
    deadline = time.monotonic() + 3 * POLL_SECONDS + 2
    while 0 in net.down and time.monotonic() < deadline:
        net.answering()
        time.sleep(0.05)
    assert not net.down and node1.api == api
    assert [s for s in said if "answers again" in s] == [f"node node1 answers again at {api} (height 11)"], said
    assert json.loads((net.dir / "devnet.json").read_text())["nodes"][0]["api"] == api  # the manifest follows
    assert net.answering()["height"] == 20  # and reading goes on from node 2


def test_the_driver_gives_up_only_when_every_node_is_gone_for_good(devnet):
    net, said, procs = devnet
    for p in procs:
        kill(p)
    t0 = time.monotonic()
    with pytest.raises(DevnetError, match="every node has stopped"):
        net.answering()
    assert time.monotonic() - t0 < net.gone_after + 2
    assert said.count("no node answers; asking them again every second (Ctrl-C stops)") == 1, said
    assert sum("stopped answering" in s for s in said) == 2


def test_a_node_restarting_by_hand_keeps_the_driver_waiting(devnet):
    """Every node silent, but one runs (restarted by hand: its process is up, its API not yet): the driver
    waits past `gone_after` and reads on from it once it answers."""
    net, said, procs = devnet
    for p in procs:
        kill(p)
    node2 = net.nodes[1]
    starting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    procs.append(starting)
    (node2.datadir / "node.json").write_text(json.dumps({"api": "http://127.0.0.1:1", "pid": starting.pid}))
    got: list = []
    t = threading.Thread(target=lambda: got.append(net.answering()), daemon=True)
    t.start()
    t.join(net.gone_after + 1.5)
    assert t.is_alive() and not got, got  # still waiting, no DevnetError
    kill(starting)
    proc, api = start_fake(node2.datadir, 21)
    procs.append(proc)
    t.join(3 * POLL_SECONDS + 3)
    assert got and got[0]["height"] == 21 and net.client.url == api, (got, said)
    assert f"node node2 answers again at {api} (height 21)" in said
