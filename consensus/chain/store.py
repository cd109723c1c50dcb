"""The node's LevelDB store: one atomic, synced write batch per block.

`commit` writes a block, every key it changes, and the undo record that
restores those keys, in a single `write_batch(sync=True)`: a node killed at
any instant reopens at its last committed block with nothing half-written.
`revert` applies a block's undo record in one batch the same way.

Damage is never used silently: the database is opened with paranoid checks
and every read verifies its checksums (`StoreCorrupt`).  A write that fails
(a full disk) leaves the store *unwritable* (`StoreWriteError` on every later
write) until `recover` has reopened it: LevelDB's log may end in a torn record
after a failed append, and writes appended behind it would be lost at the
next open.  With a head watermark (`watermark=True`, the daemon's store) every
head change is also recorded in a small file beside the database, so a store
that lost its recent writes (a truncated log, a deleted directory) is told
apart from one that never had them.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import plyvel

from consensus.rules import schema
from consensus.rules.blocks import BLOCK
from consensus.rules.codec import DecodeError
from consensus.rules.state import SESSION, decode_changes, encode_changes, session_index_keys

log = logging.getLogger(__name__)

FORMAT_VERSION = b"7"  # 2: delivery settlement (meter keys, readings, settlements, grid totals); 3: address
# history entries for trades, settlements and sessions (schema.address_tx), and accounts carry a consensus
# nonce beside the wallet nonce; 4: finality votes in blocks, the justified and final checkpoints in the state;
# 5: committees (the stake total, recent beacons, when each vote key was registered, commits carry tickets);
# 6: the vote key's registration height under its own tag (schema.bls_since), undo records pruned below
# finality (schema.PRUNED), the tx index without the transaction's bytes; 7: sessions indexed by the height
# that opened them (schema.party_session_opened), built in place from a format 6 store's sessions

LRU_CACHE = 8 << 20  # LevelDB's block cache, bytes (its default)
WRITE_BUFFER = 1 << 20  # LevelDB's memtable, bytes (default 4 MB): a block writes about 20 kB, so ~50 blocks a flush
MAX_OPEN_FILES = 74  # LevelDB's table cache: 64 table files open, its least (default: 1,000, so 990 files)
MAX_FILE_SIZE = 512 << 10  # LevelDB's compacted table files, bytes (default 2 MB): 64 open ones map at most ~32 MB
REOPEN_MARGIN = 4 << 20  # bytes free, beyond twice the log, before an unwritable store is reopened
UPGRADE_BATCH = 50_000  # sessions indexed per write batch when a format 6 store is upgraded
REPAIR_HINT = "`transx check` says what is wrong; `transx repair` keeps it aside and re-syncs from peers"


class StoreError(Exception):
    """The data directory cannot be used; the message says why, in one line."""


class StoreCorrupt(StoreError):
    """The database is damaged (a checksum, a missing file, lost writes): never used as it is."""


class StoreWriteError(StoreError):
    """A write failed (a full disk, an I/O error); nothing of it was applied.  The store takes no
    write until `recover` succeeds."""


class Store:
    def __init__(self, path: str, watermark: bool = False, upgrade: bool = True) -> None:
        """Open (or create) the chain database at `path`; `upgrade`: bring an older format it can read up
        to date in place (else `format_behind` says what the node would do, and nothing is written)."""
        self.path = path
        self.format_behind: str | None = None
        self.watermark_path = Path(str(path).rstrip("/") + ".head") if watermark else None
        self.unwritable: str | None = None  # why writes are refused until `recover` (None: writable)
        self._gate = _ReadGate()
        self.db = self._open()
        fmt = self.get(schema.FORMAT)
        if fmt is None:
            self._write(lambda: self.db.put(schema.FORMAT, FORMAT_VERSION, sync=True))
        elif fmt == b"6" and upgrade:
            self._upgrade_from_6()
        elif fmt == b"6":
            self.format_behind = "store format 6: the node indexes its charging sessions (format 7) when it next starts"
        elif fmt != FORMAT_VERSION:
            self.db.close()
            raise StoreError(f"{path} holds store format {fmt.decode(errors='replace')}, this node reads "
                             f"{FORMAT_VERSION.decode()}")

    def _upgrade_from_6(self) -> None:
        """Index every session by the height that opened it (format 7).  The keys go in unsynced batches of
        UPGRADE_BATCH sessions, so memory stays flat for any number; then the format mark, synced.  A crash
        before the mark leaves format 6 and some of the keys, which the next open writes again."""
        prefix = schema.session(b"")
        log.info("upgrading the chain database %s to store format 7: indexing charging sessions", self.path)
        try:
            entries: list[bytes] = []
            for n, (key, raw) in enumerate(self.items(prefix), 1):
                try:
                    entries += session_index_keys(key[len(prefix):], SESSION.decode(raw))
                except DecodeError as e:
                    raise StoreCorrupt(f"the chain database {self.path} holds a damaged session record "
                                       f"({e}): {REPAIR_HINT}") from None
                if n % UPGRADE_BATCH == 0:
                    self._put_all(entries, sync=False)
                    entries = []
            self._put_all(entries, sync=False)
            self._write(lambda: self.db.put(schema.FORMAT, FORMAT_VERSION, sync=True))
        except StoreError:
            self.db.close()
            raise

    def _put_all(self, keys: list[bytes], sync: bool) -> None:
        def write() -> None:
            with self.db.write_batch(sync=sync) as wb:
                for k in keys:
                    wb.put(k, b"")
        self._write(write)

    def _open(self) -> plyvel.DB:
        path, marked = Path(self.path), self.watermark()
        has_files = path.is_dir() and any(path.iterdir())
        if marked is not None and not has_files:
            raise StoreCorrupt(f"the chain database {path} is missing or empty, but this node wrote block "
                               f"{marked[1]} there: restore it, or {REPAIR_HINT}")
        if has_files and not (path / "CURRENT").exists():
            # LevelDB would start a new database beside the old files and replay their log into it.
            raise StoreCorrupt(f"the chain database {path} has lost its CURRENT file: {REPAIR_HINT}")
        try:
            # Memory and descriptors bounded whatever the chain's length: LevelDB's block cache (LRU_CACHE
            # bytes) and its memtable (WRITE_BUFFER bytes, two while one is flushed) are fixed sizes, and
            # its table cache keeps at most MAX_OPEN_FILES - 10 table files open (each an fd or a mapping
            # whose read pages count in RSS as file pages): the default, 1,000, let both grow with the store
            # (about 2 GB of tables); LevelDB raises anything below 74 to 74.  Its compactions write tables
            # of MAX_FILE_SIZE, so the mapped pages stop growing once the store is ~32 MB (the default, 2 MB
            # tables, let them grow to 128 MB).
            return plyvel.DB(self.path, create_if_missing=not has_files, paranoid_checks=True,
                             lru_cache_size=LRU_CACHE, write_buffer_size=WRITE_BUFFER, max_open_files=MAX_OPEN_FILES,
                             max_file_size=MAX_FILE_SIZE)
        except plyvel.IOError as e:
            raise _open_failure(self.path, e) from None
        except plyvel.Error as e:
            raise StoreCorrupt(f"the chain database {path} is damaged ({_text(e)}): {REPAIR_HINT}") from None

    def close(self) -> None:
        with self._gate.exclusive(10.0):  # a reader still inside after 10 s is a stuck thread: close anyway
            if not self.db.closed:
                self.db.close()

    # ------------------------------------------------------------------ reads
    def get(self, key: bytes) -> bytes | None:
        self._gate.enter()
        try:
            return self.db.get(key, verify_checksums=True)
        except plyvel.Error as e:
            raise self._damaged(e) from None
        finally:
            self._gate.leave()

    def memory_bytes(self) -> int:
        """LevelDB's own memory, approximately: its block cache (at most LRU_CACHE) and memtables."""
        self._gate.enter()
        try:
            return int(self.db.get_property(b"leveldb.approximate-memory-usage") or 0)
        except plyvel.Error as e:
            raise self._damaged(e) from None
        finally:
            self._gate.leave()

    def items(self, prefix: bytes, reverse: bool = False, stop: bytes | None = None,
              start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Keys under `prefix` in order (`stop`, a key under `prefix`: only those below it; `start`, one
        too, forward only: those from it on, so a scan never steps over the deleted keys before it)."""
        if stop is not None:
            assert stop.startswith(prefix)
        if start is not None:
            assert start.startswith(prefix) and not reverse
        upper = stop if stop is not None else _after_prefix(prefix)
        self._gate.enter()
        try:
            if not reverse:
                with self.db.iterator(verify_checksums=True, start=start or prefix, stop=upper) as it:
                    yield from it
                return
            # plyvel 1.5.1 yields nothing in reverse when the one key of [start, stop) equals start
            # (a store holding only "a" and "b": iterator(start=b"a", stop=b"b", reverse=True) is empty),
            # so the lower bound is checked here, not given to plyvel.
            with self.db.iterator(verify_checksums=True, stop=upper, reverse=True) as it:
                for k, v in it:
                    if k < prefix:
                        return
                    yield k, v
        except plyvel.Error as e:
            raise self._damaged(e) from None
        finally:
            self._gate.leave()

    def _damaged(self, e: Exception) -> StoreError:
        if isinstance(e, plyvel.CorruptionError) or _names_own_file(self.path, _text(e)):
            return StoreCorrupt(f"the chain database {self.path} is damaged ({_text(e)}): {REPAIR_HINT}")
        return StoreError(f"cannot read the chain database {self.path}: {_text(e)}")

    # ----------------------------------------------------------------- writes
    def commit(self, block_hash: bytes, block_bytes: bytes, changes: dict[bytes, bytes | None],
               height: int | None = None) -> None:
        """Write a block and its changes, with undo data, atomically and durably (`height`: the block's,
        for the head watermark when the changes move the head; else read from the block)."""
        undo = {k: self.get(k) for k in changes}

        def write() -> None:
            with self.db.write_batch(sync=True) as wb:
                wb.put(schema.block(block_hash), block_bytes)
                wb.put(schema.undo(block_hash), encode_changes(undo))
                for k, v in changes.items():
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
        self._write(write)
        if schema.HEAD in changes:
            self._mark_head(height)

    def prune(self, keys: list[bytes], record: tuple[bytes, bytes]) -> None:
        """Delete node-local `keys` no rule can read again, and write `record` (how far pruning got) in
        the same batch; not synced: a prune lost in a crash is done again."""
        def write() -> None:
            with self.db.write_batch() as wb:
                for k in keys:
                    wb.delete(k)
                wb.put(*record)
        self._write(write)

    def put_local(self, key: bytes, value: bytes | None) -> None:
        """A node-local record outside any block (synced): what this node proposed or committed to."""
        if value is None:
            self._write(lambda: self.db.delete(key, sync=True))
        else:
            self._write(lambda: self.db.put(key, value, sync=True))

    def revert(self, block_hash: bytes, height: int | None = None) -> None:
        """Undo everything `commit` changed for `block_hash`, atomically; the block itself stays stored
        (`height`: the block's, so the watermark records its parent's without reading it)."""
        raw = self.get(schema.undo(block_hash))
        if raw is None:
            raise StoreCorrupt(f"no undo data for block {block_hash.hex()} in {self.path}: {REPAIR_HINT}")

        def write() -> None:
            with self.db.write_batch(sync=True) as wb:
                for k, v in decode_changes(raw).items():
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
                wb.delete(schema.undo(block_hash))
        self._write(write)
        self._mark_head(None if height is None else height - 1)

    def _write(self, write) -> None:
        if self.unwritable is not None:
            raise StoreWriteError(self.unwritable)
        try:
            write()
        except plyvel.Error as e:
            # LevelDB's log may now end in a torn record: nothing may be appended behind it (it would be
            # dropped at the next open) until `recover` reopens the database.
            self.unwritable = f"cannot write the chain database {self.path}: {_text(e)}"
            raise StoreWriteError(self.unwritable) from None

    def recover(self, timeout: float = 5.0) -> bool:
        """Reopen an unwritable store (LevelDB recovers its log into a fresh one); True once writable.
        Waits for readers in other threads (at most `timeout` seconds) before closing the database."""
        if self.unwritable is None:
            return True
        if not self._room_to_reopen():
            return False  # reopening would fail, and leave the store unreadable as well until it worked
        with self._gate.exclusive(timeout) as alone:
            if not alone:
                return False
            self.db.close()
            try:
                self.db = self._open()
            except StoreError as e:
                self.unwritable = str(e)
                self.db = _Closed()  # type: ignore[assignment]
                return False
        self.unwritable = None
        self._mark_head()  # the reopened log may hold the write whose sync failed
        return True

    def _room_to_reopen(self) -> bool:
        """Free space for LevelDB to turn its log into a table and write a new manifest (with margin)."""
        try:
            st = os.statvfs(self.path)
            logs = sum(p.stat().st_size for p in Path(self.path).glob("*.log"))
        except OSError:
            return True  # let the reopen say what is wrong
        return st.f_bavail * st.f_frsize >= 2 * logs + REOPEN_MARGIN

    # -------------------------------------------------------------- watermark
    def watermark(self) -> tuple[bytes, int] | None:
        """(hash, height) of the last head this store recorded beside itself, if it keeps a watermark."""
        if self.watermark_path is None:
            return None
        try:
            raw = self.watermark_path.read_bytes()
        except FileNotFoundError:
            return None
        if len(raw) != 40:
            raise StoreCorrupt(f"{self.watermark_path} is damaged ({len(raw)} bytes, not 40): {REPAIR_HINT}")
        return raw[:32], schema.read_u64(raw[32:])

    def _mark_head(self, height: int | None = None) -> None:
        """Record the head (at `height`; None: read from its block) beside the database, after the synced
        batch that moved it (so the store is never behind its watermark unless it lost writes)."""
        if self.watermark_path is None:
            return
        head = self.get(schema.HEAD)
        if head is None:
            return
        if height is None:  # a reopen or a caller without it: decode the head block once
            raw = self.get(schema.block(head))
            if raw is None:
                return
            height = BLOCK.decode(raw).header.height
        tmp = self.watermark_path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(head + schema.u64(height))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.watermark_path)
            fd = os.open(self.watermark_path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            # The block is written; only its record is behind.  The store must not move again until the
            # record is right, or a later check would take the gap for lost writes.
            self.unwritable = f"cannot write the head's record {self.watermark_path}: {e.strerror or e}"
            raise StoreWriteError(self.unwritable) from None


def _after_prefix(prefix: bytes) -> bytes | None:
    """The least key above every key that starts with `prefix` (None: there is none, all bytes 0xff)."""
    head = prefix.rstrip(b"\xff")
    return head[:-1] + bytes([head[-1] + 1]) if head else None


def _text(e: Exception) -> str:
    arg = e.args[0] if e.args else e
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


def _open_failure(path: str, e: Exception) -> StoreError:
    text = _text(e)
    if "Read-only file system" in text:
        return StoreError(f"the data directory {path} is on a read-only file system: the node must write there")
    if "Permission denied" in text or "Operation not permitted" in text:
        return StoreError(f"no permission to write in {path} ({text}): run the node as the data directory's owner")
    if text.startswith("IO error: lock ") and ("already held" in text or "temporarily unavailable" in text):
        return StoreError(f"another node is using the data directory {path} (its database is locked)")
    if "No space left" in text:
        return StoreError(f"no space left on the disk for {path}: free some, the node resumes by itself")
    if _names_own_file(path, text):  # a table cut short, a file gone: the database's own files are damaged
        return StoreCorrupt(f"the chain database {path} is damaged ({text}): {REPAIR_HINT}")
    return StoreError(f"cannot open the database in {path}: {text}")


def _names_own_file(path: str, text: str) -> bool:
    """Whether LevelDB's error names one of the database's own data files (not its LOCK or LOG)."""
    own = str(Path(path)) + "/"
    return any(own + name in text for name in ("CURRENT", "MANIFEST-")) or (
        own in text and any(ext in text for ext in (".ldb", ".sst", ".log:")))


class _Closed:
    """Stands for the database between a failed reopen and the next one: every use is one clear error."""

    closed = True

    def __getattr__(self, name: str):
        raise plyvel.IOError(b"the database is closed until the disk can be written again")

    def close(self) -> None:
        pass


class _ReadGate:
    """Readers (the API's worker threads, the node's loop) share the database; `recover` and `close`
    wait until none is inside, so LevelDB is never closed under a read."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._closing = False

    def enter(self) -> None:
        with self._cond:
            while self._closing:
                self._cond.wait()
            self._readers += 1

    def leave(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    @contextmanager
    def exclusive(self, timeout: float | None = None):
        with self._cond:
            self._closing = True
            try:
                alone = self._cond.wait_for(lambda: self._readers == 0, timeout)
                yield alone
            finally:
                self._closing = False
                self._cond.notify_all()
