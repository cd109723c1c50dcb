"""The node's logs: ISO 8601 time (milliseconds, UTC offset), level, logger and message, one record a line.

`text` is for people reading a terminal or journalctl; `json` is one object a line for log shippers
(Loki, Elasticsearch, `jq`): {"time", "level", "logger", "message"} plus "exc_info" when there is a traceback.
With a file, records go to it alone (not stderr) and it is rotated at `max_bytes` into FILE.1 ... FILE.N.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import datetime
from typing import TextIO

from transxnode.datadir.config import Config, ConfigError

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s  %(message)s"
QUIET = ("hypercorn.error", "hypercorn.access")  # the API's access log and hypercorn's chatter: warnings only


def iso_time(created: float) -> str:
    """A record's time in local time with its UTC offset: 2026-12-04T03:14:25.123+00:00."""
    return datetime.fromtimestamp(created).astimezone().isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """`2026-12-04T03:14:25.123+00:00 INFO    transx.node  block 12 ...`, a traceback on the lines after."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object a line; a traceback is a string in "exc_info", never extra lines."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": iso_time(record.created), "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def setup_logging(cfg: Config, stream: TextIO | None = None) -> logging.Handler:
    """Send every record at `cfg.log_level` and above to `cfg.log_file` (rotated) or to `stream` (stderr),
    as `cfg.log_format` says; replaces what an earlier call installed.  A log file that cannot be opened
    is a ConfigError (one line, before the node starts anything)."""
    path = cfg.in_datadir(cfg.log_file)
    if path is not None:
        try:
            handler: logging.Handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=cfg.log_max_bytes, backupCount=cfg.log_backups, encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot write the log file {path}: {e.strerror or e} "
                              f"(from {cfg.sources.get('log_file', 'the config')})") from None
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if cfg.log_format == "json" else TextFormatter())
    handler.set_name("transx")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "transx"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(cfg.log_level.upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler

