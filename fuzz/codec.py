"""Fuzz target: the canonical codec (consensus/rules/codec.py), every message and record type.

The first byte picks the type, the rest is decoded.  Decoding may fail only with `DecodeError`; what
decodes is canonical (encoding it again gives the same bytes), round trips (decoding that gives an
equal object), and its derived values (hashes, addresses, signature checks) are computed without an
exception: a signature check on junk says False.
"""

from __future__ import annotations

from fuzz import harness

# (sample kind in World.samples, the codec's module and name, derived values to compute)
KINDS = [
    ("tx", "transactions", "TX", ("hash", "sender", "kind", "space", "signing_bytes")),
    ("block", "blocks", "BLOCK", ("hash", "height")),
    ("header", "blocks", "HEADER", ("hash", "signature_ok")),
    ("clearing", "blocks", "CLEARING", ("hash",)),
    ("vote", "finality", "VOTE", ("link", "describe", "signature_ok")),
    ("certificate", "finality", "CERTIFICATE", ("hash", "link")),
    ("key_registration", "finality", "KEY_REGISTRATION", ()),
    ("voter_set", "finality", "VOTER_SET", ("hash", "total", "index")),
    ("checkpoint", "finality", "CHECKPOINT", ()),
    ("authorisation", "charging", "AUTHORISATION", ("session_id", "owner_address", "signature_ok")),
    ("receipt", "charging", "RECEIPT", ("signature_ok",)),
    ("ticket", "beacon", "TICKET", ("value",)),
    ("account", "state", "ACCOUNT", ()),
    ("bid", "state", "BID", ()),
    ("solver", "state", "SOLVER", ()),
    ("session", "state", "SESSION", ()),
    ("totals", "state", "TOTALS", ()),
    ("reading", "state", "READING", ()),
    ("settlement", "state", "SETTLEMENT", ()),
    ("changes", "state", "CHANGES", ()),
]


def seeds(world) -> list[bytes]:
    from consensus.rules.state import READING, SETTLEMENT, Reading, Settlement

    extra = {"reading": [READING.encode(Reading(1_000, 0, 7))],
             "settlement": [SETTLEMENT.encode(Settlement(1_000, 0, 900, 0, True, 100, 0, 5_000, 57, 0, 0))]}
    out = []
    for k, (kind, *_) in enumerate(KINDS):
        for raw in world.samples.by_kind.get(kind, []) + extra.get(kind, []):
            out.append(bytes([k]) + raw)
    return out


def setup(world):
    import importlib

    from consensus.rules.codec import DecodeError

    codecs = [(kind, getattr(importlib.import_module(f"consensus.rules.{mod}"), name), derived)
              for kind, mod, name, derived in KINDS]

    def one_input(data: bytes) -> None:
        if not data:
            return
        kind, codec, derived = codecs[data[0] % len(codecs)]
        payload = data[1:]
        try:
            x = codec.decode(payload)
        except DecodeError:
            return
        again = codec.encode(x)
        if again != payload:
            raise harness.Finding(f"{kind}: decoded {payload.hex()} but encodes as {again.hex()}")
        if codec.decode(again) != x:
            raise harness.Finding(f"{kind}: {x!r} does not round trip")
        for attr in derived:
            v = getattr(x, attr)
            if callable(v):
                v = v()
            if attr.endswith("_ok") and v is not False and v is not True:
                raise harness.Finding(f"{kind}.{attr}() gave {v!r}, not a bool")

    return one_input


if __name__ == "__main__":
    harness.main("codec")
