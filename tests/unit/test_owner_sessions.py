"""The owner app's session rules (transxnode/api/owner/sessions.py), on a clock the test turns."""

from __future__ import annotations

import pytest

from transxnode.api.owner.sessions import SessionError, SessionStore


def test_a_session_signs_with_its_token_and_csrf_and_expires_when_idle():
    store = SessionStore(idle_seconds=600)
    key = object()
    token, s = store.open("trx1me", key, now=0.0)
    assert store.use(token, s.csrf, now=599.0).key is key  # each use restarts the idle time
    assert store.use(token, s.csrf, now=1198.0).address == "trx1me"
    with pytest.raises(SessionError) as e:
        store.use(token, s.csrf, now=1798.0)
    assert e.value.reason == "locked" and len(store) == 0  # the key is gone with the session


@pytest.mark.parametrize("token_ok, csrf, reason", [(False, "good", "locked"), (True, None, "csrf"),
                                                    (True, "other", "csrf"), (True, "", "csrf")])
def test_a_request_without_both_tokens_is_refused(token_ok, csrf, reason):
    store = SessionStore()
    token, s = store.open("trx1me", object(), now=0.0)
    with pytest.raises(SessionError) as e:
        store.use(token if token_ok else "forged", s.csrf if csrf == "good" else csrf, now=1.0)
    assert e.value.reason == reason


def test_a_session_may_ask_for_less_idle_time_never_more_and_lock_forgets_it():
    store = SessionStore(idle_seconds=60)
    short, s1 = store.open("trx1a", object(), now=0.0, idle_seconds=2)
    long, s2 = store.open("trx1b", object(), now=0.0, idle_seconds=10_000)
    assert (s1.idle_seconds, s2.idle_seconds) == (2, 60)
    assert store.peek(short, now=2.5) is None and store.peek(long, now=2.5) is s2
    assert store.close(long) and not store.close(long) and store.peek(long, now=3.0) is None


def test_past_the_limit_the_least_recently_used_session_is_locked():
    store = SessionStore(max_sessions=2)
    a, sa = store.open("trx1a", object(), now=0.0)
    b, _ = store.open("trx1b", object(), now=1.0)
    store.use(a, sa.csrf, now=2.0)
    store.open("trx1c", object(), now=3.0)
    assert store.peek(a, now=3.0) is sa and store.peek(b, now=3.0) is None
