"""The mempool journal: pending transactions survive a restart, as geth's do.

Each admitted transaction is appended (length-prefixed raw bytes); at start
the node re-admits what the journal holds, dropping what is no longer valid,
and rewrites it compactly.  A torn last record (a kill mid-append) is
ignored.  Losing the journal loses only pending transactions, never chain
data, so appends are flushed but not fsynced.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

_LEN = struct.Struct(">I")
MAX_RECORD = 1 << 16


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = 0
        self._file = None

    def load(self) -> list[bytes]:
        """Every whole record in the journal, in order."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out, pos = [], 0
        while pos + _LEN.size <= len(data):
            (n,) = _LEN.unpack_from(data, pos)
            if n > MAX_RECORD or pos + _LEN.size + n > len(data):
                break
            out.append(data[pos + _LEN.size:pos + _LEN.size + n])
            pos += _LEN.size + n
        return out

    def append(self, raw: bytes) -> None:
        if self._file is None:
            self._file = open(self.path, "ab")
        self._file.write(_LEN.pack(len(raw)) + raw)
        self._file.flush()
        self.records += 1

    def rewrite(self, raws: list[bytes]) -> None:
        """Replace the journal with exactly `raws`, atomically."""
        self.close()
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for raw in raws:
                f.write(_LEN.pack(len(raw)) + raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.records = len(raws)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
