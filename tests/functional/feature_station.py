"""The NFC plugin (transx_nfc) as a person at a charger meets it: real processes over nfcpy's udp driver.

One dev node for the module; `transx ev emulate` plays the EV owner's card and `transx station run`
the charger, both on 127.0.0.1 over a UDP port of their own.  Stations run from data directories of
their own (a key, a config.toml, --api pointing at the node), so a station's balance moves only by
its sessions.  Keys made here use Argon2id's minimum costs: every process unlocks one, and the
machine is small.  The unit tests of records.py, device.py and the station's refusals are in
tests/unit/test_station_card.py.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("nfc")
pytest.importorskip("ndef")

from nacl.pwhash import argon2id
from node_support import ENV, PASSWORD, TRANSX, NodeProcess, transx, wait_for

from transx_nfc.device import free_udp_port
from transx_nfc.records import KEEP_RECEIPTS
from consensus.rules.charging import session_cost
from transxnode.client.node_api import ApiClient
from consensus.rules.keys import decode_address
from transxnode.datadir.keystore import Keystore
from consensus.rules.transactions import Transfer, escrow_for
from transxnode.client.wallet import send

PRICE = 600_000  # the stations' price: 0.6 per kWh
# A starved emulator (the machine is loaded) can miss the reader's timing: the station then says this and
# the person taps again.  The tests allow such re-taps and count them; every other refusal must be the one meant.
UNREADABLE = "charger stays off: unreadable or not an NDEF tag"
STATION_ARGS = ("--price", "0.6", "--power-kw", "50", "--speed", "60", "--min-seconds", "3")


# ------------------------------------------------------------------------------------------ helpers
def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A `transx` command running in the background; its output lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.p = subprocess.Popen([*TRANSX, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=ENV, bufsize=1)
        self.lines: list[str] = []
        self.started = time.monotonic()
        self.times: list[float] = []  # seconds since start, per line
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.p.stdout:
            self.times.append(time.monotonic() - self.started)
            self.lines.append(line.rstrip("\n"))

    def __str__(self) -> str:
        return f"transx {' '.join(self.args[:2])} (exit {self.p.poll()}):\n" + "\n".join(
            f"{t:6.2f}s  {line}" for t, line in zip(self.times, self.lines))

    def wait_line(self, pattern: str, timeout: float, since: int = 0) -> str:
        """The first output line from `since` on that matches `pattern`; fails if the process ends first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            ended = self.p.poll() is not None and not self._reader.is_alive()
            for line in self.lines[since:]:
                if rx.search(line):
                    return line
            if ended:
                raise AssertionError(f"no line matching {pattern!r}: {self}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {pattern!r}: {self}")
            time.sleep(0.05)

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def refusals(self, since: int = 0) -> list[str]:
        """The station's "charger stays off" lines, but for unreadable reads (a card to tap again)."""
        return [x for x in self.lines[since:] if "charger stays off: " in x and UNREADABLE not in x]

    def wait_event(self, timeout: float, **match) -> dict:
        rx = "^{" + "".join(f'(?=.*"{k}": {json.dumps(v)}[,}}])' for k, v in match.items())
        self.wait_line(rx, timeout)
        return next(e for e in self.events() if all(e.get(k) == v for k, v in match.items()))

    def wait(self, timeout: float) -> int:
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s: {self}") from None
        self._reader.join(5)
        return rc

    def close(self) -> None:
        """End the process if it still runs (SIGTERM, then SIGKILL)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self._reader.join(5)


def fast_key(directory: Path) -> str:
    """A new key in `directory` (a keystore) that unlocks in milliseconds."""
    return Keystore(directory, opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN).create(PASSWORD)


def taps(text: str) -> dict[str, float]:
    """transx_station_taps_total by outcome, from Prometheus' text format."""
    rx = r'^transx_station_taps_total\{outcome="(\w+)"\} (\S+)$'
    return {m[1]: float(m[2]) for m in re.finditer(rx, text, re.MULTILINE)}


