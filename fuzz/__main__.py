"""`python -m fuzz [TARGET ...] [-- LIBFUZZER ARGS]`: every target (default all) in turn, one process at a
time, each with the libFuzzer arguments given (default -atheris_runs=1000000), its corpus growing in
$TMPDIR/transx-fuzz/<target>, crash files in the current directory; a line per target with its inputs
and seconds.  Without atheris, each target replays its corpus with mutations (--replay --runs N)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from fuzz.harness import TARGETS, _atheris


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")] if "--" not in argv else argv[:argv.index("--")]
    extra = argv[argv.index("--") + 1:] if "--" in argv else [a for a in argv if a.startswith("-")]
    names = names or list(TARGETS)
    if _atheris() is None and not extra:
        extra = ["--replay", "--runs", "1000000"]
    extra = extra or ["-atheris_runs=1000000"]
    failed = 0
    for name in names:
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", f"fuzz.{name}", *extra], capture_output=True, text=True)
        done = re.findall(r"Done (\d+) in", r.stderr) or re.findall(r"(\d+) inputs \(replay", r.stdout)
        status = "ok" if r.returncode == 0 else f"FAILED ({r.returncode})"
        print(f"{name}: {done[-1] if done else '?'} inputs in {time.monotonic() - t0:.0f} s: {status}", flush=True)
        if r.returncode != 0:
            failed += 1
            print(r.stderr[-4000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
