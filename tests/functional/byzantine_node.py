"""A byzantine solver as a real node process: `transx node`'s daemon with a withhold-and-release engine.

    python tests/functional/byzantine_node.py DATADIR MERCHANT_ADDRESS

The engine is consensus/adversaries.py's `WithholdAndRelease`: honest until round `START`, then, in a
round it hopes to win, it pays MERCHANT, withholds a block of that round holding a conflicting
transfer to itself, and releases it once the payment has `CONFIRMATIONS` blocks.  What it did is
written to DATADIR/attack.json (the test reads it).  The keystore password comes from
TRANSX_PASSWORD, as for `transx node`.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import trio

from consensus.adversaries import WithholdAndRelease
from consensus.rules.keys import decode_address
from transxnode.daemon import run_node

START, CONFIRMATIONS = 6, 2


@dataclass(eq=False)
class Recorded(WithholdAndRelease):
    report: str = ""

    def tick(self, now_ms: int):
        out = super().tick(now_ms)
        if self.payment is not None:
            Path(self.report).write_text(json.dumps({
                "released": self.released, "payment": self.payment.hash.hex(),
                "conflict": self.conflict.hash.hex() if self.conflict else None,
                "withheld": self.withheld.hash.hex() if self.withheld else None,
                "events": {k: v.hex() if isinstance(v, bytes) else v for k, v in self.events.items()}}, default=str))
        return out


def main() -> None:
    datadir, merchant = sys.argv[1], decode_address(sys.argv[2])
    report = str(Path(datadir) / "attack.json")
    trio.run(run_node, datadir, os.environ["TRANSX_PASSWORD"],
             lambda node: Recorded(node, start=START, seed=1, merchant=merchant, confirmations=CONFIRMATIONS,
                                   report=report))


if __name__ == "__main__":
    main()
