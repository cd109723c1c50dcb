"""A charging station's metrics (transx_nfc/metrics.py): Prometheus' naming rules, what a session and a
refusal count, and a metrics port in use refused in one line before anything is served."""

from __future__ import annotations

import socket

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from test_metrics import check_names
from transx_nfc.metrics import StationMetrics, serve_metrics


def test_station_metrics_follow_the_naming_rules_and_count_sessions_and_refusals():
    m = StationMetrics()
    m.session_opened()
    m.tap_refused("expired")
    m.session_closed(3_125)
    fams = {f.name: f for f in text_string_to_metric_families(generate_latest(m.registry).decode())}
    check_names(fams, "transx_station_")
    value = m.registry.get_sample_value
    assert (value("transx_station_sessions_started_total"), value("transx_station_sessions_completed_total")) == (1, 1)
    assert value("transx_station_sessions_refused_total", {"reason": "expired"}) == 1
    assert value("transx_station_energy_delivered_wh_total") == 3_125 and value("transx_station_charging") == 0
    # The taps by outcome, as the README documents them.
    assert [value("transx_station_taps_total", {"outcome": o}) for o in ("opened", "closed", "expired")] == [1, 1, 1]


def test_a_metrics_port_in_use_is_one_line():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        with pytest.raises(ValueError, match=f"^cannot serve metrics on {address}: Address already in use$"):
            serve_metrics(StationMetrics(), address)
