"""transxnode/heap.py: a node hands freed heap back to the system every TRIM_EVERY blocks (issue 20)."""

import threading

import pytest

from transxnode.heap import HeapTrimmer


def _rss_anon_kb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1])
    pytest.skip("no /proc/self/status RssAnon here")


def test_it_trims_once_per_crossing_of_a_multiple_of_every():
    t = HeapTrimmer(every=64)
    if not t.available:
        pytest.skip("no glibc malloc_trim here")
    assert [t.after_block(h) for h in (10, 63, 64, 65, 127, 200, 200, 201)] == \
        [False, False, True, False, False, True, False, False]
    assert t.trims == 2


def test_a_trim_returns_what_a_worker_thread_freed():
    """The solver runs in worker threads, whose glibc arenas keep freed memory in RSS until trimmed."""
    t = HeapTrimmer(every=1)
    if not t.available:
        pytest.skip("no glibc malloc_trim here")
    keep = []

    def churn():  # what decoding and solving do: many mid-sized buffers, most dropped, a few kept
        bufs = [bytearray(3000) for _ in range(40_000)]  # ~120 MB, above pymalloc's 512-byte objects
        keep.extend(bufs[::997])
        del bufs

    th = threading.Thread(target=churn)
    th.start()
    th.join()
    before = _rss_anon_kb()
    t.after_block(0)
    assert t.after_block(1)
    after = _rss_anon_kb()
    assert before - after > 20_000, (before, after)  # tens of MB back: the kept buffers pin little


def test_the_caches_of_checked_signatures_are_forgotten_at_each_crossing():
    """Bounded by count, they took thousands of blocks to fill on a small network (issue 20's soak)."""
    calls = []
    t = HeapTrimmer(every=64, forget=lambda: calls.append(1))
    for h in (10, 63, 64, 65, 127, 128, 129):
        t.after_block(h)
    assert len(calls) == 2
