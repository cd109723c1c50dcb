"""When each block is due and which slots still take bids.

Block h clears slot h and may be stamped no earlier than the slot's start,
``genesis.timestamp + h * slot_seconds``.  A bid for slot s must be in a
block of height <= s - L (gate closure), so the instance of slot s is fixed
L - 1 blocks before its block can be proposed.
"""

from __future__ import annotations

from .genesis import Genesis


def first_open_slot(g: Genesis, head_height: int) -> int:
    """The earliest slot a bid sent now can still enter (it goes into block head + 1)."""
    return head_height + 1 + g.gate_closure
