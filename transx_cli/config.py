"""`transx config show`: the settings a node on this data directory would run with, and where each came from
(a flag, an environment variable, config.toml, or the default)."""

from __future__ import annotations

import click

from .node import override_options, overrides_of
from .plugin_api import datadir_option, emit, guard, resolve_datadir


@click.group()
def config() -> None:
    """The node's configuration (config.toml and its run-time overrides)."""


@config.command()
@datadir_option
@override_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: {datadir, config: {field: value}, sources}.")
def show(datadir, as_json, **flags) -> None:
    """Print the effective config: config.toml, then the environment, then these flags, as `transx node` would."""
    _show(datadir, as_json, flags)


@guard
def _show(datadir, as_json, flags) -> None:
    from dataclasses import asdict

    from transxnode.datadir.config import KEY_OF, SETTINGS, key_name, load_config

    d = resolve_datadir(datadir)
    cfg = load_config(d, overrides_of(flags))
    values = {name: value for name, value in asdict(cfg).items() if name in KEY_OF}
    doc = {"datadir": str(cfg.datadir), "config": values, "sources": cfg.sources}

    def text(doc) -> str:
        rows = [["setting", "value", "from"]] + [[key_name(*key), _shown(values[name]), cfg.sources[name]]
                                                 for key, (name, _) in SETTINGS.items()]
        widths = [max(len(r[k]) for r in rows) for k in range(2)]
        return f"{cfg.datadir}\n" + "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows)

    emit(doc, as_json, text)


def _shown(value) -> str:
    """A setting as config.toml would spell it, so it can be copied there."""
    import json

    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value) if isinstance(value, (str, list)) else str(value)


COMMANDS = [config]
