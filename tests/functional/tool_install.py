"""TransX as a pip user gets it: a wheel built from this tree, installed apart from the source tree,
joins the network of its shipped genesis with `transx init` (no --dev) and tells its version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel, unpacked by pip into a directory of its own (its dependencies are this venv's)."""
    out = tmp_path_factory.mktemp("wheel")
    tree = out / "tree"  # a copy: building writes build/ and egg-info beside the sources
    shutil.copytree(ROOT, tree, symlinks=True, ignore=shutil.ignore_patterns(".git", ".venv", "devnet", "__pycache__",
                                                                             "*.egg-info", "build"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(tree)], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("transx-*.whl")
    target = out / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return wheel, target


def _transx(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # From an empty directory with the install first on the path: nothing of the source tree is importable.
    env = {**os.environ, "PYTHONPATH": str(target), "TRANSX_PASSWORD": "correct horse battery staple"}
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_wheel_carries_the_genesis_and_the_explorer_page(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "transxnode/datadir/genesis.json" in names
    assert "transxnode/api/static/explorer.html" in names
    assert "cli.py" in names and any(n.startswith("transx_cli/") for n in names)


def test_an_installed_transx_inits_on_the_shipped_network_and_tells_its_version(installed, tmp_path):
    _, target = installed
    probe = subprocess.run([sys.executable, "-c", "import transxnode; print(transxnode.__file__)"], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True, text=True)
    assert probe.stdout.startswith(str(target)), probe  # the installed copy, not the source tree
    r = _transx(target, tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.strip().startswith("transx "), r
    assert _transx(target, tmp_path, "--help").returncode == 0
    r = _transx(target, tmp_path, "init", "--datadir", str(tmp_path / "node"))
    assert r.returncode == 0, r.stderr
    assert "network   transx-1 " in r.stdout, r.stdout
    shipped = json.loads((ROOT / "genesis.json").read_text())
    assert json.loads((tmp_path / "node" / "genesis.json").read_text()) == shipped
