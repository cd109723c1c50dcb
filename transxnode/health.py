"""Is this node fit to serve?  What `/api/health` answers, and what the round loop says in its log.

Healthy means: the store can be written, the head is no more than `BEHIND_SLOTS`
slots behind the clock, and, for a node told of peers, some are connected.
Load balancers and service managers read the status (200 or 503); people read
the reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from consensus.chain.chain import Chain

BEHIND_SLOTS = 2  # a head this many whole slots behind the clock: syncing, not serving the present


def health(chain: Chain, peers: Callable[[], int] | None = None, needs_peers: bool = False,
           now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> tuple[int, dict[str, Any]]:
    """(HTTP status, document) for `/api/health`."""
    g = chain.genesis
    now = now_ms()
    behind = max(0, (now - g.slot_start_ms(chain.height)) // (g.slot_seconds * 1000))
    n_peers = peers() if peers is not None else 0
    problems = []
    if chain.store.unwritable is not None:
        problems.append(f"not producing or taking transactions: {chain.store.unwritable}")
    slow = clock_behind_head_s(chain, now)
    if slow:
        problems.append(f"not producing: the clock is {slow} s behind the chain's head (block {chain.height}'s "
                        f"slot has not begun by it); check the system clock (NTP)")
    if behind > BEHIND_SLOTS:
        problems.append(f"syncing: the head is {behind} slots behind the clock")
    if needs_peers and n_peers == 0:
        problems.append("no peers connected")
    doc = {"ok": not problems, "problems": problems, "height": chain.height, "behind_slots": behind,
           "peers": n_peers, "store_writable": chain.store.unwritable is None}
    return (200 if not problems else 503), doc


def clock_behind_head_s(chain: Chain, now_ms: int) -> int:
    """Whole seconds by which the clock is behind the head's slot (0: it is not): a clock stepped back
    past the chain, on which the node proposes nothing until it catches up."""
    return max(0, (chain.genesis.slot_start_ms(chain.height) - now_ms) // 1000)
