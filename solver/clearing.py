"""A slot's clearing: the trades with their payments, and the certificate.

What a proposal carries and what a block records.  Integers only: `wh` in
Wh, `payment` in micro-units of the token (what the buyer's escrow pays the
seller for the pair), multipliers as integer numerators over the fixed
denominator `MULTIPLIER_SCALE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .documents import read_json, require_int
from .instance import InstanceError

MULTIPLIER_SCALE = 10**15
MAX_MULTIPLIER = 10**40


class ClearingError(InstanceError):
    """A clearing document is malformed; the message names the field."""


@dataclass(frozen=True, order=True)
class Trade:
    seller: str
    buyer: str
    wh: int
    payment: int

    def __post_init__(self) -> None:
        # Exact types: a float or bool quantity must never be truncated quietly.
        if type(self.seller) is not str or type(self.buyer) is not str:
            raise ClearingError("trade: seller and buyer are ids (strings)")
        if type(self.wh) is not int or type(self.payment) is not int:
            raise ClearingError(f"trade {self.seller}->{self.buyer}: wh and payment must be integers")


@dataclass(frozen=True)
class Clearing:
    """Trades sorted by (seller, buyer); multipliers keyed by participant id."""

    slot: int
    trades: tuple[Trade, ...]
    lam: dict[str, int] = field(default_factory=dict)
    mu: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # verify() must never raise on a hostile clearing: refuse odd types here.
        if type(self.slot) is not int or not 0 <= self.slot < 2**63:
            raise ClearingError("clearing: slot must be an integer in [0, 2^63)")
        if not all(type(t) is Trade for t in self.trades):
            raise ClearingError("clearing: trades must be Trade records")
        for name in ("lam", "mu"):
            m = getattr(self, name)
            if not isinstance(m, dict) or not all(type(k) is str and type(v) is int for k, v in m.items()):
                raise ClearingError(f"clearing: {name} must map ids to integers")
        object.__setattr__(self, "trades", tuple(sorted(self.trades)))

    @property
    def empty(self) -> bool:
        return not self.trades

    def to_json(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "trades": [
                {"seller": t.seller, "buyer": t.buyer, "wh": t.wh, "payment": t.payment} for t in self.trades
            ],
            "lambda": dict(sorted(self.lam.items())),
            "mu": dict(sorted(self.mu.items())),
            "multiplier_scale": MULTIPLIER_SCALE,
        }


def _int(v: Any, where: str, lo: int, hi: int) -> int:
    return require_int(v, where, lo, hi, ClearingError)


def _multipliers(v: Any, where: str) -> dict[str, int]:
    if not isinstance(v, dict):
        raise ClearingError(f"{where}: expected an object of id -> integer")
    return {str(k): _int(x, f"{where}.{k}", 0, MAX_MULTIPLIER) for k, x in v.items()}


def clearing_from_json(doc: Any) -> Clearing:
    """Parse a clearing document (the `--json` output of `transx solve`).

    Fields a solver adds for people (surplus, objective, gap, timing) are
    ignored: the verifier recomputes them.
    """
    if not isinstance(doc, dict):
        raise ClearingError("solution: expected an object")
    for name in ("slot", "trades", "lambda", "mu"):
        if name not in doc:
            raise ClearingError(f"solution.{name}: missing field")
    scale = doc.get("multiplier_scale", MULTIPLIER_SCALE)
    if scale != MULTIPLIER_SCALE:
        raise ClearingError(f"solution.multiplier_scale: must be {MULTIPLIER_SCALE}")
    if not isinstance(doc["trades"], list):
        raise ClearingError("solution.trades: expected a list")
    trades = []
    for k, t in enumerate(doc["trades"]):
        at = f"solution.trades[{k}]"
        if not isinstance(t, dict) or set(t) != {"seller", "buyer", "wh", "payment"}:
            raise ClearingError(f"{at}: expected {{seller, buyer, wh, payment}}")
        if not isinstance(t["seller"], str) or not isinstance(t["buyer"], str):
            raise ClearingError(f"{at}: seller and buyer are ids (strings)")
        trades.append(
            Trade(t["seller"], t["buyer"], _int(t["wh"], f"{at}.wh", 1, 10**12), _int(t["payment"], f"{at}.payment", 0, 10**15))
        )
    return Clearing(
        slot=_int(doc["slot"], "solution.slot", 0, 2**63 - 1),
        trades=tuple(trades),
        lam=_multipliers(doc["lambda"], "solution.lambda"),
        mu=_multipliers(doc["mu"], "solution.mu"),
    )


def load_clearing(path: str) -> Clearing:
    """Read a clearing file; malformed JSON is a `ClearingError` too."""
    return clearing_from_json(read_json(path, ClearingError))
