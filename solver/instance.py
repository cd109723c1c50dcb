"""One slot's market: the participants, the grid tariffs, the zone charges.

Everything here is an integer: energy in Wh, prices in micro-units of the
token per kWh.  An `Instance` is canonical: sellers and buyers are sorted by
id, so two nodes that received the same bids in any order hold the same
instance, and every index derived from it means the same on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .documents import DocumentError, read_json, require_int

MAX_ID_LEN = 64
MAX_WH = 10**9  # 1 GWh in one slot: far above any participant of this market
MAX_PRICE = 10**9  # 1,000 tokens per kWh
MAX_WEIGHT = 1000
MAX_ZONES = 64
MAX_PER_SIDE = 2**21  # sellers (or buyers) in one slot; keeps pair keys in int64
MAX_PREFER = 3  # owners one participant may name as preferred counterparts
ENERGY_KINDS = ("solar", "wind", "hydro")  # kind k >= 1 is ENERGY_KINDS[k - 1]; 0: unstated (seller), any (buyer)
MAX_KIND = len(ENERGY_KINDS)


class InstanceError(DocumentError):
    """The instance is malformed; the message names the offending field."""


@dataclass(frozen=True, order=True)
class Participant:
    """A seller or buyer: quantity offered or wanted, limit price, zone; optionally who placed it and its
    preferences, which only the candidate rule reads (pairs.py).  `owner`: an id of whoever placed the
    bid ("" unknown; on the chain the account's address in hex), shared by all its bids.  `prefer`: up to
    MAX_PREFER owners it would rather trade with, strictly increasing, not its own.  `kind`: a seller's
    kind of energy (an index into ENERGY_KINDS plus one; 0 unstated), a buyer's only kind it takes (0 any)."""

    id: str
    wh: int
    price: int
    zone: int = 0
    weight: int = 1
    owner: str = ""
    prefer: tuple[str, ...] = ()
    kind: int = 0


@dataclass(frozen=True)
class Instance:
    """A market instance: what one slot's clearing is computed from."""

    slot: int
    feed_in: int
    retail: int
    network_charge: tuple[tuple[int, ...], ...]
    sellers: tuple[Participant, ...]
    buyers: tuple[Participant, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "sellers", tuple(sorted(self.sellers, key=lambda p: p.id)))
        object.__setattr__(self, "buyers", tuple(sorted(self.buyers, key=lambda p: p.id)))
        _check_instance(self)

    # --- derived arrays (int64; all values are bounded so nothing overflows)
    @cached_property
    def seller_wh(self) -> np.ndarray:
        return np.array([p.wh for p in self.sellers], dtype=np.int64)

    @cached_property
    def buyer_wh(self) -> np.ndarray:
        return np.array([p.wh for p in self.buyers], dtype=np.int64)

    @cached_property
    def seller_limit(self) -> np.ndarray:
        """Seller limits clamped up to the feed-in tariff (the grid pays that)."""
        return np.maximum(np.array([p.price for p in self.sellers], dtype=np.int64), self.feed_in)

    @cached_property
    def buyer_limit(self) -> np.ndarray:
        """Buyer limits clamped down to the retail tariff (the grid sells at that)."""
        return np.minimum(np.array([p.price for p in self.buyers], dtype=np.int64), self.retail)

    @cached_property
    def seller_zone(self) -> np.ndarray:
        return np.array([p.zone for p in self.sellers], dtype=np.int64)

    @cached_property
    def buyer_zone(self) -> np.ndarray:
        return np.array([p.zone for p in self.buyers], dtype=np.int64)

    @cached_property
    def seller_weight(self) -> np.ndarray:
        return np.array([p.weight for p in self.sellers], dtype=np.int64)

    @cached_property
    def buyer_weight(self) -> np.ndarray:
        return np.array([p.weight for p in self.buyers], dtype=np.int64)

    @cached_property
    def seller_kind(self) -> np.ndarray:
        return np.array([p.kind for p in self.sellers], dtype=np.int64)

    @cached_property
    def buyer_kind(self) -> np.ndarray:
        """The only kind each buyer takes (0: any)."""
        return np.array([p.kind for p in self.buyers], dtype=np.int64)

    @cached_property
    def has_preferences(self) -> bool:
        """Whether any participant names preferred counterparts."""
        return any(p.prefer for p in self.sellers) or any(p.prefer for p in self.buyers)

    @cached_property
    def charge_matrix(self) -> np.ndarray:
        return np.array(self.network_charge, dtype=np.int64).reshape(
            len(self.network_charge), len(self.network_charge)
        )

    def net_limit(self, seller: np.ndarray, buyer: np.ndarray) -> np.ndarray:
        """Buyer limit net of the network charge from the seller's zone, per pair."""
        return self.buyer_limit[buyer] - self.charge_matrix[self.seller_zone[seller], self.buyer_zone[buyer]]

    @cached_property
    def seller_index(self) -> dict[str, int]:
        return {p.id: k for k, p in enumerate(self.sellers)}

    @cached_property
    def buyer_index(self) -> dict[str, int]:
        return {p.id: k for k, p in enumerate(self.buyers)}

    def to_json(self) -> dict[str, Any]:
        def side(ps: tuple[Participant, ...], kind_field: str) -> list[dict[str, Any]]:
            out = []
            for p in ps:
                d: dict[str, Any] = {"id": p.id, "wh": p.wh, "price": p.price, "zone": p.zone}
                if p.weight != 1:
                    d["weight"] = p.weight
                if p.owner:
                    d["owner"] = p.owner
                if p.prefer:
                    d["prefer"] = list(p.prefer)
                if p.kind:
                    d[kind_field] = ENERGY_KINDS[p.kind - 1]
                out.append(d)
            return out

        return {
            "slot": self.slot,
            "grid": {"feed_in": self.feed_in, "retail": self.retail},
            "network_charge": [list(r) for r in self.network_charge],
            "sellers": side(self.sellers, "kind"),
            "buyers": side(self.buyers, "only"),
        }


# --------------------------------------------------------------------------
# Parsing and validation: every error names the field it is about.

_TOP_FIELDS = {"slot", "grid", "network_charge", "sellers", "buyers"}
_GRID_FIELDS = {"feed_in", "retail"}
_PARTICIPANT_FIELDS = {"id", "wh", "price", "zone", "weight", "owner", "prefer"}
KIND_FIELD = {"sellers": "kind", "buyers": "only"}  # a seller states its kind, a buyer the only kind it takes


def _is_int(v: object) -> bool:
    return type(v) is int


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    return require_int(value, where, lo, hi, InstanceError)


def _obj(value: Any, where: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InstanceError(f"{where}: expected an object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InstanceError(f"{where}.{unknown[0]}: unknown field")
    missing = sorted(required - set(value))
    if missing:
        raise InstanceError(f"{where}.{missing[0]}: missing field")
    return value


def _participants(value: Any, where: str, zones: int) -> list[Participant]:
    if not isinstance(value, list):
        raise InstanceError(f"{where}: expected a list")
    kind_field = KIND_FIELD[where]
    out = []
    for k, raw in enumerate(value):
        at = f"{where}[{k}]"
        d = _obj(raw, at, _PARTICIPANT_FIELDS | {kind_field}, {"id", "wh", "price"})
        pid = d["id"]
        if not valid_id(pid):
            raise InstanceError(f"{at}.id: expected 1..{MAX_ID_LEN} printable ASCII characters, no spaces")
        owner = d.get("owner", "")
        if owner != "" and not valid_id(owner):
            raise InstanceError(f"{at}.owner: expected 1..{MAX_ID_LEN} printable ASCII characters, no spaces")
        prefer = d.get("prefer", [])
        if not isinstance(prefer, list) or len(prefer) > MAX_PREFER or not all(valid_id(o) for o in prefer):
            raise InstanceError(f"{at}.prefer: expected a list of at most {MAX_PREFER} owner ids")
        if prefer != sorted(set(prefer)) or owner in prefer:
            raise InstanceError(f"{at}.prefer: expected distinct owner ids in increasing order, not its own owner")
        kind = d.get(kind_field)
        if kind is not None and kind not in ENERGY_KINDS:
            raise InstanceError(f"{at}.{kind_field}: expected one of {', '.join(ENERGY_KINDS)}")
        out.append(
            Participant(
                id=pid,
                wh=_int(d["wh"], f"{at}.wh", 1, MAX_WH),
                price=_int(d["price"], f"{at}.price", 0, MAX_PRICE),
                zone=_int(d.get("zone", 0), f"{at}.zone", 0, zones - 1),
                weight=_int(d.get("weight", 1), f"{at}.weight", 1, MAX_WEIGHT),
                owner=owner,
                prefer=tuple(prefer),
                kind=0 if kind is None else ENERGY_KINDS.index(kind) + 1,
            )
        )
    return out


def instance_from_json(doc: Any) -> Instance:
    """Build an instance from its JSON document, or raise `InstanceError`."""
    d = _obj(doc, "instance", _TOP_FIELDS, {"grid", "sellers", "buyers"})
    grid = _obj(d["grid"], "grid", _GRID_FIELDS, _GRID_FIELDS)
    charge = d.get("network_charge", [[0]])
    if not isinstance(charge, list) or not 0 < len(charge) <= MAX_ZONES:
        raise InstanceError(f"network_charge: expected a square list of 1..{MAX_ZONES} rows")
    zones = len(charge)
    rows = []
    for r, row in enumerate(charge):
        if not isinstance(row, list) or len(row) != zones:
            raise InstanceError(f"network_charge[{r}]: expected a row of {zones} integers")
        rows.append(tuple(_int(v, f"network_charge[{r}][{c}]", 0, MAX_PRICE) for c, v in enumerate(row)))
    return Instance(
        slot=_int(d.get("slot", 0), "slot", 0, 2**63 - 1),
        feed_in=_int(grid["feed_in"], "grid.feed_in", 0, MAX_PRICE),
        retail=_int(grid["retail"], "grid.retail", 0, MAX_PRICE),
        network_charge=tuple(rows),
        sellers=tuple(_participants(d["sellers"], "sellers", zones)),
        buyers=tuple(_participants(d["buyers"], "buyers", zones)),
    )


def load_instance(path: str) -> Instance:
    """Read an instance file; malformed JSON is an `InstanceError` too."""
    return instance_from_json(read_json(path, InstanceError))


def valid_id(pid: object) -> bool:
    """Ids are 1..64 printable ASCII characters without spaces: the same set on
    every Python version (str.isprintable follows the Unicode tables)."""
    return isinstance(pid, str) and 0 < len(pid) <= MAX_ID_LEN and all("!" <= c <= "~" for c in pid)


def _check_instance(inst: Instance) -> None:
    """Every bound the arithmetic relies on (int64 products, see verifier), also
    for instances built in code rather than parsed."""
    if not (_is_int(inst.slot) and 0 <= inst.slot < 2**63):
        raise InstanceError("slot: expected an integer in [0, 2^63)")
    for name in ("feed_in", "retail"):
        v = getattr(inst, name)
        if not (_is_int(v) and 0 <= v <= MAX_PRICE):
            raise InstanceError(f"grid.{name}: expected an integer in [0, {MAX_PRICE}]")
    if inst.feed_in > inst.retail:
        raise InstanceError("grid.feed_in: the feed-in tariff is above the retail tariff")
    zones = len(inst.network_charge)
    if not 0 < zones <= MAX_ZONES or any(len(r) != zones for r in inst.network_charge):
        raise InstanceError(f"network_charge: expected a square matrix of 1..{MAX_ZONES} zones")
    if not all(_is_int(v) and 0 <= v <= MAX_PRICE for r in inst.network_charge for v in r):
        raise InstanceError(f"network_charge: expected integers in [0, {MAX_PRICE}]")
    for side, ps in (("sellers", inst.sellers), ("buyers", inst.buyers)):
        for p in ps:
            if not valid_id(p.id):
                raise InstanceError(f"{side}: id {p.id!r} is not 1..{MAX_ID_LEN} printable ASCII characters")
            if not (_is_int(p.wh) and 1 <= p.wh <= MAX_WH and _is_int(p.price) and 0 <= p.price <= MAX_PRICE
                    and _is_int(p.weight) and 1 <= p.weight <= MAX_WEIGHT and _is_int(p.zone)):
                raise InstanceError(f"{side}: {p.id!r} has a quantity, price or weight out of range")
            _check_preferences(side, p)
    seen: set[str] = set()
    for side, ps in (("sellers", inst.sellers), ("buyers", inst.buyers)):
        if len(ps) > MAX_PER_SIDE:
            raise InstanceError(f"{side}: more than {MAX_PER_SIDE} participants in one slot")
    for side, ps in (("sellers", inst.sellers), ("buyers", inst.buyers)):
        for p in ps:
            if p.id in seen:
                raise InstanceError(f"{side}: duplicate id {p.id!r}")
            seen.add(p.id)
            if not 0 <= p.zone < len(inst.network_charge):
                raise InstanceError(f"{side}: {p.id!r} has unknown zone {p.zone}")


def preferred(seller: Participant, buyer: Participant) -> bool:
    """Whether either side names the other's owner among its preferred counterparts (pairs.py)."""
    return (buyer.owner != "" and buyer.owner in seller.prefer) or (seller.owner != "" and seller.owner in buyer.prefer)


def _check_preferences(side: str, p: Participant) -> None:
    """An owner id or none, at most MAX_PREFER preferred owners in strictly increasing order and not its
    own (one form per meaning), a kind from ENERGY_KINDS or 0."""
    if not (p.owner == "" or valid_id(p.owner)):
        raise InstanceError(f"{side}: {p.id!r} has an owner that is not 1..{MAX_ID_LEN} printable ASCII characters")
    pref = p.prefer
    if not (isinstance(pref, tuple) and len(pref) <= MAX_PREFER and all(valid_id(o) for o in pref)
            and all(x < y for x, y in zip(pref, pref[1:])) and p.owner not in pref):
        raise InstanceError(f"{side}: {p.id!r} prefers other than up to {MAX_PREFER} distinct owner ids in "
                            "increasing order, not its own")
    if not (_is_int(p.kind) and 0 <= p.kind <= MAX_KIND):
        raise InstanceError(f"{side}: {p.id!r} has an unknown energy kind {p.kind!r}")
