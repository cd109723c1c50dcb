"""The owner app's unlocked sessions, without I/O: who may sign, for how long.

An unlock puts a wallet's SigningKey in memory under a random session token (the browser keeps it in an
HttpOnly cookie) and a second random CSRF token (the page sends it in a header on every POST).  A request
signs only when it carries both and the session has been used within its idle time; an idle session is
dropped with its key.  The clock is passed in, so the rules are tested without waiting.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

DEFAULT_IDLE_SECONDS = 600  # 10 minutes
MAX_SESSIONS = 16  # unlocked browsers at once; the oldest is locked past it


class SessionError(Exception):
    """A request may not sign: `status` is 403 (no valid session or CSRF token); the message is for people."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Session:
    address: str
    key: object = field(repr=False)  # nacl SigningKey: kept here only, never written anywhere
    csrf: str
    idle_seconds: float
    last_used: float

    def expires_at(self) -> float:
        return self.last_used + self.idle_seconds


class SessionStore:
    """Unlocked sessions by token.  `idle_seconds` is the longest idle time a session may ask for."""

    def __init__(self, idle_seconds: float = DEFAULT_IDLE_SECONDS, max_sessions: int = MAX_SESSIONS) -> None:
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self._by_token: dict[str, Session] = {}

    def open(self, address: str, key: object, now: float, idle_seconds: float | None = None) -> tuple[str, Session]:
        """A new session for an unlocked `key`: its token (for the cookie) and the session (its CSRF token).
        `idle_seconds` may shorten the store's idle time, never lengthen it."""
        self.expire(now)
        idle = self.idle_seconds if idle_seconds is None else max(1.0, min(float(idle_seconds), self.idle_seconds))
        while len(self._by_token) >= self.max_sessions:
            oldest = min(self._by_token, key=lambda t: self._by_token[t].last_used)
            del self._by_token[oldest]
        token = secrets.token_urlsafe(32)
        session = Session(address, key, secrets.token_urlsafe(32), idle, now)
        self._by_token[token] = session
        return token, session

    def peek(self, token: str | None, now: float) -> Session | None:
        """The live session of `token`, without using it (a page asking whether it is unlocked)."""
        self.expire(now)
        return self._by_token.get(token) if token else None

    def use(self, token: str | None, csrf: str | None, now: float) -> Session:
        """The session a signing request acts for: the cookie's token and the header's CSRF token must both
        match a live session.  Using it restarts its idle time."""
        self.expire(now)
        session = self._by_token.get(token) if token else None
        if session is None:
            raise SessionError("locked: unlock the wallet with its password first (or the session expired)",
                               "locked")
        if not csrf or not hmac.compare_digest(csrf, session.csrf):
            raise SessionError("refused: this request does not carry the session's CSRF token", "csrf")
        session.last_used = now
        return session

    def close(self, token: str | None) -> bool:
        """Lock: forget the session and its key.  True when there was one."""
        return self._by_token.pop(token, None) is not None if token else False

    def expire(self, now: float) -> None:
        for token in [t for t, s in self._by_token.items() if now >= s.expires_at()]:
            del self._by_token[token]

    def __len__(self) -> int:
        return len(self._by_token)
