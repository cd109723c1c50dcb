"""The entry point `transx.plugins: nfc`: cheap to load, imports nfcpy only when a command runs."""

from __future__ import annotations

from importlib.metadata import version as _dist_version


class NfcPlugin:
    name = "nfc"
    version = _dist_version("transx")  # one version for the distribution (setup.cfg)
    summary = "charging stations: tap an NFC card or phone to charge (station run, ev card/emulate)"

    def missing(self) -> str | None:
        """Why the plugin cannot work here, or None."""
        from .device import missing_dependencies

        return missing_dependencies()

    def devnet_station(self, datadir: str, ev_address: str, away: float) -> list[tuple[list[str], str]]:
        """For `transx devnet --station`: the `transx` commands (and their log files) that run an emulated
        EV card, tapping every `away` seconds, and a station reading it over nfcpy's udp driver, on the
        node whose data directory is `datadir` (the EV owner's key is in its keystore)."""
        from .device import free_udp_port

        device = f"udp:127.0.0.1:{free_udp_port()}"
        return [
            (["ev", "emulate", "--device", device, "--datadir", datadir, "--key", ev_address, "--ev-id", "DEVNET-EV1",
              "--max-kwh", "40", "--soc", "20", "--away", str(away)], "ev.log"),
            (["station", "run", "--datadir", datadir, "--device", device, "--price", "0.55", "--power-kw", "22",
              "--speed", "60", "--min-seconds", str(away / 2)], "station.log"),
        ]

    @property
    def commands(self) -> list:
        from .commands import ev, station

        return [station, ev]


PLUGIN = NfcPlugin()
