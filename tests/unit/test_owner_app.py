"""The owner app's endpoints (transxnode/api/owner) over a real chain and keystore, through Starlette's
test client: what signs, what is refused, and that a bid is the CLI's bid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from nacl.pwhash import argon2id
from starlette.testclient import TestClient

from chain_support import Net, addr, counting_scans
from consensus.rules.keys import encode_address
from consensus.rules.transactions import BUY, Bid
from agent.plugin import PLUGIN as AGENT
from transxnode.api.owner import owner_app
from transxnode.api.owner.routes import signing_refusal
from transxnode.datadir.keystore import Keystore

PASSWORD = "pass phrase"
JSON = {"Content-Type": "application/json"}


@dataclass
class Cfg:
    datadir: Path
    key: str
    api_listen: str = "127.0.0.1:8645"

    @property
    def keystore_dir(self) -> Path:
        return self.datadir / "keystore"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:  # the delay a wrong password's answer waits
        self.slept.append(seconds)
        self.t += seconds


@pytest.fixture
def app(tmp_path):
    net = Net(str(tmp_path / "db"))
    net.produce_until(2)
    user = net.users[0]
    ks = Keystore(tmp_path / "data" / "keystore", opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN)
    me = ks.import_seed(bytes(user), PASSWORD)
    ks.import_seed(bytes(net.poor), PASSWORD)
    clock = Clock()
    client = TestClient(owner_app(net.node, Cfg(tmp_path / "data", me), [AGENT], idle_seconds=600, clock=clock,
                                  wall_ms=lambda: net.now(), sleep=clock.sleep), base_url="http://127.0.0.1:8645")
    yield net, client, me, clock
    net.close()


def unlock(client, me, password=PASSWORD, **extra):
    return client.post("/api/unlock", json={"address": me, "password": password, **extra})


def test_unlocked_session_signs_the_clis_bid_and_it_lands_in_the_pool(app):
    net, client, me, _ = app
    r = unlock(client, me)
    assert r.status_code == 200
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    csrf = r.json()["csrf"]
    r = client.post("/api/bid", json={"side": "buy", "quantity": "3kWh", "price": "0.50"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 202, r.text
    doc = r.json()
    assert doc["quote"]["locked"] == 1_500_000  # 3 kWh x 0.50 in escrow, as `transx bid buy` quotes it
    tx = net.node.mempool.get(bytes.fromhex(doc["bid"]))
    first = doc["slot"]
    assert tx.body == Bid(side=BUY, slot=first, wh=3000, price=500_000, zone=0, expiry=first - net.g.gate_closure)
    assert encode_address(addr(net.users[0])) == me and tx.fee == net.g.min_fee
    r = client.post("/api/cancel", json={"bid": doc["bid"]}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 202 and r.json()["nonce"] == tx.nonce + 1


def test_no_signing_without_session_csrf_or_json_and_wrong_password_is_401(app):
    net, client, me, clock = app
    bid = {"side": "sell", "quantity": "1kWh", "price": "0.2"}
    assert client.post("/api/bid", json=bid).json()["reason"] == "locked"
    r = unlock(client, me, "guess")
    assert (r.status_code, r.json()) == (401, {"error": f"wrong password for {me}", "reason": "password"})
    csrf = unlock(client, me, idle_seconds=5).json()["csrf"]
    r = client.post("/api/bid", json=bid)  # the cookie alone: what a cross-site page could make a browser send
    assert (r.status_code, r.json()["reason"]) == (403, "csrf")
    r = client.post("/api/bid", json=bid, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert (r.status_code, r.json()["reason"]) == (403, "cross_site")
    assert client.post("/api/quote", json=bid, headers={"Origin": "http://127.0.0.1:8645"}).status_code == 200
    r = client.post("/api/bid", content='{"side": "sell"}', headers={"X-CSRF-Token": csrf})
    assert r.status_code == 400 and "Content-Type: application/json" in r.json()["error"]
    clock.t += 6  # idle past the session's own 5 s
    r = client.post("/api/bid", json=bid, headers={"X-CSRF-Token": csrf})
    assert (r.status_code, r.json()["reason"]) == (403, "locked")
    assert len(net.node.mempool) == 0


def test_refusals_read_as_the_cli_prints_them(app):
    net, client, _, _ = app
    csrf = unlock(client, encode_address(addr(net.poor))).json()["csrf"]
    h = {"X-CSRF-Token": csrf}
    cases = [({"quantity": "3", "price": "0.5"}, 400, "quantity '3' has no unit: write 3kWh or 3000Wh"),
             ({"quantity": "5kWh", "price": "-0.3"}, 400, "price must not be negative, got -0.3"),
             ({"quantity": "5kWh", "price": "0.5", "slot": 1}, 422,
              f"slot 1 is closed for bids (gate closure); the first open slot is {net.height + 1 + net.g.gate_closure}"),
             ({"quantity": "5kWh", "price": "0.5", "zone": 9}, 400, "zone 9 does not exist (this network has zones 0..2)"),
             ({"quantity": "1000kWh", "price": "0.5"}, 422, None)]  # more escrow than the balance: the chain says
    for extra, status, error in cases:
        r = client.post("/api/bid", json={"side": "buy", **extra}, headers=h)
        assert r.status_code == status, (extra, r.text)
        if error:
            assert r.json()["error"] == error
    assert r.json()["reason"] == "invalid" and "balance" in r.json()


def test_a_node_listening_beyond_loopback_without_tls_unlocks_nothing(app, tmp_path):
    net, _, me, _ = app
    exposed = TestClient(owner_app(net.node, Cfg(tmp_path / "data", me, api_listen="0.0.0.0:8645")))
    r = unlock(exposed, me)
    assert (r.status_code, r.json()["reason"]) == (403, "remote") and "set-cookie" not in r.headers
    assert "[api] allow_remote" in r.json()["error"] and not exposed.get("/api/session").json()["signing"]


def test_a_page_of_another_name_pointed_at_loopback_reads_and_unlocks_nothing(app):
    """DNS rebinding: evil.example resolving to 127.0.0.1 is same-origin to the browser, Origin and Host agree."""
    net, client, me, _ = app
    rebound = {"Host": "evil.example:8645", "Origin": "http://evil.example:8645"}
    for r in (client.get("/api/home", headers=rebound), client.get("/", headers=rebound),
              client.post("/api/unlock", json={"address": me, "password": PASSWORD}, headers=rebound)):
        assert (r.status_code, r.json()["reason"]) == (403, "host") and "set-cookie" not in r.headers
    for host in ("localhost:8645", "127.0.0.1:8645", "[::1]:8645", "127.0.0.2"):
        assert client.get("/api/session", headers={"Host": host}).status_code == 200, host


def test_wrong_passwords_are_answered_ever_more_slowly_until_one_is_right(app):
    net, client, me, clock = app
    for _ in range(7):
        assert unlock(client, me, "guess").status_code == 401
    assert clock.slept == [1, 2, 4, 8, 16, 30, 30]  # seconds; attempts wait their turn (one check at a time)
    assert unlock(client, me).status_code == 200
    assert unlock(client, me, "typo").status_code == 401 and clock.slept[-1] == 1  # a right one starts over


def test_beyond_loopback_signing_needs_allow_remote_and_tls():
    assert signing_refusal("127.0.0.1:8645", False, False) is None
    assert signing_refusal("[::1]:8645", False, False) is None
    assert "[api] allow_remote = true" in signing_refusal("0.0.0.0:8645", False, False)
    assert signing_refusal("0.0.0.0:8645", True, False) is not None
    assert signing_refusal("192.168.1.5:8645", True, True) is None


def test_home_shows_a_cleared_slot_with_its_price_and_the_gain_against_the_grid(app):
    net, client, me, _ = app
    csrf = unlock(client, me).json()["csrf"]
    sell = client.post("/api/bid", json={"side": "sell", "quantity": "2kWh", "price": "0.20"},
                       headers={"X-CSRF-Token": csrf}).json()
    slot = sell["slot"]
    net.bid(net.users[1], BUY, slot, 2000, 500_000)
    net.produce_until(slot)
    home = client.get("/api/home", params={"address": me, "tz": "0"}).json()
    [row] = [s for s in home["slots"] if s["slot"] == slot]
    assert row["status"] == "cleared" and row["sold_wh"] == 2000 and row["bought_wh"] == 0
    assert 200_000 <= row["clearing_price"] <= 500_000
    assert row["earned"] == row["received"] - 2 * net.g.feed_in > 0  # above what feed-in pays for 2 kWh
    assert [b["status"] for b in row["bids"]] == ["cleared"]
    month = home["month"]  # from the account's history: the same trade
    assert (month["sold_wh"], month["earned"], month["complete"]) == (2000, row["earned"], True)
    assert client.get("/api/home", params={"tz": "9999"}).status_code == 400


def test_a_card_authorisation_is_signed_by_the_session_and_listed_until_it_expires(app, tmp_path):
    from consensus.rules.charging import decode_authorisation

    net, client, me, _ = app
    csrf = unlock(client, me).json()["csrf"]
    form = {"ev_id": "AB-123", "max_energy": "40kWh", "max_price": "0.60", "valid_hours": 1}
    assert client.post("/api/authorise", json=form).status_code == 403  # no CSRF header: nothing signed
    r = client.post("/api/authorise", json=form, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    auth = decode_authorisation(bytes.fromhex(r.json()["hex"]))  # checks the signature
    assert (auth.ev_id, auth.max_wh, auth.max_price) == ("AB-123", 40_000, 600_000)
    assert auth.owner_address == addr(net.users[0]) and auth.expiry == net.now() + 3_600_000
    [listed] = client.get("/api/ev").json()["authorisations"]
    assert listed["session"] == auth.session_id.hex() and listed["valid"] and not listed["used"]
    assert (tmp_path / "data" / "app" / "authorisations.jsonl").exists()  # kept across restarts
    bad = client.post("/api/authorise", json={**form, "ev_id": ""}, headers={"X-CSRF-Token": csrf})
    assert bad.status_code == 400 and "1 to 32 characters" in bad.json()["error"]


def test_the_agents_day_plan_is_shown_then_signed_as_shown(app):
    net, client, me, _ = app
    assert client.post("/api/settings", json={"kwp": 8.0}).status_code == 403  # saving needs the session
    csrf = unlock(client, me).json()["csrf"]
    h = {"X-CSRF-Token": csrf}
    r = client.post("/api/settings", json={"kwp": 8.0, "daily_kwh": 10.0, "battery_kwh": 0}, headers=h)
    assert r.status_code == 200 and client.get("/api/settings").json()["kwp"] == 8.0  # kept for the account
    bad = client.post("/api/settings", json={"kwp": -1}, headers=h)
    assert (bad.status_code, bad.json()["error"]) == (400, "kwp is a number from 0 to 1000")
    plan = client.get("/api/plan", params={"slots": 48}).json()
    assert len(plan["pv_wh"]) == len(plan["load_wh"]) == 48 and max(plan["pv_wh"]) > 0  # 8 kWp: a sunny midday
    assert plan["bids"] and plan["first_slot"] == net.height + 1 + net.g.gate_closure + 1
    r = client.post("/api/plan/accept", json={"bids": plan["bids"]}, headers=h)
    assert r.status_code == 202, r.text
    sent = r.json()["sent"]
    assert [s["slot"] for s in sent] == [b["slot"] for b in plan["bids"]]
    pooled = [net.node.mempool.get(bytes.fromhex(s["bid"])).body for s in sent]
    assert [(b.slot, b.wh, b.price) for b in pooled] == [(b["slot"], b["wh"], b["price"]) for b in plan["bids"]]
    late = client.post("/api/plan/accept", json={"bids": [{**plan["bids"][0], "slot": 1}]}, headers=h)
    assert late.status_code == 202 and late.json() == {"sent": [], "skipped_slots": [1]}  # its gate closed: skipped
    bad = client.post("/api/plan/accept", json={"bids": [plan["bids"][0], {**plan["bids"][0], "side": "lend"}]},
                      headers=h)
    assert (bad.status_code, bad.json()["error"]) == (400, "side is buy or sell")  # nothing signed: rows first
    assert len(net.node.mempool) == len(sent)


def test_the_hands_free_switch_is_saved_for_the_account_and_only_its_session_turns_it(app, tmp_path):
    net, client, me, _ = app
    assert client.get("/api/agent", params={"address": me}).json()["hands_free"] is True  # on until turned off
    assert client.post("/api/agent", json={"hands_free": False}).json()["reason"] == "locked"
    h = {"X-CSRF-Token": unlock(client, me).json()["csrf"]}
    assert client.post("/api/agent", json={"hands_free": "no"}, headers=h).status_code == 400
    r = client.post("/api/agent", json={"hands_free": False}, headers=h)
    assert r.status_code == 200 and r.json() == {"address": me, "hands_free": False}
    other = encode_address(addr(net.poor))
    assert client.get("/api/agent", params={"address": other}).json()["hands_free"] is True  # per account
    restarted = TestClient(owner_app(net.node, Cfg(tmp_path / "data", me)), base_url="http://127.0.0.1:8645")
    assert restarted.get("/api/agent", params={"address": me}).json()["hands_free"] is False  # on disk
    (tmp_path / "data" / "app" / "agent.json").write_text("{not json")
    r = restarted.get("/api/agent", params={"address": me})
    assert r.status_code == 503 and "damaged" in r.json()["error"]  # said, never read as "on"


@pytest.mark.parametrize("text", ["soon", "0", "-5", "nan"])
def test_a_bad_idle_time_stops_the_node_with_one_line(monkeypatch, text):
    from transxnode.api.owner.routes import idle_from_env
    from transxnode.datadir.config import ConfigError

    monkeypatch.setenv("TRANSX_APP_IDLE_SECONDS", text)
    with pytest.raises(ConfigError, match="TRANSX_APP_IDLE_SECONDS is the owner app's idle time"):
        idle_from_env()
    monkeypatch.setenv("TRANSX_APP_IDLE_SECONDS", "90")
    assert idle_from_env() == 90.0


def test_a_months_totals_read_the_month_not_a_solvers_years_of_commits(tmp_path, monkeypatch):
    from consensus.rules import schema
    from transxnode.api.owner import views

    net = Net(str(tmp_path / "db"))
    try:
        solver = addr(net.solver_key)
        for h in range(1, 3_001):  # years of commits and reveals, as a solver's history holds
            net.store.db.put(schema.address_tx(solver, h, 0), bytes([schema.HISTORY_CONSENSUS_TX]) + bytes(32))
        read = counting_scans(net.store, monkeypatch)
        later = (net.g.timestamp + 40 * 86_400) * 1000  # 40 days on: this month began after all of them
        month = views.month_totals(net.chain, solver, 0, later)
        assert (month["sold_wh"], month["bought_wh"], month["complete"]) == (0, 0, True)
        assert len(read) == 1  # the newest entry is older than the month: the walk ends there
    finally:
        net.close()
