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
