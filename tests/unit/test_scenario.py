"""The market-day simulation's scenario files (agent/scenario.py): the shipped default is the old
constants, a file's mistakes are one line naming the key, and a TMY-like weather file drives the PV."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from agent.forecast import Site, clear_sky_pv_wh
from agent.scenario import Scenario, ScenarioError, load_scenario, scenario_doc, scenario_from_doc, tmy_pv_wh
from agent.simulation import DaySimulation

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "scenarios" / "kuala_lumpur.toml"


def test_the_shipped_scenario_is_the_default_and_holds_the_old_constants():
    sc = load_scenario(SHIPPED)
    assert sc == Scenario()
    # What agent/simulation.py had as constants before scenarios.
    assert (sc.slot_seconds, sc.slots, sc.utc_offset, sc.funds) == (1800, 48, 8, 1_000_000_000)
    assert (sc.latitude, sc.longitude, sc.altitude) == (Site().latitude, Site().longitude, Site().altitude)
    assert sc.day_start(0) == 1_767_225_600 - 8 * 3600 and sc.day_start(301) == sc.day_start(1)
    assert {r: x.share for r, x in sc.roles.items()} == {"pv": 0.55, "home": 0.35, "station": 0.10}
    assert (sc.feed_in, sc.retail) == (170_000, 570_000)
    # The file it writes into an export's schema.json reads back as the same scenario.
    assert scenario_from_doc(json.loads(json.dumps(scenario_doc(sc)))) == sc


def test_every_shipped_scenario_loads():
    files = sorted((ROOT / "scenarios").glob("*.toml"))
    assert SHIPPED in files and len(files) >= 2
    for f in files:
        sc = load_scenario(f)
        assert sc.homes >= 1 and sum(r.share for r in sc.roles.values()) > 0, f


def _old_homes(n: int, seed: int) -> list[tuple]:
    """The homes as the simulation drew them from its constants before scenario files."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        role = rng.choices(["pv", "home", "station"], [0.55, 0.35, 0.10])[0]
        site = (rng.choice([3.0, 4.0, 5.0, 6.0, 8.0]), rng.uniform(5, 25), rng.uniform(90, 270)) \
            if role == "pv" else None
        battery = rng.choice([5_000, 10_000, 13_500]) if role == "pv" and rng.random() < 0.5 else None
        daily = {"pv": rng.uniform(8, 16), "home": rng.uniform(8, 20), "station": rng.uniform(60, 160)}[role]
        out.append((role, site, battery, daily, rng.randrange(3), rng.uniform(0.9, 1.1)))
    return out + [rng.uniform(0.1, 0.6)]


def test_the_default_scenario_draws_the_same_homes_and_weather_as_the_old_constants(tmp_path):
    sim = DaySimulation(homes=30, seed=7, scenario=load_scenario(SHIPPED))
    try:
        got = [(h.role, (h.site.kwp, h.site.tilt, h.site.azimuth) if h.site else None,
                h.battery.capacity_wh if h.battery else None, h.daily_kwh, h.zone, h.load_scale) for h in sim.homes]
        assert got + [sim.cloud] == _old_homes(30, 7)
        assert {h.role for h in sim.homes} == {"pv", "home", "station"}
        assert all(h.battery.soc_wh == int(h.battery.capacity_wh * 0.3) for h in sim.homes if h.battery)
    finally:
        sim.close()


def test_a_scenario_changes_the_homes_tariffs_and_day(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"slots": 8, "slot_minutes": 60, "site": {"latitude": 52.5, "longitude": 13.4,
                                                                       "utc_offset": 1, "date": "2026-06-21"},
                             "tariffs": {"feed_in": 0.08, "retail": 0.40}, "weather": {"cloudiness": 0.2},
                             "homes": {"count": 6, "zones": 1, "mix": {"pv": 1, "home": 0, "station": 0},
                                       "pv": {"battery_share": 0}}}))
    sc = load_scenario(f)
    sim = DaySimulation(seed=2, scenario=sc)
    try:
        assert len(sim.homes) == 6 and all(h.role == "pv" and h.zone == 0 and h.battery is None for h in sim.homes)
        assert (sim.g.feed_in, sim.g.retail, sim.g.slot_seconds, sim.cloud) == (80_000, 400_000, 3600, 0.2)
        assert sim.homes[0].site.latitude == 52.5 and sim.day_slots == 8
    finally:
        sim.close()
    assert load_scenario(f, homes=3).homes == 3


