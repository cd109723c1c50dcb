"""How the API is served: hypercorn's settings for the node's listening socket, and the ASGI wrapper that
bounds a request body's time and keeps client disconnects out of the log.

What bounds a slow client (hypercorn 0.18, trio worker):
- its request line and headers: `keep_alive_timeout`.  Hypercorn's idle timer runs from the connection's
  start (and from the end of each reply) until a whole request head is parsed, whatever arrives meanwhile,
  so a client that trickles its headers is closed after that long (hypercorn's default 5 s did so already);
  `h11_max_incomplete_size` bounds the head's size.
- its body: `serve_app`'s deadline (BODY_SECONDS from the request's head).  Hypercorn has no such bound:
  its `read_timeout` is per receive (a client that sends a byte now and then resets it) and runs while
  the app prepares its reply too (a view slower than it would be cut), so it stays unset.  A body that
  is not in by then gets a 408 and the connection is closed.
- how many at once: hypercorn 0.18 has no limit on concurrent connections (`backlog` is the kernel's
  queue of connections not yet accepted, `max_requests` restarts a worker); the two bounds above keep
  each slow one short.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
from typing import Any

import anyio
from hypercorn.config import Config as HypercornConfig
from starlette.requests import ClientDisconnect

HEAD_SECONDS = 5  # a request's line and headers, from the connection's start or the previous reply's end
# (hypercorn's default keep-alive time, now explicit: it is also how long an idle connection is kept)
BODY_SECONDS = 20  # a request's body, from the end of its headers
MAX_HEAD = 16 * 1024  # the request line and headers; a node's requests need a few hundred bytes

log = logging.getLogger("transx.api")


def check_tls(cert: str, key: str) -> None:
    """OSError or ssl.SSLError (with what is wrong) unless `cert` and `key` load as a server's PEM pair:
    checked before the node starts anything, so a bad file is one line, not a dead listener."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile=cert, keyfile=key)


def hypercorn_config(sock: socket.socket, head_seconds: float = HEAD_SECONDS,
                     tls: tuple[str, str] | None = None) -> HypercornConfig:
    """hypercorn's settings for `sock`; `tls` = (certificate, key) PEM files serves HTTPS only."""
    hc = HypercornConfig()
    if tls is not None:
        hc.certfile, hc.keyfile = tls
    hc.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn closes its own copy on the way out
    # A logger of our own: given a name instead, hypercorn adds a stderr handler to "hypercorn.error"
    # that also propagates to the node's, so each of its messages was logged twice.
    errors = logging.getLogger("transx.api.hypercorn")
    errors.setLevel(logging.WARNING)
    hc.errorlog = errors
    hc.accesslog = None
    hc.keep_alive_timeout = head_seconds
    hc.h11_max_incomplete_size = MAX_HEAD
    hc.read_timeout = None  # see the module's docstring: serve_app bounds the body instead
    return hc


def serve_app(app: Any, body_seconds: float = BODY_SECONDS) -> Any:
    """`app` as the API serves it (hand this to hypercorn's serve):

    - a request whose body is not in `body_seconds` after its headers is answered 408 (JSON, reason
      "timeout") and its connection closed, however slowly its bytes trickle in;
    - a client that goes away before its request's body is in stops the app there (it cannot have acted on
      a request it has not read) and is logged at DEBUG; Starlette's ClientDisconnect, raised when the app
      reads a body whose client left, was hypercorn's "Error in ASGI Framework" traceback.  Any other error
      still logs as before."""

    async def served(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        deadline = anyio.current_time() + body_seconds
        body_in = started = False
        stopped = ""  # why the app was stopped before its body was in: "late", "gone"

        async def receive_in_time() -> dict:
            nonlocal body_in, stopped
            if body_in:
                return await receive()
            message = None
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                message = await receive()
            if message is not None and message["type"] == "http.request":
                body_in = not message.get("more_body", False)
                return message
            # Late, or gone (http.disconnect) before its body was in: the app cannot have acted on the
            # request, and stops here, whatever it would catch (a catch-all must not take a client's exit
            # for a bug of its own).
            stopped = "late" if message is None else "gone"
            app_scope.cancel()
            await anyio.lowlevel.checkpoint()  # raises the cancellation into the app
            raise AssertionError("unreachable")  # pragma: no cover

        async def send_marked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            with anyio.CancelScope() as app_scope:
                await app(scope, receive_in_time, send_marked)
        except BaseException as e:
            if not _only_disconnects(e):
                raise
            stopped = "gone"
        if stopped == "gone":
            log.debug("%s %s: the client went away before its request was in", scope["method"], scope["path"])
        elif stopped == "late":
            log.debug("%s %s: the request's body was not in within %g s; closing", scope["method"], scope["path"],
                      body_seconds)
            if not started:
                try:
                    await _answer(send, 408, {"error": f"the request's body did not arrive within {body_seconds:g} s",
                                              "reason": "timeout"})
                except Exception as e:  # the slow client's stream is busy or gone: it is closed all the same
                    log.debug("%s %s: no 408 sent (%s)", scope["method"], scope["path"], type(e).__name__)

    return served


def _only_disconnects(e: BaseException) -> bool:
    if isinstance(e, BaseExceptionGroup):
        return all(_only_disconnects(x) for x in e.exceptions)
    return isinstance(e, ClientDisconnect)


async def _answer(send: Any, status: int, doc: dict) -> None:
    body = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
