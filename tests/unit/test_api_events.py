"""/api/events served by a real hypercorn as the daemon serves it (test_api_server.served): heartbeats while
nothing happens, events as they are published on the node's loop, and a reader that stops reading is
dropped (its stream ends) while publishing never waits for it."""

from __future__ import annotations

import socket
import time

import trio
from starlette.applications import Starlette
from starlette.routing import Route

from test_api_server import served
from transxnode.api.events import event_stream
from transxnode.events import EventHub

BEAT = 0.2  # the heartbeat these tests serve with (the node's: 15 s)


def _app(hub: EventHub) -> Starlette:
    return Starlette(routes=[Route("/api/events", lambda request: event_stream(hub, request, heartbeat=BEAT))])


def _open(port: int, last_id: str | None = None, buffer: int | None = None) -> socket.socket:
    c = socket.socket()
    if buffer is not None:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    c.connect(("127.0.0.1", port))
    c.settimeout(5)
    extra = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
    c.sendall(f"GET /api/events HTTP/1.1\r\nHost: node\r\n{extra}\r\n".encode())
    return c


def _read_until(c: socket.socket, marker: bytes, got: bytes = b"") -> bytes:
    while marker not in got:
        chunk = c.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_heartbeats_then_events_as_published_then_the_missed_ones_on_reconnect():
    hub = EventHub(run="r")

    def client(port: int) -> list[bytes]:
        c = _open(port)
        t0 = time.monotonic()
        head = _read_until(c, b": heartbeat")
        waited = time.monotonic() - t0
        assert b"content-type: text/event-stream" in head.lower() and waited >= BEAT * 0.8
        trio.from_thread.run_sync(hub.publish, "head", {"height": 7})
        live = _read_until(c, b'"height":7}\n\n')
        c.close()
        for h in (8, 9):
            trio.from_thread.run_sync(hub.publish, "head", {"height": h})
        back = _open(port, "r-1")
        missed = _read_until(back, b'"height":9}\n\n')
        back.close()
        return [live, missed]

    live, missed = served(_app(hub), client)
    assert b"id: r-1\nevent: head\ndata: {\"height\":7}\n\n" in live
    assert missed.index(b"id: r-2") < missed.index(b"id: r-3") and b"id: r-1\n" not in missed


def test_a_reader_that_stops_reading_is_dropped_and_never_holds_up_publishing():
    hub = EventHub(run="r", queue=50)

    def client(port: int) -> tuple[float, int, int]:
        c = _open(port, buffer=4096)  # a reader that reads nothing more
        wait_until = time.monotonic() + 5
        while not hub.subscribers and time.monotonic() < wait_until:
            time.sleep(0.01)
        t0 = time.monotonic()
        for h in range(2_000):
            trio.from_thread.run_sync(hub.publish, "cleared", {"slot": h, "pad": "x" * 2_000})
        took = time.monotonic() - t0
        left = len(hub.subscribers)
        c.close()
        return took, left, hub.seq

    took, left, published = served(_app(hub), client)
    assert published == 2_000 and left == 0  # dropped once 50 behind
    assert took < 10  # 2,000 publishes (each a hop onto the loop) did not wait on the reader
