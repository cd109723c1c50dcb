"""Strict reading of JSON documents: every error names the field it is about."""

from __future__ import annotations

import json
from typing import Any


class DocumentError(ValueError):
    """A document is malformed; the message names the offending field."""


def read_json(path: str, error: type[DocumentError] = DocumentError) -> Any:
    """Parse a JSON file; unreadable or malformed files raise `error`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    except RecursionError:
        raise error(f"{path}: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise error(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None


def require_int(value: Any, where: str, lo: int, hi: int, error: type[DocumentError] = DocumentError) -> int:
    """`value` as an integer in [lo, hi], or `error` naming `where`."""
    # bool is an int subclass in Python; JSON true is not a quantity.
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where}: expected an integer, got {json.dumps(value)[:40]}")
    if not lo <= value <= hi:
        raise error(f"{where}: {value} is outside [{lo}, {hi}]")
    return value
