"""The HTTP client the CLI uses to talk to a node's API (the standard library's urllib; the transaction hash
from consensus.rules.codec)."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transxnode.datadir.config import DEFAULT_API, ConfigError, load_config, running_api


class ClientError(Exception):
    """The node could not be reached, or refused the request; one line for the user.  A refusal keeps
    the HTTP status and the API's machine-readable reason (see transxnode/api/app.py); None if unreached.
    `may_be_received`: the request went out and the node may have acted on it (a reply cut mid-way, a
    connection reset after sending, a timeout); False when it never reached a node (nothing listening)."""

    def __init__(self, message: str, status: int | None = None, reason: str | None = None,
                 may_be_received: bool = False) -> None:
        super().__init__(message)
        self.status, self.reason, self.may_be_received = status, reason, may_be_received


def resolve_api(api: str | None, datadir: str | Path | None, named: bool = False) -> str:
    """--api if given, else the URL the node running on `datadir` wrote, else its config's listen address.
    The default API address only for a data directory nobody `named` (the default one, uninitialised): a
    named directory that is not a node's is an error, never whatever node answers at the default address."""
    if api:
        return api.rstrip("/")
    assert datadir is not None, "no --api and no data directory"
    url = running_api(datadir)
    if url:
        return url.rstrip("/")
    try:
        return "http://" + load_config(datadir).api_listen
    except ConfigError as e:
        if named:
            raise ConfigError(f"{e} (or give the node's --api URL)") from None
        return "http://" + DEFAULT_API


