"""The owner's app at /app/ in a real browser (headless Chromium, tests/browser_support.py) against a real
dev node: unlock, quote, post a bid that clears, cancel, refusals as the CLI words them, a wrong password,
an expired session, a cross-site request refused, labels and the keyboard.  Screenshots go with the
test's output (printed paths)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import pytest
from nacl.pwhash import argon2id

from browser_support import browser, screenshot
from node_support import ENV, PASSWORD, TRANSX, NodeProcess, wait_for
from consensus.rules.charging import decode_authorisation
from consensus.rules.keys import decode_address
from consensus.rules.transactions import BUY, Bid, Transfer
from consensus.rules.units import kwh as format_kwh
from consensus.rules.units import price as format_price
from consensus.rules.units import tokens as format_tokens
from transxnode.client.node_api import ApiClient
from transxnode.client.wallet import send
from transxnode.datadir.keystore import Keystore


@pytest.fixture(scope="module")
def starting_browser():
    """The browser, started beside the node (a few seconds each on a small machine)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(browser)


@pytest.fixture(scope="module")
def node(tmp_path_factory, starting_browser):
    n = NodeProcess.init_dev(tmp_path_factory.mktemp("app") / "data").start()
    n.wait_height(1)
    yield n
    n.stop()


@pytest.fixture(scope="module")
def node_key(node):
    """The dev node's own key (funded, solving), unlocked once here: it funds, buys, and plays the station."""
    return Keystore(node.datadir / "keystore").unlock(node.get("/api/node")["address"], PASSWORD)


def send_as(node, key, body) -> dict:
    """`body` signed by `key` and sent as the CLI sends it (transxnode.client.wallet.send)."""
    return send(ApiClient(node.api), key, body)


@pytest.fixture(scope="module")
def wallet(node, node_key):
    """A wallet key of the home's own (cheap Argon2id: the machine is small), funded with 100 tokens."""
    me = Keystore(node.datadir / "keystore", opslimit=argon2id.OPSLIMIT_MIN,
                  memlimit=argon2id.MEMLIMIT_MIN).create(PASSWORD)
    send_as(node, node_key, Transfer(decode_address(me), 100_000_000))
    wait_for(lambda: node.get(f"/api/address/{me}")["balance"] > 0, 30, "the wallet's funding")
    return me


@pytest.fixture(scope="module", autouse=True)
def charging(node, wallet, tmp_path_factory):
    """A charging session over nfcpy's udp driver, run beside the browser tests: the wallet's emulated card
    (`transx ev emulate`) taps twice at a station on the node (`transx station run --taps 2`, the node key);
    the car page reads it last.  None where the NFC plugin's libraries are missing."""
    from transx_nfc.device import free_udp_port, missing_dependencies

    if missing_dependencies():
        yield None
        return
    logs = tmp_path_factory.mktemp("charging")
    device = f"udp:127.0.0.1:{free_udp_port()}"
    procs = []

    def run(name: str, *args: str) -> Path:
        out = logs / f"{name}.log"
        with open(out, "w") as log:
            procs.append(subprocess.Popen([*TRANSX, *args], stdout=log, stderr=subprocess.STDOUT, env=ENV,
                                          stdin=subprocess.DEVNULL))
        return out

    card = run("card", "ev", "emulate", "--device", device, *node.dd, "--key", wallet, "--ev-id", "CAR-7",
               "--max-kwh", "20", "--soc", "20", "--taps", "4", "--away", "4")
    try:
        ready = wait_for(lambda: re.search(r'"event": "ready".*"session": "([0-9a-f]{64})"', card.read_text()), 60,
                         "the emulated card")
        run("station", "station", "run", *node.dd, "--device", device, "--price", "0.6", "--power-kw", "50",
            "--speed", "60", "--min-seconds", "3", "--taps", "2")
        yield {"session": ready[1], "logs": logs}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait(15)


