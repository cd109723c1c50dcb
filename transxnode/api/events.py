"""`/api/events`: the node's event hub (transxnode/events.py) as server-sent events (text/event-stream).

Each event has an `id:`; a client that reconnects with `Last-Event-ID` gets what it missed while the hub
still holds it, else a `reset` event (read the state again).  A comment every HEARTBEAT_SECONDS keeps the
connection alive through proxies.  A subscriber that falls behind is dropped by the hub (its stream ends;
it reconnects), so a slow reader never holds up the node."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from transxnode.events import HEARTBEAT_SECONDS, EventHub, Full, Subscriber

from .paging import ApiError

RETRY_MS = 2000  # how long a browser's EventSource waits before reconnecting


def event_stream(hub: EventHub, request: Request, heartbeat: float = HEARTBEAT_SECONDS) -> Response:
    """The stream for one client (its Last-Event-ID header, or ?last_event_id=), or 503 when the hub is full."""
    last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    wake = anyio.Event()
    try:
        sub = hub.subscribe(lambda: wake.set(), last)
    except Full as e:
        raise ApiError(503, f"{e}; try again later", "unavailable") from None

    async def body():
        nonlocal wake
        yield f"retry: {RETRY_MS}\n: transx node events (run {hub.run}): head, final, cleared\n\n"
        while not sub.dropped:
            while sub.pending:
                yield sub.pending.popleft().sse(hub.run)
            if sub.dropped:
                break
            wake = anyio.Event()
            got = False
            with anyio.move_on_after(heartbeat):
                await wake.wait()
                got = True
            if not got:
                yield ": heartbeat\n\n"

    return _Stream(hub, sub, body())


class _Stream(StreamingResponse):
    """A stream that gives its subscription back however it ends (even before its body began)."""

    def __init__(self, hub: EventHub, sub: Subscriber, body) -> None:
        super().__init__(body, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.hub, self.sub = hub, sub

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.hub.unsubscribe(self.sub)