class ApiClient:
    def __init__(self, url: str, timeout: float = 30) -> None:
        self.url, self.timeout = url, timeout

    def get(self, path: str) -> Any:
        return self._call(path)

    def post(self, path: str, doc: Any) -> Any:
        return self._call(path, json.dumps(doc).encode())

    def submit(self, raw: bytes) -> dict[str, Any]:
        from consensus.rules.codec import digest

        return self._call("/api/tx", json.dumps({"raw": raw.hex()}).encode(), tx_hash=digest(raw, b"transx-tx").hex())

    def events(self, last_event_id: str | None = None, timeout: float = 40) -> Iterator[dict[str, Any]]:
        """The node's /api/events stream: {"id", "event", "data"} (data parsed from JSON) as they come.  With
        `last_event_id`, the events missed since (or a "reset" event).  Raises ClientError when the node has
        no stream (404: an older node), refuses one (503: too many), or goes quiet for `timeout` seconds
        (it sends a heartbeat every 15 s)."""
        u = urllib.parse.urlsplit(self.url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ClientError(f"{self.url!r} is not an API URL (e.g. http://127.0.0.1:8645)")
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname, u.port, timeout=timeout)
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        try:
            try:
                conn.request("GET", u.path.rstrip("/") + "/api/events", headers=headers)
                r = conn.getresponse()
            except OSError as e:
                raise self._unsent(e, "/api/events", False, None) from None
            if r.status != 200:
                try:
                    doc = json.loads(r.read())
                    msg, reason = doc["error"], doc.get("reason")
                except (ValueError, KeyError, TypeError, OSError, http.client.HTTPException):
                    msg, reason = f"HTTP {r.status}", None
                raise ClientError(msg, r.status, reason)
            yield from _parse_events(r, lambda e: self._cut(e, "/api/events", False, None))
        finally:
            conn.close()

    def hands_free(self, address: str) -> bool:
        """Whether the owner lets the home agent bid for `address` (the app's switch, /app/api/agent); True
        from a node without the app (older, or behind a proxy that serves only /api)."""
        try:
            return bool(self.get(f"/app/api/agent?address={address}")["hands_free"])
        except ClientError as e:
            if e.status == 404:
                return True
            raise

    def new_heads(self, poll_seconds: float) -> Iterator[dict[str, Any] | None]:
        """Yields once per new head: its `head` event from the stream, reconnecting after a break with the
        last event's id; None every `poll_seconds` instead while the node has no stream (an older node) or
        it is unreachable, trying the stream again each time."""
        last = None
        while True:
            try:
                for ev in self.events(last):
                    last = ev["id"] or last
                    if ev["event"] in ("head", "reset"):
                        yield ev
            except ClientError:
                pass
            time.sleep(poll_seconds)
            yield None

    def _call(self, path: str, body: bytes | None = None, tx_hash: str | None = None) -> Any:
        try:
            req = urllib.request.Request(self.url + path, data=body, method="POST" if body is not None else "GET",
                                         headers={"Content-Type": "application/json"} if body is not None else {})
        except ValueError:
            raise ClientError(f"{self.url!r} is not an API URL (e.g. http://127.0.0.1:8645)") from None
        # urllib wraps what fails while connecting and sending in URLError; what fails once the request is
        # out (the status line, the headers, the body) comes through as it is: http.client's IncompleteRead,
        # RemoteDisconnected, BadStatusLine, or the socket's ConnectionResetError or TimeoutError.
        try:
            r = urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise self._refusal(e) from None
        except urllib.error.URLError as e:
            raise self._unsent(e.reason, path, body is not None, tx_hash) from None
        except (http.client.HTTPException, OSError) as e:
            raise self._cut(e, path, body is not None, tx_hash) from None
        with r:
            try:
                data = r.read()
            except (http.client.HTTPException, OSError) as e:
                raise self._cut(e, path, body is not None, tx_hash) from None
        try:
            return json.loads(data)
        except ValueError:
            if r.length is None and not r.chunked:
                # A node's replies always give their length (or come in chunks): one that gives neither and
                # is not JSON ended with the connection, its headers cut short.
                raise self._cut(ConnectionError(f"the reply ended after {len(data)} bytes, its headers cut short"),
                                path, body is not None, tx_hash) from None
            raise ClientError(f"{self.url} did not answer with JSON: is it a TransX node?") from None

    @staticmethod
    def _refusal(e: urllib.error.HTTPError) -> ClientError:
        try:
            doc = json.loads(e.read())
            msg, reason = doc["error"], doc.get("reason")
        except (ValueError, KeyError, TypeError, AttributeError, http.client.HTTPException, OSError):
            msg, reason = f"HTTP {e.code}", None  # not JSON, or cut mid-way: the status still says what it was
        return ClientError(msg, e.code, reason)

    def _unsent(self, reason: Any, path: str, post: bool, tx_hash: str | None) -> ClientError:
        """Connecting or sending failed: nothing reached a node, unless the connection broke (or stalled)
        while the request was going out."""
        if isinstance(reason, (TimeoutError, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return self._cut(reason, path, post, tx_hash)
        return ClientError(f"no node answers at {self.url} ({reason}): is `transx node` running? "
                           "(--api URL or --datadir DIR)")

    def _cut(self, e: BaseException, path: str, post: bool, tx_hash: str | None) -> ClientError:
        """The request went out (or may have) and no whole reply came back: one line that says whether the
        node may have acted on it."""
        if isinstance(e, TimeoutError):
            what = f"the node at {self.url} did not answer within {self.timeout:g} s"
        else:
            detail = str(e) or type(e).__name__
            if isinstance(e, http.client.IncompleteRead):
                detail = f"got {len(e.partial)} bytes" + (f", {e.expected} more expected" if e.expected else "")
            what = f"the node at {self.url} stopped answering mid-reply ({detail})"
        if tx_hash is not None:
            then = (f"the transaction may have been sent: check with `transx explorer tx {tx_hash}` "
                    "before sending it again")
        elif post:
            then = f"the request (POST {path}) may have been received: check before sending it again"
        else:
            then = "it may have received the request (a read: nothing changed); try again when it answers"
        return ClientError(f"{what}: {then}", may_be_received=True)


def _parse_events(r: Any, cut: Any) -> Iterator[dict[str, Any]]:
    """text/event-stream lines into events (comments, such as heartbeats, skipped)."""
    ev: dict[str, Any] = {"id": None, "event": "message"}
    data: list[str] = []
    while True:
        try:
            raw = r.readline()
        except (OSError, http.client.HTTPException) as e:
            raise cut(e) from None
        if not raw:
            raise cut(ConnectionError("the stream ended"))
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                try:
                    yield {**ev, "data": json.loads("\n".join(data))}
                except ValueError:
                    pass
            ev, data = {"id": ev["id"], "event": "message"}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name in ("id", "event"):
            ev[name] = value
