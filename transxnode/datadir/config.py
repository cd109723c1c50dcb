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
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

DEFAULT_DATADIR = os.environ.get("TRANSX_DATADIR", str(Path.home() / ".transx"))
DEFAULT_API = "127.0.0.1:8645"
DEFAULT_P2P = "/ip4/0.0.0.0/tcp/9645"


class ConfigError(Exception):
    """The data directory or its config is missing or malformed; one line for the user."""


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_LOG_BACKUPS = 5


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
    log_level: str = "info"  # one of LOG_LEVELS
    log_file: str | None = None  # None: stderr; relative to the data directory
    log_format: str = "text"  # "text" for people, "json" (one object a line) for machines
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES  # the log file is rotated at this size; 0: never
    log_backups: int = DEFAULT_LOG_BACKUPS  # rotated files kept (FILE.1 ... FILE.N)
    metrics_listen: str | None = None  # HOST:PORT serving /metrics besides the API's; None: the API's only
    cors_origins: list[str] = field(default_factory=list)  # origins allowed cross-origin; empty: CORS off
    api_tls_cert: str | None = None  # PEM certificate of the API; relative to the data directory
    api_tls_key: str | None = None  # its private key
    api_allow_remote: bool = False  # the owner's web app serves a non-loopback API only with this and TLS
    # where each setting came from (field -> "default", "config.toml", "$TRANSX_...", "--flag"): `transx config show`
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

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

    def in_datadir(self, name: str | None) -> Path | None:
        """A path setting (log_file, api_tls_cert, ...) as a path: relative ones are in the data directory."""
        return None if name is None else self.datadir / name


def config_path(datadir: str | Path) -> Path:
    return Path(datadir) / "config.toml"


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string of ASCII is a valid TOML basic string


def _toml_list(items: list[str]) -> str:
    return f"[{', '.join(_toml_str(b) for b in items)}]"


