"""Keyset paging for the API's lists: `?limit=N` (1 to the list's maximum) and `?before=CURSOR` (a page's
`next`, which is absent on the last page).  A cursor names the last entry served, never an offset, so pages
stay the same while new blocks arrive (new entries come before the first page, never inside a walk).
A malformed limit or cursor is a 400 whose "error" says what is expected."""

from __future__ import annotations

import re
from typing import Any

REASONS = {400: "malformed", 404: "not_found", 405: "malformed", 413: "too_large", 422: "invalid",
            503: "unavailable"}


class ApiError(Exception):
    """An answer other than success: the status, a line for people and a reason for programs."""

    def __init__(self, status: int, message: str, reason: str | None = None,
                 fields: dict[str, int | bool] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason or REASONS.get(status, "error")
        self.fields = fields or {}


_DIGITS = re.compile(r"[0-9]{1,18}")
_SESSION_CURSOR = re.compile(r"([0-9]{1,18})\.([0-9a-f]{64})")

# The largest page of each list (documented in /api/openapi.json).
MAX_BLOCKS = 200
MAX_SLOTS = 200
MAX_ROWS = 500  # sessions, settlements, history entries


def limit(q: Any, default: int, maximum: int) -> int:
    text = q.get("limit", str(default))
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= maximum:
        raise ApiError(400, f"limit is a number of entries, 1 to {maximum}")
    return int(text)


def before_height(q: Any, what: str = "height") -> int | None:
    """?before=N: a page's `next` on the lists keyed by height or slot (blocks, markets, settlements)."""
    if "before" not in q:
        return None
    if not _DIGITS.fullmatch(q["before"]):
        raise ApiError(400, f"before is a page's 'next' cursor (a {what})")
    return int(q["before"])


def before_session(q: Any) -> tuple[int, str] | None:
    """?before=OPENED.ID: a page's `next` on an address's sessions (newest first)."""
    if "before" not in q:
        return None
    m = _SESSION_CURSOR.fullmatch(q["before"])
    if m is None:
        raise ApiError(400, "before is a page's 'next' cursor (OPENED.SESSION_ID)")
    return int(m[1]), m[2]
