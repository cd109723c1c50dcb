"""The home agent: forecasts that make physical sense, a battery and a strategy that keep their
promises, and a market day of 20 homes on a real chain that leaves them better off than net metering."""

from __future__ import annotations

import pytest

pytest.importorskip("pvlib")

from agent.forecast import Site, clear_sky_pv_wh, cloud_factor, history_correction, holt_winters, load_forecast
from agent.simulation import DaySimulation
from agent.strategy import MIN_BID_WH, Battery, PlannedBid, Strategy, affordable, price_band
from consensus.rules.transactions import BUY, SELL, bid_lock

KL_MIDNIGHT_MS = (1_767_225_600 - 8 * 3600) * 1000  # 2026-01-01 00:00 in Kuala Lumpur (UTC+8)
HALF_HOUR = 1800


# ------------------------------------------------------------------------------------- forecasts
def test_pv_is_zero_at_night_peaks_near_solar_noon_and_scales_with_the_panels():
    small, big = Site(kwp=3.0, tilt=5, azimuth=180), Site(kwp=6.0, tilt=5, azimuth=180)
    day = clear_sky_pv_wh(small, KL_MIDNIGHT_MS, HALF_HOUR, 48)
    assert all(w == 0 for w in day[:12]) and all(w == 0 for w in day[40:])  # before 06:00, after 20:00 local
    peak = max(range(48), key=lambda k: day[k])
    # Solar noon in Kuala Lumpur (101.7 E, UTC+8) falls near 13:10 local in early January.
    assert 12.5 <= (peak + 0.5) / 2 <= 13.75, peak
    assert 3_000 * 4 < sum(day) < 3_000 * 7  # 4-7 kWh per kWp on a clear tropical day
    doubled = clear_sky_pv_wh(big, KL_MIDNIGHT_MS, HALF_HOUR, 48)
    assert sum(doubled) == pytest.approx(2 * sum(day), rel=1e-6)
    # Clouds take their share; a home's history corrects the forecast, within bounds.
    assert cloud_factor(0) == 1 and cloud_factor(1) == pytest.approx(0.25) and 0.25 < cloud_factor(0.5) < 1
    assert history_correction([1000, 2000, 0], [800, 1600, 50]) == pytest.approx(0.8)
    assert history_correction([1000], [5000]) == 1.3 and history_correction([0, 0], [10, 10]) == 1.0


