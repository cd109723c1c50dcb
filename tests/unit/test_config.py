"""config.toml as an operator edits it: what it accepts, and the one-line errors when it is wrong."""

from __future__ import annotations

import pytest

from transxnode.datadir.config import Config, ConfigError, load_config, write_config


@pytest.mark.parametrize("value, ok", [("300", True), ("0", True), ("4", True), ("8.5", True), ("3", False),
                                       ("-1", False), ("nan", False), ("inf", False), ('"soon"', False)])
def test_keepalive_is_never_or_a_sane_number_of_seconds(tmp_path, value, ok):
    write_config(Config(tmp_path, key="trx1example"))
    path = tmp_path / "config.toml"
    assert "keepalive = 300 " in path.read_text()  # the default, written out for the operator to see
    path.write_text(path.read_text().replace("keepalive = 300 ", f"keepalive = {value} "))
    if ok:
        assert load_config(tmp_path).keepalive == float(value)
    else:
        with pytest.raises(ConfigError, match="keepalive|malformed") as e:
            load_config(tmp_path)
        assert "\n" not in str(e.value)


def test_a_remembered_password_file_is_read_only_if_it_is_the_owners_alone(tmp_path):
    """config.toml's password_file (a devnet node's names ../password): relative to the data directory, and
    refused in one line when others may read it, as ssh refuses such a key."""
    import os

    from transxnode.datadir.config import password_file_of

    d = tmp_path / "node1"
    d.mkdir()
    write_config(Config(d, key="trx1example"))
    assert password_file_of(d) is None
    write_config(Config(d, key="trx1example", password_file="../password"))
    assert load_config(d).password_file == "../password"
    with pytest.raises(ConfigError, match="password_file .*password: No such file"):
        password_file_of(d)
    (tmp_path / "password").write_text("devnet\n")
    os.chmod(tmp_path / "password", 0o640)
    with pytest.raises(ConfigError, match=r"may be read by others \(mode 640\): `chmod 600 ") as e:
        password_file_of(d)
    assert "\n" not in str(e.value)
    os.chmod(tmp_path / "password", 0o600)
    assert password_file_of(d) == str(d / "../password")


def _datadir_with(tmp_path, extra: str):
    """A data directory whose config.toml is the written defaults plus `extra` TOML appended."""
    write_config(Config(tmp_path, key="trx1example"))
    path = tmp_path / "config.toml"
    path.write_text(path.read_text() + extra)
    return tmp_path


@pytest.mark.parametrize("extra, named", [
    ("[metrics]\nlisen = \"127.0.0.1:9646\"\n", "unknown key [metrics] lisen"),
    ("[logs]\nlevel = \"debug\"\n", "unknown key [logs]"),
    ("[log]\nlevel = \"debug\"\nfromat = \"json\"\nmax_byte = 1\n", "unknown keys [log] fromat, [log] max_byte"),
])
def test_an_unknown_key_is_named_with_its_file_and_section(tmp_path, extra, named):
    """A typo in config.toml must not be silently ignored (the operator would run with the default)."""
    d = _datadir_with(tmp_path, extra)
    with pytest.raises(ConfigError) as e:
        load_config(d)
    assert str(e.value) == f"{d / 'config.toml'}: {named}"


@pytest.mark.parametrize("extra, said", [
    ("[metrics]\nlisten = \"127.0.0.1:70000\"\n", "[metrics] listen must be HOST:PORT with a port in 0..65535"),
    ("[metrics]\nlisten = \"9646\"\n", "[metrics] listen must be HOST:PORT"),
    ("[log]\nlevel = \"loud\"\n", "[log] level must be one of debug, info, warning, error, got 'loud'"),
    ("[log]\nformat = \"xml\"\n", "[log] format must be one of text, json"),
    ("[log]\nmax_bytes = 100\n", "[log] max_bytes must be 0 or an integer in 1024.."),
    ("[log]\nbackups = -1\n", "[log] backups must be an integer in 0..1000"),
    ("[log]\nbackups = true\n", "[log] backups must be an integer"),
    ("[log]\nfile = \"\"\n", "[log] file must be a path"),
])
def test_a_value_out_of_range_is_one_line_naming_the_key(tmp_path, extra, said):
    d = _datadir_with(tmp_path, extra)
    with pytest.raises(ConfigError) as e:
        load_config(d)
    assert str(e.value).startswith(f"{d / 'config.toml'}: {said}") and "\n" not in str(e.value)


@pytest.mark.parametrize("old, new, said", [
    ('listen = "127.0.0.1:8645"', 'listen = "127.0.0.1:99999"', "[api] listen must be HOST:PORT"),
    ("max_peers = 32", "max_peers = 0", "[p2p] max_peers must be an integer in 1..10000"),
    ("mdns = false", 'mdns = "yes"', "[p2p] mdns must be true or false"),
    ("time_limit = 0", "time_limit = -5", "[solver] time_limit must be 0 (no limit)"),
    ("bootstrap = []", 'bootstrap = ["/ip4/1.2.3.4/tcp/9645"]', "[p2p] bootstrap '/ip4/1.2.3.4/tcp/9645' names no peer"),
    ('listen = "/ip4/0.0.0.0/tcp/9645"', 'listen = "0.0.0.0:9645"', "[p2p] listen '0.0.0.0:9645' is not a multiaddress"),
    ('listen = "127.0.0.1:8645"', 'listen = "127.0.0.1:8645"\ncors_origins = ["https://example.org/app"]',
     "[api] cors_origins must be origins like"),
    ('listen = "127.0.0.1:8645"', 'listen = "127.0.0.1:8645"\ntls_cert = "api.pem"',
     "[api] tls_cert and tls_key go together"),
])
def test_the_existing_sections_are_checked_as_strictly(tmp_path, old, new, said):
    write_config(Config(tmp_path, key="trx1example"))
    path = tmp_path / "config.toml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert str(e.value).startswith(f"{path}: {said}") and "\n" not in str(e.value)


