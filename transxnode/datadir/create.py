"""Create a node's data directory: encrypted node key, genesis, config (what `transx init` does)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import DEFAULT_API, DEFAULT_P2P, Config, ConfigError, atomic_write, config_path, write_config
from consensus.rules.genesis import Genesis, genesis_from_json
from consensus.rules.keys import decode_address
from .keystore import Keystore


def network_genesis() -> str:
    """The genesis file of the public TransX network, shipped inside the package (package data), so an
    installed `transx init` without --dev or --genesis joins it."""
    from importlib.resources import files

    return str(files(__package__) / "genesis.json")


def init_datadir(datadir: Path, password: str, genesis_doc: dict[str, Any] | None = None, *,
                 dev_slot_seconds: int | None = None, api_listen: str = DEFAULT_API,
                 seed: bytes | None = None, p2p_listen: str = DEFAULT_P2P,
                 bootstrap: list[str] | None = None, password_file: str | None = None) -> tuple[str, Genesis]:
    """Make `datadir` a node's: a new node key, and `genesis_doc` (or, with `dev_slot_seconds`, a
    development genesis that funds this key and makes it the solver); `password_file`, relative to
    `datadir`, is remembered in its config.  Returns (address, genesis)."""
    from consensus.rules.genesis import dev_genesis

    if config_path(datadir).exists():
        raise ConfigError(f"{datadir} is already initialised (config.toml exists); choose another --datadir")
    if genesis_doc is not None:
        genesis_from_json(genesis_doc)  # refuse a bad genesis before creating anything
    datadir.mkdir(parents=True, exist_ok=True)
    ks = Keystore(datadir / "keystore")
    address = ks.import_seed(seed, password) if seed is not None else ks.create(password)
    if genesis_doc is None:
        raw = decode_address(address)
        genesis_doc = dev_genesis([raw], [raw], slot_seconds=dev_slot_seconds or 5, outage_proof=True)
    g = genesis_from_json(genesis_doc)
    atomic_write(datadir / "genesis.json", json.dumps(genesis_doc, indent=1) + "\n")
    # The config last: a directory that has one is whole.
    write_config(Config(datadir=datadir, key=address, api_listen=api_listen, p2p_listen=p2p_listen,
                        bootstrap=list(bootstrap or []), password_file=password_file))
    return address, g
