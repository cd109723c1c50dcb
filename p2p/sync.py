"""The block-sync request/response protocol's wire format: what a node may ask a peer for.

    status              -> height (8 bytes, big-endian) + head hash (32 bytes)
    headers(start, n)   -> up to n items, the headers at heights start .. start + n - 1
    blocks(start, n)    -> up to n items, the blocks at those heights
    block(hash)         -> zero or one item, the block with that hash (on any branch the peer holds)

Items are opaque bytes framed as in `framing`; what they mean is the node's business.  A node answers
from a `Source`; the downloader that decides what to ask for lives with the chain (transxnode).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

from . import framing

STATUS, HEADERS, BLOCKS, BLOCK = b"S", b"H", b"B", b"W"
MAX_RANGE = 512  # items per answer


class SyncError(Exception):
    """A malformed request or answer."""


class Source(Protocol):
    def status(self) -> tuple[int, bytes]: ...
    def headers(self, start: int, count: int) -> list[bytes]: ...
    def blocks(self, start: int, count: int, max_bytes: int) -> list[bytes]: ...
    def block(self, block_hash: bytes) -> bytes | None: ...


@dataclass(frozen=True)
class Request:
    kind: bytes
    start: int = 0
    count: int = 0
    hash: bytes = b""

    def encode(self) -> bytes:
        if self.kind == BLOCK:
            return BLOCK + self.hash
        if self.kind == STATUS:
            return STATUS
        return self.kind + struct.pack(">QI", self.start, self.count)


def decode_request(raw: bytes) -> Request:
    kind, rest = raw[:1], raw[1:]
    if kind == STATUS and not rest:
        return Request(STATUS)
    if kind == BLOCK and len(rest) == 32:
        return Request(BLOCK, hash=rest)
    if kind in (HEADERS, BLOCKS) and len(rest) == 12:
        start, count = struct.unpack(">QI", rest)
        if 1 <= count <= MAX_RANGE:
            return Request(kind, start, count)
    raise SyncError(f"malformed sync request ({len(raw)} bytes)")


def answer(source: Source, raw: bytes, max_bytes: int) -> bytes:
    """The answer to a request, from the node's `source`."""
    req = decode_request(raw)
    if req.kind == STATUS:
        height, head = source.status()
        return struct.pack(">Q", height) + head
    if req.kind == HEADERS:
        return framing.pack(source.headers(req.start, req.count))
    if req.kind == BLOCKS:
        return framing.pack(source.blocks(req.start, req.count, max_bytes))
    found = source.block(req.hash)
    return framing.pack([found] if found is not None else [])


def decode_status(raw: bytes) -> tuple[int, bytes]:
    if len(raw) != 40:
        raise SyncError(f"malformed status answer ({len(raw)} bytes)")
    return struct.unpack(">Q", raw[:8])[0], raw[8:]


def decode_items(raw: bytes, max_item: int, max_items: int = MAX_RANGE) -> list[bytes]:
    if not raw:
        return []
    try:
        return framing.unpack(raw, max_item, max_items)
    except framing.FramingError as e:
        raise SyncError(f"malformed sync answer: {e}") from None
