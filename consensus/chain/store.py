"""The node's LevelDB store: one atomic, synced write batch per block.

`commit` writes a block, every key it changes, and the undo record that
restores those keys, in a single `write_batch(sync=True)`: a node killed at
any instant reopens at its last committed block with nothing half-written.
`revert` applies a block's undo record in one batch the same way.
"""

from __future__ import annotations

from typing import Iterator

import plyvel

from consensus.rules import schema
from consensus.rules.state import decode_changes, encode_changes

FORMAT_VERSION = b"5"  # 2: delivery settlement (meter keys, readings, settlements, grid totals); 3: address
# history entries for trades, settlements and sessions (schema.address_tx), and accounts carry a consensus
# nonce beside the wallet nonce; 4: finality votes in blocks, the justified and final checkpoints in the state;
# 5: committees (the stake total, recent beacons, when each vote key was registered, commits carry tickets)


class StoreError(Exception):
    """The data directory cannot be used; the message says why, in one line."""


class Store:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.db = plyvel.DB(path, create_if_missing=True)
        except plyvel.IOError as e:
            if "LOCK" in str(e) or "lock" in str(e):
                raise StoreError(f"another node is using the data directory {path} (its database is locked)") from None
            raise StoreError(f"cannot open the database in {path}: {e}") from None
        except plyvel.Error as e:
            raise StoreError(f"the database in {path} is damaged: {e}") from None
        fmt = self.db.get(schema.FORMAT)
        if fmt is None:
            self.db.put(schema.FORMAT, FORMAT_VERSION, sync=True)
        elif fmt != FORMAT_VERSION:
            self.db.close()
            raise StoreError(f"{path} holds store format {fmt.decode(errors='replace')}, this node reads "
                             f"{FORMAT_VERSION.decode()}")

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def items(self, prefix: bytes, reverse: bool = False, stop: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Keys under `prefix` in order (`stop`, a key under `prefix`: only those below it)."""
        if stop is None:
            with self.db.iterator(prefix=prefix, reverse=reverse) as it:
                yield from it
            return
        assert stop.startswith(prefix)
        with self.db.iterator(start=prefix, stop=stop, reverse=reverse) as it:
            yield from it

    def commit(self, block_hash: bytes, block_bytes: bytes, changes: dict[bytes, bytes | None]) -> None:
        """Write a block and its changes, with undo data, atomically and durably."""
        undo = {k: self.db.get(k) for k in changes}
        with self.db.write_batch(sync=True) as wb:
            wb.put(schema.block(block_hash), block_bytes)
            wb.put(schema.undo(block_hash), encode_changes(undo))
            for k, v in changes.items():
                if v is None:
                    wb.delete(k)
                else:
                    wb.put(k, v)

    def put_local(self, key: bytes, value: bytes | None) -> None:
        """A node-local record outside any block (synced): what this node proposed or committed to."""
        if value is None:
            self.db.delete(key, sync=True)
        else:
            self.db.put(key, value, sync=True)

    def revert(self, block_hash: bytes) -> None:
        """Undo everything `commit` changed for `block_hash`, atomically; the block itself stays stored."""
        raw = self.db.get(schema.undo(block_hash))
        if raw is None:
            raise StoreError(f"no undo data for block {block_hash.hex()}")
        with self.db.write_batch(sync=True) as wb:
            for k, v in decode_changes(raw).items():
                if v is None:
                    wb.delete(k)
                else:
                    wb.put(k, v)
            wb.delete(schema.undo(block_hash))
