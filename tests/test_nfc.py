"""The NFC plugin (transx_nfc) as a person at a charger meets it: real processes over nfcpy's udp driver.

One dev node for the module; `transx ev emulate` plays the EV owner's card and `transx station run`
the charger, both on 127.0.0.1 over a UDP port of their own.  Stations run from data directories of
their own (a key, a config.toml, --api pointing at the node), so a station's balance moves only by
its sessions.  Keys made here use Argon2id's minimum costs: every process unlocks one, and the
machine is small.  Then unit tests of records.py, device.py and the station's refusals, no processes.
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

from transx_nfc.device import DeviceError, check_path, free_udp_port, open_frontend
from transx_nfc.records import KEEP_RECEIPTS, CardError, card_records, decode_card, encode_card, read_records
from transx_nfc.station import Charge, Station
from consensus.rules.charging import Receipt, authorise, session_cost, sign_receipt
from transxnode.client.node_api import ApiClient, ClientError
from consensus.rules.keys import decode_address, generate
from transxnode.datadir.keystore import Keystore
from consensus.rules.transactions import SessionClose, SessionOpen, Transfer, decode_tx, escrow_for
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
        assert opened["status"] == "open", opened
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


SESSIONS = 20  # issue 14: the card keeps only the newest KEEP_RECEIPTS receipts; a station serves an EV for years


def test_one_card_charges_twenty_sessions_in_a_row_at_one_station(chain):
    # The phone-app card (--renew, the default) signs a new authorisation each time a receipt of its session
    # lands on it.  Fast taps: the card steps back for 1 s, and a tap 0.5 s after the start stops the charge.
    device = f"udp:127.0.0.1:{free_udp_port()}"
    owner_before = chain.account(chain.owner)
    emu = chain.emulate(chain.owner, device, "--ev-id", "LONG20", "--max-kwh", "2", "--away", "1")
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
        emu.close()  # SIGTERM while the card is away after its last tap: no session is left open
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
    assert re.search(r"^\S+ INFO\s+plugin nfc \S+: charging stations", chain.node.log(), re.MULTILINE), chain.node.log()


# ----------------------------------------------------------------------------- unit: records.py
def _auth(owner=None, nonce=7):
    return authorise(owner or generate(), chain_id="transx-dev", ev_id="WXY1234", max_wh=20_000, max_price=800_000,
                     expiry=2_000_000_000_000, nonce=nonce)


def _receipt(station, session: bytes, wh: int) -> Receipt:
    return sign_receipt(station, Receipt("transx-dev", bytes(32), session, wh, session_cost(wh, PRICE), 20, 30,
                                         1_800_000_000_000))


def test_a_card_round_trips_with_its_state_of_charge_and_newest_receipts():
    auth, station = _auth(), generate()
    receipts = [_receipt(station, _auth(nonce=n).session_id, 1000 * n) for n in range(1, 6)]
    card = decode_card(encode_card(auth, 42, receipts))
    assert card.auth == auth and card.soc == 42
    assert card.receipts == receipts[-KEEP_RECEIPTS:]
    assert all(r.signature_ok() and r.station != bytes(32) for r in card.receipts)
    bare = decode_card(encode_card(auth))
    assert (bare.auth, bare.soc, bare.receipts) == (auth, None, [])
    # A damaged receipt is dropped; the card still works.
    octets = bytearray(encode_card(auth, 42, receipts[:1]))
    at = bytes(octets).find(receipts[0].encoded)
    octets[at + len(receipts[0].encoded) - 1] ^= 1
    assert decode_card(bytes(octets)).receipts == []


def test_a_tampered_authorisation_is_refused():
    auth = _auth()
    for offset in (40, len(auth.encoded) - 1):  # the quantities, the signature
        octets = bytearray(encode_card(auth, 20))
        octets[bytes(octets).find(auth.encoded) + offset] ^= 1
        with pytest.raises(CardError, match="signature|malformed"):
            decode_card(bytes(octets))


def test_foreign_blank_and_garbage_tags_are_refused():
    import ndef

    foreign = b"".join(ndef.message_encoder([ndef.Record("urn:nfc:ext:example.com:other", "x", b"hello"),
                                             ndef.UriRecord("https://example.com")]))
    for octets in (foreign, b""):
        with pytest.raises(CardError, match="no TransX authorisation"):
            decode_card(octets)
    for octets in (b"\xff\x00\x13garbage", encode_card(_auth())[:-10]):
        with pytest.raises(CardError, match="unreadable"):
            decode_card(octets)
    records = card_records(_auth(), 20)
    assert [r.type for r in records] == ["urn:nfc:ext:transx.org:auth", "urn:nfc:ext:transx.org:soc"]


# ------------------------------------------------------------------------------ unit: device.py
def test_device_strings_nfcpy_would_trip_on_are_refused():
    with pytest.raises(DeviceError, match="service name"):
        check_path("udp:127.0.0.1:8080")  # http-alt
    with pytest.raises(DeviceError, match="out of range"):
        check_path("udp:127.0.0.1:70000")
    for path in ("udp:127.0.0.1", "udp:localhost:port", "udp"):
        with pytest.raises(DeviceError, match="udp:HOST:PORT"):
            check_path(path)
    check_path(f"udp:127.0.0.1:{free_udp_port()}")
    check_path("usb")  # not a udp device: left to nfcpy


def test_opening_a_missing_reader_names_the_device():
    for path in ("usb", "usb:001:099"):
        with pytest.raises(DeviceError, match=re.escape(repr(path))) as e:
            open_frontend(path)
        assert "libusb" in str(e.value)


# ---------------------------------------------------------------------- unit: the station itself
CHAIN_ID = "transx-dev"


class _Node:
    """The part of the node's API a station uses, in memory: a chain that admits every transaction.
    `fail` names a path that raises ClientError (the node stops answering mid-check); info=None: no node."""

    def __init__(self, info: dict | None = None, balance: int = 10**9, fail: str | None = None) -> None:
        self.info = {"chain_id": CHAIN_ID, "behind_slots": 0, "min_fee": 1000} if info is None else info
        self.balance, self.fail, self.txs, self.sessions = balance, fail, [], set()

    def get(self, path: str):
        if self.info == {} or (self.fail and path.startswith(self.fail)):
            raise ClientError("no node answers at http://127.0.0.1:1 (refused)")
        if path == "/api/node":
            return self.info
        if path.startswith("/api/session/"):
            if path.rsplit("/", 1)[1] in self.sessions:
                return {"status": "open"}
            raise ClientError(f"no session {path.rsplit('/', 1)[1]}", 404, "not_found")
        if path.startswith("/api/address/"):
            return {"balance": self.balance, "pending_nonce": len(self.txs)}
        raise AssertionError(f"the station should not have asked for {path}")

    def submit(self, raw: bytes) -> dict:
        tx = decode_tx(raw)
        self.txs.append(tx)
        if isinstance(tx.body, SessionOpen):
            self.sessions.add(tx.body.auth.session_id.hex())
        return {"hash": tx.hash.hex()}


def _station(node: _Node, said: list, now: list | None = None) -> Station:
    return Station(node, generate(), price=PRICE, power_w=50_000, min_seconds=3, speed=60, say=said.append,
                   clock=(lambda: now[0]) if now is not None else time.monotonic)


def _count(st: Station, outcome: str) -> float:
    return st.metrics.registry.get_sample_value("transx_station_taps_total", {"outcome": outcome}) or 0


@pytest.mark.parametrize("node, outcome, words", [
    (_Node({"chain_id": CHAIN_ID, "behind_slots": 5, "min_fee": 1000}), "not_synced", "not synced (5 slots behind)"),
    (_Node({}), "node_unreachable", "cannot reach the node"),
    (_Node(fail="/api/address/"), "node_unreachable", "cannot check the card with the node"),
    (_Node(fail="/api/session/"), "node_unreachable", "cannot check the authorisation with the node"),
    (_Node({"chain_id": "elsewhere", "behind_slots": 0, "min_fee": 1000}), "foreign_network",
     "for network 'transx-dev'"),
    (_Node(balance=escrow_for(20_000, PRICE) - 1), "insufficient_balance", "does not cover 20 kWh"),
], ids=["not synced", "no node", "node gone mid-check", "node gone at the nonce check", "foreign network", "poor"])
def test_a_station_refuses_with_one_line_while_its_node_cannot_vouch_for_the_card(node, outcome, words):
    said = []
    st = _station(node, said)
    assert st.on_card(decode_card(encode_card(_auth(), 20))) is None
    assert st.charge is None and node.txs == []
    assert len(said) == 1 and said[0].startswith("charger stays off: ") and words in said[0], said
    assert _count(st, outcome) == 1
    assert st.metrics.registry.get_sample_value("transx_station_charging") == 0


def test_a_station_opens_refuses_other_cards_while_busy_and_closes_with_a_signed_receipt():
    node, said, now = _Node(), [], [100.0]
    st = _station(node, said, now)
    auth, other = _auth(nonce=1), _auth(nonce=2)
    assert st.on_card(decode_card(encode_card(auth, 20))) is None
    assert st.charge is not None and "charger ENABLED for WXY1234" in said[-1]
    assert [type(t.body) for t in node.txs] == [SessionOpen] and node.txs[0].body.price == PRICE
    assert st.on_card(decode_card(encode_card(other, 50))) is None  # another EV while charging
    assert said[-1] == "charger stays off: this charger is in use by another EV" and _count(st, "busy") == 1
    now[0] += 1  # the same card again too soon: a double tap, not a stop
    assert st.on_card(decode_card(encode_card(auth, 20))) is None and st.charge is not None
    now[0] += 2.75  # 3.75 s at 50 kW, 60 times faster: 3.125 kWh
    records = st.on_card(decode_card(encode_card(auth, 20)))
    assert st.charge is None and isinstance(node.txs[-1].body, SessionClose)
    assert (node.txs[-1].body.delivered_wh, node.txs[-1].body.soc_end) == (3_125, 25)
    card = read_records(records)
    assert card.auth == auth and card.soc == 20 and len(card.receipts) == 1
    r = card.receipts[0]  # read_records checked its signature
    assert r.signature_ok() and r.station == node.txs[0].signer and r.session == auth.session_id
    assert (r.delivered_wh, r.amount, r.soc_start, r.soc_end, r.chain_id) == (3_125, 1_875_000, 20, 25, CHAIN_ID)
    assert "charger stopped (tap): 3.125 kWh, 1.8750 paid, state of charge 20% -> 25%" in said[-1]
    assert _count(st, "opened") == _count(st, "closed") == 1
    # The card left before the receipt was written: the next tap of that card writes it, and charges nothing.
    again = st.on_card(decode_card(encode_card(auth, 25)))
    assert read_records(again).receipts == [r] and "writing the receipt" in said[-1] and len(node.txs) == 2
    # The same card once more, receipt on it: its authorisation is spent.
    assert st.on_card(decode_card(encode_card(auth, 25, [r]))) is None
    assert "already used" in said[-1] and _count(st, "replayed") == 1 and len(node.txs) == 2


def test_a_station_whose_session_the_chain_already_ended_stops_retrying():
    class Expired(_Node):
        def submit(self, raw: bytes) -> dict:
            if isinstance(decode_tx(raw).body, SessionClose):
                raise ClientError("session 55c3 is already expired (not closed within 48 slots)", 422, "ended")
            return super().submit(raw)

    node, said, now = Expired(), [], [100.0]
    st = _station(node, said, now)
    assert st.on_card(decode_card(encode_card(_auth(nonce=9), 20))) is None and st.charge is not None
    now[0] += 10
    assert st.stop("stop command") is None
    assert st.charge is None and st.metrics.registry.get_sample_value("transx_station_charging") == 0
    assert "the chain had already ended the session" in said[-1] and "expired" in said[-1]
    # A node that merely did not answer is retried: the charge stays on record.
    flaky, said2 = _Node(fail="/api/node"), []
    st2 = _station(flaky, said2, now)
    st2.charge = Charge(_auth(nonce=10), 20, now[0])
    assert st2.stop("stop command") is None and st2.charge is not None and "will retry" in said2[-1]



def test_a_station_delivers_a_receipt_to_a_full_card_and_knows_it_there():
    # The card already holds the newest KEEP_RECEIPTS receipts (issue 14): the waiting receipt still goes on as
    # the newest, and the next tap (a renewed authorisation, as the phone app signs) finds it and charges.
    node, said, now = _Node(), [], [100.0]
    st = _station(node, said, now)
    old = [_receipt(generate(), _auth(nonce=n).session_id, 1000 * n) for n in range(20, 20 + KEEP_RECEIPTS)]
    owner = generate()
    auth = _auth(owner, nonce=1)
    assert st.on_card(decode_card(encode_card(auth, 20, old))) is None and st.charge is not None
    now[0] += 10
    r = st.stop("stop command")  # no tap: the receipt waits for the card
    card = read_records(st.on_card(decode_card(encode_card(auth, 20, old))))
    assert card.receipts == old[1:] + [r] and "writing the receipt" in said[-1]
    renewed = _auth(owner, nonce=2)
    assert st.on_card(decode_card(encode_card(renewed, r.soc_end, card.receipts))) is None
    assert st.charge is not None and st.charge.session == renewed.session_id and st.waiting_receipts == {}
    assert _count(st, "opened") == 2 and _count(st, "replayed") == 0
