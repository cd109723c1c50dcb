"""The entry point `transx.plugins: agent`: the home agent as the node's planner, for the owner app's
day plan (transxnode/api/owner).  The node may not import agent/ (layers); it finds this object through
the entry point and calls `plan_day`.  Cheap to load: pvlib and numpy come in only when a plan is made."""

from __future__ import annotations

from importlib.metadata import version as _dist_version
from typing import Any

# A home as the app stores it (<datadir>/app/home.json), with `transx agent plan`'s defaults.
HOME_DEFAULTS: dict[str, float] = {"kwp": 5.0, "daily_kwh": 12.0, "battery_kwh": 0.0, "battery_soc": 50.0,
                                   "utc_offset": 8.0, "cloudiness": 0.3}
HOME_LIMITS: dict[str, tuple[float, float]] = {"kwp": (0, 1000), "daily_kwh": (0, 10_000), "battery_kwh": (0, 1000),
                                               "battery_soc": (0, 100), "utc_offset": (-12, 14), "cloudiness": (0, 1)}


class AgentPlugin:
    name = "agent"
    version = _dist_version("transx")
    summary = "the home agent: forecasts PV and load and plans a day's bids (the owner app's day plan)"

    def home_settings(self, doc: dict[str, Any]) -> dict[str, float]:
        """A home's description from what the page sent, checked: ValueError names the field and its range."""
        out = dict(HOME_DEFAULTS)
        for key, value in doc.items():
            if key not in HOME_LIMITS:
                raise ValueError(f"unknown setting {key!r} (known: {', '.join(HOME_LIMITS)})")
            lo, hi = HOME_LIMITS[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"{key} is a number from {lo:g} to {hi:g}")
            out[key] = float(value)
        return out

    def plan_day(self, home: dict[str, float], info: dict, market: dict, first_slot: int, slots: int,
                 funds: int) -> dict[str, Any]:
        """The agent's plan for `slots` slots from `first_slot` (Plan.to_json: PV and load forecast, the
        bids, the expected gain against net metering), cut to `funds`; with the clock it forecast on."""
        from .forecast import Site
        from .home import HomeAgent, played_clock
        from .strategy import Battery

        h = {**HOME_DEFAULTS, **home}
        capacity = int(h["battery_kwh"] * 1000)
        battery = Battery(capacity_wh=capacity, soc_wh=int(capacity * h["battery_soc"] / 100)) if capacity else None
        agent = HomeAgent(Site(kwp=h["kwp"]) if h["kwp"] else None, h["daily_kwh"], battery,
                          cloudiness=h["cloudiness"], utc_offset=h["utc_offset"])
        clock = played_clock(info, None, h["utc_offset"])
        plan = agent.plan(first_slot, slots, info, market, clock=clock, funds=funds)
        zero_ms, seconds = clock or (info["genesis_time"] * 1000, info["slot_seconds"])
        return {**plan.to_json(), "slot_hours": seconds / 3600,
                "first_slot_starts": zero_ms + first_slot * seconds * 1000}


PLUGIN = AgentPlugin()
