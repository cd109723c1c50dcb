"""The API's OpenAPI 3.1 description, served at /api/openapi.json (and shown by /api/docs).

Response schemas are JSON Schema (2020-12).  tests/unit/test_api_openapi.py checks real answers of a real
chain against them, route by route, errors included, and that every route of make_app is described, so the
description cannot drift from the code.  Amounts are integers: micro-units (1 token = 1,000,000), energy in
Wh, prices in micro-units per kWh.
"""

from __future__ import annotations

from typing import Any

from .paging import MAX_BLOCKS, MAX_ROWS, MAX_SLOTS

I: dict[str, Any] = {"type": "integer"}
S: dict[str, Any] = {"type": "string"}
B: dict[str, Any] = {"type": "boolean"}
HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
ADDRESS = {"type": "string", "description": "a Bech32 address"}
CURSOR = {"type": "string", "description": "opaque: pass it back as `before` for the next (older) page"}


def null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict[str, Any], optional: tuple[str, ...] = (), extra: bool = False, **more: Any) -> dict[str, Any]:
    """An object with `props`, all required but `optional`; `extra`: other properties allowed."""
    return {"type": "object", "properties": props, "required": [k for k in props if k not in optional],
            "additionalProperties": extra, **more}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


HEADER = {"height": I, "hash": HEX32, "parent": HEX32, "timestamp": {**I, "description": "milliseconds"},
          "proposer": null(ADDRESS), "state_hash": HEX32, "tx_root": HEX32, "clearing_hash": HEX32}
FINALITY = {"justified": ref("Checkpoint"), "finalized": ref("Checkpoint"), "voters": I, "voter_weight": I,
            "voter_deposit": I}
SETTLEMENT = {"sold_wh": I, "bought_wh": I, "exported_wh": I, "imported_wh": I, "reading": S, "shortfall_wh": I,
              "unused_wh": I, "released": I, "charge": I, "credit": I, "unpaid": I}
PREFERENCES = {"prefer": array(ADDRESS), "only": null(S), "energy_kind": null(S)}
MARKET_ROW = {"slot": I, "trades": I, "traded_wh": I, "value": I, "average_price": null(I), "void": B,
              "supply_wh": I, "demand_wh": I}
GRID = obj({"feed_in": I, "retail": I})

