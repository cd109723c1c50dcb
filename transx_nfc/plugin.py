"""The entry point `transx.plugins: nfc`: cheap to load, imports nfcpy only when a command runs."""

from __future__ import annotations

import importlib.util


class NfcPlugin:
    name = "nfc"
    version = "0.1.0"
    summary = "charging stations: tap an NFC card or phone to charge (station run, ev card/emulate)"

    def missing(self) -> str | None:
        """Why the plugin cannot work here, or None."""
        for module, package in (("nfc", "nfcpy"), ("ndef", "ndeflib")):
            if importlib.util.find_spec(module) is None:
                return f"{package} is not installed: pip install 'transx[nfc]'"
        return None

    @property
    def commands(self) -> list:
        from .commands import ev, station

        return [station, ev]


PLUGIN = NfcPlugin()
