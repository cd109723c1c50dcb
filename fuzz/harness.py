"""Running a fuzz target: coverage-guided under atheris (libFuzzer's engine) when it is installed, else a
deterministic replay of the corpus followed by random mutations of it (the same entry points and the
same checks, without coverage feedback: what `tests/unit/test_fuzz.py` runs when atheris is absent).

A target is a module of this package with two functions:

    seeds(world) -> list[bytes]             real encoded objects, the corpus's seeds (`python -m fuzz.seeds`)
    setup(world) -> Callable[[bytes], None]  the input function: returns on any input the code handled as
                                             documented, raises on anything else (a crash, or `Finding`)

and ends in `if __name__ == "__main__": harness.main("<name>")`, so that

    python -m fuzz.codec -atheris_runs=1000000              # coverage-guided (atheris)
    python -m fuzz.codec --replay --runs 100000 --seed 1    # without atheris

runs it.  Under atheris the project's packages are imported inside `atheris.instrument_imports`, so
nothing of the project may be imported at a target module's top level (only in `setup`).  Every other
argument goes to libFuzzer (-seed=, -max_total_time=, -jobs= ...); without corpus directories the run
grows its corpus in $TMPDIR/transx-fuzz/<name> and reads the seeds in fuzz/corpus/<name>.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

TARGETS = ("codec", "tx", "block", "verifier", "gossip", "http", "proposal")
PACKAGES = ["consensus", "solver", "p2p", "transxnode"]
CORPUS = Path(__file__).resolve().parent / "corpus"


class Finding(AssertionError):
    """A property a target checks does not hold (as opposed to an exception the code under test raised)."""


class Crash(Exception):
    """An input that made a target fail: `data` reproduces it, the cause is chained."""

    def __init__(self, target: str, data: bytes) -> None:
        super().__init__(f"fuzz target {target!r} failed on input {data.hex()}")
        self.target, self.data = target, data


def corpus(name: str) -> list[bytes]:
    """The committed corpus of target `name` (seeds and what long runs found worth keeping), in file order."""
    folder = CORPUS / name
    return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.is_dir() else []


def file_name(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()  # libFuzzer's own corpus names


# ------------------------------------------------------------ mutations
_INTERESTING = [b"\x00", b"\x01", b"\x7f", b"\x80", b"\xff", b"\x80\x00", b"\xff\xff\xff\xff\x0f",
                b"\xff" * 9 + b"\x01", b"\x80" * 10 + b"\x01", b"\x00" * 8, b"\xff" * 32, b"\xe0" * 3]
MAX_LEN = 1 << 16


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to four of libFuzzer's kinds of mutation, drawn from `rng`: bit flips, random and interesting
    bytes (varint edges, lengths), insertions, deletions, truncation, a chunk copied, a splice with
    another input of `pool`."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 3 and buf:
            del buf[pos:pos + rng.randint(1, 8)]
        elif op == 4:
            v = rng.choice(_INTERESTING)
            buf[pos:pos + (len(v) if rng.random() < 0.5 else 0)] = v
        elif op == 5:
            del buf[pos:]
        elif op == 6 and pool:
            other = rng.choice(pool)
            buf = buf[:pos] + other[rng.randrange(len(other) + 1):]
        elif op == 7 and buf:
            start = rng.randrange(len(buf))
            chunk = buf[start:start + rng.randint(1, 32)]
            buf[pos:pos] = chunk
        elif op == 8 and buf:  # a byte moved up or down by a little: lengths and counts off by one
            i = min(pos, len(buf) - 1)
            buf[i] = (buf[i] + rng.choice((-2, -1, 1, 2))) % 256
    return bytes(buf[:MAX_LEN])


def replay(name: str, one_input: Callable[[bytes], None], inputs: list[bytes], runs: int, seed: int = 1) -> int:
    """Every input of `inputs`, then mutations of them until `runs` inputs ran in all (the corpus counts);
    `Crash` (its cause chained) on the first failure.  Returns the number of inputs run."""
    rng = random.Random(seed)
    pool = list(inputs) or [b""]
    done = 0
    for data in inputs[:runs]:
        _run(name, one_input, data)
        done += 1
    while done < runs:
        data = mutate(rng, rng.choice(pool), pool)
        _run(name, one_input, data)
        done += 1
    return done


def _run(name: str, one_input: Callable[[bytes], None], data: bytes) -> None:
    try:
        one_input(data)
    except Exception as e:
        raise Crash(name, data) from e


# ------------------------------------------------------------------ main
def build(name: str, path: str | None = None):
    """The world and target `name`'s input function (the world's store in `path`, default a temporary
    directory)."""
    from fuzz.world import World

    world = World(path)
    target = importlib.import_module(f"fuzz.{name}")
    return world, target.setup(world)


def _atheris():
    if os.environ.get("TRANSX_FUZZ_NO_ATHERIS"):
        return None
    try:
        import atheris
    except ImportError:
        return None
    return atheris


def main(name: str, argv: list[str] | None = None) -> None:
    """Run target `name` from the command line (see the module doc)."""
    args = list(sys.argv[1:] if argv is None else argv)
    own = {"--replay": False}
    runs, seed = 100_000, 1
    rest = []
    it = iter(args)
    for a in it:
        if a == "--replay":
            own["--replay"] = True
        elif a == "--runs":
            runs = int(next(it))
        elif a == "--seed":
            seed = int(next(it))
        else:
            rest.append(a)
    atheris = None if own["--replay"] else _atheris()
    if atheris is None:
        world, one_input = build(name)
        t0 = time.monotonic()
        try:
            n = replay(name, one_input, corpus(name), runs, seed)
        except Crash as e:
            traceback.print_exception(e.__cause__)
            print(f"CRASH {e}", file=sys.stderr)
            sys.exit(1)
        finally:
            world.close()
        print(f"{name}: {n} inputs (replay, seed {seed}) in {time.monotonic() - t0:.1f} s, no failure")
        return
    with atheris.instrument_imports(include=PACKAGES):
        world, one_input = build(name)
    if not any(not a.startswith("-") for a in rest):
        work = Path(tempfile.gettempdir()) / "transx-fuzz" / name
        work.mkdir(parents=True, exist_ok=True)
        rest += [str(work), str(CORPUS / name)]
    # libFuzzer runs argv[0] through the shell for -merge=1, -fork and -jobs: this process's own command.
    atheris.Setup([f"{sys.executable} -m fuzz.{name}", *rest], one_input)
    atheris.Fuzz()
