"""How the API is served (issue 17, item 5), against a real hypercorn on 127.0.0.1 set up as the daemon sets
it up (transxnode/api/server.py): a client that trickles its headers or its body is dropped within a bounded
time, however slowly its bytes come; a slow view still answers; a client that goes away before its request is
read logs nothing above DEBUG, and a real error still logs, once."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from functools import partial

import pytest
import trio
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from transxnode.api.server import hypercorn_config, serve_app

HEAD, BODY = 1.0, 1.0  # the bounds these tests serve with (the node's: server.HEAD_SECONDS, BODY_SECONDS)


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"got": len(await request.body())})


async def _slow(request: Request) -> JSONResponse:
    await trio.sleep(BODY + 0.5)  # longer than the body's bound: a slow view is not a slow client
    return JSONResponse({"slow": True})


async def _broken(request: Request) -> JSONResponse:
    raise RuntimeError("a real bug")


TRIVIAL = Starlette(routes=[Route("/echo", _echo, methods=["POST"]), Route("/slow", _slow),
                            Route("/broken", _broken)])


def served(app, client: Callable[[int], object], wrap: bool = True):
    """Serve `app` with hypercorn through hypercorn_config and serve_app (as the daemon does) on 127.0.0.1,
    run the blocking `client(port)` in a thread, and return what it returned."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    out = []

    async def main():
        async with trio.open_nursery() as nursery:
            asgi = serve_app(app, body_seconds=BODY) if wrap else app
            await nursery.start(partial(serve, asgi, hypercorn_config(sock, head_seconds=HEAD),
                                        shutdown_trigger=trio.sleep_forever))
            out.append(await trio.to_thread.run_sync(client, port))
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        sock.close()
    return out[0]


def trickle(port: int, first: bytes, drip: bytes, every: float, give_up: float = 5.0) -> tuple[float, bytes]:
    """Send `first`, then one byte of `drip` every `every` s until the server closes the connection (or
    `drip` runs out): how long the connection lasted and what the server said."""
    c = socket.create_connection(("127.0.0.1", port))
    c.settimeout(every)
    t0 = time.monotonic()
    said = b""
    try:
        c.sendall(first)
        for b in drip:
            if time.monotonic() - t0 > give_up:
                break
            try:
                c.sendall(bytes([b]))
            except OSError:  # closed under us
                break
            try:
                chunk = c.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            said += chunk
        return time.monotonic() - t0, said
    finally:
        c.close()


def request(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(raw)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
        return data


def test_a_client_that_trickles_its_headers_is_dropped():
    lasted, said = served(TRIVIAL, lambda port: trickle(port, b"POST /echo HTTP/1.1\r\n", b"X-Slow: " + b"a" * 200,
                                                        every=0.2))
    assert lasted < HEAD + 1.0, lasted


def test_a_client_that_trickles_its_body_gets_408_and_is_dropped():
    """A byte every 0.2 s: never idle long enough for a per-read timeout, so only a deadline on the whole
    body stops it (hypercorn's read_timeout would not)."""
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    lasted, said = served(TRIVIAL, lambda port: trickle(port, head, b"{" + b" " * 999, every=0.2))
    assert lasted < BODY + 1.0, lasted
    status, _, body = said.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 408 ") and b"connection: close" in status.lower(), said
    assert json.loads(body)["reason"] == "timeout"


def test_a_body_that_stalls_is_dropped():
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"

    def stall(port):
        with socket.create_connection(("127.0.0.1", port), timeout=BODY + 3) as c:
            t0 = time.monotonic()
            c.sendall(head)
            data = b""
            while chunk := c.recv(65536):
                data += chunk
            return time.monotonic() - t0, data

    lasted, said = served(TRIVIAL, stall)
    assert lasted < BODY + 1.0 and said.startswith(b"HTTP/1.1 408 "), (lasted, said)


def test_whole_requests_are_answered_as_before_even_slow_ones_and_on_one_connection():
    body = json.dumps({"raw": "00" * 100}).encode()
    post = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    def client(port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            answers = []
            for raw in (post, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"):  # keep-alive: the same connection
                c.sendall(raw)
                data = b""
                while b"}" not in data:
                    data += c.recv(65536)
                answers.append(data)
            return answers

    echoed, slow = served(TRIVIAL, client)
    assert echoed.startswith(b"HTTP/1.1 200 ") and echoed.endswith(b'{"got":%d}' % len(body)), echoed
    assert slow.startswith(b"HTTP/1.1 200 ") and slow.endswith(b'{"slow":true}'), slow


def _gone_mid_body(port: int) -> None:
    """A POST of a transaction that stops halfway, and a client that goes away."""
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"POST /api/tx HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                  b'{"raw": "00')
        time.sleep(0.1)
    time.sleep(0.3)  # the server notices


def test_a_client_gone_mid_request_logs_nothing_above_debug(net, caplog, capsys):
    """With the node's real app: the reproduction of the "Error in ASGI Framework" traceback (Starlette's
    ClientDisconnect while reading the body), logged twice (hypercorn's own stderr handler and the node's)."""
    from transxnode.api.app import make_app
    from transxnode.metrics import NodeMetrics

    app = make_app(net.node, NodeMetrics())
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            served(app, _gone_mid_body)
    loud = [r for r in caplog.records if r.levelno > logging.DEBUG and not r.name.startswith("asyncio")]
    assert not loud, [(r.name, r.levelname, r.getMessage()) for r in loud]
    assert sum("went away" in r.getMessage() for r in caplog.records) == 3
    assert "Error in ASGI Framework" not in capsys.readouterr().err


def test_a_real_error_still_logs_once(caplog, capsys):
    with caplog.at_level(logging.DEBUG):
        said = served(TRIVIAL, lambda port: request(port, b"GET /broken HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert said.startswith(b"HTTP/1.1 500 "), said
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "Error in ASGI Framework" in errors[0].getMessage(), errors
    assert "a real bug" in caplog.text
    assert "Error in ASGI Framework" not in capsys.readouterr().err  # not a second copy on hypercorn's own handler


@pytest.mark.parametrize("wrap", [False, True])
def test_the_settings_alone_log_an_error_once(caplog, capsys, wrap):
    """hypercorn_config on its own (as the daemon uses it until it serves serve_app(app)): one copy."""
    with caplog.at_level(logging.DEBUG):
        served(TRIVIAL, lambda port: request(port, b"GET /broken HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
               wrap=wrap)
    assert sum("Error in ASGI Framework" in r.getMessage() for r in caplog.records) == 1
    assert "Error in ASGI Framework" not in capsys.readouterr().err
