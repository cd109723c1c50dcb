"""Optional integrations (hardware, mostly), found through the `transx.plugins` entry-point group.

A plugin is an object with `name`, `version`, `summary` and, optionally, `missing()` (why it cannot
work here, or None), `devnet_station(...)` (the station `transx devnet --station` runs; see
transxnode/client/devnet.py StationPlugin) and `commands` (click
commands added to `transx`).  Loading one must be cheap and must not import its heavy
dependencies: the NFC plugin imports nfcpy only when a station or card command runs, so the core
never imports it, and a plugin whose extra is not installed still lists itself and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger("transx.plugins")
GROUP = "transx.plugins"


@dataclass
class LoadedPlugin:
    name: str
    version: str = ""
    summary: str = ""
    ready: bool = True  # its optional dependencies are importable
    error: str | None = None
    obj: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "summary": self.summary, "ready": self.ready,
                **({"error": self.error} if self.error else {})}


_cache: list[LoadedPlugin] | None = None


def load_plugins() -> list[LoadedPlugin]:
    """Every installed plugin, loaded once per process; one that fails to load is listed with why."""
    global _cache
    if _cache is not None:
        return _cache
    out = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            obj = ep.load()
        except Exception as e:  # a broken plugin must not stop the node
            out.append(LoadedPlugin(ep.name, ready=False, error=f"failed to load: {e}"))
            continue
        missing = getattr(obj, "missing", lambda: None)()
        out.append(LoadedPlugin(getattr(obj, "name", ep.name), getattr(obj, "version", ""),
                                getattr(obj, "summary", ""), ready=missing is None, error=missing, obj=obj))
    _cache = out
    return out


def log_plugins(plugins: list[LoadedPlugin]) -> None:
    if not plugins:
        log.info("plugins: none installed")
    for p in plugins:
        log.info("plugin %s %s: %s%s", p.name, p.version, p.summary, "" if p.ready else f" (not usable: {p.error})")
