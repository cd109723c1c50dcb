"""Peer scores, bans and rate limits, sans-IO: fed events and the time, it says whom to drop.

py-libp2p's gossipsub scorer calls itself minimal and its validators can only say yes or no, so the
node keeps its own book.  Each peer has a score that decays towards zero; invalid or oversized
messages and floods take points off; below `ban_below` the peer is disconnected and banned for
`ban_seconds`, and the ban outlives the connection: a banned peer that reconnects is dropped again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INVALID = 20.0  # points off for an item that can never be valid (bad signature, malformed, oversized)
FLOOD = 5.0  # points off per message over the rate limit
GOOD = 0.1  # points back for a message that brought something new


@dataclass
class _Peer:
    score: float = 0.0
    updated: float = 0.0
    tokens: dict[str, float] = field(default_factory=dict)  # topic kind -> token bucket level
    refilled: dict[str, float] = field(default_factory=dict)


@dataclass
class PeerBook:
    """Scores and bans by peer id (any hashable).  `rates` are items per second per topic kind; a
    burst of `burst_seconds` worth is allowed."""

    rates: dict[str, float]
    ban_below: float = -100.0
    ban_seconds: float = 600.0
    half_life: float = 60.0
    max_score: float = 20.0
    burst_seconds: float = 2.0
    peers: dict[object, _Peer] = field(default_factory=dict)
    banned: dict[object, float] = field(default_factory=dict)  # peer -> ban expiry

    def _peer(self, peer: object, now: float) -> _Peer:
        p = self.peers.get(peer)
        if p is None:
            p = self.peers[peer] = _Peer(updated=now)
        elif now > p.updated:
            p.score *= 0.5 ** ((now - p.updated) / self.half_life)
            p.updated = now
        return p

    def score(self, peer: object, now: float) -> float:
        return self._peer(peer, now).score if peer in self.peers else 0.0

    def is_banned(self, peer: object, now: float) -> bool:
        until = self.banned.get(peer)
        if until is None:
            return False
        if now >= until:
            del self.banned[peer]
            self.peers.pop(peer, None)  # a ban served starts the peer afresh
            return False
        return True

    def allow(self, peer: object, kind: str, items: int, now: float) -> bool:
        """Take `items` from the peer's bucket for `kind`; False (and points off) when it is empty."""
        p = self._peer(peer, now)
        rate = self.rates.get(kind, 10.0)
        cap = rate * self.burst_seconds
        level = min(cap, p.tokens.get(kind, cap) + (now - p.refilled.get(kind, now)) * rate)
        p.refilled[kind] = now
        if items > level:
            p.tokens[kind] = level
            p.score -= FLOOD
            return False
        p.tokens[kind] = level - items
        return True

    def penalise(self, peer: object, points: float, now: float) -> bool:
        """Take points off; True if that bans the peer (the caller disconnects it)."""
        p = self._peer(peer, now)
        p.score -= points
        return self._check(peer, p, now)

    def reward(self, peer: object, now: float) -> None:
        p = self._peer(peer, now)
        p.score = min(self.max_score, p.score + GOOD)

    def flooded(self, peer: object, now: float) -> bool:
        """After `allow` said no: True if the flood has now earned a ban."""
        return self._check(peer, self._peer(peer, now), now)

    def _check(self, peer: object, p: _Peer, now: float) -> bool:
        if p.score <= self.ban_below and peer not in self.banned:
            self.banned[peer] = now + self.ban_seconds
            return True
        return False

    def forget(self, now: float) -> None:
        """Drop the records of peers whose score has decayed to nothing, and bans that have ended."""
        for peer in list(self.banned):
            self.is_banned(peer, now)
        for peer in [k for k, p in self.peers.items() if k not in self.banned]:
            if abs(self._peer(peer, now).score) < 0.01:
                del self.peers[peer]
