"""The node's log lines: ISO time with milliseconds and UTC offset, level, logger; JSON lines a machine can
parse; a file rotated at its size limit; a log file that cannot be written is one line."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import datetime

import pytest

from transxnode.datadir.config import Config, ConfigError
from transxnode.logs import setup_logging

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


@pytest.fixture
def root():
    """Leave the root logger as the test found it."""
    r = logging.getLogger()
    level, handlers = r.level, list(r.handlers)
    yield r
    for h in [h for h in r.handlers if h not in handlers]:
        r.removeHandler(h)
        h.close()
    r.setLevel(level)


def test_a_text_line_starts_with_an_iso_date_and_names_level_and_logger(tmp_path, root):
    out = io.StringIO()
    setup_logging(Config(tmp_path, key="k"), stream=out)
    logging.getLogger("transx.node").info("block %d", 12)
    logging.getLogger("transx.node").debug("not at info")
    logging.getLogger("hypercorn.access").info("GET / 200")  # the access log stays quiet, as before
    line, = out.getvalue().splitlines()
    assert re.fullmatch(ISO + r" INFO +transx\.node +block 12", line), line


def test_a_json_line_is_one_object_with_time_level_logger_message_and_the_traceback(tmp_path, root):
    out = io.StringIO()
    setup_logging(Config(tmp_path, key="k", log_format="json", log_level="debug"), stream=out)
    log = logging.getLogger("transx.sync")
    log.debug("sync: %d blocks", 3)
    try:
        raise ValueError("bad block")
    except ValueError:
        log.exception("import failed")
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]  # two records, two lines
    assert {k: first[k] for k in ("level", "logger", "message")} == {"level": "debug", "logger": "transx.sync",
                                                                     "message": "sync: 3 blocks"}
    t = datetime.fromisoformat(first["time"])
    assert re.fullmatch(ISO, first["time"]) and t.utcoffset() is not None
    assert abs((datetime.now().astimezone() - t).total_seconds()) < 60
    assert second["level"] == "error" and "ValueError: bad block" in second["exc_info"]


def test_the_log_file_is_rotated_at_max_bytes_keeping_backups(tmp_path, root):
    cfg = Config(tmp_path, key="k", log_file="node.log", log_max_bytes=2048, log_backups=2, log_format="json")
    setup_logging(cfg)
    log = logging.getLogger("transx.node")
    for i in range(100):  # about 100 bytes each: 10,000 bytes, five files' worth
        log.info("block %04d cleared", i)
    files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("node.log"))
    assert files == ["node.log", "node.log.1", "node.log.2"]  # the oldest beyond two backups are gone
    for name in files:
        data = (tmp_path / name).read_text()
        assert 0 < len(data.encode()) <= 2048
        assert all(json.loads(line)["logger"] == "transx.node" for line in data.splitlines())
    assert json.loads((tmp_path / "node.log").read_text().splitlines()[-1])["message"] == "block 0099 cleared"


def test_a_log_file_that_cannot_be_written_is_one_line(tmp_path, root):
    with pytest.raises(ConfigError) as e:
        setup_logging(Config(tmp_path, key="k", log_file="no/such/dir/node.log",
                             sources={"log_file": "$TRANSX_LOG_FILE"}))
    assert str(e.value) == (f"cannot write the log file {tmp_path}/no/such/dir/node.log: No such file or directory "
                            "(from $TRANSX_LOG_FILE)")
