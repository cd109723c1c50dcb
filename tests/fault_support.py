"""Real faults for tests: a small tmpfs that can be filled and freed, and damage done to files.

Mounting needs root (CI runs as root); without it the tests that need a disk of their own skip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


class Disk:
    """A tmpfs of `size_mb` at `path`: `fill` takes every free byte with a ballast file, `free` gives it back."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        self._ballast = path / "ballast"

    def fill(self) -> None:
        with open(self._ballast, "ab", buffering=0) as f:
            for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
                try:
                    while True:
                        f.write(b"\0" * chunk)
                except OSError:
                    pass

    def free(self) -> None:
        self._ballast.unlink(missing_ok=True)

    def read_only(self, on: bool) -> None:
        subprocess.run(["mount", "-o", f"remount,{'ro' if on else 'rw'}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def mounted(tmp_path: Path, size_mb: int):
    """A fixture's body: a `Disk` of `size_mb` under `tmp_path`, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("a tmpfs of the test's own needs root")
    d = Disk(tmp_path / "disk", size_mb)
    yield d
    d.unmount()


@pytest.fixture
def disk(tmp_path):
    yield from mounted(tmp_path, 8)


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x55]))
