"""Real node processes for functional tests, in the manner of Bitcoin Core's test framework.

A `NodeProcess` is `transx node` started on a fresh data directory (a
private dev chain with short slots, API on a free loopback port), driven
only through its public interfaces: the CLI and the HTTP API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

_SCRIPT = Path(sys.executable).parent / "transx"
TRANSX = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cli"]
PASSWORD = "correct horse battery staple"
ENV = {**os.environ, "TRANSX_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"}


def transx(*args: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
    r = subprocess.run([*TRANSX, *args], capture_output=True, text=True, timeout=timeout, env=ENV)
    if check and r.returncode != 0:
        raise AssertionError(f"transx {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def transx_many(runs: list[tuple[str, ...]], workers: int = 3) -> list[subprocess.CompletedProcess]:
    """`transx` with each argument tuple, a few at a time (each is mostly interpreter start-up), results in
    order.  Only for runs that do not depend on each other: refusals, reads, sends from different keys."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda args: transx(*args), runs))


def transx_json(*args: str) -> Any:
    return json.loads(transx(*args, "--json", check=True).stdout)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll until `predicate()` is truthy; fail naming `what` (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, ValueError):
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class NodeProcess:
    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir
        self.proc: subprocess.Popen | None = None
        self.log_path = datadir.parent / f"{datadir.name}.log"

    @classmethod
    def init_dev(cls, datadir: Path, slot_seconds: int = 1) -> "NodeProcess":
        transx("init", "--datadir", str(datadir), "--dev", "--slot-seconds", str(slot_seconds),
               "--api-listen", "127.0.0.1:0", check=True)
        return cls(datadir)

    @property
    def dd(self) -> list[str]:
        return ["--datadir", str(self.datadir)]

    def start(self) -> "NodeProcess":
        (self.datadir / "node.json").unlink(missing_ok=True)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([*TRANSX, "node", *self.dd], stdout=log, stderr=subprocess.STDOUT, env=ENV)
        log.close()
        wait_for(lambda: (self.datadir / "node.json").exists() or self.proc.poll() is not None, 60, "node start")
        if self.proc.poll() is not None:
            raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    @property
    def api(self) -> str:
        return json.loads((self.datadir / "node.json").read_text())["api"]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.api + path, timeout=10) as r:
            return json.loads(r.read())

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(self.api + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def submit(self, raw: bytes) -> tuple[int, Any]:
        return self.request("POST", "/api/tx", json.dumps({"raw": raw.hex()}).encode(),
                            {"Content-Type": "application/json"})

    @property
    def height(self) -> int:
        return self.get("/api/head")["height"]

    def wait_height(self, h: int, timeout: float = 60) -> None:
        wait_for(lambda: self.height >= h, timeout, f"height {h}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"node did not stop on signal {sig}:\n{self.log()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no chance to clean up
        self.proc.wait()
