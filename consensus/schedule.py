"""When each block is due and which slots still take bids.

Block h clears slot h and may be stamped no earlier than the slot's start,
``genesis.timestamp + h * slot_seconds``.  A bid for slot s must be in a
block of height <= s - L (gate closure), so the instance of slot s is fixed
L - 1 blocks before its block can be proposed.
"""

from __future__ import annotations

from transxnode.genesis import Genesis


def due_ms(g: Genesis, height: int) -> int:
    """The earliest timestamp (ms) of the block at `height`."""
    return g.slot_start_ms(height)


def first_open_slot(g: Genesis, head_height: int) -> int:
    """The earliest slot a bid sent now can still enter (it goes into block head + 1)."""
    return head_height + 1 + g.gate_closure


def slot_at(g: Genesis, now_ms: int) -> int:
    """The slot whose delivery interval contains `now_ms` (0 before genesis)."""
    return max(0, (now_ms // 1000 - g.timestamp) // g.slot_seconds)