def test_every_setting_survives_write_and_load(tmp_path):
    """What `write_config` writes (transx init, the devnet) is read back as written, non-defaults included."""
    cfg = Config(tmp_path, key="trx1example", api_listen="0.0.0.0:8443", bootstrap=[PEER], max_peers=8,
                 mdns=True, keepalive=30.0, solver_time_limit=2.5, password_file="../password", log_level="debug",
                 log_file="logs/node.log", log_format="json", log_max_bytes=4096, log_backups=3,
                 metrics_listen="0.0.0.0:9646", cors_origins=["https://example.org", "http://localhost:3000"],
                 api_tls_cert="api.pem", api_tls_key="api.key", api_allow_remote=True)
    write_config(cfg)
    back = load_config(tmp_path)
    assert back == cfg
    assert back.sources["log_format"] == "config.toml" and back.in_datadir(back.log_file) == tmp_path / "logs/node.log"
    write_config(Config(tmp_path, key="trx1example"))
    text = (tmp_path / "config.toml").read_text()
    assert "[log]" not in text and "[metrics]" not in text  # defaults are not written out
    assert load_config(tmp_path).sources["log_level"] == "default"


PEER = "/ip4/10.0.0.2/tcp/9645/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
PEER2 = "/ip4/10.0.0.3/tcp/9645/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"


def test_a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default(tmp_path, monkeypatch):
    from transxnode.datadir.config import overrides_from

    d = _datadir_with(tmp_path, '[log]\nlevel = "warning"\nformat = "json"\n')
    path = d / "config.toml"
    path.write_text(path.read_text().replace("bootstrap = []", f'bootstrap = ["{PEER}"]'))
    env = {"TRANSX_LOG_LEVEL": "error", "TRANSX_BOOTSTRAP": f"{PEER2}, {PEER}", "TRANSX_API_LISTEN": "",
           "TRANSX_LOG_FILE": "node.log"}
    monkeypatch.chdir(tmp_path)

    def effective(flags):
        cfg = load_config(d, overrides_from(env, flags))
        return cfg.log_level, cfg.bootstrap, cfg.api_listen, cfg.log_format, cfg.metrics_listen, cfg.sources

    level, boot, api, fmt, metrics, src = effective({"log_level": "debug", "bootstrap": (), "api_listen": None})
    assert (level, src["log_level"]) == ("debug", "--log-level")  # flag
    assert (boot, src["bootstrap"]) == ([PEER2, PEER], "$TRANSX_BOOTSTRAP")  # env replaces the file's list
    assert (api, src["api_listen"]) == ("127.0.0.1:8645", "config.toml")  # an empty variable is no override
    assert (fmt, src["log_format"]) == ("json", "config.toml")  # file
    assert (metrics, src["metrics_listen"]) == (None, "default")  # default
    assert load_config(d, overrides_from(env, {})).log_file == str(tmp_path / "node.log")  # relative to the cwd
    level, boot, *_, src = effective({"bootstrap": (PEER,)})
    assert (level, src["log_level"], boot, src["bootstrap"]) == ("error", "$TRANSX_LOG_LEVEL", [PEER], "--bootstrap")
    del env["TRANSX_LOG_LEVEL"]
    assert effective({})[0] == "warning"
    with pytest.raises(ConfigError, match=r"^--metrics-listen must be HOST:PORT with a port in 0\.\.65535, got 'x'$"):
        effective({"metrics_listen": "x"})
    with pytest.raises(ConfigError, match=r"^\$TRANSX_LOG_FORMAT must be one of text, json, got 'xml'$"):
        load_config(d, overrides_from({"TRANSX_LOG_FORMAT": "xml"}, {}))


def test_a_devnet_keeps_one_nodes_addresses_out_of_its_nodes_environment():
    """TRANSX_API_LISTEN and the like name one node's ports and file: a devnet's nodes would all try them."""
    from transxnode.datadir.config import without_node_overrides

    env = {"TRANSX_API_LISTEN": "127.0.0.1:8645", "TRANSX_P2P_LISTEN": "/ip4/0.0.0.0/tcp/9645", "TRANSX_BOOTSTRAP": PEER,
           "TRANSX_METRICS_LISTEN": "127.0.0.1:9646", "TRANSX_LOG_FILE": "node.log", "TRANSX_LOG_FORMAT": "json",
           "TRANSX_LOG_LEVEL": "debug", "PATH": "/usr/bin"}
    assert without_node_overrides(env) == {"TRANSX_LOG_FORMAT": "json", "TRANSX_LOG_LEVEL": "debug", "PATH": "/usr/bin"}
