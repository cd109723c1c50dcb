"""Every database key in one schema, and no two kinds of record under one tag: a prefix scan for one
kind (a slot's bids, a height's commits) must never meet a record of another kind, whatever bytes an
attacker grinds into an address or an id."""

from __future__ import annotations

import inspect
from collections import defaultdict

from consensus.rules import schema

# The kinds of record that share a tag: a record and the prefix its scans use.
FAMILIES = [
    {"bid", "bids_of_slot"}, {"commit", "commits_for"}, {"party_session", "party_sessions"},
    {"evidence", "EVIDENCE"}, {"session_deadline", "session_deadlines"}, {"owner_bid", "owner_bids"},
    {"settlement", "settlements_of_slot"}, {"party_settlement", "party_settlements"}, {"meter", "meter_readings"},
    {"solver", "SOLVERS"}, {"solver_bls", "SOLVER_BLS"}, {"solver_exit", "solver_exits"},
    {"address_tx", "address_txs"}, {"party_session_opened", "party_sessions_opened"},
]


def _keys_by_tag() -> dict[bytes, set[str]]:
    tags: dict[bytes, set[str]] = defaultdict(set)
    for name, f in vars(schema).items():
        if name.startswith("_") or not inspect.isfunction(f) or f.__module__ != schema.__name__:
            continue
        params = inspect.signature(f).parameters.values()
        if not all(p.annotation in ("int", "bytes") for p in params) or name in ("u64", "location") or name.startswith("read_"):
            continue  # readers and encoders, not keys
        key = f(*(7 if p.annotation == "int" else b"\x01" * 20 for p in params))
        tags[key[:2]].add(name)
    for name, v in vars(schema).items():
        if name.isupper() and isinstance(v, bytes) and len(v) >= 2 and v[:1] in b"sci":
            tags[v[:2]].add(name)
    return tags


def test_each_tag_holds_one_kind_of_record():
    shared = {tag: names for tag, names in _keys_by_tag().items() if tag[:1] in b"sci" and len(names) > 1}
    strays = {tag: names for tag, names in shared.items() if names not in FAMILIES}
    assert not strays, f"kinds of record sharing a tag: {strays}"


def test_a_ground_address_cannot_put_a_record_among_a_slots_bids():
    slot = 1_000_000
    ground = schema.u64(slot) + bytes(12)  # an address whose first 8 bytes are the slot number
    assert not schema.bls_since(ground).startswith(schema.bids_of_slot(slot))
    assert not schema.solver(ground).startswith(schema.bids_of_slot(slot))


def test_node_metadata_keys_are_not_prefixes_of_each_other():
    meta = [v for k, v in vars(schema).items() if k.isupper() and isinstance(v, bytes) and v[:1] == b"m"]
    assert not [(a, b) for a in meta for b in meta if a != b and b.startswith(a)]
