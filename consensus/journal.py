"""The mempool journal: pending transactions survive a restart, as geth's do.

Each admitted transaction is appended (length-prefixed raw bytes) and synced
before the node says it has it: a 202 from the API means the transaction is
on disk.  At start the node re-admits what the journal holds, dropping what
is no longer valid, and rewrites it compactly.  A torn last record (a kill
mid-append) is ignored.  A failed append (a full disk) is cut off again, so
the records after it are never hidden behind a torn one (`JournalError`).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

_LEN = struct.Struct(">I")
MAX_RECORD = 1 << 16


class JournalError(Exception):
    """A record could not be written; the journal is as it was before.  The message says why."""


class Journal:
    def __init__(self, path: Path, sync: bool = True) -> None:
        self.path = path
        self.sync = sync  # fsync each append (the daemon); a simulator's journal need not
        self.records = 0
        self._fd: int | None = None
        self._end = 0  # the length of the journal's whole records: a failed append is cut back to it

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

    def append(self, raw: bytes, sync: bool | None = None) -> None:
        """Add a record (`JournalError` if it cannot be written: then nothing of it is kept); synced to
        disk when `sync` (default: the journal's `sync`).  A peer's transaction need not be: syncing
        each one a flood of gossip brings would stall the node, and losing it loses no promise of ours
        (a later synced record syncs it too)."""
        sync = self.sync if sync is None else sync
        record = _LEN.pack(len(raw)) + raw
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._end = os.fstat(self._fd).st_size
            written = 0
            while written < len(record):
                written += os.write(self._fd, record[written:])
            if sync:
                os.fsync(self._fd)
        except OSError as e:
            self._cut_back()
            raise JournalError(f"cannot write the mempool journal {self.path}: {e.strerror or e}") from None
        self._end += len(record)
        self.records += 1

    def _cut_back(self) -> None:
        """Drop a partly written record, so the next append does not land behind it."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, self._end)
        except OSError:  # cannot even cut: start again from the file as it is at the next append
            os.close(self._fd)
            self._fd = None

    def rewrite(self, raws: list[bytes]) -> None:
        """Replace the journal with exactly `raws`, atomically (`JournalError`: the old one is kept)."""
        tmp = self.path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                for raw in raws:
                    f.write(_LEN.pack(len(raw)) + raw)
                f.flush()
                os.fsync(f.fileno())
            self.close()
            os.replace(tmp, self.path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise JournalError(f"cannot rewrite the mempool journal {self.path}: {e.strerror or e}") from None
        self.records = len(raws)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
