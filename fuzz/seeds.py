"""Write the corpus's seeds: `python -m fuzz.seeds [TARGET ...]` puts each target's real encoded objects
(`seeds(world)`, from the world's chain) in fuzz/corpus/<target>/, one file each, named by their SHA-1 as
libFuzzer names corpus files.  The world is deterministic, so the files are the same on every run;
files already there (inputs a long run kept) stay."""

from __future__ import annotations

import importlib
import sys

from fuzz.harness import CORPUS, TARGETS, file_name


def write_seeds(names: list[str]) -> dict[str, int]:
    from fuzz.world import World

    written = {}
    for name in names:
        world = World()  # each target's seeds from a fresh world: building some of them signs transactions
        try:
            folder = CORPUS / name
            folder.mkdir(parents=True, exist_ok=True)
            seeds = importlib.import_module(f"fuzz.{name}").seeds(world)
            for data in seeds:
                (folder / file_name(data)).write_bytes(data)
            written[name] = len(seeds)
        finally:
            world.close()
    return written


if __name__ == "__main__":
    for name, n in write_seeds(sys.argv[1:] or list(TARGETS)).items():
        print(f"{name}: {n} seeds in {CORPUS / name}")
