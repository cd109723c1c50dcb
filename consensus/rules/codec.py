"""The canonical binary encoding of everything TransX hashes or signs.

Schema-driven, like RLP sedes: a codec per field kind, a record is its
fields in order.  Integers are unsigned LEB128 varints in their shortest
form, byte strings carry their length, lists their count.  Decoding
rejects everything but that one form: non-minimal varints, values out of a
field's range, oversize fields, bad UTF-8, unknown tags, trailing bytes.
So one object has exactly one encoding, and hashes over it are stable.

A record that gains fields keeps its old encoding for values that leave them
at their defaults: in a `Tagged` union as a second variant under a new tag
(`Record`'s `absent` and `present`), at the end of a stored value as a
`Trailing` extension.  Either way the old bytes still decode, to the
defaults, and the new form refuses to say the defaults.
"""

from __future__ import annotations

import hashlib
from dataclasses import MISSING
from dataclasses import fields as dc_fields
from typing import Any, Callable, Generic, Sequence, TypeVar

T = TypeVar("T")

U64_MAX = 2**64 - 1


class DecodeError(ValueError):
    """Bytes that are not the canonical encoding of the expected object."""


def digest(data: bytes, person: bytes = b"transx") -> bytes:
    """BLAKE2b-256 of `data`, personalised per use so hashes of one kind never collide with another's."""
    return hashlib.blake2b(data, digest_size=32, person=person).digest()


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise DecodeError("truncated")
        out = self.buf[self.pos:end]
        self.pos = end
        return out

    def varint(self, max_value: int) -> int:
        buf, pos = self.buf, self.pos
        value = shift = 0
        while True:
            if pos >= len(buf):
                raise DecodeError("truncated integer")
            b = buf[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if b == 0 and shift:
                    raise DecodeError("non-canonical integer (trailing zero byte)")
                break
            shift += 7
            if value > max_value:
                raise DecodeError("integer out of range")
        if value > max_value:
            raise DecodeError(f"integer {value} above {max_value}")
        self.pos = pos
        return value


def _write_varint(out: bytearray, v: int) -> None:
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


class Codec(Generic[T]):
    """Writes and reads one kind of value."""

    trailing = False  # ends with a `Trailing` extension: only at the very end of a whole encoding

    def write(self, out: bytearray, v: T) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def read(self, r: _Reader) -> T:  # pragma: no cover - interface
        raise NotImplementedError

    def encode(self, v: T) -> bytes:
        out = bytearray()
        self.write(out, v)
        return bytes(out)

    def decode(self, data: bytes) -> T:
        """The value `data` canonically encodes, or `DecodeError`; no trailing bytes."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError("expected bytes")
        r = _Reader(bytes(data))
        v = self.read(r)
        if r.pos != len(r.buf):
            raise DecodeError(f"{len(r.buf) - r.pos} trailing bytes")
        return v


class UInt(Codec[int]):
    """An integer in [lo, hi] (hi may exceed 64 bits: certificate multipliers do)."""

    def __init__(self, hi: int = U64_MAX, lo: int = 0) -> None:
        self.lo, self.hi = lo, hi

    def write(self, out: bytearray, v: int) -> None:
        if type(v) is not int or not self.lo <= v <= self.hi:
            raise ValueError(f"integer {v!r} outside [{self.lo}, {self.hi}]")
        _write_varint(out, v)

    def read(self, r: _Reader) -> int:
        v = r.varint(self.hi)
        if v < self.lo:
            raise DecodeError(f"integer {v} below {self.lo}")
        return v


class Bool(Codec[bool]):
    def write(self, out: bytearray, v: bool) -> None:
        if type(v) is not bool:
            raise ValueError("expected a bool")
        out.append(1 if v else 0)

    def read(self, r: _Reader) -> bool:
        b = r.take(1)[0]
        if b > 1:
            raise DecodeError("a bool is 0 or 1")
        return b == 1


class FixedBytes(Codec[bytes]):
    def __init__(self, n: int) -> None:
        self.n = n

    def write(self, out: bytearray, v: bytes) -> None:
        if not isinstance(v, bytes) or len(v) != self.n:
            raise ValueError(f"expected {self.n} bytes")
        out += v

    def read(self, r: _Reader) -> bytes:
        return r.take(self.n)


class VarBytes(Codec[bytes]):
    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def write(self, out: bytearray, v: bytes) -> None:
        if not isinstance(v, bytes) or len(v) > self.max_len:
            raise ValueError(f"expected at most {self.max_len} bytes")
        _write_varint(out, len(v))
        out += v

    def read(self, r: _Reader) -> bytes:
        return r.take(r.varint(self.max_len))


class Text(Codec[str]):
    """Printable ASCII (0x21-0x7e plus space when `spaces`), at most `max_len` characters."""

    def __init__(self, max_len: int, min_len: int = 0, spaces: bool = False) -> None:
        self.max_len, self.min_len, self.lo = max_len, min_len, 0x20 if spaces else 0x21

    def _check(self, raw: bytes) -> None:
        if len(raw) < self.min_len or any(not self.lo <= b <= 0x7E for b in raw):
            raise DecodeError(f"expected {self.min_len}..{self.max_len} printable ASCII characters")

    def write(self, out: bytearray, v: str) -> None:
        raw = v.encode("ascii", "strict") if isinstance(v, str) and v.isascii() else None
        if raw is None or len(raw) > self.max_len:
            raise ValueError(f"expected at most {self.max_len} ASCII characters")
        try:
            self._check(raw)
        except DecodeError as e:
            raise ValueError(str(e)) from None
        _write_varint(out, len(raw))
        out += raw

    def read(self, r: _Reader) -> str:
        raw = r.take(r.varint(self.max_len))
        self._check(raw)
        return raw.decode("ascii")


class ListOf(Codec[tuple]):
    """A tuple of items, at most `max_len`; `strictly_increasing` makes the order canonical."""

    def __init__(self, item: Codec, max_len: int, key: Callable[[Any], Any] | None = None) -> None:
        _not_trailing(item)
        self.item, self.max_len, self.key = item, max_len, key

    def _check_order(self, items: Sequence) -> bool:
        k = self.key
        return k is None or all(k(a) < k(b) for a, b in zip(items, items[1:]))

    def write(self, out: bytearray, v: Sequence) -> None:
        if len(v) > self.max_len:
            raise ValueError(f"more than {self.max_len} items")
        if not self._check_order(v):
            raise ValueError("items are not in strictly increasing order")
        _write_varint(out, len(v))
        for x in v:
            self.item.write(out, x)

    def read(self, r: _Reader) -> tuple:
        n = r.varint(self.max_len)
        items = tuple(self.item.read(r) for _ in range(n))
        if not self._check_order(items):
            raise DecodeError("items are not in strictly increasing order")
        return items


class Record(Codec[T]):
    """A dataclass, its fields in order.

    For a dataclass that gained fields, a `Tagged` codec may hold two records of it, one variant per
    meaning: `absent` names the (last) fields the older one does not carry, which must hold their
    defaults, and `present` names fields of the newer one of which at least one must differ from its
    default (all defaults are the older variant's meaning, so the newer refuses that).  So each value
    has exactly one encoding, and what was encoded before the fields existed still decodes."""

    def __init__(self, cls: type[T], spec: dict[str, Codec], *, absent: Sequence[str] = (),
                 present: Sequence[str] = ()) -> None:
        fields = dc_fields(cls)  # type: ignore[arg-type]
        names = [f.name for f in fields]
        if list(spec) + list(absent) != names:
            raise TypeError(f"{cls.__name__}: codec fields {list(spec) + list(absent)} != dataclass fields {names}")
        defaults = {f.name: f.default for f in fields}
        self.absent = {n: defaults[n] for n in absent}
        self.present = {n: defaults[n] for n in present}
        if not set(self.present) <= set(spec) or any(d is MISSING for d in (*self.absent.values(), *self.present.values())):
            raise TypeError(f"{cls.__name__}: absent and present fields need defaults, present ones a codec")
        for codec in list(spec.values())[:-1]:
            _not_trailing(codec)
        self.cls, self.spec = cls, list(spec.items())
        self.trailing = bool(self.spec) and self.spec[-1][1].trailing

    def fits(self, v: Any) -> bool:
        """Whether `v` is this variant's to encode (its class, `absent` fields default, some `present` not)."""
        return (type(v) is self.cls and all(getattr(v, n) == d for n, d in self.absent.items())
                and (not self.present or any(getattr(v, n) != d for n, d in self.present.items())))

    def write(self, out: bytearray, v: T) -> None:
        if not self.fits(v):
            raise ValueError(f"expected a {self.cls.__name__}" + (" of this variant" if type(v) is self.cls else ""))
        for name, codec in self.spec:
            codec.write(out, getattr(v, name))

    def read(self, r: _Reader) -> T:
        values = {name: codec.read(r) for name, codec in self.spec}
        if self.present and all(values[n] == d for n, d in self.present.items()):
            raise DecodeError(f"{self.cls.__name__}: non-canonical: {', '.join(self.present)} at the default "
                              "belong to the encoding without them")
        try:
            return self.cls(**values)
        except (ValueError, TypeError) as e:
            raise DecodeError(f"{self.cls.__name__}: {e}") from None


class Trailing(Codec[Any]):
    """An extension field at the very end of a whole encoding (a top-level record's last field): nothing
    when it holds `default`, else its item's encoding, which must not be the default's.  Encodings
    written before the field existed decode as the default, and each value keeps one encoding."""

    trailing = True

    def __init__(self, item: Codec, default: Any) -> None:
        _not_trailing(item)
        self.item, self.default = item, default

    def write(self, out: bytearray, v: Any) -> None:
        if v != self.default:
            self.item.write(out, v)

    def read(self, r: _Reader) -> Any:
        if r.pos == len(r.buf):
            return self.default
        v = self.item.read(r)
        if v == self.default:
            raise DecodeError("non-canonical: an extension at its default is left out")
        return v


def _not_trailing(codec: Codec) -> None:
    if codec.trailing:
        raise TypeError("a trailing extension must end the whole encoding, not sit inside another field")


class Tagged(Codec[Any]):
    """One of several records, led by its tag (a varint)."""

    def __init__(self, variants: dict[int, Record]) -> None:
        for rec in variants.values():
            _not_trailing(rec)
        self.by_tag = variants
        self.by_cls: dict[type, list[tuple[int, Record]]] = {}
        for tag, rec in sorted(variants.items()):
            self.by_cls.setdefault(rec.cls, []).append((tag, rec))

    def _variant(self, v: Any) -> tuple[int, Record]:
        for tag, rec in self.by_cls.get(type(v), ()):
            if rec.fits(v):
                return tag, rec
        raise ValueError(f"no tag for {type(v).__name__}")

    def write(self, out: bytearray, v: Any) -> None:
        tag, rec = self._variant(v)
        _write_varint(out, tag)
        rec.write(out, v)

    def read(self, r: _Reader) -> Any:
        tag = r.varint(U64_MAX)
        rec = self.by_tag.get(tag)
        if rec is None:
            raise DecodeError(f"unknown type tag {tag}")
        return rec.read(r)

    def tag_of(self, v: Any) -> int:
        return self._variant(v)[0]


class Optional_(Codec[Any]):
    def __init__(self, item: Codec) -> None:
        _not_trailing(item)
        self.item = item

    def write(self, out: bytearray, v: Any) -> None:
        if v is None:
            out.append(0)
        else:
            out.append(1)
            self.item.write(out, v)

    def read(self, r: _Reader) -> Any:
        flag = r.take(1)[0]
        if flag > 1:
            raise DecodeError("an optional's flag is 0 or 1")
        return self.item.read(r) if flag else None


# Field kinds used across the schema.
U8 = UInt(2**8 - 1)
U32 = UInt(2**32 - 1)
U64 = UInt()
HASH = FixedBytes(32)
ADDRESS = FixedBytes(20)
PUBKEY = FixedBytes(32)
SIGNATURE = FixedBytes(64)
