"""The HTTP client the CLI uses to talk to a node's API (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from transxnode.datadir.config import DEFAULT_API, ConfigError, load_config, running_api


class ClientError(Exception):
    """The node could not be reached, or refused the request; one line for the user.  A refusal keeps
    the HTTP status and the API's machine-readable reason (see transxnode/api/app.py); None if unreached."""

    def __init__(self, message: str, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


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
        return self.post("/api/tx", {"raw": raw.hex()})

    def _call(self, path: str, body: bytes | None = None) -> Any:
        try:
            req = urllib.request.Request(self.url + path, data=body, method="POST" if body is not None else "GET",
                                         headers={"Content-Type": "application/json"} if body is not None else {})
        except ValueError:
            raise ClientError(f"{self.url!r} is not an API URL (e.g. http://127.0.0.1:8645)") from None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                doc = json.loads(e.read())
                msg, reason = doc["error"], doc.get("reason")
            except (ValueError, KeyError, TypeError, AttributeError):
                msg, reason = f"HTTP {e.code}", None
            raise ClientError(msg, e.code, reason) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise ClientError(f"no node answers at {self.url} ({reason}): is `transx node` running? "
                              "(--api URL or --datadir DIR)") from None
        except ValueError:
            raise ClientError(f"{self.url} did not answer with JSON: is it a TransX node?") from None
