"""The shipped Grafana dashboard against a real Prometheus scraping a real devnet: every PromQL expression
in deploy/grafana/dashboards/transx.json returns data, so the dashboard cannot drift from the metrics."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from node_support import ENV, TRANSX, wait_for
from transxnode.client.devnet import free_ports

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = Path("/usr/bin/prometheus")
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "transx.json"
# Grafana's variables, as literals for Prometheus' own API: a rate window of several 1 s scrapes, every node.
VARIABLES = {"$__rate_interval": "10s", "$__interval": "2s", "$__range": "1m", "$instance": ".*"}

def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, Grafana's variables replaced."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in VARIABLES.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"{panel['title']}: a dashboard variable the test does not know: {expr}"
            out.append((panel["title"], expr))
    return out


def query(prom: str, expr: str) -> list[dict]:
    with urllib.request.urlopen(f"{prom}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=10) as r:
        doc = json.loads(r.read())
    assert doc["status"] == "success", (expr, doc)
    return doc["data"]["result"]


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    """Two nodes with 1 s slots and households that bid; the devnet's directory once both are up."""
    d = tmp_path_factory.mktemp("metrics") / "devnet"
    proc = subprocess.Popen([*TRANSX, "devnet", "--dir", str(d), "--nodes", "2", "--homes", "6", "--slot-seconds",
                             "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    lines: list[str] = []
    try:
        while not any(ln.startswith("slot ") for ln in lines):  # both nodes up, the chain making blocks
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        yield d
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


@pytest.fixture(scope="module")
def prometheus(devnet, tmp_path_factory):
    """Prometheus scraping every node each second, configured by deploy/prometheus/devnet.py; its URL."""
    if not PROMETHEUS.exists():
        pytest.skip("needs Debian's prometheus at /usr/bin/prometheus (make system-deps installs it)")
    tmp = tmp_path_factory.mktemp("prometheus")
    config = subprocess.run([sys.executable, str(ROOT / "deploy" / "prometheus" / "devnet.py"), str(devnet),
                             "--scrape-interval", "1s"], capture_output=True, text=True, check=True).stdout
    (tmp / "prometheus.yml").write_text(config)
    port = free_ports(1)[0]
    proc = subprocess.Popen([str(PROMETHEUS), f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: len(query(url, "up == 1")) == 2, 20, "Prometheus to scrape both nodes")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def test_every_dashboard_query_returns_data_from_a_live_devnet(prometheus):
    queries = dashboard_queries()
    assert len(queries) > 30
    # The nodes have traded and Prometheus holds enough scrapes for the dashboard's rate windows.
    wait_for(lambda: query(prometheus, "transx_energy_cleared_wh_total > 0"), 30, "a slot to clear energy")
    wait_for(lambda: query(prometheus, "count_over_time(transx_height[10s]) >= 4"), 15, "four scrapes of a node")
    empty = [(title, expr) for title, expr in queries if not query(prometheus, expr)]
    assert not empty, "dashboard queries without data:\n" + "\n".join(f"  {t}: {e}" for t, e in empty)
    # And the data is the devnet's: both nodes, on the same network, at the same height within a block or two.
    build = query(prometheus, "transx_build_info")
    assert {s["metric"]["node"] for s in build} == {"node1", "node2"}
    assert {s["metric"]["network"] for s in build} == {"transx-devnet"}
    assert query(prometheus, "sum(transx_gossip_validation_seconds_count) > 0"), "no gossip validation timed"
    # (Two scrapes are never at one instant, and a missed one leaves an older sample: waited for, not read once.)
    heights = lambda: [float(s["value"][1]) for s in query(prometheus, "transx_height")]  # noqa: E731
    wait_for(lambda: (h := heights()) and min(h) >= 1 and max(h) - min(h) <= 2, 15,
             "both nodes' heights within two blocks")


def test_the_devnet_config_names_each_node_and_refuses_a_directory_without_a_devnet(devnet, tmp_path):
    config = subprocess.run([sys.executable, str(ROOT / "deploy" / "prometheus" / "devnet.py"), str(devnet)],
                            capture_output=True, text=True, check=True).stdout
    manifest = json.loads((devnet / "devnet.json").read_text())
    for n in manifest["nodes"]:
        assert n["api"].removeprefix("http://") in config
    assert re.search(r"node: node2$", config, re.MULTILINE)
    r = subprocess.run([sys.executable, str(ROOT / "deploy" / "prometheus" / "devnet.py"), str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "devnet.json" in r.stderr, r.stderr


def test_a_node_serves_its_metrics_alone_on_the_metrics_listen_address(tmp_path):
    """`[metrics] listen` (or --metrics-listen): the same registry on a port of its own, and nothing else there."""
    from node_support import NodeProcess

    node = NodeProcess.init_dev(tmp_path / "node")
    port = free_ports(1)[0]
    with open(node.datadir / "config.toml", "a") as f:
        f.write(f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    node.start()
    try:
        node.wait_height(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        assert re.search(r'^transx_build_info\{network="transx-dev",version="[^"]+"\} 1\.0$', text, re.MULTILINE)
        assert re.search(r"^transx_height [1-9]", text, re.MULTILINE) and "process_cpu_seconds_total" in text
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/node", timeout=10)
        assert e.value.code == 404
        assert f"metrics on http://127.0.0.1:{port}/metrics" in node.log()
    finally:
        node.stop()
