"""mDNS discovery on a home LAN: two nodes with `mdns = true` and no bootstrap list find each other.

mDNS multicasts, so the test runs the nodes inside a network namespace of its own (`unshare -n`),
never on the machine's real interfaces; it is skipped where namespaces are not permitted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()


def _namespaces_work() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) is not installed"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"network namespaces are not permitted here: {r.stderr.strip()}"


def test_two_nodes_on_one_lan_find_each_other_by_mdns(tmp_path):
    reason = _namespaces_work()
    if reason:
        pytest.skip(reason)
    script = f"ip link set lo up && ip link set lo multicast on && exec {sys.executable} {HERE} {tmp_path}"
    r = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=240)
    logs = "\n".join(p.read_text()[-2000:] for p in tmp_path.glob("n*/log"))
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{logs}"
    assert "found each other" in r.stdout


def _main(base: Path) -> int:
    """Inside the namespace: two solver nodes with mDNS on and no bootstrap peers."""
    sys.path.insert(0, str(HERE.parent.parent))
    from nacl.signing import SigningKey

    from transxnode.datadir.config import load_config, write_config
    from transxnode.datadir.create import init_datadir
    from consensus.rules.genesis import dev_genesis
    from consensus.rules.keys import address_of_key

    keys = [SigningKey(os.urandom(32)) for _ in range(2)]
    addrs = [address_of_key(k) for k in keys]
    doc = dev_genesis(addrs, addrs, slot_seconds=2, chain_id="transx-mdns", start=int(time.time()) + 5)
    procs = []
    env = {**os.environ, "TRANSX_PASSWORD": "pw"}
    try:
        for i, k in enumerate(keys):
            d = base / f"n{i}"
            init_datadir(d, "pw", doc, api_listen="127.0.0.1:0", seed=bytes(k), p2p_listen="/ip4/127.0.0.1/tcp/0")
            cfg = load_config(d)
            cfg.mdns = True
            write_config(cfg)
            procs.append(subprocess.Popen([sys.executable, "-m", "cli", "node", "--datadir", str(d)],
                                          stdout=open(d / "log", "w"), stderr=subprocess.STDOUT, env=env,
                                          cwd=HERE.parent.parent))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                peers = [json.load(urllib.request.urlopen(
                    json.loads((base / f"n{i}" / "node.json").read_text())["api"] + "/api/node", timeout=5))["peers"]
                    for i in range(2)]
            except (OSError, ValueError, KeyError):
                peers = [0, 0]
            if all(p >= 1 for p in peers):
                print("found each other", flush=True)
                return 0
            time.sleep(0.5)
        print("no discovery within the deadline", flush=True)
        return 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


if __name__ == "__main__":
    sys.exit(_main(Path(sys.argv[1])))
