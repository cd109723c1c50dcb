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