@pytest.mark.parametrize("text, said", [
    ("[homes]\ncolour = 1\n", "unknown key homes.colour"),
    ("speed = 3\n", "unknown key speed"),
    ("[homes.pv]\nbatery_share = 1\n", "unknown key homes.pv.batery_share"),
    ("[site]\nlatitude = 95\n", "site.latitude: 95 is outside -90..90"),
    ("[tariffs]\nfeed_in = 0.6\nretail = 0.5\n", "tariffs.retail (0.5) is below tariffs.feed_in (0.6)"),
    ("[weather]\ncloudiness = [0.7, 0.2]\n", "weather.cloudiness: [0.7, 0.2] is not a range within 0..1"),
    ("[weather]\ncloudiness = 1.5\n", "weather.cloudiness: 1.5 is outside 0..1"),
    ("[homes]\ncount = 0\n", "homes.count: expected a number of homes"),
    ("[homes.mix]\npv = 0\nhome = 0\nstation = 0\n", "homes.mix: every share is 0"),
    ("[homes.pv]\nkwp = [5, \"big\"]\n", "homes.pv.kwp: expected a list of numbers"),
    ("[site]\ndate = \"Monday\"\n", "site.date: expected a date"),
    ("slots = 2.5\n", "slots: expected a whole number"),
    ("[weather]\ntmy_csv = \"nowhere.csv\"\n", "weather.tmy_csv: no file"),
    ("[site\n", "not valid TOML"),
])
def test_a_bad_scenario_is_one_line_naming_the_key(tmp_path, text, said):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ScenarioError) as e:
        load_scenario(f)
    assert str(e.value).startswith(f"scenario {f}: ") and said in str(e.value) and "\n" not in str(e.value)


def test_market_day_refuses_a_bad_scenario_with_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import market_day

    f = tmp_path / "bad.toml"
    f.write_text("[homes]\ncolour = 1\n")
    for argv in (["--scenario", str(f)], ["--homes", "ten"], ["--export", str(f / "x")]):
        monkeypatch.setattr(sys, "argv", ["market_day.py", *argv])
        with pytest.raises(SystemExit) as e:
            market_day.main()
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err


def test_a_tmy_weather_file_scales_the_clear_sky_by_its_hourly_clearness(tmp_path):
    import pandas as pd
    import pvlib

    sc = Scenario()
    site = Site(kwp=5.0, tilt=10, azimuth=180)
    start_ms = sc.day_start(0) * 1000
    hours = pd.date_range("2026-01-01 00:00", periods=24, freq="h")  # local time, as TMY files give it
    utc = (hours - pd.Timedelta(hours=8)).tz_localize("UTC") + pd.Timedelta(minutes=30)
    sky = pvlib.location.Location(sc.latitude, sc.longitude, altitude=sc.altitude).get_clearsky(
        utc, model="simplified_solis")["ghi"]
    ghi = [g * (0.5 if h < 12 else 1.0) for h, g in zip(range(24), sky)]  # a cloudy morning, a clear afternoon
    f = tmp_path / "tmy.csv"
    pd.DataFrame({"ghi": ghi, "dni": 0, "dhi": 0}, index=pd.Index(hours.strftime("%Y-%m-%d %H:%M"),
                                                                  name="time")).to_csv(f)
    sc = load_scenario(_write(tmp_path / "s.toml", f'[weather]\ntmy_csv = "{f.name}"\n'))
    assert sc.cloudiness is None and sc.cloud == 0.0  # the file carries the clouds
    got = tmy_pv_wh(sc, site, start_ms, 48)
    clear = clear_sky_pv_wh(site, start_ms, 1800, 48)
    assert sum(got[:24]) == pytest.approx(0.5 * sum(clear[:24]), rel=0.02)
    assert sum(got[24:]) == pytest.approx(sum(clear[24:]), rel=0.02)
    assert sum(got[24:]) > 1000  # a real afternoon's yield, not an empty day


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
