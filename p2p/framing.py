"""Gossip message framing: several items (transactions, say) in one libp2p message.

py-libp2p delivers ~140 messages/s to a handful of subscribers, far fewer than a market's bids, so
items travel in batches: a message is a sequence of varint-length-prefixed items.  Sans-IO.
"""

from __future__ import annotations


class FramingError(ValueError):
    """A message that is not a well-formed batch."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pack(items: list[bytes]) -> bytes:
    return b"".join(_varint(len(i)) + i for i in items)


def unpack(data: bytes, max_item: int, max_items: int) -> list[bytes]:
    """The items of a batch; `FramingError` for a truncated or oversized one, or an empty one."""
    items: list[bytes] = []
    pos, n = 0, len(data)
    while pos < n:
        size = shift = 0
        start = pos
        while True:
            if pos >= n or shift > 28:
                raise FramingError("truncated or overlong length prefix")
            b = data[pos]
            pos += 1
            size |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if pos - start != len(_varint(size)):
            raise FramingError("non-minimal length prefix")  # one item, one encoding: no dodging duplicate ids
        if size == 0 or size > max_item:
            raise FramingError(f"item of {size} bytes (the limit is {max_item})")
        if pos + size > n:
            raise FramingError("truncated item")
        items.append(data[pos:pos + size])
        pos += size
        if len(items) > max_items:
            raise FramingError(f"more than {max_items} items in one message")
    if not items:
        raise FramingError("empty message")
    return items