@dataclass
class Chain:
    node: NodeProcess
    node_key: str
    owner: str  # funded: the end-to-end session
    replayer: str  # funded: the replayed card
    poor: str  # never funded
    stations: dict[str, Path] = field(default_factory=dict)  # name -> the station's data directory
    station_keys: dict[str, str] = field(default_factory=dict)

    @property
    def dd(self) -> list[str]:
        return ["--datadir", str(self.node.datadir)]

    def account(self, address: str) -> dict:
        return self.node.get(f"/api/address/{address}")

    def session(self, session_id: str) -> dict | None:
        status, doc = self.node.request("GET", f"/api/session/{session_id}")
        if status == 404:
            return None
        assert status == 200, doc
        return doc

    def emulate(self, key: str, device: str, *args: str) -> Proc:
        return Proc("ev", "emulate", "--device", device, *self.dd, "--key", key, *args)

    def station(self, name: str, device: str, *args: str) -> Proc:
        return Proc("station", "run", "--datadir", str(self.stations[name]), "--api", self.node.api,
                    "--device", device, *args)


FUNDS = {"owner": 500_000_000, "replayer": 100_000_000, "s1": 10_000_000, "s2": 10_000_000}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("nfc")
    d = root / "node"
    transx("init", "--datadir", str(d), "--dev", "--slot-seconds", "1", "--api-listen", "127.0.0.1:0",
           "--p2p-listen", "/ip4/127.0.0.1/tcp/0", check=True)
    node = NodeProcess(d)
    try:
        node.start()
        node_key = tomllib.loads((d / "config.toml").read_text())["key"]
        c = Chain(node, node_key, fast_key(d / "keystore"), fast_key(d / "keystore"), fast_key(d / "keystore"))
        for name in ("s1", "s2"):
            sd = root / name
            c.station_keys[name] = fast_key(sd / "keystore")
            (sd / "config.toml").write_text(f'key = "{c.station_keys[name]}"\n')
            c.stations[name] = sd
        # Fund from the node key (unlocked once here; each `transx wallet send` would unlock it again).
        client = ApiClient(node.api)
        key = Keystore(d / "keystore").unlock(node_key, PASSWORD)
        to = {"owner": c.owner, "replayer": c.replayer, **c.station_keys}
        for name, amount in FUNDS.items():
            send(client, key, Transfer(decode_address(to[name]), amount))
        wait_for(lambda: all(c.account(to[n])["balance"] == a for n, a in FUNDS.items()), 60, "funding to land")
        wait_for(lambda: node.get("/api/node")["behind_slots"] <= 1, 60, "the node to keep up with its slots")
        yield c
    finally:
        if node.proc is not None and node.proc.poll() is None:
            try:
                node.stop()
            except AssertionError:
                pass  # stop() killed it


@dataclass
class RunningStation:
    proc: Proc
    device: str
    metrics_url: str
    datadir: Path

    def taps(self) -> dict[str, float]:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as r:
            return taps(r.read().decode())

    def charging(self) -> float:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as r:
            return float(re.search(r"^transx_station_charging (\S+)$", r.read().decode(), re.MULTILINE)[1])


@pytest.fixture(scope="module")
def station(chain):
    """A station that keeps running (no --taps), for the refusals: cards come and go on its UDP port."""
    device, mport = f"udp:127.0.0.1:{free_udp_port()}", free_tcp_port()
    proc = chain.station("s2", device, *STATION_ARGS, "--metrics-listen", f"127.0.0.1:{mport}")
    try:
        proc.wait_line(r"^station on udp:", 60)
        st = RunningStation(proc, device, f"http://127.0.0.1:{mport}/metrics", chain.stations["s2"])
        wait_for(lambda: st.charging() == 0, 30, "the station's metrics")
        yield st
    finally:
        proc.close()


