"""The owner app's JSON endpoints under /app/api/ and its static page (transxnode/api/static/app/).

Reading (no session): GET session, home, ev, settings, plan, agent; POST quote.  Signing or saving (an
unlocked session: the cookie's token and the X-CSRF-Token header): POST bid, cancel, authorise, settings,
plan/accept, agent (the hands-free switch that `transx agent run` obeys).
POST unlock {address, password, idle_seconds} opens a session, POST lock ends it.  Every POST takes a JSON
body (Content-Type: application/json), which a cross-site form cannot send, and one whose Origin is another
site is refused.  On a loopback listen address every request must name a loopback host (Host:
localhost, 127.0.0.1 or [::1]): a page of another site whose name an attacker points at 127.0.0.1 (DNS
rebinding) is same-origin to the browser, and would otherwise read the pages and guess passwords.  Wrong
passwords are answered ever more slowly (1, 2, 4 ... 30 s, one attempt at a time) until one is right.
Errors are the API's: ``{"error": for people, "reason": for programs}``; a refused
transaction says what `POST /api/tx` and the CLI say.  Signing is refused outright when the API listens
beyond loopback without `api_allow_remote` and TLS.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from consensus.chain.store import StoreError
from consensus.journal import JournalError
from consensus.node import Node
from consensus.rules.charging import authorise
from consensus.rules.keys import AddressError, address_of_key, decode_address, encode_address
from consensus.rules.schedule import first_open_slot
from consensus.rules.transactions import BUY, SELL, Bid, CancelBid, Body, TxError, sign_tx
from consensus.rules.units import price as format_price
from solver.instance import MAX_PRICE
from transxnode.api.paging import ApiError
from transxnode.api.views import markets_view
from transxnode.client.wallet import InputError, parse_energy, parse_tokens, quote
from transxnode.datadir.config import ConfigError
from transxnode.datadir.keystore import Keystore, KeystoreError

from .views import ByAccount, IssuedAuthorisations, authorisation_json, ev_view, home_view
from .sessions import DEFAULT_IDLE_SECONDS, SessionError, SessionStore

STATIC = Path(__file__).resolve().parents[1] / "static" / "app"
COOKIE = "transx_session"
CSRF_HEADER = "x-csrf-token"
MAX_BODY = 8 * 1024
FEE_RESERVE = 20  # fees a day plan leaves unlocked, as `transx agent` does (a solver's commits share the key)
IDLE_ENV = "TRANSX_APP_IDLE_SECONDS"  # the longest idle time of an unlocked session (default 600)
MAX_UNLOCK_DELAY = 30.0  # seconds: the most a wrong password waits for its answer
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def signing_refusal(listen: str, allow_remote: bool, tls: bool) -> str | None:
    """Why this node must not sign for a browser, or None: a listen address beyond loopback needs both
    `api_allow_remote` and TLS (the password and the session cookie would cross the network)."""
    host = listen.rpartition(":")[0].strip("[]")
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if local or (allow_remote and tls):
        return None
    return (f"the API listens on {listen}, beyond this machine: the app signs only with [api] allow_remote = true "
            "and TLS ([api] tls_cert and tls_key) set in config.toml")


def loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine (any port): what a browser sends to a node on loopback."""
    if not host:
        return False
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].partition("]")[0]
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def idle_from_env() -> float:
    """The longest idle time of a session: $TRANSX_APP_IDLE_SECONDS, else 10 minutes; ConfigError if it is
    not a positive number of seconds (the node does not start: one line)."""
    text = os.environ.get(IDLE_ENV)
    if text is None:
        return DEFAULT_IDLE_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 10**7:
        raise ConfigError(f"${IDLE_ENV} is the owner app's idle time in seconds (a positive number), got {text!r}")
    return value


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def owner_app(node: Node, cfg: Any, planners: Sequence[Any] = (), idle_seconds: float | None = None,
              clock=time.monotonic, wall_ms=_wall_ms, sleep=anyio.sleep) -> Starlette:
    """The app over `node`, unlocking keys of `cfg`'s keystore (cfg: a datadir Config; the TLS and remote
    fields are read when present).  `planners`: plugin objects with `plan_day` and `home_settings` (the
    home agent, agent/plugin.py, through the `transx.plugins` entry point); the first makes day plans.
    `clock` times idle sessions, `wall_ms` says what day it is, `sleep` delays wrong passwords (tests turn them)."""
    chain, g = node.chain, node.chain.genesis
    keystore = Keystore(cfg.keystore_dir)
    tls = bool(getattr(cfg, "api_tls_cert", None) and getattr(cfg, "api_tls_key", None))
    refusal = signing_refusal(cfg.api_listen, bool(getattr(cfg, "api_allow_remote", False)), tls)
    local_only = signing_refusal(cfg.api_listen, False, False) is None  # a loopback listen address
    unlocking = anyio.Lock()  # one password check at a time: guesses cannot run in parallel
    wrong = 0  # wrong passwords in a row
    if idle_seconds is None:
        idle_seconds = idle_from_env()
    store = SessionStore(idle_seconds)
    issued = IssuedAuthorisations(cfg.datadir / "app" / "authorisations.jsonl")
    planner = next(iter(planners), None)
    homes = ByAccount(cfg.datadir / "app" / "homes.json")
    switches = ByAccount(cfg.datadir / "app" / "agent.json")  # {"hands_free": bool, "changed": ms} per account

    async def saved(store: ByAccount, address: str, value: dict[str, Any]) -> None:
        try:
            await anyio.to_thread.run_sync(store.put, address, value)
        except (OSError, ValueError) as e:
            raise ApiError(503, f"not saved: {e}", "unavailable") from None

    def loaded(store: ByAccount, address: str) -> dict[str, Any]:
        try:
            return store.get(address)
        except (OSError, ValueError) as e:
            raise ApiError(503, str(e), "unavailable") from None

    async def body_of(request: Request) -> dict[str, Any]:
        """A POST's JSON object; refused when a browser says it comes from another site (its Origin is not
        this page's host: a second line behind the CSRF token) or when it is not JSON."""
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            raise ApiError(403, f"refused: a request from another site ({origin})", "cross_site")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise ApiError(400, "expected a JSON body (Content-Type: application/json)", "malformed")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"body over {MAX_BODY} bytes", "too_large")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise ApiError(400, "the body is not JSON", "malformed") from None
        if not isinstance(doc, dict):
            raise ApiError(400, "the body is a JSON object", "malformed")
        return doc

    def signer(request: Request):
        if refusal:
            raise ApiError(403, refusal, "remote")
        try:
            return store.use(request.cookies.get(COOKIE), request.headers.get(CSRF_HEADER), clock())
        except SessionError as e:
            raise ApiError(403, str(e), e.reason) from None

    def address_param(request: Request) -> bytes:
        text = request.query_params.get("address")
        if not text:
            session = store.peek(request.cookies.get(COOKIE), clock())
            text = session.address if session else cfg.key
        try:
            return decode_address(text)
        except AddressError as e:
            raise ApiError(400, str(e), "malformed") from None

    def submit(key, body: Body) -> dict[str, Any]:
        """Sign `body` at the key's next nonce and admit it as POST /api/tx would; the node's loop runs
        nothing in between, so the nonce read here is still free when the transaction is admitted."""
        if chain.store.unwritable is not None:
            raise ApiError(503, f"not taking transactions: {chain.store.unwritable}", "unavailable")
        addr = address_of_key(key)
        nonce = node.mempool.next_nonce(addr, chain.state().account(addr).nonce)
        tx = sign_tx(key, chain_id=g.chain_id, nonce=nonce, fee=g.min_fee, body=body)
        try:
            admitted = node.submit_local(tx)
        except TxError as e:
            raise ApiError(422, str(e), e.reason, e.fields) from None
        except (JournalError, StoreError) as e:
            raise ApiError(503, f"not taking transactions: {e}", "unavailable") from None
        return {"accepted": True, "hash": admitted.tx.hash.hex(), "nonce": tx.nonce, "fee": tx.fee}

    def checked_bid(side: int, wh: int, limit: int, slot: Any, zone: Any) -> Bid:
        """A bid checked as `transx bid buy|sell` checks it before signing, with the CLI's words."""
        if limit > MAX_PRICE:
            raise ApiError(400, f"price {format_price(limit)} is above the most a bid may name "
                                  f"({format_price(MAX_PRICE)} tokens per kWh)", "malformed")
        first = first_open_slot(g, node.next_block() - 1)
        slot = first if slot in (None, "") else slot
        if not isinstance(slot, int) or isinstance(slot, bool) or not isinstance(zone, int) or zone < 0:
            raise ApiError(400, "slot and zone are whole numbers", "malformed")
        if slot < first:
            raise ApiError(422, f"slot {slot} is closed for bids (gate closure); the first open slot is {first}",
                             "gate_closed")
        if slot > chain.height + g.bid_horizon:
            raise ApiError(422, f"slot {slot} is beyond the bidding horizon ({g.bid_horizon} slots past height "
                                  f"{chain.height})", "invalid")
        if zone >= g.zones:
            raise ApiError(400, f"zone {zone} does not exist (this network has zones 0..{g.zones - 1})",
                             "malformed")
        return Bid(side=side, slot=slot, wh=wh, price=limit, zone=zone, expiry=slot - g.gate_closure)

    def side_of(doc: dict[str, Any]) -> int:
        side = {"buy": BUY, "sell": SELL}.get(doc.get("side"))
        if side is None:
            raise ApiError(400, "side is buy or sell", "malformed")
        return side

    async def market_now() -> dict[str, Any]:
        """What GET /api/market answers (a quote's basis), read off the node's loop."""
        return await anyio.to_thread.run_sync(markets_view, chain, first_open_slot(g, node.next_block() - 1))

    async def bid_request(doc: dict[str, Any]) -> tuple[Bid, Any]:
        """The bid a form describes (quantity and price as people write them) and its quote."""
        side = side_of(doc)
        try:
            wh = parse_energy(str(doc.get("quantity", "")))
            limit = parse_tokens(str(doc.get("price", "")), "price", allow_zero=True)
        except InputError as e:
            raise ApiError(400, str(e), "malformed") from None
        market = await market_now()
        body = checked_bid(side, wh, limit, doc.get("slot"), doc.get("zone", 0))
        return body, quote(side, wh, limit, market)

    async def session(request: Request) -> Response:
        s = store.peek(request.cookies.get(COOKIE), clock())
        return JSONResponse({
            "unlocked": s is not None, "address": s.address if s else None, "csrf": s.csrf if s else None,
            "expires_in": round(s.expires_at() - clock(), 1) if s else None,
            "idle_seconds": s.idle_seconds if s else store.idle_seconds,
            "keys": keystore.addresses(), "node_key": cfg.key, "signing": refusal is None, "refusal": refusal,
            "chain_id": g.chain_id, "slot_seconds": g.slot_seconds, "grid": {"feed_in": g.feed_in, "retail": g.retail},
            "first_open_slot": first_open_slot(g, node.next_block() - 1), "height": chain.height,
            "bid_horizon": g.bid_horizon, "zones": g.zones})

    async def unlock(request: Request) -> Response:
        if refusal:
            raise ApiError(403, refusal, "remote")
        doc = await body_of(request)
        address, password, idle = doc.get("address") or cfg.key, doc.get("password"), doc.get("idle_seconds")
        if not isinstance(password, str) or not password:
            raise ApiError(400, "enter the keystore password", "malformed")
        if idle is not None and (not isinstance(idle, (int, float)) or isinstance(idle, bool) or idle <= 0):
            raise ApiError(400, "idle_seconds is a positive number", "malformed")
        if not isinstance(address, str) or not keystore.has(address):
            raise ApiError(404, f"no key for {address} in this node's keystore", "not_found")
        nonlocal wrong
        async with unlocking:
            try:
                key = await anyio.to_thread.run_sync(keystore.unlock, address, password)
            except KeystoreError as e:
                if not str(e).startswith("wrong password"):
                    raise ApiError(500, str(e), "keystore") from None
                wrong += 1
                await sleep(min(MAX_UNLOCK_DELAY, 2.0 ** (wrong - 1)))
                raise ApiError(401, str(e), "password") from None
            wrong = 0
        token, s = store.open(address, key, clock(), idle)
        out = JSONResponse({"unlocked": True, "address": s.address, "csrf": s.csrf, "idle_seconds": s.idle_seconds})
        out.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/", secure=tls)
        return out

    async def lock(request: Request) -> Response:
        await body_of(request)
        signer(request)  # a cross-site page may not lock someone out either
        store.close(request.cookies.get(COOKIE))
        out = JSONResponse({"unlocked": False})
        out.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=tls)
        return out

    async def quote_bid(request: Request) -> Response:
        body, q = await bid_request(await body_of(request))
        return JSONResponse({"slot": body.slot, "quote": q.to_json()})

    async def post_bid(request: Request) -> Response:
        doc = await body_of(request)
        s = signer(request)
        body, q = await bid_request(doc)
        out = submit(s.key, body)
        return JSONResponse({**out, "bid": out["hash"], "slot": body.slot, "quote": q.to_json()}, 202)

    async def cancel(request: Request) -> Response:
        doc = await body_of(request)
        s = signer(request)
        try:
            bid_id = bytes.fromhex(str(doc.get("bid", "")))
            assert len(bid_id) == 32
        except (ValueError, AssertionError):
            raise ApiError(400, "a bid id is 64 hex characters (the bid transaction's hash)", "malformed") from None
        return JSONResponse(submit(s.key, CancelBid(bid_id)), 202)

    async def issue(request: Request) -> Response:
        doc = await body_of(request)
        s = signer(request)
        try:
            ev_id = str(doc.get("ev_id", "")).strip()
            if not 1 <= len(ev_id.encode()) <= 32:
                raise InputError("the vehicle's id (plate or VIN) is 1 to 32 characters")
            max_wh = parse_energy(str(doc.get("max_energy", "60kWh")))
            max_price = parse_tokens(str(doc.get("max_price", "0.80")), "max price")
            hours = float(doc.get("valid_hours", 24 * 30))
            if not 0 < hours <= 24 * 366:
                raise InputError("valid for 1 minute to a year (valid_hours)")
        except (InputError, ValueError) as e:
            raise ApiError(400, str(e), "malformed") from None
        auth = authorise(s.key, chain_id=g.chain_id, ev_id=ev_id, max_wh=max_wh, max_price=max_price,
                         expiry=int(wall_ms() + hours * 3_600_000), nonce=secrets.randbits(63))
        await anyio.to_thread.run_sync(issued.add, auth)
        return JSONResponse(authorisation_json(auth, chain.state(), wall_ms()), 201)

    def the_planner():
        if planner is None:
            raise ApiError(404, "no day plan here: the home agent's plugin (transx.plugins: agent) is not "
                                  "installed", "not_found")
        return planner

    async def settings(request: Request) -> Response:
        """GET: the home's description the plan uses (defaults until saved); POST saves it (a session)."""
        p = the_planner()
        if request.method == "POST":
            doc = await body_of(request)
            s = signer(request)
            try:
                home = p.home_settings(doc)
            except ValueError as e:
                raise ApiError(400, str(e), "malformed") from None
            await saved(homes, s.address, home)
            return JSONResponse(home)
        return JSONResponse(p.home_settings(loaded(homes, encode_address(address_param(request)))))

    async def hands_free(request: Request) -> Response:
        """GET: whether the home agent (`transx agent run`, a service beside the node) bids for the account
        (default on; it asks before each plan).  POST {hands_free}: the session's account turns it on or off."""
        if request.method == "POST":
            doc = await body_of(request)
            s = signer(request)
            on = doc.get("hands_free")
            if not isinstance(on, bool):
                raise ApiError(400, "hands_free is true or false", "malformed")
            await saved(switches, s.address, {"hands_free": on, "changed": wall_ms()})
            return JSONResponse({"address": s.address, "hands_free": on})
        address = encode_address(address_param(request))
        doc = loaded(switches, address)
        return JSONResponse({"address": address, "hands_free": doc.get("hands_free", True), "changed": doc.get("changed")})

    async def plan(request: Request) -> Response:
        """The agent's plan for the next `slots` slots (default 48) from one past the first open slot, cut to
        what the account can lock (its balance less a reserve of fees, as `transx agent` keeps)."""
        p = the_planner()
        addr = address_param(request)
        slots = request.query_params.get("slots", "48")
        if not slots.isdigit() or not 1 <= int(slots) <= 192:
            raise ApiError(400, "slots is a number of slots, 1 to 192", "malformed")
        market = await market_now()
        info = {"genesis_time": g.timestamp, "slot_seconds": g.slot_seconds, "min_fee": g.min_fee,
                "grid": {"feed_in": g.feed_in, "retail": g.retail}}
        acct = chain.state().account(addr)
        funds = max(0, acct.balance - FEE_RESERVE * g.min_fee)
        home = p.home_settings(loaded(homes, encode_address(addr)))
        doc = await anyio.to_thread.run_sync(p.plan_day, home, info, market, market["first_open_slot"] + 1,
                                             int(slots), funds)
        return JSONResponse({**doc, "home": home})

    async def accept(request: Request) -> Response:
        """Sign the plan's bids as the page showed them.  Every row is checked before any is signed; a slot
        whose gate closed meanwhile is skipped, as `transx agent` and `transx bid profile` skip it (the rest
        of the plan still stands); any other refusal stops there and says which were sent."""
        doc = await body_of(request)
        s = signer(request)
        rows = doc.get("bids")
        if not isinstance(rows, list) or not rows or len(rows) > 192:
            raise ApiError(400, "bids is a list of 1 to 192 planned bids", "malformed")
        bodies, skipped = [], []
        for row in rows:
            if not isinstance(row, dict) or not all(isinstance(row.get(k), int) and not isinstance(row.get(k), bool)
                                                    for k in ("slot", "wh", "price")) or row["wh"] < 1:
                raise ApiError(400, "a planned bid is {slot, side, wh, price} in whole numbers", "malformed")
            try:
                bodies.append(checked_bid(side_of(row), row["wh"], row["price"], row["slot"], doc.get("zone", 0)))
            except ApiError as e:
                if e.reason != "gate_closed":
                    raise
                skipped.append(row["slot"])
        sent: list[dict[str, Any]] = []
        for body in bodies:
            try:
                sent.append({"bid": submit(s.key, body)["hash"], "slot": body.slot})
            except ApiError as e:
                if e.reason == "gate_closed":
                    skipped.append(body.slot)
                    continue
                e.fields.update(sent=sent, skipped_slots=skipped)
                raise
        return JSONResponse({"sent": sent, "skipped_slots": skipped}, 202)

    def tz_param(request: Request) -> int:
        """?tz=: the browser's offset from UTC in minutes (east positive), for what "today" means."""
        tz = request.query_params.get("tz", "0")
        if not tz.lstrip("-").isdigit() or abs(int(tz)) > 24 * 60:
            raise ApiError(400, "tz is the browser's offset from UTC in minutes", "malformed")
        return int(tz)

    async def home(request: Request) -> Response:
        addr, tz = address_param(request), tz_param(request)
        return JSONResponse(await anyio.to_thread.run_sync(home_view, chain, node, addr, tz, wall_ms()))

    async def ev(request: Request) -> Response:
        addr, tz = address_param(request), tz_param(request)
        return JSONResponse(await anyio.to_thread.run_sync(ev_view, chain, addr, issued, tz, wall_ms()))

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def owner_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse({"error": str(exc), "reason": exc.reason, **exc.fields}, exc.status)

    routes = [
        Route("/", page),
        Route("/api/session", session),
        Route("/api/home", home),
        Route("/api/ev", ev),
        Route("/api/unlock", unlock, methods=["POST"]),
        Route("/api/lock", lock, methods=["POST"]),
        Route("/api/quote", quote_bid, methods=["POST"]),
        Route("/api/bid", post_bid, methods=["POST"]),
        Route("/api/cancel", cancel, methods=["POST"]),
        Route("/api/authorise", issue, methods=["POST"]),
        Route("/api/settings", settings, methods=["GET", "POST"]),
        Route("/api/plan", plan),
        Route("/api/agent", hands_free, methods=["GET", "POST"]),
        Route("/api/plan/accept", accept, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    app = Starlette(routes=routes, exception_handlers={ApiError: owner_error})
    app.router.redirect_slashes = False
    if not local_only:
        return app

    async def loopback_only(scope, receive, send) -> None:
        """On a loopback node, a request naming another host is refused before any route runs."""
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
            if not loopback_host(host):
                await JSONResponse({"error": f"refused: this app answers only to this machine's names, not {host!r} "
                                             "(open it as http://127.0.0.1:PORT/app/ or http://localhost:PORT/app/)",
                                    "reason": "host"}, 403)(scope, receive, send)
                return
        await app(scope, receive, send)

    return loopback_only
