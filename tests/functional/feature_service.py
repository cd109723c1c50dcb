"""`transx node` as a service runs it: run-time overrides from flags and the environment, JSON log lines in
a file, `transx config show` reporting the effective config, and bad settings refused in one line, exit 2,
before anything starts.  The node and the solver run without writable executable memory, as the systemd
unit's MemoryDenyWriteExecute=yes demands (deploy/systemd/transx-node.service)."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from datetime import datetime

import pytest

from node_support import ENV, TRANSX, NodeProcess, transx, transx_many, wait_for

def deny_write_execute() -> None:
    """prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) (Linux 6.3+): the kernel's own form of systemd's
    MemoryDenyWriteExecute=yes, kept across exec; for a child process, before it execs transx."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def _kernel_denies_write_execute() -> bool:
    try:
        return subprocess.run(["true"], preexec_fn=deny_write_execute).returncode == 0
    except subprocess.SubprocessError:
        return False


MDWE = _kernel_denies_write_execute()
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"
# what a service file or container sets: the environment, under the flags
SERVICE_ENV = {"TRANSX_P2P_LISTEN": "/ip4/127.0.0.1/tcp/0", "TRANSX_LOG_FORMAT": "text", "TRANSX_LOG_LEVEL": "info"}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A dev node started as a unit file would: --log-format json (over $TRANSX_LOG_FORMAT=text), a log file,
    the API on a free port, p2p on loopback from $TRANSX_P2P_LISTEN; no writable executable memory (when the
    kernel can deny it)."""
    tmp = tmp_path_factory.mktemp("service")
    node = NodeProcess.init_dev(tmp / "node")
    log_file = tmp / "node.jsonl"
    flags = ["--log-format", "json", "--log-file", str(log_file), "--api-listen", "127.0.0.1:0"]
    with open(node.log_path, "w") as out:
        node.proc = subprocess.Popen([*TRANSX, "node", *node.dd, *flags], stdout=out, stderr=subprocess.STDOUT,
                                     env={**ENV, **SERVICE_ENV}, preexec_fn=deny_write_execute if MDWE else None)
    wait_for(lambda: (node.datadir / "node.json").exists() or node.proc.poll() is not None, 60, "node start")
    assert node.proc.poll() is None, node.log()
    yield node, log_file, flags
    assert node.stop() == 0


def test_the_node_serves_and_logs_json_lines_to_its_file(service):
    node, log_file, _ = service
    node.wait_height(2)
    assert all(a.startswith("/ip4/127.0.0.1/") for a in node.get("/api/node")["p2p"])  # $TRANSX_P2P_LISTEN
    records = [json.loads(line) for line in log_file.read_text().splitlines()]  # every line is one JSON object
    assert records and all(re.fullmatch(ISO, r["time"]) and r["level"] and r["logger"] for r in records)
    assert any(r["logger"] == "transx.node" and r["message"] == f"API and explorer on {node.api}/" for r in records)
    assert all(datetime.fromisoformat(r["time"]).utcoffset() is not None for r in records)
    assert node.log() == ""  # with a log file, nothing goes to stderr


def test_config_show_reports_the_overrides_and_where_they_came_from(service):
    node, log_file, flags = service
    r = subprocess.run([*TRANSX, "config", "show", *node.dd, *flags, "--json"], capture_output=True, text=True,
                       env={**ENV, **SERVICE_ENV}, timeout=60)
    doc = json.loads(r.stdout)
    cfg, src = doc["config"], doc["sources"]
    assert (cfg["log_format"], src["log_format"]) == ("json", "--log-format")  # the flag over the environment
    assert (cfg["log_file"], src["log_file"]) == (str(log_file), "--log-file")
    assert (cfg["api_listen"], src["api_listen"]) == ("127.0.0.1:0", "--api-listen")
    assert (cfg["p2p_listen"], src["p2p_listen"]) == ("/ip4/127.0.0.1/tcp/0", "$TRANSX_P2P_LISTEN")
    assert (cfg["log_level"], src["log_level"]) == ("info", "$TRANSX_LOG_LEVEL")
    assert (cfg["max_peers"], src["max_peers"]) == (32, "config.toml")
    assert (cfg["metrics_listen"], src["metrics_listen"]) == (None, "default")


def test_bad_settings_are_one_line_and_exit_2_before_anything_starts(service, tmp_path):
    node, _, _ = service
    # two stopped nodes: the running one's key, genesis and config (not its chain, which it is writing)
    idle, typo = NodeProcess(tmp_path / "idle"), NodeProcess(tmp_path / "typo")
    for d in (idle, typo):
        shutil.copytree(node.datadir, d.datadir, ignore=shutil.ignore_patterns("chain*", "node.json", "mempool.*"))
    cfg = typo.datadir / "config.toml"
    cfg.write_text(cfg.read_text().replace("[p2p]\n", "[p2p]\nmax_peer = 8\n"))
    busy = node.api.rpartition("/")[2]  # the running node's API port: taken
    cases = [
        (typo.dd, f"{cfg}: unknown key [p2p] max_peer"),
        (idle.dd + ["--api-listen", "127.0.0.1:99999"], "--api-listen must be HOST:PORT with a port in 0..65535"),
        (idle.dd + ["--log-file", str(tmp_path / "no" / "node.log")], f"cannot write the log file {tmp_path}/no/"),
        (idle.dd + ["--metrics-listen", busy, "--api-listen", "127.0.0.1:0"], f"cannot listen on {busy} for metrics"),
    ]
    results = transx_many([("node", *args) for args, _ in cases])
    env_bad = subprocess.run([*TRANSX, "node", *idle.dd], capture_output=True, text=True, timeout=60,
                             env={**ENV, "TRANSX_LOG_FORMAT": "xml"})
    for (args, said), r in [*zip(cases, results), ((idle.dd, "$TRANSX_LOG_FORMAT must be one of text, json"),
                                                   env_bad)]:
        assert r.returncode == 2 and r.stdout == "", (args, r)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and said in r.stderr, (args, r.stderr)
    for d in (idle.datadir, typo.datadir):
        assert not (d / "node.json").exists()  # nothing started
    assert not (tmp_path / "no").exists()


@pytest.mark.skipif(not MDWE, reason="this kernel has no prctl(PR_SET_MDWE) (Linux 6.3+)")
def test_the_solver_runs_without_writable_executable_memory(tmp_path):
    """The node's heaviest native code (cvxpy's Clarabel, scipy's HiGHS for --report) under the unit's rule."""
    market = tmp_path / "market.json"
    transx("solve", "--generate", "40", "--seed", "3", "-o", str(market), check=True)
    r = subprocess.run([*TRANSX, "solve", str(market), "--report", "--json"], capture_output=True, text=True,
                       env=ENV, timeout=120, preexec_fn=deny_write_execute)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["trades"]