# ------------------------------------------------------------------------ a session, end to end
def test_a_tap_opens_a_session_on_chain_a_second_closes_it_pays_the_station_and_writes_a_receipt(chain):
    device = f"udp:127.0.0.1:{free_udp_port()}"
    station_addr = chain.station_keys["s1"]
    owner_before, station_before = chain.account(chain.owner), chain.account(station_addr)
    min_fee = chain.node.get("/api/node")["min_fee"]
    # Up to 4 taps (two to spare for unreadable reads); the station stops after its second good tap.
    emu = chain.emulate(chain.owner, device, "--ev-id", "WXY1234", "--max-kwh", "20", "--taps", "4", "--away", "4")
    st = None
    try:
        ready = emu.wait_event(60, event="ready")
        session = ready["session"]
        st = chain.station("s1", device, *STATION_ARGS, "--taps", "2")
        # The authorisation was read and the session opened on chain.
        enabled = st.wait_line(r"charger ENABLED for WXY1234 ", 60)
        assert session[:16] in enabled and "up to 20 kWh at 0.6/kWh" in enabled
        opened = wait_for(lambda: chain.session(session), 30, "the session on chain")
        assert opened["status"] in ("open", "closed"), opened  # closed already if the node read it late (4 s)
        assert (opened["owner"], opened["station"], opened["ev_id"]) == (chain.owner, station_addr, "WXY1234")
        assert (opened["max_wh"], opened["price"], opened["soc_start"]) == (20_000, PRICE, 20)
        assert opened["escrow"] == escrow_for(20_000, PRICE)
        # The second tap stops the charge and writes the receipt back onto the card.
        stopped = st.wait_line(r"charger stopped \(tap\)", 60)
        assert st.wait(60) == 0, st  # --taps 2: the station ends by itself, nothing left charging
        assert "station shutting down" not in "\n".join(st.lines) and st.refusals() == [], st
        # The emulator decodes its memory after each tap (decode_card: a receipt whose signature does not
        # verify is dropped), so a "receipt" here is one the station signed and wrote within the tap.
        emu.wait_line(r'"receipt": ', 30)
        with_receipt = [e for e in emu.events() if "receipt" in e]
        assert len(with_receipt) == 1, f"{emu}\n{st}"
        receipt = with_receipt[0]["receipt"]
        assert receipt["session"] == session and receipt["delivered_wh"] > 0
        wh = receipt["delivered_wh"]
        assert receipt["amount"] == wh * 0.6e6 // 1000 == session_cost(wh, PRICE)
        assert receipt["soc_start"] == 20 and receipt["soc_end"] >= 20
        assert (f"{receipt['delivered_wh'] / 1000:.3f} kWh, {receipt['amount'] / 1e6:,.4f} paid, state of charge "
                f"20% -> {receipt['soc_end']}%, session {session[:16]}") in stopped
        emu.close()  # SIGTERM: the emulator's spare taps are not needed
        assert emu.p.returncode == 0, emu
        closed = wait_for(lambda: (s := chain.session(session)) and s["status"] == "closed" and s, 30,
                          "the session closed on chain")
    finally:
        emu.close()
        if st is not None:
            st.close()
    assert (closed["delivered_wh"], closed["amount"], closed["soc_end"]) == (
        receipt["delivered_wh"], receipt["amount"], receipt["soc_end"])
    # The owner paid exactly what was delivered (the station pays the fees); the station got it.
    owner_after, station_after = chain.account(chain.owner), chain.account(station_addr)
    assert owner_after["balance"] == owner_before["balance"] - receipt["amount"]
    assert owner_after["escrowed"] == 0 and owner_after["nonce"] == owner_before["nonce"]
    assert station_after["nonce"] == station_before["nonce"] + 2  # SessionOpen, SessionClose
    assert station_after["balance"] == station_before["balance"] + receipt["amount"] - 2 * min_fee
    # The owner sees it with `transx ev sessions`.
    r = transx("ev", "sessions", chain.owner, *chain.dd, "--json", check=True)
    listed = [s for s in json.loads(r.stdout)["sessions"] if s["session"] == session]
    assert len(listed) == 1, r.stdout
    s = listed[0]
    assert (s["status"], s["ev_id"], s["station"], s["price"]) == ("closed", "WXY1234", station_addr, PRICE)
    assert (s["delivered_wh"], s["amount"], s["soc_start"], s["soc_end"]) == (
        receipt["delivered_wh"], receipt["amount"], 20, receipt["soc_end"])


# Issue 14: the card keeps only the newest KEEP_RECEIPTS (3) receipts, and charging stopped after the 4th session
# once their count stopped growing; twice KEEP_RECEIPTS sessions go two past that (a station serves an EV for years).
SESSIONS = 2 * KEEP_RECEIPTS


