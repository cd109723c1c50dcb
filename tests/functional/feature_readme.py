"""The README's own commands, in its order, against a real dev node: what a new user types first.

Each command is quoted from README.md (the test fails if the README no longer says it), with only its
placeholders filled in (the data directory, the address `wallet new` printed, a bid's id); the
API listens on a free port instead of 8645 so the test never meets another node.
"""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from node_support import ENV, TRANSX, NodeProcess, wait_for

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def readme_says(command: str) -> str:
    """`command` as the README writes it (the test breaks when the README changes it)."""
    assert command in README, f"the README no longer says: {command}"
    return command


def run(command: str, datadir: Path, **subs: str) -> subprocess.CompletedProcess:
    """A README command with `~/.transx-dev` and the given placeholders replaced, `-y` for signing."""
    text = command.replace("~/.transx-dev", str(datadir))
    for placeholder, value in subs.items():
        text = text.replace(placeholder, value)
    args = text.split()[1:]  # without "transx"
    if "--datadir" not in args:
        args += ["--datadir", str(datadir)]
    return subprocess.run([*TRANSX, *args], capture_output=True, text=True, timeout=90, env=ENV)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"{' '.join(r.args)} exited {r.returncode}: {r.stderr}{r.stdout}"
    return r.stdout


@pytest.fixture(scope="module")
def readme_node(tmp_path_factory):
    datadir = tmp_path_factory.mktemp("readme") / "transx-dev"
    r = run(readme_says("transx init --datadir ~/.transx-dev --dev"), datadir)
    assert r.returncode == 0, r.stderr
    assert "initialised" in r.stdout and "next: transx node" in r.stdout, r.stdout
    # The README's node listens on 127.0.0.1:8645; here on a free port, so as never to meet another node.
    config = datadir / "config.toml"
    config.write_text(re.sub(r'listen = "127\.0\.0\.1:8645"', 'listen = "127.0.0.1:0"', config.read_text()))
    # `--dev` makes the 5-second slots the README says; the commands below wait for blocks, so the test's chain
    # runs 2-second slots (what `--slot-seconds 2` makes: the genesis has no block on disk yet).  Not 1: a meter
    # reading must land within 6 slots of its slot, and a CLI run on a loaded machine can take seconds.
    readme_says("`--dev` makes a chain that starts now, with 5-second slots (`--slot-seconds`)")
    genesis = json.loads((datadir / "genesis.json").read_text())
    assert genesis["slot_seconds"] == 5, genesis
    (datadir / "genesis.json").write_text(json.dumps({**genesis, "slot_seconds": 2}, indent=1) + "\n")
    readme_says("transx node --datadir ~/.transx-dev")
    node = NodeProcess(datadir).start()
    try:
        node.wait_height(1, 60)
        yield node
    finally:
        node.stop()


def test_the_readmes_commands_run_a_node_a_wallet_bids_a_meter_and_the_explorer(readme_node):
    node, d = readme_node, readme_node.datadir
    # Running a node: a key for you, funded from the dev node's key.
    out = ok(run(readme_says("transx wallet new --datadir ~/.transx-dev"), d))
    (me,) = re.findall(r"trx1[0-9a-z]{20,}", out)
    out = ok(run(readme_says("transx wallet send trx1... 100 --datadir ~/.transx-dev"), d, **{"trx1...": me}))
    assert "sent" in out, out
    wait_for(lambda: node.get(f"/api/address/{me}")["balance"] == 100_000_000, 60, "the 100 tokens to land")
    assert "100.00" in ok(run("transx wallet balance ADDR", d, ADDR=me))

    # Wallet and bids: a buy from the new key (quoted in tokens and kWh), listed, then cancelled.
    readme_says("transx bid buy 3kWh 0.50 [--slot S] [--zone Z] [--from ADDR]")
    slot = str(node.get("/api/node")["first_open_slot"] + 15)  # open long enough to cancel it too (2-second slots)
    out = ok(run("transx bid buy 3kWh 0.50 --slot S --from ADDR -y --json", d, S=slot, ADDR=me))
    bid = json.loads(out)
    wait_for(lambda: node.get(f"/api/address/{me}")["open_bids"], 60, "the bid to land")
    readme_says("transx bid list [ADDR]")
    listed = ok(run("transx bid list ADDR", d, ADDR=me))
    assert "3.000" in listed and "0.5" in listed, listed  # kWh and tokens per kWh, as people read them
    readme_says("transx bid cancel BID_ID")
    ok(run("transx bid cancel BID_ID --from ADDR", d, BID_ID=bid["bid"], ADDR=me))
    wait_for(lambda: not node.get(f"/api/address/{me}")["open_bids"], 60, "the bid to be cancelled")
    # A bare number for energy is refused with the accepted forms (issue 14, item 5).
    bare = run("transx bid buy 3 0.5 --from ADDR -y", d, ADDR=me)
    assert bare.returncode == 2 and "3kWh" in bare.stderr and "3000Wh" in bare.stderr, bare.stderr

    # Meters: register one for the account, send a reading for the slot just delivered.
    readme_says("transx meter register [--address ADDR] [--meter METER_ADDR]")
    ok(run("transx meter register --address ADDR", d, ADDR=me))
    wait_for(lambda: node.get(f"/api/address/{me}").get("meter"), 60, "the meter to be registered")
    readme_says("transx meter read --slot S --exported-wh 4200")
    ok(run("transx meter read --slot S --exported-wh 4200 --address ADDR", d, S=str(node.height), ADDR=me))

    # Explorer: the head, the blocks, a block, the transfer, the address and the market.
    readme_says("transx explorer head | blocks | block HEIGHT|HASH | tx HASH | address ADDR | market [SLOT]")
    # (They only read the chain: run side by side, as from several terminals.)
    history = node.get(f"/api/address/{me}?limit=50")["history"]
    transfer = next(h for h in history if h["kind"] == "transfer")
    before = node.height  # the commands run side by side: each sees at least this head, in no set order
    with ThreadPoolExecutor(max_workers=3) as pool:
        head, blocks, _, tx, address, _ = (ok(f.result()) for f in [
            pool.submit(run, "transx explorer head", d), pool.submit(run, "transx explorer blocks", d),
            pool.submit(run, "transx explorer block 1", d),
            pool.submit(run, "transx explorer tx HASH", d, HASH=transfer["hash"]),
            pool.submit(run, "transx explorer address ADDR", d, ADDR=me), pool.submit(run, "transx explorer market", d)])
    assert head.startswith("block ") and "proposer" in head and int(head.split()[1]) >= before, head
    newest = blocks.splitlines()[2].split()  # under the header row and its rule: the newest block
    assert int(newest[0]) >= before and len(newest[1]) == 16, blocks
    assert "100.00" in tx and "100000000" not in tx, tx  # tokens, not micro-units
    assert me in address and "100000000" not in address, address