def write_config(cfg: Config) -> None:
    d = Config(cfg.datadir, cfg.key)  # the defaults: sections below are written only when they differ
    log = "".join(
        f"{k} = {v}\n" for k, v, default in (
            ("level", _toml_str(cfg.log_level), cfg.log_level == d.log_level),
            ("file", _toml_str(cfg.log_file or ""), cfg.log_file is None),
            ("format", _toml_str(cfg.log_format), cfg.log_format == d.log_format),
            ("max_bytes", cfg.log_max_bytes, cfg.log_max_bytes == d.log_max_bytes),
            ("backups", cfg.log_backups, cfg.log_backups == d.log_backups)) if not default)
    api_extra = "".join(
        f"{k} = {v}\n" for k, v, default in (
            ("cors_origins", _toml_list(cfg.cors_origins), not cfg.cors_origins),
            ("tls_cert", _toml_str(cfg.api_tls_cert or ""), cfg.api_tls_cert is None),
            ("tls_key", _toml_str(cfg.api_tls_key or ""), cfg.api_tls_key is None),
            ("allow_remote", "true", not cfg.api_allow_remote)) if not default)
    text = (
        "# TransX node configuration (see the README)\n"
        f"key = {_toml_str(cfg.key)}  # the node's key in keystore/: signs blocks, identifies the peer\n"
        + (f"password_file = {_toml_str(cfg.password_file)}  # the keystore's password (mode 0600), when a command "
           "is given no --password-file or $TRANSX_PASSWORD\n" if cfg.password_file else "") + "\n"
        "[api]\n"
        f"listen = {_toml_str(cfg.api_listen)}  # HTTP API and explorer; keep it on localhost\n" + api_extra + "\n"
        "[p2p]\n"
        f"listen = {_toml_str(cfg.p2p_listen)}\n"
        f"bootstrap = {_toml_list(cfg.bootstrap)}  # /ip4/HOST/tcp/PORT/p2p/PEER_ID\n"
        f"max_peers = {cfg.max_peers}\n"
        f"mdns = {'true' if cfg.mdns else 'false'}  # find peers on the home LAN by multicast\n"
        f"keepalive = {cfg.keepalive:g}  # seconds a peer may leave pings unanswered before it is dropped; 0: never\n\n"
        "[solver]\n"
        f"time_limit = {cfg.solver_time_limit or 0}  # seconds per slot's solve; 0: no limit\n"
        + (f"\n[log]\n{log}" if log else "")
        + (f"\n[metrics]\nlisten = {_toml_str(cfg.metrics_listen)}  # /metrics on its own port too\n"
           if cfg.metrics_listen else "")
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


# Checks of one setting's value: return it in the field's type, or raise ValueError saying what is wanted.

def _string(v):
    if not isinstance(v, str):
        raise ValueError(f"must be a string, got {v!r}")
    return v


def _path(v):
    if not _string(v):
        raise ValueError("must be a path, got an empty string")
    return v


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def _integer(lo: int, hi: int, zero_ok: bool = False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or not (lo <= v <= hi or (zero_ok and v == 0)):
            raise ValueError(f"must be {'0 or ' if zero_ok else ''}an integer in {lo}..{hi}, got {v!r}")
        return v
    return check


def _seconds(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"must be a number of seconds, got {v!r}")
    return float(v)


def _keepalive(v):
    s = _seconds(v)
    if not (s == 0 or 4 <= s <= 86_400):
        raise ValueError(f"must be 0 (never) or 4..86400 seconds, got {s:g}")
    return s


def _time_limit(v):
    s = _seconds(v)
    if not (0 <= s <= 86_400):
        raise ValueError(f"must be 0 (no limit) or up to 86400 seconds, got {s:g}")
    return s if s > 0 else None


def _host_port(v):
    """HOST:PORT with a port in 0..65535 (0: the system picks one)."""
    host, _, port = _string(v).rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"must be HOST:PORT with a port in 0..65535, got {v!r}")
    return v


def _one_of(choices: tuple[str, ...]):
    def check(v):
        if not isinstance(v, str) or v.lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {v!r}")
        return v.lower()
    return check


def _p2p_listen(v):
    try:
        check_p2p_address(_string(v), peer=False)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    return v


def _peers(v):
    if not isinstance(v, list):
        raise ValueError(f"must be a list of peer multiaddresses, got {v!r}")
    for b in v:
        try:
            check_p2p_address(_string(b), peer=True)
        except ConfigError as e:
            raise ValueError(str(e)) from None
    return list(v)


def _origins(v):
    """Origins as a browser sends them (scheme://host[:port], no path), or "*" for any."""
    from urllib.parse import urlsplit

    if not isinstance(v, list):
        raise ValueError(f"must be a list of origins like \"https://example.org\", got {v!r}")
    for o in v:
        u = urlsplit(_string(o))
        if o != "*" and not (u.scheme in ("http", "https") and u.netloc and not u.path and not u.query):
            raise ValueError(f"must be origins like \"https://example.org:8443\" (no path) or \"*\", got {o!r}")
    return list(v)


# Every setting config.toml may hold: (section or "" for the top, key) -> (Config field, check).
SETTINGS: dict[tuple[str, str], tuple[str, object]] = {
    ("", "key"): ("key", _string),
    ("", "password_file"): ("password_file", _path),
    ("api", "listen"): ("api_listen", _host_port),
    ("api", "cors_origins"): ("cors_origins", _origins),
    ("api", "tls_cert"): ("api_tls_cert", _path),
    ("api", "tls_key"): ("api_tls_key", _path),
    ("api", "allow_remote"): ("api_allow_remote", _bool),
    ("p2p", "listen"): ("p2p_listen", _p2p_listen),
    ("p2p", "bootstrap"): ("bootstrap", _peers),
    ("p2p", "max_peers"): ("max_peers", _integer(1, 10_000)),
    ("p2p", "mdns"): ("mdns", _bool),
    ("p2p", "keepalive"): ("keepalive", _keepalive),
    ("solver", "time_limit"): ("solver_time_limit", _time_limit),
    ("log", "level"): ("log_level", _one_of(LOG_LEVELS)),
    ("log", "file"): ("log_file", _path),
    ("log", "format"): ("log_format", _one_of(LOG_FORMATS)),
    ("log", "max_bytes"): ("log_max_bytes", _integer(1024, 1 << 40, zero_ok=True)),
    ("log", "backups"): ("log_backups", _integer(0, 1000)),
    ("metrics", "listen"): ("metrics_listen", _host_port),
}
KEY_OF = {f: k for k, (f, _) in SETTINGS.items()}  # field -> (section, key)


def key_name(section: str, key: str) -> str:
    """How an operator writes a setting: `[api] listen`, or `key` at the top of the file."""
    return f"[{section}] {key}" if section else key


# Run-time overrides: the Config field -> its environment variable and its `transx node` flag.
OVERRIDES = {
    "api_listen": ("TRANSX_API_LISTEN", "--api-listen"),
    "p2p_listen": ("TRANSX_P2P_LISTEN", "--p2p-listen"),
    "bootstrap": ("TRANSX_BOOTSTRAP", "--bootstrap"),  # comma-separated in the environment
    "metrics_listen": ("TRANSX_METRICS_LISTEN", "--metrics-listen"),
    "log_level": ("TRANSX_LOG_LEVEL", "--log-level"),
    "log_file": ("TRANSX_LOG_FILE", "--log-file"),
    "log_format": ("TRANSX_LOG_FORMAT", "--log-format"),
}


def without_node_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the overrides that belong to one node (its addresses, peers, log file): what a devnet
    hands each of its nodes, which would otherwise all try the same port or file."""
    own = {OVERRIDES[f][0] for f in ("api_listen", "p2p_listen", "bootstrap", "metrics_listen", "log_file")}
    return {k: v for k, v in env.items() if k not in own}


def overrides_from(env: Mapping[str, str], flags: Mapping[str, object]) -> dict[str, tuple[object, str]]:
    """The run-time overrides of config.toml, field -> (value, where it came from): a flag (not None, not
    empty) over its environment variable (not empty).  A relative --log-file is relative to the working
    directory (config.toml's, to the data directory)."""
    out: dict[str, tuple[object, str]] = {}
    for name, (var, flag) in OVERRIDES.items():
        value = flags.get(name)
        if value is not None and value != () and value != []:
            out[name] = (list(value) if name == "bootstrap" else value, flag)
        elif env.get(var):
            raw = env[var]
            out[name] = ([b.strip() for b in raw.split(",") if b.strip()] if name == "bootstrap" else raw, f"${var}")
    if "log_file" in out:
        value, source = out["log_file"]
        out["log_file"] = (os.path.abspath(value) if value else value, source)
    return out


def load_config(datadir: str | Path, overrides: Mapping[str, tuple[object, str]] | None = None) -> Config:
    """The data directory's config.toml, checked key by key (an unknown key or a value out of range is one
    line naming it), with run-time `overrides` (from `overrides_from`) checked the same way and applied."""
    path = config_path(datadir)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{datadir} is not a TransX data directory (no config.toml): run `transx init --datadir "
                          f"{datadir}` first") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    unknown = []
    sections = {s for s, _ in SETTINGS if s}
    for name, value in doc.items():
        if name in sections and isinstance(value, dict):
            unknown += [key_name(name, k) for k in value if (name, k) not in SETTINGS]
            items = [((name, k), v) for k, v in value.items() if (name, k) in SETTINGS]
        elif ("", name) in SETTINGS:
            items = [(("", name), value)]
        else:
            unknown.append(f"[{name}]" if isinstance(value, dict) or name in sections else name)
            items = []
        for (section, key), v in items:
            fname, check = SETTINGS[section, key]
            try:
                values[fname] = check(v)
            except ValueError as e:
                raise ConfigError(f"{path}: {key_name(section, key)} {e}") from None
            sources[fname] = path.name
    if unknown:
        raise ConfigError(f"{path}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    if "key" not in values:
        raise ConfigError(f"{path}: missing setting: key (the node key's address)")
    for fname, (value, source) in (overrides or {}).items():
        section, key = KEY_OF[fname]
        try:
            values[fname] = SETTINGS[section, key][1](value)
        except ValueError as e:
            raise ConfigError(f"{source} {e}") from None
        sources[fname] = source
    cfg = Config(datadir=Path(datadir), **values)
    cfg.sources = {f.name: sources.get(f.name, "default") for f in fields(cfg) if f.name in KEY_OF}
    if (cfg.api_tls_cert is None) != (cfg.api_tls_key is None):
        raise ConfigError(f"{path}: [api] tls_cert and tls_key go together: give both or neither")
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
