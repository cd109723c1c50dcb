"""The node's HTTP JSON API (Starlette, served by hypercorn on the node's trio loop).

GET  /api/node, /api/head, /api/block/<height|hash>, /api/tx/<hash>, /api/address/<addr>[?consensus=0],
     /api/blocks, /api/market, /api/market/<slot>, /api/sessions/<addr>, /api/settlements/<addr>,
     /api/session/<id>, /api/peers   (lists page by keyset: ?limit=N&before=CURSOR, a page's `next`)
GET  /api/events  server-sent events: head, final, cleared (transxnode/api/events.py)
GET  /api/health  200 when the node serves the present, 503 with its problems (store, sync, peers)
POST /api/tx   {"raw": "<hex of a signed transaction>"}
GET  /api/openapi.json, /api/docs   the API's OpenAPI 3.1 description (checked against real answers in
     tests/unit/test_api_openapi.py), and a page that shows it
GET  /metrics  Prometheus
GET  /         the explorer page (static; it reads the API above)
CORS is off unless make_app gets `cors_origins` (the config's [api] cors_origins).
Errors are JSON ``{"error": "...", "reason": "..."}`` with a status that fits:
400 malformed input, 404 unknown object, 413 oversize body, 422 a well-formed
transaction the chain refuses, 503 the node cannot take it now (its disk), 500 a
bug.  Every error of POST /api/tx says in "kept" (true/false) whether the node
holds the transaction all the same: only when false should a client sign it anew.  "error" is for people (amounts in tokens and
kWh); "reason" is for programs: a refused transaction's ``TxError.reason``
("nonce", "gate_closed", "ended", "invalid"), else "malformed", "not_found" or
"too_large" by status; a refusal about an amount adds its integers
(``TxError.fields``: "balance" and "needs" in micro-units for an insufficient balance).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from consensus.rules.schedule import first_open_slot

from . import paging, views
from .events import event_stream
from .openapi import openapi
from .paging import ApiError
from consensus.rules.keys import AddressError, decode_address, encode_address
from transxnode.events import EventHub
from transxnode.health import health as node_health
from transxnode.metrics import NodeMetrics
from consensus.node import Node
from consensus.rules.transactions import MAX_TX_BYTES, TxError, decode_tx
from consensus.chain.store import StoreError
from consensus.journal import JournalError

MAX_BODY = 64 * 1024
_DIGITS = re.compile(r"[0-9]{1,18}")
_EXPLORER = (Path(__file__).parent / "static" / "explorer.html").read_text()
_DOCS = (Path(__file__).parent / "static" / "api-docs.html").read_text()
RECENT_SLOTS = 24


log = logging.getLogger("transx.api")


_VIEWS = anyio.CapacityLimiter(2)


async def _off_loop(fn, *args):
    """Run a view that reads many blocks in a worker thread, so block production never waits on it
    (LevelDB reads are thread-safe)."""
    return await anyio.to_thread.run_sync(fn, *args, limiter=_VIEWS)


def _json(doc: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(doc, status_code=status)


def _hash(text: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ApiError(400, f"{what} must be 64 hex characters") from None
    if len(raw) != 32:
        raise ApiError(400, f"{what} must be 64 hex characters")
    return raw


def _address(request: Request) -> bytes:
    try:
        return decode_address(request.path_params["addr"])
    except AddressError as e:
        raise ApiError(400, str(e)) from None


def _height(text: str, what: str = "height") -> int:
    if not _DIGITS.fullmatch(text):
        raise ApiError(400, f"a {what} is a non-negative integer")
    return int(text)


_CURSOR = re.compile(r"([0-9]{1,18})(?:\.([0-9]{1,9}))?")
MAX_PAGE = paging.MAX_ROWS


def _history_query(request: Request) -> dict[str, Any]:
    """?limit=N (1..MAX_PAGE, default 50), ?before=HEIGHT[.SEQ] (a page's `next`, or a height: the entries
    of the blocks below it), ?consensus=0 (leave out commits and reveals)."""
    q = request.query_params
    limit = q.get("limit", "50")
    if not _DIGITS.fullmatch(limit) or not 1 <= int(limit) <= MAX_PAGE:
        raise ApiError(400, f"limit is a number of entries, 1 to {MAX_PAGE}")
    before = None
    if "before" in q:
        m = _CURSOR.fullmatch(q["before"])
        if m is None or int(m[2] or 0) >= 2**32:
            raise ApiError(400, "before is a page's 'next' cursor (HEIGHT.N) or a height")
        before = (int(m[1]), int(m[2] or 0))
    consensus = q.get("consensus", "1")
    if consensus not in ("0", "1"):
        raise ApiError(400, "consensus is 1 (with the solver's commits and reveals, the default) or 0 (without)")
    return {"history": int(limit), "before": before, "consensus": consensus == "1"}


def make_app(node: Node, metrics: NodeMetrics, info: Callable[[], dict[str, Any]] | None = None,
             peers: Callable[[], dict[str, Any]] | None = None, final: Callable[[], Any] | None = None,
             health: Callable[[], tuple[int, dict[str, Any]]] | None = None, events: EventHub | None = None,
             cors_origins: list[str] | tuple[str, ...] = ()) -> Starlette:
    """The API over `node`; `info` adds fields to /api/node (version, plugins, peers, ...), `peers`
    answers /api/peers, `final` gives the node's final checkpoint (the consensus engine's: the votes
    it has seen may make a block final before the chain records it; default the chain's), `health`
    answers /api/health (transxnode/health.py; default: from the chain alone), `events` feeds
    /api/events (the daemon's hub; default one nobody publishes to), `cors_origins` the origins whose
    pages may call the API (none: CORS off)."""
    chain = node.chain
    hub = events if events is not None else EventHub()
    description = openapi()
    g = chain.genesis
    final = final or chain.finalized

    async def node_info(request: Request) -> Response:
        totals = chain.state().totals()
        return _json({
            "chain_id": g.chain_id, "genesis": g.hash.hex(), "height": chain.height, "head": chain.head.hash.hex(),
            **views.finality_json(chain, final()),
            "address": encode_address(node.address), "mempool": len(node.mempool),
            "slot_seconds": g.slot_seconds, "gate_closure": g.gate_closure, "bid_horizon": g.bid_horizon,
            "meter_window": g.meter_window,
            "first_open_slot": first_open_slot(g, node.next_block() - 1), "zones": g.zones, "min_fee": g.min_fee,
            "grid": {"feed_in": g.feed_in, "retail": g.retail}, "genesis_time": g.timestamp,
            "supply": {"minted": totals.minted, "burned": totals.burned, "grid_charged": totals.grid_charged,
                       "grid_credited": totals.grid_credited},
            # whole slots since the head's slot began: 0 or 1 when the node keeps up with the network
            "behind_slots": max(0, (time.time_ns() // 1_000_000 - g.slot_start_ms(chain.height)) // (g.slot_seconds * 1000)),
            **(info() if info is not None else {}),
        })

    async def head(request: Request) -> Response:
        return _json({**views.header_json(chain.head), "txs": len(chain.block(chain.head.hash).txs),
                      **views.finality_json(chain, final())})

    async def block(request: Request) -> Response:
        ref = request.path_params["ref"]
        b = chain.block_at(_height(ref)) if len(ref) != 64 else chain.block(_hash(ref, "a block hash"))
        if b is None or chain.hash_at(b.height) != b.hash:
            raise ApiError(404, f"no block {ref} on this chain")
        return _json(await _off_loop(views.block_json, chain, b, final()))

    async def tx(request: Request) -> Response:
        h = _hash(request.path_params["hash"], "a transaction hash")
        found = chain.tx(h)
        if found is not None:
            t, height, pos = found
            return _json({**views.tx_json(t), "status": "included", "height": height, "position": pos})
        pending = node.mempool.get(h)
        if pending is not None:
            return _json({**views.tx_json(pending), "status": "pending"})
        raise ApiError(404, f"no transaction {h.hex()}")

    async def address(request: Request) -> Response:
        addr = _address(request)
        page = _history_query(request)
        pending = node.mempool.next_nonce(addr, chain.state().account(addr).nonce)
        return _json(await _off_loop(lambda: views.address_view(chain, addr, pending, **page)))

    async def sessions(request: Request) -> Response:
        addr = _address(request)
        q = request.query_params
        n, before = paging.limit(q, 50, paging.MAX_ROWS), paging.before_session(q)
        return _json(await _off_loop(views.sessions_view, chain, addr, n, before))

    async def settlements(request: Request) -> Response:
        addr = _address(request)
        q = request.query_params
        n, before = paging.limit(q, 50, paging.MAX_ROWS), paging.before_height(q, "slot")
        return _json(await _off_loop(views.settlements_view, chain, addr, n, before))

    async def blocks(request: Request) -> Response:
        q = request.query_params
        n, before = paging.limit(q, 20, paging.MAX_BLOCKS), paging.before_height(q)
        return _json(await _off_loop(views.blocks_view, chain, n, before))

    async def session(request: Request) -> Response:
        session_id = _hash(request.path_params["id"], "a session id")
        rec = chain.state().session(session_id)
        if rec is None:
            raise ApiError(404, f"no session {session_id.hex()}")
        return _json(views.session_json(session_id, rec))

    async def market(request: Request) -> Response:
        slot = _height(request.path_params["slot"], "slot")
        if slot > chain.height + g.bid_horizon + 1:
            raise ApiError(404, f"slot {slot} is beyond the bidding horizon")
        return _json(await _off_loop(views.slot_view, chain, slot))

    async def market_summary(request: Request) -> Response:
        """Recent cleared slots (the last RECENT_SLOTS by default): what a quote for a new bid is based on."""
        q = request.query_params
        n, before = paging.limit(q, RECENT_SLOTS, paging.MAX_SLOTS), paging.before_height(q, "slot")
        first_open = first_open_slot(g, node.next_block() - 1)
        return _json(await _off_loop(views.markets_view, chain, first_open, n, before))

    async def submit(request: Request) -> Response:
        """Every answer but a 202 carries "kept": whether the node holds the transaction (journaled, in
        its pool) after all, so a client knows whether sending it again could pay twice."""
        got: list = []  # the decoded transaction, once there is one
        try:
            return await _submit(request, got)
        except ApiError as e:
            e.fields["kept"] = bool(got) and got[0].hash in node.mempool
            raise
        except ClientDisconnect:
            raise  # the client left: nobody to answer (server.serve_app ends the request quietly)
        except StoreError as e:
            kept = bool(got) and got[0].hash in node.mempool
            raise ApiError(503, f"not taking transactions: {e}", "unavailable", {"kept": kept}) from None
        except Exception as e:  # our bug: say so, and what became of the transaction
            kept = bool(got) and got[0].hash in node.mempool
            log.exception("POST /api/tx failed")
            raise ApiError(500, f"the node failed on this transaction ({type(e).__name__}); it was "
                                f"{'kept' if kept else 'not kept'}", "internal", {"kept": kept}) from None

    async def _submit(request: Request, got: list) -> Response:
        if chain.store.unwritable is not None:
            raise ApiError(503, f"not taking transactions: {chain.store.unwritable}", "unavailable")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            raise ApiError(413, f"body over {MAX_BODY} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise ApiError(413, f"body over {MAX_BODY} bytes")
        try:
            doc = json.loads(body)
            raw = bytes.fromhex(doc["raw"])
        except (ValueError, KeyError, TypeError, RecursionError):
            metrics.tx_rejected.labels("malformed").inc()
            raise ApiError(400, 'expected {"raw": "<hex of a signed transaction>"}') from None
        if len(raw) > MAX_TX_BYTES:
            metrics.tx_rejected.labels("malformed").inc()
            raise ApiError(413, f"transaction over {MAX_TX_BYTES} bytes")
        try:
            tx = decode_tx(raw)
        except TxError as e:
            metrics.tx_rejected.labels("malformed").inc()
            raise ApiError(400, str(e)) from None
        got.append(tx)
        try:
            admitted = node.submit_local(tx)
        except TxError as e:
            metrics.tx_rejected.labels("invalid").inc()
            raise ApiError(422, str(e), e.reason, e.fields) from None
        except JournalError as e:
            raise ApiError(503, f"not taking transactions: {e}", "unavailable") from None
        metrics.tx_accepted.inc()
        metrics.mempool.set(len(node.mempool))
        out = {"accepted": True, "hash": admitted.tx.hash.hex()}
        if admitted.displaced is not None:
            out["displaced"] = admitted.displaced.hash.hex()
        return _json(out, 202)

    async def health_check(request: Request) -> Response:
        status, doc = health() if health is not None else node_health(chain)
        return _json(doc, status)

    async def peer_list(request: Request) -> Response:
        return _json(peers() if peers is not None else {"peers": [], "banned": []})

    async def explorer_page(request: Request) -> Response:
        return HTMLResponse(_EXPLORER)

    async def api_description(request: Request) -> Response:
        return _json(description)

    async def api_docs(request: Request) -> Response:
        return HTMLResponse(_DOCS)

    async def event_feed(request: Request) -> Response:
        return event_stream(hub, request)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _json({"error": str(exc), "reason": exc.reason, **exc.fields}, exc.status)

    async def store_error(request: Request, exc: Exception) -> Response:
        return _json({"error": str(exc), "reason": "unavailable"}, 503)

    async def internal_error(request: Request, exc: Exception) -> Response:
        return _json({"error": f"the node failed on this request ({type(exc).__name__})", "reason": "internal"}, 500)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _json({"error": exc.detail, "reason": paging.REASONS.get(exc.status_code, "error")}, exc.status_code)

    routes = [
        Route("/api/node", node_info),
        Route("/api/head", head),
        Route("/api/block/{ref}", block),
        Route("/api/tx/{hash}", tx),
        Route("/api/tx", submit, methods=["POST"]),
        Route("/api/address/{addr}", address),
        Route("/api/sessions/{addr}", sessions),
        Route("/api/settlements/{addr}", settlements),
        Route("/api/blocks", blocks),
        Route("/api/events", event_feed),
        Route("/api/openapi.json", api_description),
        Route("/api/docs", api_docs),
        Route("/api/session/{id}", session),
        Route("/api/market", market_summary),
        Route("/api/market/{slot}", market),
        Route("/api/peers", peer_list),
        Route("/api/health", health_check),
        Route("/metrics", prometheus),
        Route("/", explorer_page),
    ]
    cors = [Middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                       allow_headers=["Content-Type", "Last-Event-ID"], max_age=600)] if cors_origins else []
    app = Starlette(routes=routes, middleware=cors,
                    exception_handlers={ApiError: api_error, HTTPException: http_error,
                                        StoreError: store_error, Exception: internal_error})
    app.router.redirect_slashes = False  # "/api/node/" is a JSON 404, not an empty 307 (found by fuzz/http.py)
    return app
