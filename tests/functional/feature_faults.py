"""The fault campaign of issue 17 in its short form: bench/faults.py's five campaigns, a few of each, fixed seeds.

Real node processes (transx node on private dev chains): kill -9 under load, a full disk on a tmpfs (root),
damaged store files on a stopped node, the wall clock stepped forward and back under libfaketime (apt
`faketime`), a flooding libp2p peer with stalled connections and slow HTTP bodies.  The five run at once
(each on its own node; the longest, the slow bodies' 20-s bound, sets the wall time) and each test waits for
its own.  The long forms and their figures: `python bench/faults.py` (docs/reliability.md).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bench import faults

SEED = 17


class Campaigns:
    """Each campaign started once in a thread of its own; `result(name)` waits for it."""

    def __init__(self, root: Path, wanted: set[str]) -> None:
        self.root, self.results, self.threads = root, {}, {}
        plans = {
            "kill": lambda d: faults.campaign_kill(d, SEED, kills=2, peers=0),
            "disk": lambda d: faults.campaign_disk(d, SEED, fills=1),
            "damage": lambda d: faults.campaign_damage(d, SEED, 1, plan=[
                ("chain/*.log", "truncate"), ("chain/*.ldb", "flip"), ("chain/CURRENT", "truncate"),
                ("chain.head", "flip"), ("chain/MANIFEST-*", "flip"), ("chain/LOG", "flip")],
                slot_seconds=2, txs=10),
            "clock": lambda d: faults.campaign_clock(d, SEED, jumps=1, short=True),
            "hostile": lambda d: faults.campaign_hostile(d, SEED, rounds=1, items=200, stalls=20, slow_clients=6),
        }
        for name, run in plans.items():
            if name not in wanted:
                continue
            (root / name).mkdir()
            t = threading.Thread(target=self._run, args=(name, run), daemon=True)
            self.threads[name] = t
            t.start()

    def _run(self, name, run) -> None:
        try:
            self.results[name] = run(self.root / name)
        except BaseException as e:  # noqa: BLE001 - reported by the campaign's own test
            self.results[name] = e

    def result(self, name: str) -> faults.Result:
        self.threads[name].join(240)
        got = self.results.get(name)
        if isinstance(got, BaseException):
            raise got
        assert got is not None, f"campaign {name} did not finish in 240 s"
        return got


TESTS = {"kill": "test_kill_9", "disk": "test_a_full_disk", "damage": "test_damaged", "clock": "test_clock",
         "hostile": "test_a_flooding"}


@pytest.fixture(scope="module")
def campaigns(request, tmp_path_factory):
    """Only the campaigns whose tests were selected (`-k clock` starts one node, not five)."""
    selected = {item.name for item in request.session.items if item.module is request.module}
    wanted = {c for c, prefix in TESTS.items() if any(n.startswith(prefix) for n in selected)}
    return Campaigns(tmp_path_factory.mktemp("faults"), wanted)


def _clean(r: faults.Result) -> None:
    if r.skipped:
        pytest.skip(r.skipped)
    assert not r.violations, r.table()


def figure(r: faults.Result, what: str) -> str:
    return dict(r.rows)[what]


def test_kill_9_under_load_restarts_whole_and_keeps_every_acknowledged_transaction(campaigns):
    r = campaigns.result("kill")
    _clean(r)
    assert figure(r, "restarted") == "2" and figure(r, "transx check sound") == "2", r.table()
    assert figure(r, "LOST (answered 202, nowhere)") == "0"


def test_a_full_disk_stops_production_loudly_and_resumes_by_itself(campaigns):
    r = campaigns.result("disk")
    _clean(r)
    assert figure(r, "resumed by itself") == "1", r.table()


def test_damaged_store_files_are_refused_in_one_line_or_unused(campaigns):
    r = campaigns.result("damage")
    _clean(r)
    table = r.table()
    for kind in ("chain/*.log", "chain/*.ldb", "chain/CURRENT", "chain.head", "chain/MANIFEST-*"):
        assert figure(r, kind).startswith("0 / 1 / 0 / 0 / 0"), table  # refused, in one line
    assert figure(r, "chain/LOG").startswith("1 / 0"), table  # LevelDB's own info log: damage there is harmless


def test_clock_steps_keep_the_node_producing_and_its_stamps_within_the_drift(campaigns):
    r = campaigns.result("clock")
    _clean(r)


def test_a_flooding_peer_stalled_connections_and_slow_bodies_are_cut_off(campaigns):
    r = campaigns.result("hostile")
    _clean(r)
    assert figure(r, "flooders banned") == "1", r.table()
    assert figure(r, "of them kept longer than the bound") == "0"
