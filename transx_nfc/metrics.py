"""A charging station's Prometheus metrics (`transx station run --metrics-listen`), in a registry of its own.

Named by Prometheus' rules like the node's: running counts end in `_total`, energy is in Wh with its unit
in the name.  `transx_station_taps_total{outcome}` counts every tap (opened, closed, or why the charger
stayed off); the session counters say the same per session, for dashboards.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, PlatformCollector, ProcessCollector, start_http_server


class StationMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.taps = Counter("transx_station_taps", "Taps at the reader, by outcome", ["outcome"], registry=r)
        self.started = Counter("transx_station_sessions_started", "Charging sessions opened on chain", registry=r)
        self.completed = Counter("transx_station_sessions_completed", "Charging sessions closed on chain with "
                                 "the energy delivered", registry=r)
        self.refused = Counter("transx_station_sessions_refused", "Taps that left the charger off, by reason",
                               ["reason"], registry=r)
        self.delivered_wh = Counter("transx_station_energy_delivered_wh", "Energy delivered in closed sessions, Wh",
                                    registry=r)
        self.charging = Gauge("transx_station_charging", "1 while the charger is enabled", registry=r)
        self.reader_up = Gauge("transx_station_reader_up", "1 while the NFC reader answers, 0 since a tap failed "
                               "on it", registry=r)

    def session_opened(self) -> None:
        self.taps.labels("opened").inc()
        self.started.inc()
        self.charging.set(1)

    def session_closed(self, delivered_wh: int) -> None:
        self.taps.labels("closed").inc()
        self.completed.inc()
        self.delivered_wh.inc(delivered_wh)
        self.charging.set(0)

    def tap_refused(self, reason: str) -> None:
        self.taps.labels(reason).inc()
        self.refused.labels(reason).inc()


def serve_metrics(metrics: StationMetrics, address: str) -> None:
    """Serve `metrics` on HOST:PORT from a thread of prometheus_client's; `ValueError` names a bad address
    or a port in use, in one line."""
    host, _, port = address.rpartition(":")
    try:
        start_http_server(int(port), host or "127.0.0.1", registry=metrics.registry)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot serve metrics on {address}: {getattr(e, 'strerror', None) or e}") from None
