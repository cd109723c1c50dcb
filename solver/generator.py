"""Seeded random instances with realistic numbers, for tests, demos, benchmarks.

Defaults follow Malaysia, where TransX started: feed-in ~0.17 and retail
~0.57 tokens (MYR) per kWh; rooftop PV exports 1-10 kWh per slot; homes
import 1-8 kWh, EV chargers 7-22 kWh; three distribution zones with a
network charge that grows with distance.
"""

from __future__ import annotations

import numpy as np

from .instance import Instance, Participant

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