def test_one_card_charges_session_after_session_past_the_receipts_it_keeps_at_one_station(chain):
    # The phone-app card (--renew, the default) signs a new authorisation each time a receipt of its session
    # lands on it.  Fast taps: the card steps back for 1 s, and a tap 0.5 s after the start stops the charge.
    device = f"udp:127.0.0.1:{free_udp_port()}"
    owner_before = chain.account(chain.owner)
    emu = chain.emulate(chain.owner, device, "--ev-id", "LONG20", "--max-kwh", "2", "--away", "1",
                      "--taps", str(2 * SESSIONS))  # a start and a stop each: it stops by itself, however slow we are
    st = None
    try:
        first = emu.wait_event(60, event="ready")["session"]
        st = chain.station("s1", device, "--price", "0.6", "--power-kw", "50", "--speed", "60", "--min-seconds",
                           "0.5")

        def receipts() -> list[dict]:
            return [e["receipt"] for e in emu.events() if "receipt" in e]

        def progress() -> bool:
            assert st.refusals() == [], f"{st}\n{emu}"  # fail at once: refused taps never charge again
            return len(receipts()) >= SESSIONS

        wait_for(progress, 150, f"{SESSIONS} receipts on the card")
        emu.p.wait(30)  # it exits after its last tap (the stop of the last session): none is left open
        assert emu.p.returncode == 0, emu
    finally:
        emu.close()
        if st is not None:
            st.close()
    assert st.p.returncode == 0, st
    got = receipts()
    sessions = [r["session"] for r in got]
    assert len(got) == SESSIONS and len(set(sessions)) == SESSIONS and sessions[0] == first, emu
    lines = "\n".join(st.lines)
    assert st.refusals() == [] and "station shutting down" not in lines, st
    assert sum("charger ENABLED for LONG20 " in x for x in st.lines) == SESSIONS, st
    assert sum("charger stopped (tap)" in x for x in st.lines) == SESSIONS, st
    for r in got:
        assert r["delivered_wh"] > 0 and r["amount"] == session_cost(r["delivered_wh"], PRICE), r
    closed = wait_for(lambda: all((s := chain.session(x)) and s["status"] == "closed" for x in sessions), 30,
                      "every session closed on chain")
    assert closed
    for r in got:
        s = chain.session(r["session"])
        assert (s["ev_id"], s["station"]) == ("LONG20", chain.station_keys["s1"]), s
        assert (s["delivered_wh"], s["amount"], s["soc_start"], s["soc_end"]) == (
            r["delivered_wh"], r["amount"], r["soc_start"], r["soc_end"]), (s, r)
    owner_after = chain.account(chain.owner)
    assert owner_after["balance"] == owner_before["balance"] - sum(r["amount"] for r in got)
    assert owner_after["escrowed"] == 0
    # `transx ev sessions` pages through the owner's sessions, newest first, by the command it prints.
    station = chain.station_keys["s1"]
    command, walked = ["ev", "sessions", station, "--limit", "4"], []
    while command:
        out = transx(*command, *chain.dd, check=True).stdout
        walked += [line.split()[0] for line in out.splitlines()[2:] if not line.startswith("next page")]
        nxt = re.search(r"^next page: transx (.+)$", out, re.M)
        command = nxt[1].split() if nxt else None
    assert walked[:SESSIONS] == [x[:16] for x in reversed(sessions)] and len(set(walked)) == len(walked), walked


# ------------------------------------------------------------------- what a person at a charger sees
def _refused(chain: Chain, station: RunningStation, key: str, outcome: str, message: str, *emu_args: str) -> dict:
    """One tap of an emulated card at the running station: refused with `message` (a regex), counted
    under `outcome`, and the charger stays off (no session on chain for the card's authorisation)."""
    before = station.taps()
    mark = len(station.proc.lines)
    for retaps in range(3):  # a card read as unreadable is tapped again (a new emulator, the same card)
        seen = len(station.proc.lines)
        emu = chain.emulate(key, station.device, "--taps", "1", *emu_args)
        try:
            ready = emu.wait_event(60, event="ready")
            line = station.proc.wait_line(r"charger stays off: ", 60, since=seen)
            assert emu.wait(60) == 0, emu
        finally:
            emu.close()
        assert [e for e in emu.events() if e["event"] == "tap"] == [{"event": "tap", "tap": 1}], emu
        assert chain.session(ready["session"]) is None  # the charger stayed off: nothing on chain
        if UNREADABLE not in line:
            break
    assert re.search(message, line), line
    assert not any("ENABLED" in x for x in station.proc.lines[mark:]), station.proc
    after = station.taps()
    assert after.get(outcome, 0) == before.get(outcome, 0) + 1, (before, after)
    assert after.get("unreadable", 0) == before.get("unreadable", 0) + retaps, (before, after)
    assert after.get("opened", 0) == before.get("opened", 0)
    assert station.charging() == 0
    return ready


def test_an_expired_authorisation_is_refused(chain, station):
    _refused(chain, station, chain.owner, "expired", r"the authorisation on this card has expired: renew it",
             "--ev-id", "EXP1", "--valid-hours", "-1")


def test_an_owner_whose_balance_does_not_cover_the_charge_is_refused(chain, station):
    assert chain.account(chain.poor)["balance"] == 0
    _refused(chain, station, chain.poor, "insufficient_balance",
             r"the balance 0\.00 does not cover 5 kWh at 0\.6/kWh \(3\.00\)", "--ev-id", "POOR1", "--max-kwh", "5")


