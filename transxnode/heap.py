"""Give freed heap back to the operating system now and then, so a node's memory stays flat for years.

glibc keeps memory a program has freed in its arenas (one per thread that allocated: the solver's
and the API's worker threads each get one) and returns it only from the top of the main heap.  A
node that decodes, validates and drops blocks all day leaves freed holes that count in its resident
memory (issue 20).  `malloc_trim(0)` hands every arena's free pages back (glibc 2.8 and later); it
takes about a millisecond, so once every `TRIM_EVERY` blocks is enough.  Elsewhere (musl, macOS) it
is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("transx.node")
TRIM_EVERY = 64  # blocks between trims


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


class HeapTrimmer:
    """Call `after_block(height)` for each new head; every TRIM_EVERY heights `forget` is called (caches
    of what only saves work: consensus/rules/verified.py) and then the heap is trimmed."""

    def __init__(self, every: int = TRIM_EVERY, forget=None) -> None:
        self.every, self.trims, self.forget = every, 0, forget
        self._trim = _malloc_trim()
        self._last = None

    @property
    def available(self) -> bool:
        return self._trim is not None

    def after_block(self, height: int) -> bool:
        """Trim if `height` crossed a multiple of `every` since the last call; whether it trimmed."""
        last, self._last = self._last, height
        if last is None or height // self.every == last // self.every:
            return False
        if self.forget is not None:
            self.forget()
        if self._trim is None:
            return False
        self._trim(0)
        self.trims += 1
        return True
