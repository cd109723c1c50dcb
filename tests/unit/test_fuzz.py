"""The fuzz targets (fuzz/, issue 17), each for a few hundred to a few thousand inputs with a fixed seed:
the short form of the long runs fuzz/README.md records.

With atheris installed (`pip install -e '.[fuzz]'`) each target runs coverage-guided in its own process
(`python -m fuzz.<target> -atheris_runs=N -seed=1`, two at a time); without it, in this process, the
corpus is replayed and then mutated by a seeded random generator (`fuzz.harness.replay`): the same
entry points and checks, no coverage feedback.  A failure names the input, in hex, that causes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fuzz import harness

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# Inputs per target (the corpus counts): 6,300 in all (fuzz/README.md has the times).
RUNS = {"codec": 2_000, "tx": 1_200, "block": 600, "verifier": 1_200, "gossip": 500, "http": 500, "proposal": 300}
SEED = 1


def _atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return not os.environ.get("TRANSX_FUZZ_NO_ATHERIS")


def _under_atheris(name: str, work: Path) -> subprocess.CompletedProcess:
    corpus = work / name
    corpus.mkdir(parents=True)
    return subprocess.run([sys.executable, "-m", f"fuzz.{name}", f"-atheris_runs={RUNS[name]}", f"-seed={SEED}",
                           f"-artifact_prefix={work}/", str(corpus), str(harness.CORPUS / name)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def atheris_runs(tmp_path_factory):
    """Every target's run under atheris, two processes at a time (None without atheris)."""
    if not _atheris():
        return None
    work = tmp_path_factory.mktemp("fuzz")
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(harness.TARGETS, pool.map(lambda n: _under_atheris(n, work), harness.TARGETS)))


@pytest.mark.parametrize("name", harness.TARGETS)
def test_target_handles_its_corpus_and_mutations_of_it(name, atheris_runs, tmp_path):
    assert harness.corpus(name), f"fuzz/corpus/{name} is empty: run python -m fuzz.seeds"
    if atheris_runs is not None:
        r = atheris_runs[name]
        assert r.returncode == 0, f"fuzz.{name} failed under atheris:\n{r.stderr[-6000:]}"
        assert f"Done {RUNS[name]} " in r.stderr, r.stderr[-2000:]
        return
    world, one_input = harness.build(name, str(tmp_path))
    try:
        assert harness.replay(name, one_input, harness.corpus(name), RUNS[name], SEED) == RUNS[name]
    finally:
        world.close()


def test_replay_and_mutations_are_deterministic():
    import random

    pool = harness.corpus("codec")[:20]
    a, b = random.Random(SEED), random.Random(SEED)
    assert [harness.mutate(a, pool[k % 20], pool) for k in range(200)] == \
           [harness.mutate(b, pool[k % 20], pool) for k in range(200)]


def test_a_failing_input_is_reported_with_its_bytes():
    def one_input(data: bytes) -> None:
        if data.startswith(b"\x02"):
            raise KeyError("boom")

    with pytest.raises(harness.Crash) as e:
        harness.replay("demo", one_input, [b"\x01abc"], 10_000, SEED)
    assert e.value.data.startswith(b"\x02") and e.value.data.hex() in str(e.value)
    assert isinstance(e.value.__cause__, KeyError)