SCHEMAS: dict[str, Any] = {
    "Error": obj({"error": {**S, "description": "for people (amounts in tokens and kWh)"},
                  "reason": {**S, "description": "for programs: malformed, not_found, too_large, invalid, "
                                                 "unavailable, timeout, internal, or a refused transaction's "
                                                 "reason (nonce, gate_closed, ended, ...)"},
                  "kept": {**B, "description": "POST /api/tx: whether the node holds the transaction all the same"},
                  "balance": I, "needs": I}, optional=("kept", "balance", "needs")),
    "Checkpoint": obj({"height": I, "hash": HEX32}),
    "Grid": GRID,
    "Header": obj(HEADER),
    "Tx": obj({"hash": HEX32, "kind": S, "from": ADDRESS, "nonce": I, "fee": I}, extra=True,
              description="a transaction; its kind adds its own fields (to, amount, side, slot, wh, price, ...)"),
    "Bid": obj({"id": HEX32, "owner": ADDRESS, "side": {"enum": ["buy", "sell"]}, "slot": I, "wh": I, "price": I,
                "zone": I, "escrow": I, "included": I, "status": S, "traded_wh": I, "amount": I, **PREFERENCES},
               optional=("only", "energy_kind")),
    "Settlement": obj({"slot": I, **SETTLEMENT}),
    "Session": obj({"session": HEX32, "owner": ADDRESS, "station": ADDRESS, "ev_id": S, "status": S, "max_wh": I,
                    "price": I, "escrow": I, "opened": I, "closed": null(I), "delivered_wh": I, "amount": I,
                    "soc_start": I, "soc_end": null(I)}),
    "Node": obj({"chain_id": S, "genesis": HEX32, "height": I, "head": HEX32, **FINALITY, "address": ADDRESS,
                 "mempool": I, "slot_seconds": I, "gate_closure": I, "bid_horizon": I, "meter_window": I,
                 "first_open_slot": I, "zones": I, "min_fee": I, "grid": ref("Grid"), "genesis_time": I,
                 "supply": obj({"minted": I, "burned": I, "grid_charged": I, "grid_credited": I}),
                 "behind_slots": I, "version": S, "plugins": array({"type": "object"}), "peer_id": S,
                 "p2p": array(S), "peers": I}, optional=("version", "plugins", "peer_id", "p2p", "peers"),
                extra=True),
    "Head": obj({**HEADER, "txs": I, **FINALITY}),
    "Block": obj({**HEADER, "final": B, "justified": B,
                  "votes": array(obj({"source": ref("Checkpoint"), "target": ref("Checkpoint"), "signers": I})),
                  "txs": array(ref("Tx")),
                  "clearing": obj({"slot": I, "void": B, "certified": null(B), "trades": array(ref("Trade")),
                                   "traded_wh": I, "value": I})}),
    "Trade": obj({"seller": HEX32, "buyer": HEX32, "wh": I, "payment": I, "price": I, "preferred": B},
                 description="seller and buyer are bid ids"),
    "TxStatus": {"allOf": [ref("Tx"), obj({"status": {"enum": ["included", "pending"]}, "height": I, "position": I},
                                          optional=("height", "position"), extra=True)]},
    "Accepted": obj({"accepted": {"const": True}, "hash": HEX32, "displaced": HEX32}, optional=("displaced",)),
    "Address": obj({"address": ADDRESS, "balance": I, "escrowed": I, "nonce": I, "pending_nonce": I,
                    "solver_deposit": I, "meter": null(S), "settlements": array(ref("Settlement")),
                    "open_bids": array(ref("Bid")),
                    "history": array({"type": "object", "required": ["kind", "height"]}),
                    "next": {**null(CURSOR), "description": "HEIGHT.SEQ of the page's last entry; null on the last page"}}),
    "Sessions": obj({"address": ADDRESS, "sessions": array(ref("Session")), "next": CURSOR}, optional=("next",)),
    "Settlements": obj({"address": ADDRESS, "settlements": array(ref("Settlement")), "next": CURSOR},
                       optional=("next",)),
    "Blocks": obj({"height": I, "blocks": array(obj({**HEADER, "txs": I, "trades": I, "traded_wh": I, "void": B})), "next": CURSOR},
                  optional=("next",)),
    "Markets": obj({"height": I, "first_open_slot": I, "grid": ref("Grid"), "average_price": null(I),
                    "recent": {**array(obj(MARKET_ROW)), "description": "oldest slot first"}, "next": CURSOR},
                   optional=("next",)),
    "Market": obj({"slot": I, "status": {"enum": ["cleared", "open", "closed"]}, "starts": I, "grid": ref("Grid"),
                   "bids": array(ref("Bid")), "trades": array(ref("Trade")),
                   "participants": array(obj({"bid": HEX32, "owner": ADDRESS, "side": S, "wh": I, "amount": I,
                                              "grid": I, "surplus": I, "return_vs_grid": I})),
                   "delivery": {"type": "object", "required": ["status"]}, "void": B, "traded_wh": I, "value": I,
                   "average_price": null(I)},
                  optional=("delivery", "void", "traded_wh", "value", "average_price")),
    "Peers": obj({"peers": array(obj({"peer_id": S, "score": {"type": "number"}})),
                  "banned": array(obj({"peer_id": S, "seconds_left": I})), "stats": {"type": "object"}},
                 optional=("stats",)),
    "Health": obj({"ok": B, "problems": array(S), "height": I, "behind_slots": I, "peers": I, "store_writable": B}),
    "HeadEvent": obj({"height": I, "hash": HEX32, "slot": I, "timestamp": I}),
    "FinalEvent": obj({"height": I, "hash": HEX32}),
    "ClearedEvent": obj({"slot": I, "height": I, "hash": HEX32, "trades": I, "traded_wh": I, "value": I, "void": B}),
    "ResetEvent": obj({"reason": S, "seq": I}),
}

_PATHS = {"addr": ("path", ADDRESS, "a Bech32 address"),
          "ref": ("path", S, "a height or a 64-hex block hash"),
          "hash": ("path", HEX32, "a transaction hash"),
          "id": ("path", HEX32, "a session id"),
          "slot": ("path", I, "a delivery slot (block h clears slot h)")}


def _param(name: str, where: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema, "description": text}


def _paged(default: int, maximum: int, cursor: str) -> list[dict[str, Any]]:
    return [_param("limit", "query", {**I, "minimum": 1, "maximum": maximum, "default": default},
                   f"entries per page, 1 to {maximum}"),
            _param("before", "query", S, f"a page's `next` ({cursor}): the page after it; malformed is 400")]


def _json(schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict[str, Any], *errors: int, params: list | None = None, status: str = "200",
        tag: str = "chain") -> dict[str, Any]:
    responses = {status: ok}
    texts = {400: "malformed input", 404: "no such object", 413: "body too large", 422: "refused by the chain's rules",
             503: "the node cannot serve this now", 408: "the body did not arrive in time"}
    for e in errors:
        responses[str(e)] = _json(ref("Error"), texts[e])
    responses["500"] = _json(ref("Error"), "a bug in the node")
    return {"summary": summary, "tags": [tag], "parameters": params or [], "responses": responses}


def _get(path: str, summary: str, schema: str, *errors: int, params: list | None = None,
         tag: str = "chain") -> dict[str, Any]:
    ps = [_param(n, *_PATHS[n]) for n in _PATHS if "{" + n + "}" in path] + (params or [])
    return {"get": _op(summary, _json(ref(schema), summary), *errors, params=ps, tag=tag)}


def _page(content_type: str, text: str) -> dict[str, Any]:
    return {"get": {"summary": text, "tags": ["pages"], "parameters": [],
                    "responses": {"200": {"description": text, "content": {content_type: {"schema": S}}}}}}


