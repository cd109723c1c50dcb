"""Seeded random instances with realistic numbers, for tests, demos, benchmarks.

Defaults follow Malaysia, where TransX started: feed-in ~0.17 and retail
~0.57 tokens (MYR) per kWh; rooftop PV exports 1-10 kWh per slot; homes
import 1-8 kWh, EV chargers 7-22 kWh; three distribution zones with a
network charge that grows with distance.
"""

from __future__ import annotations

import numpy as np

from .instance import MAX_PRICE, MAX_WH, Instance, Participant

FEED_IN = 170_000  # micro-units per kWh
RETAIL = 570_000
NETWORK_CHARGE = ((10_000, 30_000, 50_000), (30_000, 10_000, 30_000), (50_000, 30_000, 10_000))


def generate(participants: int, seed: int = 0, *, slot: int = 0, seller_share: float = 0.5) -> Instance:
    """An instance of `participants` sellers plus buyers, reproducible by `seed`."""
    rng = np.random.default_rng(seed)
    n_s = int(round(participants * seller_share))
    n_b = participants - n_s
    zones = len(NETWORK_CHARGE)
    sellers = [
        Participant(f"s{k}", int(wh), int(price), int(zone))
        for k, (wh, price, zone) in enumerate(
            zip(
                rng.integers(1_000, 10_001, n_s),
                rng.integers(175_000, 450_001, n_s),
                rng.integers(0, zones, n_s),
            )
        )
    ]
    ev = rng.random(n_b) < 0.15
    demand = np.where(ev, rng.integers(7_000, 22_001, n_b), rng.integers(1_000, 8_001, n_b))
    buyers = [
        Participant(f"b{k}", int(wh), int(price), int(zone))
        for k, (wh, price, zone) in enumerate(
            zip(demand, rng.integers(250_000, 570_001, n_b), rng.integers(0, zones, n_b))
        )
    ]
    return Instance(
        slot=slot,
        feed_in=FEED_IN,
        retail=RETAIL,
        network_charge=NETWORK_CHARGE,
        sellers=tuple(sellers),
        buyers=tuple(buyers),
    )


def extreme(seed: int) -> Instance:
    """A small market at the edges of what an instance admits, reproducible by `seed`: 1 to 11 sellers
    and buyers, 1 Wh to 1 GWh each (log-uniform), prices of 0, 1, the maximum or anywhere between,
    tariffs from 0 to the maximum, 1 to 64 zones with charges from 0 to a tenth of the maximum,
    bargaining weights 1 to 1,000.  For the certification fuzzer (tests, bench/extreme_markets.py)."""
    rng = np.random.default_rng(seed)
    zones = int(rng.choice([1, 2, 3, 8, 64]))
    feed = int(rng.choice([0, 1, FEED_IN, int(rng.integers(0, MAX_PRICE))]))
    retail = int(max(feed, rng.choice([feed, feed + 1, RETAIL, MAX_PRICE, int(rng.integers(feed, MAX_PRICE + 1))])))
    charge = tuple(tuple(int(rng.choice([0, 1, 10_000, int(rng.integers(0, MAX_PRICE // 10 + 1))]))
                         for _ in range(zones)) for _ in range(zones))

    def wh() -> int:
        return int(min(MAX_WH, max(1, round(10 ** rng.uniform(0, 9)))))

    def price() -> int:
        return int(rng.choice([0, 1, MAX_PRICE, int(rng.integers(0, MAX_PRICE + 1)), int(rng.integers(feed, retail + 1))]))

    def weight() -> int:
        return int(rng.choice([1, 1, 1, int(rng.integers(1, 1001))]))

    n_s, n_b = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    sellers = [Participant(f"s{k}", wh(), price(), int(rng.integers(0, zones)), weight()) for k in range(n_s)]
    buyers = [Participant(f"b{k}", wh(), price(), int(rng.integers(0, zones)), weight()) for k in range(n_b)]
    return Instance(0, feed, retail, charge, tuple(sellers), tuple(buyers))