@pytest.fixture(scope="module")
def driver(starting_browser):
    d = starting_browser.result()  # a skip, if no browser here, is raised again
    yield d
    d.quit()


def by(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def maybe(driver, css):
    """The element, or None while the page has not drawn it."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


def message(driver, pattern: str) -> str:
    """The page's message line once it matches `pattern`."""
    return wait_for(lambda: re.search(pattern, by(driver, "#message").text) and by(driver, "#message").text, 15,
                    f"the page to say /{pattern}/ (it says {by(driver, '#message').text!r})")


def open_page(driver, node, page: str) -> None:
    """Load the app afresh on `page` (a new hash alone would keep the last form's values)."""
    driver.get("about:blank")
    driver.get(f"{node.api}/app/#{page}")
    wait_for(lambda: by(driver, "#view").text.strip(), 15, f"the {page} page")


def unlock(driver, node, me: str, password: str = PASSWORD, idle: str | None = None) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    open_page(driver, node, "home")
    wait_for(lambda: by(driver, "#unlock-form").is_displayed(), 10, "the unlock form")
    Select(by(driver, "#unlock-address")).select_by_value(me)
    if idle is not None:  # a session shorter than the form offers: the test's own option
        driver.execute_script("const o = new Option(arguments[0] + ' s', arguments[0]); "
                              "document.querySelector('#unlock-idle').add(o); o.selected = true;", idle)
    by(driver, "#unlock-password").send_keys(password, Keys.ENTER)


def fill_bid_by_keyboard(driver, side: str, quantity: str, price: str, slot: int | str) -> None:
    """Tab through the bid form from its first field, typing; Enter asks for the quote."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.execute_script("document.querySelector('#bid-side').focus()")
    ActionChains(driver).send_keys(side[0], Keys.TAB, quantity, Keys.TAB, price, Keys.TAB, str(slot),
                                   Keys.ENTER).perform()


def test_a_wrong_password_is_one_clear_line_and_unlocks_nothing(node, wallet, driver, tmp_path):
    unlock(driver, node, wallet, "not the password")
    assert message(driver, "wrong password") == f"wrong password for {wallet}"
    assert by(driver, "#unlock-form").is_displayed() and not by(driver, "#unlocked").is_displayed()
    assert by(driver, "#unlock-password").get_attribute("value") == ""
    screenshot(driver, "wrong-password", tmp_path)


def test_keyboard_bid_with_quote_lands_in_a_block_and_clears(node, node_key, wallet, driver, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    unlock(driver, node, wallet)
    message(driver, "Unlocked")
    info = node.get("/api/node")
    slot = info["first_open_slot"] + 15  # 1-s slots: time for the page's steps on a loaded machine
    buy = send_as(node, node_key, Bid(side=BUY, slot=slot, wh=2000, price=500_000, zone=0,
                                      expiry=slot - info["gate_closure"]))  # the node key buys
    open_page(driver, node, "bid")
    fill_bid_by_keyboard(driver, "sell", "2kWh", "0.20", slot)
    wait_for(lambda: by(driver, "#quote").is_displayed(), 10, "the quote")
    quote = by(driver, "#quote-lines").text
    assert f"Sell 2.000 kWh in slot {slot} at least 0.20 tokens per kWh" in quote
    assert "Locked now\n0.74 tokens (delivery collateral:" in quote  # 2 kWh x (0.57 retail - 0.20)
    assert "Expected return against the grid" in quote
    screenshot(driver, "quote", tmp_path)
    assert driver.switch_to.active_element == by(driver, "#sign-button")  # Enter signs, from the keyboard too
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    sent = message(driver, "sent")
    bid = re.search(r"Bid ([0-9a-f]{64}) sent \(pending; it clears in slot (\d+)\)", sent)
    assert bid and int(bid[2]) == slot, sent
    node.wait_height(slot, 40)
    trades = node.get(f"/api/market/{slot}")["trades"]
    assert [(t["seller"], t["buyer"], t["wh"]) for t in trades] == [(bid[1], buy["hash"], 2000)]
    open_page(driver, node, "home")
    row = wait_for(lambda: "cleared" in by(driver, f'tr[data-slot="{slot}"]').text and
                   by(driver, f'tr[data-slot="{slot}"]').text, 15, "the home page's cleared slot")
    assert "sell 2.000 kWh at 0.20: cleared (2.000 kWh traded)" in row, row
    assert f" {format_price(trades[0]['price'])} " in row, row  # the slot's clearing price, tokens per kWh
    assert "Sold 2.000 kWh" in by(driver, "#month").text  # this month's totals, from the account's history
    screenshot(driver, "home-cleared", tmp_path)


def test_cancel_a_bid_from_the_page(node, wallet, driver, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException

    open_page(driver, node, "bid")
    slot = node.get("/api/node")["first_open_slot"] + 300
    fill_bid_by_keyboard(driver, "buy", "1kWh", "0.30", slot)
    wait_for(lambda: by(driver, "#sign-button").is_displayed(), 10, "the quote")
    by(driver, "#sign-button").click()
    bid = re.search(r"Bid ([0-9a-f]{64})", message(driver, "sent"))[1]
    wait_for(lambda: bid in [b["id"] for b in node.get(f"/api/address/{wallet}")["open_bids"]], 30, "the bid's block")

    def click_cancel():
        try:
            by(driver, f'button[data-cancel="{bid}"]').click()
            return True
        except (StaleElementReferenceException, Exception):
            return False  # the list was redrawn under the click, or not yet: again
    wait_for(click_cancel, 15, "the bid's Cancel button")
    message(driver, "Cancel sent")
    wait_for(lambda: bid not in [b["id"] for b in node.get(f"/api/address/{wallet}")["open_bids"]], 30,
             "the cancel's block")
    assert node.get(f"/api/market/{slot}")["bids"] == []  # a cancelled bid leaves the slot's market
    screenshot(driver, "cancelled", tmp_path)


@pytest.mark.parametrize("quantity, price, slot, said", [
    ("3", "0.5", "", r"^quantity '3' has no unit: write 3kWh or 3000Wh$"),
    ("1kWh", "0.5", "1", r"^slot 1 is closed for bids \(gate closure\); the first open slot is \d+$"),
    ("900kWh", "0.5", "+30", r"^insufficient balance: [\d.]+ tokens, the transaction needs [\d.,]+ tokens"),
])
def test_refusals_read_as_the_cli_prints_them(node, wallet, driver, quantity, price, slot, said):
    if slot.startswith("+"):  # slots after the first open one: still open when the page signs
        slot = str(node.get("/api/node")["first_open_slot"] + int(slot))
    open_page(driver, node, "bid")
    fill_bid_by_keyboard(driver, "buy", quantity, price, slot)
    if said.startswith("^insufficient"):  # the quote is fine; the chain refuses at signing
        wait_for(lambda: by(driver, "#sign-button").is_displayed(), 10, "the quote")
        by(driver, "#sign-button").click()
    message(driver, said)


def test_a_cross_site_request_signs_nothing(node, wallet, driver):
    cookie = driver.get_cookie("transx_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    before = node.get(f"/api/address/{wallet}")["pending_nonce"]
    bid = json.dumps({"side": "buy", "quantity": "1kWh", "price": "0.3"}).encode()
    session = {"Cookie": f"transx_session={cookie['value']}"}
    for headers, reason in [({"Content-Type": "application/json"}, "locked"),  # no cookie
                            ({**session, "Content-Type": "application/json"}, "csrf"),  # the cookie, no CSRF token
                            ({**session, "Content-Type": "text/plain"}, "malformed"),  # what a form can send
                            ({**session, "Content-Type": "application/json", "Origin": "http://evil.example"},
                             "cross_site")]:
        status, doc = node.request("POST", "/app/api/bid", bid, headers)
        assert (status, doc["reason"]) == (400 if reason == "malformed" else 403, reason), doc
    assert node.get(f"/api/address/{wallet}")["pending_nonce"] == before


def test_an_expired_session_locks_and_signs_nothing(node, wallet, driver, tmp_path):
    by(driver, "#lock-button").click()
    message(driver, "Locked")
    unlock(driver, node, wallet, idle="2")
    message(driver, "Unlocked")
    wait_for(lambda: by(driver, "#unlock-form").is_displayed(), 15, "the page to show the session locked")
    open_page(driver, node, "bid")
    before = node.get(f"/api/address/{wallet}")["pending_nonce"]
    fill_bid_by_keyboard(driver, "buy", "1kWh", "0.30", "")
    wait_for(lambda: by(driver, "#sign-button").is_displayed(), 10, "the quote")
    by(driver, "#sign-button").click()
    message(driver, r"^locked: unlock the wallet with its password first \(or the session expired\)$")
    assert node.get(f"/api/address/{wallet}")["pending_nonce"] == before
    screenshot(driver, "expired", tmp_path)


def test_every_field_has_a_label(node, driver):
    unlabelled = []
    for page in ("bid", "ev"):
        open_page(driver, node, page)
        unlabelled += driver.execute_script("""
            return [...document.querySelectorAll('input, select, textarea')].filter((el) => {
              const label = el.id && document.querySelector(`label[for="${el.id}"]`);
              return !((label && label.textContent.trim()) || el.getAttribute('aria-label'));
            }).map((el) => el.outerHTML);""")
    assert unlabelled == []


def test_the_car_page_after_a_charging_session_and_the_stations_day(node, wallet, charging, driver, tmp_path):
    """After a charging session over nfcpy's udp driver (the `charging` fixture's card and station), the car
    page shows it as the chain has it, and the station page the station's day; an authorisation for another
    card is signed in the page, listed, and downloadable as the file `transx station session open` reads."""
    import base64

    if charging is None:
        pytest.skip("the NFC plugin's libraries (nfcpy, ndeflib) are not installed")
    session = charging["session"]
    closed = wait_for(lambda: (s := node.request("GET", f"/api/session/{session}")[1]).get("status") == "closed"
                      and s, 60, f"the charging session to close (logs in {charging['logs']})")
    if not by(driver, "#unlocked").is_displayed():
        unlock(driver, node, wallet)
        message(driver, "Unlocked")
    open_page(driver, node, "ev")
    cells = [c.text for c in driver.find_elements("css selector", "main table:first-of-type tbody tr:first-child td")]
    node_key = node.get("/api/node")["address"]
    assert cells == [session[:16], node_key, "CAR-7", "closed", format_kwh(closed["delivered_wh"]), "0.60",
                     format_tokens(closed["amount"]), "20%", f"{closed['soc_end']}%"], cells
    assert closed["delivered_wh"] > 0 and closed["soc_end"] >= 20
    by(driver, "#auth-ev").send_keys("AB-123")
    by(driver, "#auth-form button").click()
    issued = re.search(r"session ([0-9a-f]{64})", message(driver, "Authorisation for AB-123 signed"))[1]
    link = wait_for(lambda: maybe(driver, "a[download]"), 10, "the authorisation's download link")
    card = decode_authorisation(base64.b64decode(link.get_attribute("href").split("base64,", 1)[1]))
    assert card.session_id.hex() == issued and card.owner_address == decode_address(wallet)
    assert (card.ev_id, card.max_wh, card.max_price) == ("AB-123", 60_000, 800_000)  # the form's defaults
    screenshot(driver, "car", tmp_path)
    by(driver, "#lock-button").click()  # read the station's day as anyone may: no key needed to read
    message(driver, "Locked")
    driver.get("about:blank")
    driver.get(f"{node.api}/app/?account={node_key}#station")
    day = wait_for(lambda: "Sessions today" in by(driver, "#view").text and by(driver, ".totals").text, 15,
                   "the station page")
    assert "Sessions today 1 (0 open)" in day, day
    assert f"Delivered today {format_kwh(closed['delivered_wh'])} kWh" in day, day
    assert f"Revenue today {format_tokens(closed['amount'])}" in day, day
    screenshot(driver, "station", tmp_path)


def test_the_agents_day_plan_accepted_in_one_click(node, wallet, driver, tmp_path):
    """The home agent (a plugin the node finds through its entry point) plans the day on the Bid page;
    one click signs its bids."""
    if not by(driver, "#unlocked").is_displayed():
        unlock(driver, node, wallet)
        message(driver, "Unlocked")
    assert "agent" in [p["name"] for p in node.get("/api/node")["plugins"]]
    open_page(driver, node, "bid")
    wait_for(lambda: maybe(driver, "#home-kwp") and maybe(driver, "#home-kwp").get_attribute("value"), 10,
             f"the home's settings (the page says {by(driver, '#view').text[-200:]!r})")
    kwp = by(driver, "#home-kwp")
    kwp.clear()
    kwp.send_keys("8")
    by(driver, "#plan-button").click()
    accept = wait_for(lambda: maybe(driver, "#accept-plan"), 30, "the day plan")
    n = int(re.search(r"sign (\d+) bids", accept.text)[1])
    assert n > 0 and "expected gain against net metering" in by(driver, "#plan").text
    accept.click()  # at once: each second from the plan closes a slot of it (1-s slots)
    said = message(driver, r"bids sent \(pending\)")
    screenshot(driver, "plan", tmp_path)
    sent = int(said.split()[0])  # a slot whose gate closed meanwhile (1 s slots here) is skipped, and said
    skipped = re.search(r"Slots ([\d, ]+) closed for bids while sending", said)
    assert sent + (len(skipped[1].split(",")) if skipped else 0) == n and sent >= n - 2, said
    wait_for(lambda: len(node.get(f"/api/address/{wallet}")["open_bids"]) >= sent, 30, "the plan's bids in blocks")


def test_hands_free_turned_off_in_the_page_pauses_transx_agent_run_until_turned_on(node, wallet, driver, tmp_path):
    """The switch on the Bid page is what the home agent's service (`transx agent run`) asks before each plan."""
    open_page(driver, node, "home")
    if not by(driver, "#unlocked").is_displayed():
        unlock(driver, node, wallet)
        message(driver, "Unlocked")
    open_page(driver, node, "bid")
    switch = wait_for(lambda: maybe(driver, "#agent-switch"), 10, "the hands-free switch")
    # Enabled once the saved state is shown (before, a checkbox not yet loaded read as off: CI race)
    wait_for(lambda: switch.is_enabled(), 10, "the switch to show its saved state and be usable (an unlocked session)")
    assert by(driver, "#agent-state").text
    if switch.is_selected():
        switch.click()
    message(driver, "Hands-free off: saved")
    out = tmp_path / "agent.log"
    with open(out, "w") as log:
        agent = subprocess.Popen([*TRANSX, "agent", "run", *node.dd, "--from", wallet, "--slot-hours", "0",
                                  "--slots", "4"], stdout=log, stderr=subprocess.STDOUT, env=ENV,
                                 stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: "paused from the app" in out.read_text(), 30, "the agent to say it is paused")
        nonce = node.get(f"/api/address/{wallet}")["pending_nonce"]
        node.wait_height(node.height + 2)  # it follows the head, sending nothing
        assert "bids sent" not in out.read_text() and node.get(f"/api/address/{wallet}")["pending_nonce"] == nonce
        screenshot(driver, "hands-free-off", tmp_path)
        by(driver, "#agent-switch").click()
        message(driver, "Hands-free on: saved")
        wait_for(lambda: re.search(r"resumed from the app\n.*slots \d+\.\.\d+: \d+ bids sent", out.read_text()), 30,
                 f"the agent to resume and bid (it says {out.read_text()[-300:]!r})")
    finally:
        agent.terminate()
        agent.wait(15)