_EVENTS_TEXT = """Server-sent events (text/event-stream).  Each event has `id:`, `event:` (head, final, cleared,
reset) and `data:` (JSON: components HeadEvent, FinalEvent, ClearedEvent, ResetEvent).  Reconnect with the
Last-Event-ID header (or ?last_event_id=) to get the events missed while the node still holds them (the last
1,024); else the first event is `reset`: read the state again.  A comment line every 15 s keeps the connection
open.  At most 64 streams at once (503 beyond); a client that falls 256 events behind is disconnected."""


def openapi() -> dict[str, Any]:
    paths = {
        "/api/node": _get("/api/node", "The node: chain, head, finality, timing, tariffs, supply, peers", "Node"),
        "/api/head": _get("/api/head", "The head block's header, with finality", "Head"),
        "/api/blocks": _get("/api/blocks", "Block headers, newest first", "Blocks", 400,
                            params=_paged(20, MAX_BLOCKS, "a height")),
        "/api/block/{ref}": _get("/api/block/{ref}", "A block of this chain with its transactions and clearing",
                                 "Block", 400, 404),
        "/api/tx/{hash}": _get("/api/tx/{hash}", "A transaction, included or pending", "TxStatus", 400, 404),
        "/api/tx": {"post": {**_op("Submit a signed transaction", _json(ref("Accepted"), "taken: in the pool and "
                                                                                         "gossiped"),
                                   400, 413, 422, 503, 408, status="202", tag="transactions"),
                             "requestBody": {"required": True, "content": {"application/json": {"schema": obj(
                                 {"raw": {**S, "pattern": "^[0-9a-fA-F]*$",
                                          "description": "hex of a signed transaction"}})}}}}},
        "/api/address/{addr}": _get("/api/address/{addr}", "An account and a page of its history, newest first",
                                    "Address", 400, params=[
                                        *_paged(50, MAX_ROWS, "HEIGHT.SEQ, or a height"),
                                        _param("consensus", "query", {"enum": ["0", "1"], "default": "1"},
                                               "0: leave out the solver's commits and reveals")],
                                    tag="accounts"),
        "/api/sessions/{addr}": _get("/api/sessions/{addr}", "An address's charging sessions, newest first",
                                     "Sessions", 400, params=_paged(50, MAX_ROWS, "OPENED.SESSION_ID"),
                                     tag="accounts"),
        "/api/settlements/{addr}": _get("/api/settlements/{addr}", "An account's delivery settlements, newest first",
                                        "Settlements", 400, params=_paged(50, MAX_ROWS, "a slot"), tag="accounts"),
        "/api/session/{id}": _get("/api/session/{id}", "A charging session", "Session", 400, 404, tag="accounts"),
        "/api/market": _get("/api/market", "Cleared slots (the last 24 by default) and the recent average price",
                            "Markets", 400, params=_paged(24, MAX_SLOTS, "a slot"), tag="market"),
        "/api/market/{slot}": _get("/api/market/{slot}", "A slot's market: bids, trades, prices, delivery",
                                   "Market", 400, 404, tag="market"),
        "/api/peers": _get("/api/peers", "Connected and banned peers", "Peers", tag="node"),
        "/api/health": {"get": _op("Whether the node serves the present (load balancers read the status)",
                                   _json(ref("Health"), "healthy"), tag="node")},
        "/api/events": {"get": {
            "summary": "A stream of new heads, finalised blocks and cleared slots", "tags": ["node"],
            "description": _EVENTS_TEXT,
            "parameters": [_param("Last-Event-ID", "header", S, "the id of the last event received"),
                           _param("last_event_id", "query", S, "the same, for clients that cannot set headers")],
            "responses": {"200": {"description": "the stream", "content": {"text/event-stream": {"schema": S}}},
                          "503": _json(ref("Error"), "too many streams open")}}},
        "/api/openapi.json": {"get": {"summary": "This description", "tags": ["pages"], "parameters": [],
                                      "responses": {"200": _json({"type": "object", "required": ["openapi", "paths"]},
                                                                 "OpenAPI 3.1")}}},
        "/api/docs": _page("text/html", "This description as a page"),
        "/metrics": _page("text/plain", "Prometheus metrics"),
        "/": _page("text/html", "The explorer page"),
    }
    health = paths["/api/health"]["get"]["responses"]
    health["503"] = _json(ref("Health"), "not fit to serve: `problems` says why (store, sync, peers)")
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {"title": "TransX node API", "version": "1",
                 "description": "A TransX node's HTTP API.  Amounts are integers: micro-units (1 token = 1,000,000), "
                                "energy in Wh, prices in micro-units per kWh.  Lists page by keyset: `limit`, and "
                                "`before` = a page's `next` (absent, or null for an address's history, on the last "
                                "page); pages stay the same while blocks arrive.  Errors are JSON "
                                "{\"error\", \"reason\"}.  CORS is off unless the node's [api] cors_origins lists "
                                "origins."},
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
