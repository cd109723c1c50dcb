"""A home's agent against a running node: forecast the coming slots, plan bids, send them, learn.

`HomeAgent.plan` works from what the node's API says (genesis timing, tariffs, recent prices) and
the home's description; `transx agent plan|run` (transx_cli/agent.py) and the devnet's households use it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .forecast import Site, load_forecast, pv_forecast
from .strategy import Battery, PlannedBid, Strategy, affordable, expected_gain, price_band

# On a chain whose slots are shorter than this, a forecast of the slot's real seconds is a few Wh, too little
# to bid: by default each slot plays half an hour of a day instead, from 07:00 local time on the chain's
# first day (the devnet's clock: transxnode/client/devnet.py, VIRTUAL_SLOT).
ACCELERATE_BELOW = 300
PLAYED_SLOT_HOURS = 0.5
DAY_STARTS_HOUR = 7


def played_clock(info: dict, slot_hours: float | None = None, utc_offset: float = 8.0) -> tuple[int, int] | None:
    """The clock a plan forecasts on, for `HomeAgent.plan`: (unix ms when slot 0 starts, seconds of a
    day each slot plays), or None for the wall clock (the genesis timing).  `slot_hours` None: half an
    hour a slot where slots last under ACCELERATE_BELOW seconds, else the wall clock; 0: the wall clock."""
    if slot_hours is None:
        slot_hours = PLAYED_SLOT_HOURS if info["slot_seconds"] < ACCELERATE_BELOW else 0
    if not slot_hours:
        return None
    offset = round(utc_offset * 3600)
    midnight = (info["genesis_time"] + offset) // 86_400 * 86_400 - offset
    return (midnight + DAY_STARTS_HOUR * 3600) * 1000, max(1, round(slot_hours * 3600))


@dataclass
class HomeAgent:
    site: Site | None  # None: no panels
    daily_kwh: float
    battery: Battery | None = None
    cloudiness: float = 0.3
    utc_offset: float = 8.0
    strategy: Strategy = field(default_factory=Strategy)
    load_history: list[int] = field(default_factory=list)  # metered Wh per slot, oldest first

    def forecast(self, start_ms: int, slot_seconds: int, slots: int) -> tuple[list[int], list[int]]:
        """(PV Wh, load Wh) per slot from `start_ms`."""
        pv = pv_forecast(self.site, start_ms, slot_seconds, slots, self.cloudiness) if self.site else [0] * slots
        load = load_forecast(self.load_history, max(1, 86_400 // slot_seconds), slots, self.daily_kwh, start_ms,
                             slot_seconds, tz_hours=self.utc_offset)
        return pv, load

    def plan(self, first_slot: int, slots: int, info: dict, market: dict,
             clock: tuple[int, int] | None = None, funds: int | None = None) -> "Plan":
        """Bids for `slots` slots from `first_slot`, given the node's /api/node and /api/market.
        `clock` = (unix ms when slot 0 starts, seconds a slot stands for) replaces the genesis timing:
        the devnet's 2-second slots play half hours of a day.  `funds`: the balance the account can
        lock (buy escrow, sell collateral, fees); bids are cut, earliest slots first, to fit it."""
        zero_ms, seconds = clock or (info["genesis_time"] * 1000, info["slot_seconds"])
        pv, load = self.forecast(zero_ms + first_slot * seconds * 1000, seconds, slots)
        feed_in, retail = info["grid"]["feed_in"], info["grid"]["retail"]
        recent = market.get("recent", [])
        band = price_band(feed_in, retail, recent_price=market.get("average_price"),
                          supply_wh=sum(r.get("supply_wh", 0) for r in recent),
                          demand_wh=sum(r.get("demand_wh", 0) for r in recent))
        bids = self.strategy.plan(first_slot, pv, load, self.battery or Battery(0, 0, 0), seconds, band)
        kept = bids if funds is None else affordable(bids, funds, retail, info["min_fee"])
        return Plan(first_slot, pv, load, kept, band, expected_gain(kept, feed_in, retail), kept != bids)


@dataclass(frozen=True)
class Plan:
    first_slot: int
    pv_wh: list[int]
    load_wh: list[int]
    bids: list[PlannedBid]
    band: tuple[int, int, int]  # reference, sell limit, buy limit
    expected_gain: int  # micro-units against net metering, if every bid clears at the reference
    cut_to_funds: bool = False  # the balance could not lock every bid the forecast asked for

    def to_json(self) -> dict:
        return {"first_slot": self.first_slot, "pv_wh": self.pv_wh, "load_wh": self.load_wh,
                "reference_price": self.band[0], "sell_limit": self.band[1], "buy_limit": self.band[2],
                "expected_gain": self.expected_gain, "cut_to_funds": self.cut_to_funds,
                "bids": [{"slot": b.slot, "side": "sell" if b.side else "buy", "wh": b.wh, "price": b.price}
                         for b in self.bids]}


__all__ = ["ACCELERATE_BELOW", "DAY_STARTS_HOUR", "HomeAgent", "PLAYED_SLOT_HOURS", "Plan", "played_clock"]


def random_home(rng: random.Random, role: str) -> HomeAgent:
    """A household for simulations such as `transx devnet` ("pv": rooftop panels, some with a battery;
    "home": no panels; "ev": a charging station's evening demand), drawn from `rng`."""
    if role == "pv":
        site = Site(kwp=rng.choice([4.0, 5.0, 6.0, 8.0, 10.0]), tilt=rng.uniform(5, 20), azimuth=rng.uniform(120, 240))
        battery = Battery(capacity_wh=10_000, soc_wh=3_000) if rng.random() < 0.4 else None
        return HomeAgent(site, rng.uniform(8, 14), battery, cloudiness=rng.uniform(0.1, 0.5))
    return HomeAgent(None, rng.uniform(60, 160) if role == "ev" else rng.uniform(10, 24))