def test_load_follows_the_homes_own_history_once_it_has_a_day_of_it():
    day = [100 + 50 * (6 <= k % 48 // 2 <= 8) + 200 * (18 <= k % 48 // 2 <= 22) for k in range(48)]
    assert holt_winters([float(x) for x in day * 3], 48, 48) == pytest.approx(day, abs=1.0)
    # Less than a day of history: the typical profile, scaled to the home's daily use.
    typical = load_forecast(day[:10], 48, 48, daily_kwh=12.0, start_ms=KL_MIDNIGHT_MS, slot_seconds=HALF_HOUR)
    assert sum(typical) == pytest.approx(12_000, rel=0.01)
    assert max(range(48), key=lambda k: typical[k]) // 2 in range(18, 22)  # the evening peak
    learnt = load_forecast(day * 2, 48, 48, daily_kwh=12.0, start_ms=KL_MIDNIGHT_MS, slot_seconds=HALF_HOUR)
    assert learnt == pytest.approx(day, abs=2)


# ------------------------------------------------------------------------------ battery, strategy
def test_a_battery_respects_its_power_capacity_reserve_and_losses():
    b = Battery(capacity_wh=10_000, power_w=4_000, soc_wh=5_000, efficiency=0.9, reserve=0.1)
    assert b.step(3_000, HALF_HOUR) == 1_000  # 2 kWh per half hour at 4 kW: 1 kWh left over
    assert b.soc_wh == 5_000 + 1_800  # 90% of what went in
    assert b.step(-10_000, HALF_HOUR) == -8_000 and b.soc_wh == 4_800
    b.soc_wh = 1_500
    assert b.step(-2_000, HALF_HOUR) == -1_500 and b.soc_wh == 1_000  # down to the 10% reserve, no further


def test_the_plan_never_offers_more_than_the_forecast_surplus_less_its_margin_and_prices_beat_the_grid():
    feed_in, retail = 170_000, 570_000
    band = price_band(feed_in, retail)
    assert band == (370_000, 296_000, 444_000)
    # More demand than supply lately moves the reference up, by at most 20%, within the tariffs.
    assert price_band(feed_in, retail, supply_wh=0, demand_wh=10)[0] == 444_000
    assert price_band(feed_in, retail, recent_price=560_000, supply_wh=1, demand_wh=9)[2] == retail
    pv = [0, 0, 2_000, 3_000, 500, 0]
    load = [400, 400, 500, 500, 500, 3_000]
    s = Strategy(margin=0.1)
    bids = s.plan(10, pv, load, Battery(capacity_wh=0, power_w=0, soc_wh=0), HALF_HOUR, band)
    by_slot = {b.slot: b for b in bids}
    for k, (p, l) in enumerate(zip(pv, load)):
        b = by_slot.get(10 + k)
        if abs(p - l) * 0.9 < 100:
            assert b is None
            continue
        assert b.wh == int(abs(p - l) * 0.9) and b.side == (SELL if p > l else BUY)
        assert feed_in <= b.price <= retail
    # With a battery the surplus charges it first and covers the evening.
    with_battery = s.plan(10, pv, load, Battery(capacity_wh=10_000, power_w=5_000, soc_wh=1_000), HALF_HOUR, band)
    assert sum(b.wh for b in with_battery if b.side == SELL) < sum(b.wh for b in bids if b.side == SELL)
    assert sum(b.wh for b in with_battery if b.side == BUY) < sum(b.wh for b in bids if b.side == BUY)
    # Settlements teach it: a shortfall widens the margin, deliveries on target narrow it.
    s.learn(1_000, 200)
    assert s.margin == pytest.approx(0.2)
    s.learn(1_000, 0)
    assert s.margin == pytest.approx(0.19)


def test_the_plan_fits_what_the_balance_can_lock_cutting_the_first_bid_that_does_not_fit():
    retail, fee = 570_000, 1_000
    bids = [PlannedBid(10, SELL, 4_000, 300_000, 370_000), PlannedBid(11, SELL, 4_000, 300_000, 370_000),
            PlannedBid(12, BUY, 2_000, 440_000, 370_000)]
    each = bid_lock(SELL, 4_000, 300_000, retail)  # the seller's collateral: 4 kWh x (0.57 - 0.30)
    assert each == 1_080_000
    assert affordable(bids, 10**9, retail, fee) == bids
    # Room for the first bid and a half: the second is cut to what fits and the buy is left out.
    funds = 2 * (each + fee) - each // 2
    kept = affordable(bids, funds, retail, fee)
    assert [b.slot for b in kept] == [10, 11] and kept[0] == bids[0] and 1_000 < kept[1].wh < 4_000
    assert sum(bid_lock(b.side, b.wh, b.price, retail) + fee for b in kept) <= funds
    assert bid_lock(SELL, kept[1].wh + 1, 300_000, retail) + fee + each + fee > funds  # as much as fits
    # Too little for a bid worth its fee: nothing.
    assert affordable(bids, fee + bid_lock(SELL, MIN_BID_WH - 1, 300_000, retail), retail, fee) == []


def test_on_a_chain_of_short_slots_each_slot_plays_half_an_hour_and_the_default_home_trades():
    """Issue 14, item 8: a dev chain's 5-second slots forecast in real time are a few Wh each, too little to
    bid; played as half hours from 07:00 on the chain's first day (the devnet's clock), the defaults make
    a day of PV and load, and bids on both sides."""
    from agent.forecast import Site
    from agent.home import HomeAgent, played_clock

    info = {"slot_seconds": 5, "genesis_time": KL_MIDNIGHT_MS // 1000 + 11 * 3600, "min_fee": 1_000,
            "grid": {"feed_in": 170_000, "retail": 570_000}}
    seven = KL_MIDNIGHT_MS + 7 * 3_600_000
    assert played_clock(info) == (seven, HALF_HOUR)
    assert played_clock(info, 1.0) == (seven, 3600) and played_clock(info, 0) is None
    assert played_clock({**info, "slot_seconds": 3600}) is None  # hour slots: the wall clock
    assert played_clock(info, utc_offset=0) == ((1_767_225_600 + 7 * 3600) * 1000, HALF_HOUR)  # 07:00 UTC that day
    home = HomeAgent(Site(), 12.0)  # `transx agent plan`'s defaults
    market = {"recent": [], "average_price": None}
    day = home.plan(100, 48, info, market, clock=played_clock(info))
    assert sum(day.load_wh) == pytest.approx(12_000, rel=0.02) and min(day.load_wh) > MIN_BID_WH
    assert max(day.pv_wh) > 1_500 and day.pv_wh.count(0) >= 12  # a sunny noon, a night
    assert {b.side for b in day.bids} == {BUY, SELL}
    real = home.plan(100, 48, info, market)  # the wall clock: 5 s a slot
    assert max(real.pv_wh) < 10 and max(real.load_wh) < 2 and real.bids == []


# -------------------------------------------------------------------------------- a market day
def test_a_day_of_twenty_homes_leaves_them_better_off_than_net_metering(capsys):
    sim = DaySimulation(homes=20, seed=3)
    try:
        day = sim.run()
    finally:
        sim.close()
    traders = [h for h in day.homes if h.sold_wh or h.bought_wh]
    with capsys.disabled():
        print(f"\n20 homes, one day: {day.traded_wh / 1000:.1f} kWh traded peer to peer; mean savings against net "
              f"metering {day.mean_savings / 1e6:.3f} tokens a home (sellers "
              f"{_mean([h.savings for h in traders if h.sold_wh]) / 1e6:.3f}, buyers "
              f"{_mean([h.savings for h in traders if h.bought_wh and not h.sold_wh]) / 1e6:.3f}); NBS welfare "
              f"{day.welfare_ratio:.4f} of the maximum")
    assert day.traded_wh > 20_000 and len(traders) >= 15
    assert day.mean_savings > 0
    # Every home that traded ended ahead of net metering, fees and its own deviations included.
    assert all(h.savings > 0 for h in traders), [h for h in traders if h.savings <= 0]
    assert 0.9 < day.welfare_ratio <= 1.0 + 1e-9
    assert sum(h.shortfall_wh for h in day.homes) < 0.1 * sum(h.sold_wh for h in day.homes)


def _mean(xs: list[int]) -> float:
    return sum(xs) / len(xs) if xs else 0.0
