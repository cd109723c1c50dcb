"""The state's prefix scans: a block's rules and the API read the store through a `StateOverlay`, whose
scans must give exactly the store's keys with the overlay's writes applied, in either order, below a
`stop`, and lazily (the API's "newest 20 of an account's settlements" reads 20, not the years).  The
explicit example is the case plyvel 1.5.1 gets wrong in reverse (the range's one key equal to its start),
which `Store.items` works around."""

from __future__ import annotations

import tempfile

from hypothesis import example, given, settings
from hypothesis import strategies as st

from consensus.chain.store import Store
from consensus.rules import schema
from consensus.rules.state import SETTLEMENT, Settlement, StateOverlay

KEYS = st.binary(min_size=1, max_size=3).map(lambda b: bytes(x % 3 for x in b))  # few bytes: prefixes collide


def _model(stored: dict[bytes, bytes], writes: dict[bytes, bytes | None], prefix: bytes, reverse: bool,
           stop: bytes | None) -> list[tuple[bytes, bytes]]:
    merged = {**stored, **writes}
    keys = sorted(k for k, v in merged.items() if v is not None and k.startswith(prefix) and (stop is None or k < stop))
    return [(k, merged[k]) for k in (keys[::-1] if reverse else keys)]  # type: ignore[misc]


@settings(max_examples=150, deadline=None)
@given(stored=st.dictionaries(KEYS, st.binary(min_size=1, max_size=2), max_size=12),
       writes=st.dictionaries(KEYS, st.none() | st.binary(min_size=1, max_size=2), max_size=12),
       prefix=st.binary(max_size=2).map(lambda b: bytes(x % 3 for x in b)), reverse=st.booleans(),
       stop_tail=st.none() | KEYS)
@example(stored={b"\x00": b"\x01"}, writes={}, prefix=b"\x00", reverse=True, stop_tail=None)  # plyvel 1.5.1's
def test_a_scan_is_the_store_with_the_overlays_writes_applied(stored, writes, prefix, reverse, stop_tail):
    stop = None if stop_tail is None else prefix + stop_tail
    with tempfile.TemporaryDirectory() as d:
        store = Store(d)
        try:
            for k, v in stored.items():
                store.db.put(k, v)
            stored = dict(store.db.iterator())  # with the store's own format record
            state = StateOverlay(store)
            for k, v in writes.items():
                state.put(k, v)
            assert list(state.items(prefix, reverse=reverse, stop=stop)) == _model(stored, writes, prefix, reverse, stop)
        finally:
            store.close()


class _CountingStore:
    """A store that counts the keys its scans hand out."""

    def __init__(self, store: Store) -> None:
        self.store, self.read = store, 0

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)

    def items(self, prefix, reverse=False, stop=None):
        for kv in self.store.items(prefix, reverse=reverse, stop=stop):
            self.read += 1
            yield kv


def test_the_newest_settlements_of_an_account_read_only_those(tmp_path):
    store = Store(str(tmp_path / "chain"))
    try:
        addr = b"\x07" * 20
        writer = StateOverlay(store)
        for slot in range(1000):
            writer.set_settlement(slot, addr, Settlement(slot, 0, 0, 0, True, 0, 0, 0, 0, 0, 0))
        with store.db.write_batch() as wb:
            for k, v in writer.writes.items():
                wb.put(k, v)
        counting = _CountingStore(store)
        newest = StateOverlay(counting).settlements_of(addr, last=20)
        assert [slot for slot, _ in newest] == list(range(980, 1000))  # oldest first, as before
        assert [s.sold_wh for _, s in newest] == list(range(980, 1000))
        assert counting.read <= 21  # the index walked from its newest end; not 1,000 keys
        assert SETTLEMENT.decode(store.get(schema.settlement(999, addr))).sold_wh == 999
    finally:
        store.close()


@settings(max_examples=100, deadline=None)
@given(stored=st.dictionaries(KEYS, st.binary(min_size=1, max_size=2), max_size=12),
       prefix=st.binary(max_size=2).map(lambda b: bytes(x % 3 for x in b)), start_tail=KEYS,
       stop_tail=st.none() | KEYS)
def test_a_forward_scan_from_a_start_is_the_stores_keys_from_it(stored, prefix, start_tail, stop_tail):
    start, stop = prefix + start_tail, None if stop_tail is None else prefix + stop_tail
    with tempfile.TemporaryDirectory() as d:
        store = Store(d)
        try:
            for k, v in stored.items():
                store.db.put(k, v)
            stored = dict(store.db.iterator())
            want = [kv for kv in _model(stored, {}, prefix, False, stop) if kv[0] >= start]
            assert list(store.items(prefix, start=start, stop=stop)) == want
        finally:
            store.close()
