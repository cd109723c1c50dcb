"""A researcher's scenario for the market-day simulation (agent/simulation.py): the site, the weather,
the number and mix of homes, the tariffs and the slots, from a TOML or JSON file instead of constants.

`Scenario()` is the shipped default, scenarios/kuala_lumpur.toml, and reproduces the simulation as it
was before scenarios (the same figures for the same seed).  `load_scenario(path)` reads a file over
those defaults and refuses an unknown key, a wrong type or a value out of range with one line that
names the key.  Amounts in the file are for people (tokens, tokens per kWh, kWh); the Scenario holds
the chain's integers (micro-units) where the chain takes them.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ROLES = ("pv", "home", "station")  # rooftop PV (some with a battery); a home without panels; an EV charging station
MICRO = 1_000_000


class ScenarioError(ValueError):
    """A scenario file that cannot be used; one line naming the key."""


@dataclass(frozen=True)
class Role:
    """How the homes of one role are drawn: each range [lo, hi] uniformly, each list of choices evenly."""

    share: float
    daily_kwh: tuple[float, float]
    kwp: tuple[float, ...] = ()
    tilt: tuple[float, float] = (0.0, 0.0)
    azimuth: tuple[float, float] = (180.0, 180.0)
    battery_share: float = 0.0
    battery_wh: tuple[int, ...] = ()
    battery_soc: float = 0.0


def _default_roles() -> dict[str, Role]:
    return {"pv": Role(0.55, (8.0, 16.0), kwp=(3.0, 4.0, 5.0, 6.0, 8.0), tilt=(5.0, 25.0), azimuth=(90.0, 270.0),
                       battery_share=0.5, battery_wh=(5_000, 10_000, 13_500), battery_soc=0.3),
            "home": Role(0.35, (8.0, 20.0)),
            "station": Role(0.10, (60.0, 160.0))}


@dataclass(frozen=True)
class Scenario:
    name: str = "Kuala Lumpur, a January day"
    latitude: float = 3.139
    longitude: float = 101.687
    altitude: float = 60.0
    utc_offset: float = 8.0  # hours; the simulated day starts at local midnight
    date: str = "2026-01-01"
    seed_shifts_days: int = 300  # the day is `date` plus (seed % this) days; 0: always `date`
    slots: int = 48
    slot_minutes: int = 30
    cloudiness: tuple[float, float] | None = (0.1, 0.6)  # drawn per day; None: a fixed value (`cloud`)
    cloud: float = 0.0  # the day's cloud cover when `cloudiness` is None
    forecast_error: float = 0.1  # standard deviation of the forecast's cloud cover error
    local_variation: float = 0.15  # standard deviation of each home's cloud cover around the day's, per slot
    tmy_csv: str | None = None  # hourly ghi, dni, dhi (W/m2) [, temp_air]: the PV's irradiance instead of clear sky
    homes: int = 20
    zones: int = 3
    funds: int = 1_000 * MICRO  # micro-units each home starts with
    load_scale: tuple[float, float] = (0.9, 1.1)  # a home's load against its typical profile
    load_variation: float = 0.15  # log-normal sigma of each slot's load
    feed_in: int = 170_000  # micro-units per kWh exported to the grid
    retail: int = 570_000  # micro-units per kWh imported from the grid
    roles: dict[str, Role] = field(default_factory=_default_roles)

    @property
    def slot_seconds(self) -> int:
        return self.slot_minutes * 60

    def day_start(self, seed: int) -> int:
        """Unix seconds of the simulated day's local midnight, for `seed`."""
        y, m, d = (int(x) for x in self.date.split("-"))
        midnight = calendar.timegm((y, m, d, 0, 0, 0)) - round(self.utc_offset * 3600)
        return midnight + 86_400 * (seed % self.seed_shifts_days if self.seed_shifts_days else 0)


