"""A node's data directory: its layout and its config file (TOML).

    <datadir>/config.toml   the node key's address, API and p2p listen addresses
    <datadir>/genesis.json  the network this node belongs to
    <datadir>/keystore/     encrypted keys (the node key and any wallet keys)
    <datadir>/chain/        the LevelDB store
    <datadir>/node.json     written while the node runs: its API URL and pid

config.toml may name a `password_file` (relative to the data directory; a devnet's nodes name theirs), read
when a command is given neither --password-file nor $TRANSX_PASSWORD.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATADIR = os.environ.get("TRANSX_DATADIR", str(Path.home() / ".transx"))
DEFAULT_API = "127.0.0.1:8645"
DEFAULT_P2P = "/ip4/0.0.0.0/tcp/9645"


class ConfigError(Exception):
    """The data directory or its config is missing or malformed; one line for the user."""


@dataclass
class Config:
    datadir: Path
    key: str
    api_listen: str = DEFAULT_API
    p2p_listen: str = DEFAULT_P2P
    bootstrap: list[str] = field(default_factory=list)
    max_peers: int = 32
    mdns: bool = False
    keepalive: float = 300.0
    solver_time_limit: float | None = None
    password_file: str | None = None  # relative to the data directory

    @property
    def keystore_dir(self) -> Path:
        return self.datadir / "keystore"

    @property
    def chain_dir(self) -> Path:
        return self.datadir / "chain"

    @property
    def genesis_path(self) -> Path:
        return self.datadir / "genesis.json"

    @property
    def runtime_path(self) -> Path:
        return self.datadir / "node.json"


def config_path(datadir: str | Path) -> Path:
    return Path(datadir) / "config.toml"


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string of ASCII is a valid TOML basic string


def write_config(cfg: Config) -> None:
    text = (
        "# TransX node configuration (see the README)\n"
        f"key = {_toml_str(cfg.key)}  # the node's key in keystore/: signs blocks, identifies the peer\n"
        + (f"password_file = {_toml_str(cfg.password_file)}  # the keystore's password (mode 0600), when a command "
           "is given no --password-file or $TRANSX_PASSWORD\n" if cfg.password_file else "") + "\n"
        "[api]\n"
        f"listen = {_toml_str(cfg.api_listen)}  # HTTP API and explorer; keep it on localhost\n\n"
        "[p2p]\n"
        f"listen = {_toml_str(cfg.p2p_listen)}\n"
        f"bootstrap = [{', '.join(_toml_str(b) for b in cfg.bootstrap)}]  # /ip4/HOST/tcp/PORT/p2p/PEER_ID\n"
        f"max_peers = {cfg.max_peers}\n"
        f"mdns = {'true' if cfg.mdns else 'false'}  # find peers on the home LAN by multicast\n"
        f"keepalive = {cfg.keepalive:g}  # seconds a peer may leave pings unanswered before it is dropped; 0: never\n\n"
        "[solver]\n"
        f"time_limit = {cfg.solver_time_limit or 0}  # seconds per slot's solve; 0: no limit\n"
    )
    atomic_write(config_path(cfg.datadir), text)


def atomic_write(path: Path, text: str) -> None:
    """Write `path` so that a crash leaves the old file or the new one, never a torn one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_config(datadir: str | Path) -> Config:
    path = config_path(datadir)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{datadir} is not a TransX data directory (no config.toml): run `transx init --datadir "
                          f"{datadir}` first") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    try:
        api, p2p, solver = doc.get("api", {}), doc.get("p2p", {}), doc.get("solver", {})
        limit = float(solver.get("time_limit", 0))
        cfg = Config(
            datadir=Path(datadir), key=str(doc["key"]), api_listen=str(api.get("listen", DEFAULT_API)),
            p2p_listen=str(p2p.get("listen", DEFAULT_P2P)), bootstrap=[str(b) for b in p2p.get("bootstrap", [])],
            max_peers=int(p2p.get("max_peers", 32)), mdns=bool(p2p.get("mdns", False)),
            keepalive=float(p2p.get("keepalive", 300.0)),
            solver_time_limit=limit if limit > 0 else None,
            password_file=str(doc["password_file"]) if "password_file" in doc else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{path}: missing or malformed setting ({e})") from None
    if not (cfg.keepalive == 0 or 4 <= cfg.keepalive <= 86_400):
        raise ConfigError(f"{path}: p2p.keepalive must be 0 (never) or 4..86400 seconds, got {cfg.keepalive:g}")
    host, _, port = cfg.api_listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{path}: api.listen must be HOST:PORT, got {cfg.api_listen!r}")
    try:
        check_p2p_address(cfg.p2p_listen, peer=False)
        for b in cfg.bootstrap:
            check_p2p_address(b, peer=True)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return cfg


def check_p2p_address(addr: str, *, peer: bool) -> None:
    """A TCP multiaddress (/ip4/HOST/tcp/PORT, or /ip6/, /dns4/...), ending in /p2p/PEER_ID for a peer."""
    import multiaddr

    try:
        m = multiaddr.Multiaddr(addr)
        names = [p.name for p in m.protocols()]
    except Exception as e:
        raise ConfigError(f"{addr!r} is not a multiaddress ({e})") from None
    if "tcp" not in names:
        raise ConfigError(f"{addr!r} has no /tcp/PORT part")
    if peer and "p2p" not in names:
        raise ConfigError(f"{addr!r} names no peer: end it with /p2p/PEER_ID")


def password_file_of(datadir: str | Path) -> str | None:
    """The password file the data directory's config.toml names, if any; refused when others may read it
    (as ssh refuses such a key): it holds the password of every key in the keystore."""
    try:
        name = load_config(datadir).password_file
    except ConfigError:
        return None  # nothing remembered; the command meets a bad config on its own
    if name is None:
        return None
    path = Path(datadir) / name
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as e:
        raise ConfigError(f"{config_path(datadir)}: password_file {path}: {e.strerror or e}") from None
    if mode & 0o077:
        raise ConfigError(f"{path} (the password_file of {config_path(datadir)}) may be read by others (mode "
                          f"{mode:o}): `chmod 600 {path}`")
    return str(path)


def running_api(datadir: str | Path) -> str | None:
    """The API URL of the node running on `datadir`, from the file it writes at start."""
    try:
        return json.loads((Path(datadir) / "node.json").read_text())["api"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
