"""The mempool journal: pending transactions survive a restart, as geth's do.

Each admitted transaction is appended as a record (length, CRC-32, raw
bytes); the API's own are synced before the node says it has them, so a 202
means the transaction is on disk.  At start the node re-admits what the
journal holds, dropping what is no longer valid, and rewrites it compactly.
A torn last record (a kill mid-append) is ignored.  A failed append (a full
disk) is cut back, so later records never sit behind a torn one
(`JournalError`).  Damage is never read silently: a record whose checksum
fails, or a torn tail longer than one append could leave, marks the journal
`damaged`; the node then keeps the file aside and says so (consensus/node.py).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

_HEAD = struct.Struct(">II")  # length, CRC-32 of the raw bytes
_LEGACY = struct.Struct(">I")  # before the checksum (a journal written by an older node)
MAGIC = b"TXJ2"
MAX_RECORD = 1 << 16


class JournalError(Exception):
    """A record could not be written; the journal is as it was before.  The message says why."""


@dataclass
class Loaded:
    """What a journal file holds: its whole records, and what was wrong with the rest."""

    records: list[bytes] = field(default_factory=list)
    torn: int = 0  # bytes of a partial last record (a kill mid-append), ignored
    damaged: str | None = None  # why the file cannot be trusted past `records`, if it cannot


class Journal:
    def __init__(self, path: Path, sync: bool = True) -> None:
        self.path = path
        self.sync = sync  # fsync each append by default (the daemon); a simulator's journal need not
        self.records = 0
        self._fd: int | None = None
        self._end = 0  # the length of the journal's whole records: a failed append is cut back to it

    def read(self) -> Loaded:
        """Every whole record, in order, and what is wrong with the file past them."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Loaded()
        if not data.startswith(MAGIC):
            return _read_legacy(data)
        out, pos = Loaded(), len(MAGIC)
        while pos < len(data):
            if pos + _HEAD.size > len(data):
                out.torn = len(data) - pos
                break
            n, crc = _HEAD.unpack_from(data, pos)
            body = data[pos + _HEAD.size:pos + _HEAD.size + n]
            if n > MAX_RECORD:
                out.damaged = f"a record at byte {pos} claims {n} bytes"
                break
            if len(body) < n:  # the last record, cut short: a kill mid-append writes at most one
                out.torn = len(data) - pos
                break
            if zlib.crc32(body) != crc:
                out.damaged = f"the record at byte {pos} fails its checksum"
                break
            out.records.append(body)
            pos += _HEAD.size + n
        return out

    def load(self) -> list[bytes]:
        """Every whole record in the journal, in order."""
        return self.read().records

    def append(self, raw: bytes, sync: bool | None = None) -> None:
        """Add a record (`JournalError` if it cannot be written: then nothing of it is kept); synced to
        disk when `sync` (default: the journal's `sync`).  A peer's transaction need not be: syncing
        each one a flood of gossip brings would stall the node, and losing it loses no promise of ours
        (a later synced record syncs it too)."""
        sync = self.sync if sync is None else sync
        record = _HEAD.pack(len(raw), zlib.crc32(raw)) + raw
        try:
            if self._fd is None:
                self._open()
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

    def _open(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        size = os.fstat(fd).st_size
        if size == 0:
            os.write(fd, MAGIC)
            size = len(MAGIC)
        elif os.pread(fd, len(MAGIC), 0) != MAGIC:  # an older node's journal, not rewritten at start
            os.close(fd)
            raise OSError(0, "it is in an older format (a restart rewrites it)")
        self._fd, self._end = fd, size

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
                f.write(MAGIC)
                for raw in raws:
                    f.write(_HEAD.pack(len(raw), zlib.crc32(raw)) + raw)
                f.flush()
                os.fsync(f.fileno())
            self.close()
            os.replace(tmp, self.path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise JournalError(f"cannot rewrite the mempool journal {self.path}: {e.strerror or e}") from None
        self.records = len(raws)

    def keep_aside(self, suffix: str) -> Path:
        """Move the journal file aside (a damaged one, kept for its owner to look at); returns where."""
        self.close()
        aside = self.path.with_name(f"{self.path.name}.{suffix}")
        os.replace(self.path, aside)
        return aside

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_legacy(data: bytes) -> Loaded:
    """A journal of length-prefixed records without checksums (nodes before TXJ2)."""
    out, pos = Loaded(), 0
    while pos + _LEGACY.size <= len(data):
        (n,) = _LEGACY.unpack_from(data, pos)
        if n > MAX_RECORD:
            out.damaged = f"a record at byte {pos} claims {n} bytes"
            return out
        if pos + _LEGACY.size + n > len(data):
            break
        out.records.append(data[pos + _LEGACY.size:pos + _LEGACY.size + n])
        pos += _LEGACY.size + n
    out.torn = len(data) - pos
    return out
