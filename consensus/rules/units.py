"""Money and energy as people read them: one formatting for every `transx` command, refusal message and
the explorer page (transxnode/api/static/explorer.html mirrors it in JavaScript).

The chain counts integers: micro-units of the token (10^-6 token), Wh, micro-units per kWh; the API
and `--json` keep them.  For people: tokens, exact, with at least two decimals and at most six
(`100.00`, `1.001`, `0.000001`), prices in tokens per kWh the same way, and energy in kWh with three
decimals, exact to the Wh (`3.000`, `0.800`, `1.234`); thousands separated by commas.
Integer arithmetic only: refusal messages made in consensus/rules read the same on every node.
"""

from __future__ import annotations

import math

MICRO = 1_000_000  # micro-units in a token
WH_PER_KWH = 1_000


def _decimal(value: int, scale: int, places: int, min_decimals: int) -> str:
    if not isinstance(value, int):  # a float only from a display path (an average): half up, as JavaScript rounds
        value = math.floor(value + 0.5)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), scale)
    digits = f"{frac:0{places}d}".rstrip("0").ljust(min_decimals, "0")
    return f"{sign}{whole:,}" + (f".{digits}" if digits else "")


def tokens(micro: int) -> str:
    """Micro-units as tokens: 100_000_000 -> '100.00', 1_001_000 -> '1.001', -1 -> '-0.000001'."""
    return _decimal(micro, MICRO, 6, 2)


def price(micro_per_kwh: int) -> str:
    """Micro-units per kWh as tokens per kWh: 500_000 -> '0.50', 323_912 -> '0.323912'."""
    return tokens(micro_per_kwh)


def kwh(wh: int) -> str:
    """Wh as kWh: 3000 -> '3.000', 800 -> '0.800', 1234 -> '1.234', 1_500_000 -> '1,500.000'."""
    return _decimal(wh, WH_PER_KWH, 3, 3)


__all__ = ["MICRO", "WH_PER_KWH", "kwh", "price", "tokens"]
