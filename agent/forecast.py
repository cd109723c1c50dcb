"""Forecasts a home agent bids from: PV output per slot (pvlib), household load (Holt-Winters).

PV: clear-sky irradiance at the home's coordinates (pvlib's simplified Solis model: no
turbidity tables to look up), transposed onto the panel plane (Hay-Davies), through PVWatts with
a cell temperature from the SAPM model, times a cloudiness factor (Kasten-Czeplak) and a
correction learnt from the home's own metered history.  Load: additive Holt-Winters with a
daily season over the home's recent history; a typical residential profile until there is a
day of history.  Forecasts are plans, not consensus: floats are fine here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

KUALA_LUMPUR = (3.139, 101.687)  # the devnet's default home


@dataclass(frozen=True)
class Site:
    """A home's PV array."""

    latitude: float = KUALA_LUMPUR[0]
    longitude: float = KUALA_LUMPUR[1]
    kwp: float = 5.0  # peak DC power
    tilt: float = 10.0  # degrees from horizontal
    azimuth: float = 180.0  # degrees from north (180: facing south)
    altitude: float = 60.0  # metres
    losses: float = 0.14  # wiring, inverter, soiling (PVWatts' default)


def clear_sky_pv_wh(site: Site, start_ms: int, slot_seconds: int, slots: int, samples: int = 4) -> list[float]:
    """Wh the array yields in each of `slots` slots from `start_ms` under a clear sky (the mean of
    `samples` instants per slot, at their midpoints)."""
    import numpy as np
    import pandas as pd
    import pvlib

    step = slot_seconds / samples
    offsets = (np.arange(slots * samples) + 0.5) * step
    times = pd.DatetimeIndex(pd.to_datetime(start_ms / 1000 + offsets, unit="s", utc=True))
    loc = pvlib.location.Location(site.latitude, site.longitude, altitude=site.altitude)
    sun = loc.get_solarposition(times)
    sky = loc.get_clearsky(times, model="simplified_solis", solar_position=sun)
    dni_extra = pvlib.irradiance.get_extra_radiation(times)
    poa = pvlib.irradiance.get_total_irradiance(site.tilt, site.azimuth, sun["apparent_zenith"], sun["azimuth"],
                                                sky["dni"], sky["ghi"], sky["dhi"], dni_extra=dni_extra,
                                                model="haydavies")["poa_global"].fillna(0.0).clip(lower=0.0)
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]
    cell = pvlib.temperature.sapm_cell(poa, temp_air=_air_temperature(times, site), wind_speed=1.0, **params)
    dc = pvlib.pvsystem.pvwatts_dc(poa, cell, pdc0=site.kwp * 1000, gamma_pdc=-0.004)
    watts = np.clip(np.asarray(dc, dtype=float) * (1 - site.losses), 0.0, None)
    return list(watts.reshape(slots, samples).mean(axis=1) * slot_seconds / 3600)


def _air_temperature(times, site: Site):
    """A tropical day's air temperature (24-32 C), lowest at dawn: enough for the cells' heat loss."""
    import numpy as np

    hours = (times.hour + times.minute / 60 + site.longitude / 15) % 24
    return 28 + 4 * np.sin((np.asarray(hours) - 9) / 24 * 2 * math.pi)


def cloud_factor(cloudiness: float) -> float:
    """The share of clear-sky irradiance left under a cloud cover of `cloudiness` (0..1, oktas / 8):
    Kasten and Czeplak (1980)."""
    c = min(1.0, max(0.0, cloudiness))
    return 1 - 0.75 * c ** 3.4


def history_correction(forecast_wh: list[float], metered_wh: list[float], lo: float = 0.3, hi: float = 1.3) -> float:
    """How far the home's PV really lands from its forecast, from past slots: metered / forecast over
    the daylight slots, clipped to [lo, hi]; 1.0 without daylight history."""
    pairs = [(f, m) for f, m in zip(forecast_wh, metered_wh) if f > 1.0]
    total = sum(f for f, _ in pairs)
    if total <= 0:
        return 1.0
    return min(hi, max(lo, sum(m for _, m in pairs) / total))


def pv_forecast(site: Site, start_ms: int, slot_seconds: int, slots: int, cloudiness: float = 0.0,
                correction: float = 1.0) -> list[int]:
    """Expected Wh per slot: clear sky, times the cloud factor, times the home's own correction."""
    k = cloud_factor(cloudiness) * correction
    return [int(w * k) for w in clear_sky_pv_wh(site, start_ms, slot_seconds, slots)]


# ----------------------------------------------------------------------------------------- load
# A typical residential day in 24 hourly shares (a morning and a larger evening peak; Malaysian homes
# run air conditioning into the night).
_TYPICAL = [0.030, 0.028, 0.027, 0.026, 0.026, 0.030, 0.040, 0.048, 0.042, 0.036, 0.034, 0.036,
            0.038, 0.038, 0.037, 0.038, 0.042, 0.050, 0.060, 0.066, 0.066, 0.062, 0.056, 0.048]


def typical_load_wh(daily_kwh: float, start_ms: int, slot_seconds: int, slots: int, tz_hours: float = 8.0) -> list[int]:
    """The typical profile for a home using `daily_kwh` a day, per slot (local time at `tz_hours`)."""
    total = sum(_TYPICAL)
    out = []
    for k in range(slots):
        mid = datetime.fromtimestamp(start_ms / 1000 + (k + 0.5) * slot_seconds, tz=timezone.utc)
        hour = (mid.hour + mid.minute / 60 + tz_hours) % 24
        share = _TYPICAL[int(hour)] / total
        out.append(int(daily_kwh * 1000 * share * slot_seconds / 3600))
    return out


def holt_winters(history: list[float], period: int, horizon: int, alpha: float = 0.3, beta: float = 0.02,
                 gamma: float = 0.3) -> list[float]:
    """Additive Holt-Winters: level, trend and a season of `period`, fitted over `history` (at least one
    whole period), forecast `horizon` steps ahead; never below zero."""
    if len(history) < period:
        raise ValueError(f"Holt-Winters needs a whole season ({period} values), got {len(history)}")
    first = history[:period]
    level = sum(first) / period
    trend = (sum(history[period:2 * period]) - sum(first)) / period ** 2 if len(history) >= 2 * period else 0.0
    season = [x - level for x in first]
    for t in range(period, len(history)):
        x, s = history[t], season[t % period]
        last = level
        level = alpha * (x - s) + (1 - alpha) * (level + trend)
        trend = beta * (level - last) + (1 - beta) * trend
        season[t % period] = gamma * (x - level) + (1 - gamma) * s
    n = len(history)
    return [max(0.0, level + (h + 1) * trend + season[(n + h) % period]) for h in range(horizon)]


def load_forecast(history_wh: list[int], period: int, horizon: int, daily_kwh: float, start_ms: int,
                  slot_seconds: int, tz_hours: float = 8.0) -> list[int]:
    """Expected Wh per slot: Holt-Winters over the home's history once it holds a day, else the
    typical profile (local time at `tz_hours`)."""
    if len(history_wh) >= period:
        return [int(x) for x in holt_winters([float(x) for x in history_wh], period, horizon)]
    return typical_load_wh(daily_kwh, start_ms, slot_seconds, horizon, tz_hours=tz_hours)


__all__ = ["KUALA_LUMPUR", "Site", "clear_sky_pv_wh", "cloud_factor", "history_correction", "holt_winters",
           "load_forecast", "pv_forecast", "typical_load_wh"]
