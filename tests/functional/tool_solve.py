"""`transx solve` and `transx verify` as a user runs them: real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPT = Path(sys.executable).parent / "transx"
TRANSX = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cli"]


def transx(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*TRANSX, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("market")
    r = transx("solve", "--generate", "40", "--seed", "3", "-o", "market.json", cwd=d)
    assert r.returncode == 0, r.stderr
    return d


def test_solve_prints_trades_returns_and_gap(market):
    r = transx("solve", "market.json", cwd=market)
    assert r.returncode == 0, r.stderr
    assert "seller" in r.stdout and "price/kWh" in r.stdout
    assert "return against the grid" in r.stdout
    assert "certificate gap" in r.stdout


def test_solve_json_then_verify_round_trip(market):
    r = transx("solve", "market.json", "--json", cwd=market)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {"trades", "surplus", "lambda", "mu", "objective", "gap"} <= set(doc)
    assert doc["trades"] and all(set(t) == {"seller", "buyer", "wh", "payment"} for t in doc["trades"])
    # Every participant with a trade gains against the grid-only outcome.
    traded = {t["seller"] for t in doc["trades"]} | {t["buyer"] for t in doc["trades"]}
    assert all(doc["return_vs_grid"][p] > 0 for p in traded)
    (market / "clearing.json").write_text(r.stdout)
    ok = transx("verify", "market.json", "clearing.json", cwd=market)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("valid")

    # One Wh more than the seller has: invalid, exit 1, with the reason.
    inst = json.loads((market / "market.json").read_text())
    t = doc["trades"][0]
    seller = next(s for s in inst["sellers"] if s["id"] == t["seller"])
    sold = sum(x["wh"] for x in doc["trades"] if x["seller"] == t["seller"])
    t["wh"] += seller["wh"] - sold + 1
    (market / "bad.json").write_text(json.dumps(doc))
    bad = transx("verify", "market.json", "bad.json", cwd=market)
    assert bad.returncode == 1
    assert bad.stdout.startswith("invalid:") and t["seller"] in bad.stdout


@pytest.mark.parametrize(
    "content, words",
    [
        ("{not json", "not valid JSON"),
        ('{"grid": {"feed_in": 1, "retail": 2}, "sellers": [], "buyers": [], "colour": 1}', "colour"),
        ('{"grid": {"feed_in": 1, "retail": 2}, "sellers": [{"id": "a", "wh": -5, "price": 1}], "buyers": []}', "sellers[0].wh"),
        ('{"grid": {"feed_in": 1, "retail": 2}, "sellers": [{"id": "a", "wh": 2.5, "price": 1}], "buyers": []}', "sellers[0].wh"),
        ('{"grid": {"feed_in": 1, "retail": 2}, "sellers": [{"id": "a", "wh": 5, "price": 1}], "buyers": [{"id": "a", "wh": 5, "price": 1}]}', "duplicate id"),
        ('{"grid": {"feed_in": 1, "retail": 2}, "sellers": [{"id": "a", "wh": 5, "price": 1, "zone": 3}], "buyers": []}', "zone"),
    ],
)
def test_bad_instance_is_one_line_and_exit_2(tmp_path, content, words):
    (tmp_path / "in.json").write_text(content)
    r = transx("solve", "in.json", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_bad_option_and_missing_file(tmp_path):
    r = transx("solve", "--solver", "gurobi", "x.json", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = transx("solve", "missing.json", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: missing.json: cannot read")


@pytest.mark.parametrize("solver", ["dual", "clarabel"])
def test_a_time_out_is_reported_not_an_empty_market(tmp_path, solver):
    assert transx("solve", "--generate", "1500", "--seed", "1", "-o", "big.json", cwd=tmp_path).returncode == 0
    r = transx("solve", "big.json", "--solver", solver, "--time-limit", "0.001", "--json", cwd=tmp_path)
    assert r.returncode == 1, r.stdout[:200]
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no clearing:") and "time limit" in lines[0], r.stderr


@pytest.mark.parametrize("content", [b"\xff\xfe{}", b"[" * 100_000, b'{"slot": ' + b"9" * 5000 + b"}"])
def test_hostile_files_are_one_line_too(tmp_path, content):
    (tmp_path / "in.json").write_bytes(content)
    r = transx("solve", "in.json", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: in.json"), r.stderr[:300]
