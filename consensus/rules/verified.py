"""The signature checks the rules remember, and forgetting them (issue 20).

Each check is pure (the same bytes always verify the same way), so what a cache holds only saves
work: a vote delivered again by gossip, a transaction checked at admission and again in its block.
Those repeats come within a few heights.  The caches are bounded by count (transactions.py,
finality.py, beacon.py, bls.py), but with few voters their bounds take thousands of blocks to fill:
memory that grows for days on a small network.  A node calls `forget` every few dozen blocks
(transxnode/heap.py), which bounds each cache by what those blocks put in it as well; forgetting
costs at most the re-checks of the moment (an Ed25519 check is ~60 us, a BLS one ~2 ms).
Public keys stay parsed: voters' keys are few and long-lived.
"""

from __future__ import annotations

from . import beacon, bls, finality, transactions


# The lru-cached checks (and parses) `forget` empties besides the transactions' own cache.
_CACHED = (finality._verified, finality._aggregate_ok, beacon._verified, bls._parse_signature)


def forget() -> None:
    """Empty the caches of checked signatures: transactions', votes', tickets', certificates' and the
    parsed signatures behind them."""
    transactions.forget_verified()
    for check in _CACHED:
        check.cache_clear()


def held() -> int:
    """Entries the caches hold now (what `forget` empties)."""
    return len(transactions._VERIFIED) + sum(check.cache_info().currsize for check in _CACHED)