def test_a_foreign_tag_is_refused(chain, station):
    _refused(chain, station, chain.owner, "foreign_tag", r"this card holds no TransX authorisation",
             "--ev-id", "X", "--foreign")


def test_a_replayed_authorisation_is_refused_after_its_session(chain, station):
    before = station.taps()
    mark = len(station.proc.lines)
    # The same card (--no-renew: its authorisation stays) for a whole session, then tapped again; up to 6 taps
    # leave room for unreadable reads, and the emulator is ended once the refusal is seen.
    emu = chain.emulate(chain.replayer, station.device, "--ev-id", "RPL1", "--max-kwh", "5", "--no-renew",
                        "--nonce", "4242", "--taps", "6", "--away", "4")
    try:
        session = emu.wait_event(60, event="ready")["session"]
        assert session[:16] in station.proc.wait_line(r"charger ENABLED for RPL1 ", 60, since=mark)
        assert session[:16] in station.proc.wait_line(r"charger stopped \(tap\)", 60, since=mark)
        emu.wait_line(r'"receipt": ', 60)
        assert [e["receipt"]["session"] for e in emu.events() if "receipt" in e] == [session]
        station.proc.wait_line(r"charger stays off: this authorisation was already used: a new one is needed "
                               r"for each session", 60, since=mark)
        emu.close()  # the card steps away for 4 s after each tap: it is ended before it comes back
        assert emu.p.returncode == 0, emu
    finally:
        emu.close()
        if station.proc.p.poll() is None and station.charging():  # leave the station idle for other tests
            transx("station", "stop", "--datadir", str(station.datadir))
    lines = station.proc.lines[mark:]
    assert sum("ENABLED" in x for x in lines) == 1, station.proc
    assert len(station.proc.refusals(mark)) == 1, station.proc
    after = station.taps()
    assert after.get("replayed", 0) == before.get("replayed", 0) + 1, (before, after)
    assert after.get("opened", 0) == before.get("opened", 0) + 1
    assert after.get("closed", 0) == before.get("closed", 0) + 1
    assert station.charging() == 0
    wait_for(lambda: (s := chain.session(session)) and s["status"] == "closed", 30, "the first session closed")
    rows = chain.node.get(f"/api/sessions/{chain.replayer}")["sessions"]
    assert [r["session"] for r in rows] == [session]  # the replay opened nothing


def test_a_station_without_a_reader_or_a_node_fails_at_start_with_one_line(chain):
    sd = str(chain.stations["s1"])
    cases = {
        "usb": (["--device", "usb", "--api", chain.node.api], ["'usb'", "libusb"]),
        "tty": (["--device", "tty:USB0", "--api", chain.node.api], ["'tty:USB0'", "libusb"]),
        "no node": (["--device", f"udp:127.0.0.1:{free_udp_port()}", "--api", "http://127.0.0.1:1"],
                    ["no node answers at http://127.0.0.1:1", "transx node"]),
    }
    procs = {name: subprocess.Popen([*TRANSX, "station", "run", "--datadir", sd, *args], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for name, (args, _) in cases.items()}
    try:
        for name, p in procs.items():
            out, err = p.communicate(timeout=60)
            lines = err.strip().splitlines()
            assert p.returncode == 1, (name, out, err)
            assert out == "" and len(lines) == 1 and lines[0].startswith("error: "), (name, out, err)
            for words in cases[name][1]:
                assert words in lines[0], (name, err)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)
    assert not (chain.stations["s1"] / "station.json").exists()


def test_an_authorisation_valid_for_an_absurd_time_is_one_line_and_no_card(chain, tmp_path):
    for hours in ("1e300", "nan", "-1e20"):
        r = transx("ev", "authorize", *chain.dd, "--key", chain.owner, "--ev-id", "X", "--valid-hours", hours,
                   "-o", str(tmp_path / "auth.bin"))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "--valid-hours" in lines[0], r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "auth.bin").exists()


# ------------------------------------------------------------------------------------- the plugin
def test_the_node_lists_the_nfc_plugin(chain):
    plugins = chain.node.get("/api/node")["plugins"]
    nfc = [p for p in plugins if p["name"] == "nfc"]
    assert len(nfc) == 1 and nfc[0]["ready"] is True and nfc[0]["version"], plugins
    assert re.search(r"^\S+ INFO\s+transx\.plugins\s+plugin nfc \S+: charging stations", chain.node.log(), re.MULTILINE), chain.node.log()
