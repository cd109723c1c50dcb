"""deploy/ against the code: the service files name real settings with valid values, install as CI installs,
and agree with each other on ports (the kit cannot drift from the node it runs)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transxnode.datadir.config import OVERRIDES, Config, load_config, overrides_from, write_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "transx-node.service"
# TRANSX_* names in deploy/ that are not node settings: the data directory, and compose's own variable for
# the password file it mounts as a secret.
NOT_SETTINGS = {"TRANSX_DATADIR", "TRANSX_PASSWORD_FILE"}


def _port(address: str) -> int:
    return int(re.search(r"(?::|/tcp/)(\d+)$", address).group(1))


def test_every_transx_variable_in_deploy_is_a_setting_the_node_reads():
    known = {var for var, _ in OVERRIDES.values()} | NOT_SETTINGS
    for path in (DEPLOY / "Dockerfile", DEPLOY / "docker-compose.yml", UNIT, DEPLOY / "README.md"):
        named = set(re.findall(r"\bTRANSX_[A-Z0-9_]+", path.read_text()))
        assert named <= known, f"{path.name} names {sorted(named - known)}, which no node reads"


def test_the_image_exposes_the_ports_its_settings_give_the_node(tmp_path):
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    env = dict(re.findall(r"\b(TRANSX_[A-Z0-9_]+)=(\S+)", dockerfile))
    write_config(Config(tmp_path, key="trx1example"))
    cfg = load_config(tmp_path, overrides_from(env, {}))  # the image's values pass the node's own checks
    exposed = {int(p) for p in re.search(r"^EXPOSE ([\d ]+)$", dockerfile, re.MULTILINE).group(1).split()}
    assert exposed == {_port(cfg.api_listen), _port(cfg.p2p_listen), _port(cfg.metrics_listen)}
    assert cfg.api_listen.startswith("0.0.0.0:")  # else a published port reaches nothing


def test_the_image_installs_as_ci_does():
    """.ci/run's wheel steps are the Dockerfile's: what CI tests is what the image runs."""
    ci, dockerfile = (ROOT / ".ci" / "run").read_text(), (DEPLOY / "Dockerfile").read_text()
    for step in ("pip wheel --no-deps --no-build-isolation", "transx-*.whl)[nfc]"):
        assert step in ci and step in dockerfile, step


def test_compose_mounts_files_that_exist_and_prometheus_scrapes_the_nodes_metrics_port(tmp_path):
    compose = (DEPLOY / "docker-compose.yml").read_text()
    for source in re.findall(r"^\s+- (\./[^:]+):", compose, re.MULTILINE):
        assert (DEPLOY / source).exists(), source
    env = dict(re.findall(r'^\s+(TRANSX_[A-Z0-9_]+): "([^"$]+)"', compose, re.MULTILINE))
    write_config(Config(tmp_path, key="trx1example"))
    cfg = load_config(tmp_path, overrides_from(env, {}))
    targets = re.findall(r'targets: \["node:(\d+)"\]', (DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert targets == [str(_port(cfg.metrics_listen))]
    assert f'"127.0.0.1:{_port(cfg.api_listen)}:{_port(cfg.api_listen)}"' in compose  # the API: this host only


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_unit_verifies(tmp_path):
    """systemd-analyze accepts every line (an unknown or misplaced key is reported), with ExecStart pointed
    at this checkout's transx since /opt/transx is not installed here."""
    transx = shutil.which("transx", path=str(Path(sys.executable).parent))
    if transx is None:
        pytest.skip("no transx script beside this Python")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/transx/bin/transx", transx))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
