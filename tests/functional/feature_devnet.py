"""`transx devnet` as a developer runs it: a local network that trades, stopped by Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import re
import time
import urllib.request
from pathlib import Path

from node_support import ENV, TRANSX, wait_for


def test_devnet_trades_and_stops_everything_on_sigterm(tmp_path):
    """SIGTERM (a service manager, `kill`) takes the path Ctrl-C takes: every node stops cleanly."""
    d = tmp_path / "devnet"
    proc = subprocess.Popen([*TRANSX, "devnet", "--dir", str(d), "--slot-seconds", "1", "--homes", "12"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        settled = re.compile(r"\| slot (\d+) settled: ")
        while time.monotonic() < deadline and not any(settled.search(ln) for ln in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert any("cleared" in ln and "kWh" in ln for ln in lines), "".join(lines)
        manifest = json.loads((d / "devnet.json").read_text())
        node = manifest["nodes"][0]
        assert node["api"].startswith("http://127.0.0.1:") and (d / "node1" / "node.json").exists()
        assert len(manifest["households"]) == 12
        # The households' meters reported, and the chain settled their slots against the readings.
        slot = int(next(m for ln in lines if (m := settled.search(ln)))[1])
        with urllib.request.urlopen(f"{node['api']}/api/market/{slot}", timeout=10) as r:
            delivery = json.loads(r.read())["delivery"]
        assert delivery["status"] == "settled", delivery
        assert any(a["reading"] == "on time" for a in delivery["accounts"]), delivery
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)  # as `timeout` and a process group's kill both do: still one clean stop
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    # Every process it started is gone: a node removes its runtime file on a clean stop.
    for node in manifest["nodes"]:
        dd = Path(node["datadir"])
        wait_for(lambda: not (dd / "node.json").exists(), 10, f"{dd.name} to stop")
        assert "stopped; the store is closed" in (dd / "node.log").read_text()


def test_devnet_refuses_a_directory_that_is_not_its_own(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    r = subprocess.run([*TRANSX, "devnet", "--dir", str(tmp_path)], capture_output=True, text=True, env=ENV,
                       timeout=60)
    assert r.returncode == 2 and "not a devnet directory" in r.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_the_devnets_keys_sign_with_datadir_alone_as_the_readme_says(tmp_path):
    """Issue 14, item 7: `--datadir devnet/node1` signs with node 1's funded key, with no password to find
    in the source: the devnet keeps it in devnet/password (0600), which each node's config names, and says so."""
    import os
    import stat

    from nacl.signing import SigningKey

    from consensus.rules.keys import address_of_key, encode_address

    d = tmp_path / "devnet"
    proc = subprocess.Popen([*TRANSX, "devnet", "--dir", str(d), "--nodes", "1", "--homes", "0", "--slot-seconds", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    lines: list[str] = []
    try:
        while not any(ln.startswith("slot ") for ln in lines):  # the chain is up and making blocks
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        # A person in another shell: no $TRANSX_PASSWORD, no terminal to ask on.
        env = {k: v for k, v in ENV.items() if k != "TRANSX_PASSWORD"}
        payee = encode_address(address_of_key(SigningKey.generate()))
        r = subprocess.run([*TRANSX, "wallet", "send", payee, "5", "--datadir", str(d / "node1"), "--json"],
                           capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=60)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["hash"]
        assert stat.S_IMODE(os.stat(d / "password").st_mode) == 0o600
        said = "".join(lines)
        assert f"--datadir {d}/node1" in said and f"{d}/password" in said, said
        # The same file works for a command that names it, from anywhere.
        r = subprocess.run([*TRANSX, "wallet", "send", payee, "1", "--datadir", str(d / "node1"), "--password-file",
                            str(d / "password"), "--json"], capture_output=True, text=True, env=env,
                           stdin=subprocess.DEVNULL, timeout=60)
        assert r.returncode == 0, r.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
