"""Fuzz target: the node's HTTP API (transxnode/api/app.py `make_app`) over the world's real node.

Requests go to the ASGI app as hypercorn hands them over (the path percent-decoded from an ASCII
target, the raw query string, the body in chunks), on one asyncio loop.  Every answer under /api/ must
be JSON (but the docs page, HTML) with a 2xx or 4xx status (this found Starlette's empty 307 for a path with a trailing slash,
tests/unit/test_fuzz_regressions.py); an exception out of the app (a 500 in the server) is a crash.

The first byte picks the route (byte % len(ROUTES)) and, in its high bits, the body's delivery (one
chunk or two) and whether the declared content-length is the body's.  The rest is split at newlines:
the path parameter, the query string, the body.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from fuzz import harness

ROUTES = [("GET", "/api/node"), ("GET", "/api/head"), ("GET", "/api/block/{}"), ("GET", "/api/tx/{}"),
          ("POST", "/api/tx"), ("GET", "/api/address/{}"), ("GET", "/api/sessions/{}"), ("GET", "/api/session/{}"),
          ("GET", "/api/market"), ("GET", "/api/market/{}"), ("GET", "/api/peers"), ("GET", "/api/{}"),
          ("POST", "/api/{}"), ("PUT", "/api/tx"), ("GET", "/api/blocks"), ("GET", "/api/settlements/{}")]
NOT_JSON = {"/api/docs": "text/html; charset=utf-8"}  # the description's page for people
STREAMS = {"/api/events"}  # never ends by design (tests/unit/test_api_events.py covers it)


def _input(route: int, param: bytes = b"", query: bytes = b"", body: bytes = b"") -> bytes:
    return bytes([route]) + param + b"\n" + query + b"\n" + body


def seeds(world) -> list[bytes]:
    import json

    from consensus.rules import keys
    from consensus.rules.charging import AUTHORISATION

    s, chain = world.samples.by_kind, world.chain
    route = {path: k for k, (_, path) in enumerate(ROUTES)}
    out = [_input(route[p]) for p in ("/api/node", "/api/head", "/api/market", "/api/peers")]
    for ref in (b"0", b"5", str(chain.height).encode(), chain.head.hash.hex().encode(), b"99"):
        out.append(_input(route["/api/block/{}"], ref))
    for raw in s["tx"][:2] + s["tx"][-3:]:
        out.append(_input(route["/api/tx"], body=json.dumps({"raw": raw.hex()}).encode()))
        out.append(_input(route["/api/tx"] + 16, body=json.dumps({"raw": raw.hex()}).encode()))
    out.append(_input(route["/api/tx/{}"], chain.block_at(5).txs[0].hash.hex().encode()))
    for k in (world.users[0], world.users[4], world.solver):
        a = keys.encode_address(keys.address_of_key(k)).encode()
        out.append(_input(route["/api/address/{}"], a, b"limit=3&before=7.1&consensus=0"))
        out.append(_input(route["/api/sessions/{}"], a))
    for raw in s["authorisation"]:
        out.append(_input(route["/api/session/{}"], AUTHORISATION.decode(raw).session_id.hex().encode()))
    for slot in (b"5", b"7", b"12", b"100000"):
        out.append(_input(route["/api/market/{}"], slot))
    return out


def setup(world):
    import asyncio
    import json

    from consensus.mempool import Mempool
    from transxnode.api.app import make_app
    from transxnode.metrics import NodeMetrics

    node = world.node
    app = make_app(node, NodeMetrics())
    loop = asyncio.new_event_loop()

    async def call(scope: dict, chunks: list[bytes]) -> tuple[int, dict, bytes]:
        events = [{"type": "http.request", "body": c, "more_body": k < len(chunks) - 1} for k, c in enumerate(chunks)]
        events.append({"type": "http.disconnect"})
        start: dict = {}
        body = bytearray()

        async def receive():
            return events.pop(0) if len(events) > 1 else events[0]

        async def send(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start.get("headers", [])}
        return start.get("status", 0), headers, bytes(body)

    def one_input(data: bytes) -> None:
        if not data:
            return
        method, template = ROUTES[data[0] % len(ROUTES)]
        two_chunks, lying = bool(data[0] & 0x10), bool(data[0] & 0x20)
        param, _, rest = data[1:].partition(b"\n")
        query, _, body = rest.partition(b"\n")
        raw_path = template.format(quote(param, safe="/")).encode("ascii")
        headers = [(b"host", b"node"), (b"content-type", b"application/json")]
        if method != "GET":
            headers.append((b"content-length", str(len(body) + (7 if lying else 0)).encode()))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
                 "path": unquote(raw_path.decode("ascii")), "raw_path": raw_path,
                 "query_string": quote(query, safe="=&;%+").encode("ascii"), "root_path": "", "headers": headers,
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
        if method == "GET" and scope["path"] in STREAMS:
            return
        chunks = [body[:len(body) // 2], body[len(body) // 2:]] if two_chunks else [body]
        node.mempool = Mempool()
        status, headers_out, answer = loop.run_until_complete(call(scope, chunks))
        if not (200 <= status < 300 or 400 <= status < 500):
            raise harness.Finding(f"{method} {raw_path!r}: status {status}")
        if status == 200 and scope["path"] in NOT_JSON:
            if headers_out.get("content-type") != NOT_JSON[scope["path"]]:
                raise harness.Finding(f"{method} {raw_path!r}: answered as {headers_out.get('content-type')}")
            return
        if headers_out.get("content-type") != "application/json":
            raise harness.Finding(f"{method} {raw_path!r}: {status} answered as {headers_out.get('content-type')}")
        try:
            json.loads(answer)
        except ValueError:
            raise harness.Finding(f"{method} {raw_path!r}: {status} with a body that is not JSON: {answer[:200]!r}")

    return one_input


if __name__ == "__main__":
    harness.main("http")