# ------------------------------------------------------------------------------------------ loading
_TOP = {"name", "slots", "slot_minutes", "seed_shifts_days", "site", "weather", "tariffs", "homes"}
_SITE = {"latitude", "longitude", "altitude", "utc_offset", "date"}
_WEATHER = {"cloudiness", "forecast_error", "local_variation", "tmy_csv"}
_TARIFFS = {"feed_in", "retail"}
_HOMES = {"count", "zones", "funds", "load_scale", "load_variation", "mix", *ROLES}
_ROLE = {"daily_kwh", "kwp", "tilt", "azimuth", "battery_share", "battery_wh", "battery_soc"}


def load_scenario(path: str | Path, homes: int | None = None) -> Scenario:
    """The scenario in `path` (.toml or .json) over the defaults; `homes` overrides its count.
    ScenarioError (one line naming the file and key) for anything that cannot be used."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise ScenarioError(f"scenario {p}: {e.strerror or e}") from None
    try:
        if p.suffix == ".json":
            doc = json.loads(text)
        else:
            import tomllib

            doc = tomllib.loads(text.decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise ScenarioError(f"scenario {p}: not valid {'JSON' if p.suffix == '.json' else 'TOML'}: "
                            f"{str(e).splitlines()[0]}") from None
    try:
        sc = scenario_from_doc(doc, base=p.parent)
    except ScenarioError as e:
        raise ScenarioError(f"scenario {p}: {e}") from None
    return sc if homes is None else replace(sc, homes=_count(homes, "homes.count"))


def scenario_from_doc(doc: Any, base: Path = Path(".")) -> Scenario:
    """A Scenario from a parsed file; `base`: where a relative tmy_csv path starts."""
    d = Scenario()
    top = _table(doc, "", _TOP)
    site = _table(top.get("site", {}), "site", _SITE)
    weather = _table(top.get("weather", {}), "weather", _WEATHER)
    tariffs = _table(top.get("tariffs", {}), "tariffs", _TARIFFS)
    homes = _table(top.get("homes", {}), "homes", _HOMES)
    name = top.get("name", d.name)
    if not isinstance(name, str):
        raise ScenarioError("name: expected a string")
    date = site.get("date", d.date)
    try:
        dt.date.fromisoformat(date)
    except (TypeError, ValueError):
        raise ScenarioError(f"site.date: expected a date like \"2026-01-01\", got {date!r}") from None
    cloud = weather.get("cloudiness", list(d.cloudiness or ()))
    if weather.get("tmy_csv") is not None and "cloudiness" not in weather:
        cloud = 0.0  # the file's irradiance already carries the day's clouds
    if _is_num(cloud):  # one number: that cloud cover every day; a range: drawn per day
        if not 0 <= cloud <= 1:
            raise ScenarioError(f"weather.cloudiness: {cloud} is outside 0..1")
        cloud_range, cloud_fixed = None, float(cloud)
    else:
        cloud_range, cloud_fixed = _range(cloud, "weather.cloudiness", 0, 1), 0.0
    tmy = weather.get("tmy_csv")
    if tmy is not None:
        if not isinstance(tmy, str):
            raise ScenarioError("weather.tmy_csv: expected a file name")
        tmy = str(base / tmy)
        if not Path(tmy).is_file():
            raise ScenarioError(f"weather.tmy_csv: no file {tmy}")
    feed_in = _num(tariffs, "feed_in", d.feed_in / MICRO, 0, 1_000, "tariffs.")
    retail = _num(tariffs, "retail", d.retail / MICRO, 0, 1_000, "tariffs.")
    if retail < feed_in:
        raise ScenarioError(f"tariffs.retail ({retail}) is below tariffs.feed_in ({feed_in})")
    roles = {r: _role(homes.get(r, {}), f"homes.{r}", d.roles[r]) for r in ROLES}
    mix = _table(homes.get("mix", {r: roles[r].share for r in ROLES}), "homes.mix", set(ROLES))
    shares = {r: _num(mix, r, 0.0, 0, 1, "homes.mix.") for r in ROLES}
    if sum(shares.values()) <= 0:
        raise ScenarioError("homes.mix: every share is 0")
    roles = {r: replace(roles[r], share=shares[r]) for r in ROLES}
    if shares["pv"] and not roles["pv"].kwp:
        raise ScenarioError("homes.pv.kwp: PV homes need at least one array size")
    return Scenario(
        name=name,
        latitude=_num(site, "latitude", d.latitude, -90, 90, "site."),
        longitude=_num(site, "longitude", d.longitude, -180, 180, "site."),
        altitude=_num(site, "altitude", d.altitude, -500, 9_000, "site."),
        utc_offset=_num(site, "utc_offset", d.utc_offset, -12, 14, "site."),
        date=date,
        seed_shifts_days=int(_num(top, "seed_shifts_days", d.seed_shifts_days, 0, 366, "", whole=True)),
        slots=int(_num(top, "slots", d.slots, 1, 24 * 60, "", whole=True)),
        slot_minutes=int(_num(top, "slot_minutes", d.slot_minutes, 1, 24 * 60, "", whole=True)),
        cloudiness=cloud_range, cloud=cloud_fixed,
        forecast_error=_num(weather, "forecast_error", d.forecast_error, 0, 1, "weather."),
        local_variation=_num(weather, "local_variation", d.local_variation, 0, 1, "weather."),
        tmy_csv=tmy,
        homes=_count(homes.get("count", d.homes), "homes.count"),
        zones=int(_num(homes, "zones", d.zones, 1, 3, "homes.", whole=True)),
        funds=round(_num(homes, "funds", d.funds / MICRO, 0, 10**9, "homes.") * MICRO),
        load_scale=_range(homes.get("load_scale", list(d.load_scale)), "homes.load_scale", 0, 10),
        load_variation=_num(homes, "load_variation", d.load_variation, 0, 2, "homes."),
        feed_in=round(feed_in * MICRO), retail=round(retail * MICRO), roles=roles,
    )


def _role(doc: Any, where: str, d: Role) -> Role:
    t = _table(doc, where, _ROLE)
    kwp = tuple(_choices(t.get("kwp", list(d.kwp)), f"{where}.kwp", 0, 10_000))
    wh = tuple(int(x) for x in _choices(t.get("battery_wh", list(d.battery_wh)), f"{where}.battery_wh", 0, 10**7,
                                        whole=True))
    share = _num(t, "battery_share", d.battery_share, 0, 1, where + ".")
    if share and not wh:
        raise ScenarioError(f"{where}.battery_wh: a battery_share above 0 needs battery sizes")
    return Role(d.share, _range(t.get("daily_kwh", list(d.daily_kwh)), f"{where}.daily_kwh", 0, 100_000), kwp,
                _range(t.get("tilt", list(d.tilt)), f"{where}.tilt", 0, 90),
                _range(t.get("azimuth", list(d.azimuth)), f"{where}.azimuth", 0, 360), share, wh,
                _num(t, "battery_soc", d.battery_soc, 0, 1, where + "."))


def _table(doc: Any, where: str, known: set[str]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ScenarioError(f"{where or 'the file'}: expected a table of keys")
    unknown = sorted(set(doc) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ScenarioError(f"unknown key {prefix}{unknown[0]} (known here: {', '.join(sorted(known))})")
    return doc


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(doc: dict, key: str, default: float, lo: float, hi: float, where: str, whole: bool = False) -> float:
    v = doc.get(key, default)
    if not _is_num(v) or (whole and v != int(v)):
        raise ScenarioError(f"{where}{key}: expected {'a whole number' if whole else 'a number'}, got {v!r}")
    if not lo <= v <= hi:
        raise ScenarioError(f"{where}{key}: {v} is outside {lo}..{hi}")
    return float(v)


def _count(v: Any, where: str) -> int:
    if not _is_num(v) or v != int(v) or not 1 <= v <= 100_000:
        raise ScenarioError(f"{where}: expected a number of homes, 1 to 100000, got {v!r}")
    return int(v)


def _range(v: Any, where: str, lo: float, hi: float) -> tuple[float, float]:
    if not (isinstance(v, list) and len(v) == 2 and all(_is_num(x) for x in v)):
        raise ScenarioError(f"{where}: expected a range [low, high], got {v!r}")
    a, b = float(v[0]), float(v[1])
    if not lo <= a <= b <= hi:
        raise ScenarioError(f"{where}: [{v[0]}, {v[1]}] is not a range within {lo}..{hi}")
    return a, b


def _choices(v: Any, where: str, lo: float, hi: float, whole: bool = False) -> list[float]:
    if not isinstance(v, list) or not all(_is_num(x) and lo <= x <= hi and (not whole or x == int(x)) for x in v):
        raise ScenarioError(f"{where}: expected a list of {'whole ' if whole else ''}numbers within {lo}..{hi}, "
                            f"got {v!r}")
    return [float(x) for x in v]


def tmy_pv_wh(sc: Scenario, site, start_ms: int, slots: int) -> list[float]:
    """Wh per slot from `start_ms` under the weather of the scenario's TMY-like CSV: the clear-sky yield
    (agent/forecast.py) times the file's hourly clearness (its GHI over pvlib's clear-sky GHI at that hour).
    The file's first column is the local time (any year: rows are matched by month, day and hour); it
    needs a `ghi` column in W/m2."""
    import numpy as np
    import pandas as pd
    import pvlib

    from .forecast import clear_sky_pv_wh

    try:
        df = pd.read_csv(sc.tmy_csv, index_col=0, parse_dates=[0])
        ghi = df["ghi"].astype(float)
        key = pd.DatetimeIndex(df.index).strftime("%m-%d %H")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ScenarioError(f"weather.tmy_csv {sc.tmy_csv}: needs a time column first and a ghi column ({e})") from None
    by_hour = dict(zip(key, ghi))
    clear = clear_sky_pv_wh(site, start_ms, sc.slot_seconds, slots)
    mids = pd.to_datetime(start_ms / 1000 + (np.arange(slots) + 0.5) * sc.slot_seconds, unit="s", utc=True)
    loc = pvlib.location.Location(sc.latitude, sc.longitude, altitude=sc.altitude)
    sky = loc.get_clearsky(mids, model="simplified_solis")["ghi"].to_numpy()
    local = mids + pd.Timedelta(hours=sc.utc_offset)
    out = []
    for k, w in enumerate(clear):
        measured = by_hour.get(local[k].strftime("%m-%d %H"))
        if measured is None:
            raise ScenarioError(f"weather.tmy_csv {sc.tmy_csv}: no row for {local[k]:%m-%d %H}:00 local time")
        out.append(w * min(1.2, measured / sky[k]) if sky[k] > 1 else 0.0)
    return out


def scenario_doc(sc: Scenario) -> dict[str, Any]:
    """The scenario as its file would say it (tokens, kWh), for an export's schema.json."""
    roles = {r: {k.name: getattr(role, k.name) for k in fields(Role) if k.name != "share"}
             for r, role in sc.roles.items()}
    return {"name": sc.name, "slots": sc.slots, "slot_minutes": sc.slot_minutes,
            "seed_shifts_days": sc.seed_shifts_days,
            "site": {"latitude": sc.latitude, "longitude": sc.longitude, "altitude": sc.altitude,
                     "utc_offset": sc.utc_offset, "date": sc.date},
            "weather": {"cloudiness": list(sc.cloudiness) if sc.cloudiness else sc.cloud,
                        "forecast_error": sc.forecast_error, "local_variation": sc.local_variation,
                        **({"tmy_csv": sc.tmy_csv} if sc.tmy_csv else {})},
            "tariffs": {"feed_in": sc.feed_in / MICRO, "retail": sc.retail / MICRO},
            "homes": {"count": sc.homes, "zones": sc.zones, "funds": sc.funds / MICRO,
                      "load_scale": list(sc.load_scale), "load_variation": sc.load_variation,
                      "mix": {r: role.share for r, role in sc.roles.items()}, **roles}}


__all__ = ["ROLES", "Role", "Scenario", "ScenarioError", "load_scenario", "scenario_doc", "scenario_from_doc",
           "tmy_pv_wh"]
