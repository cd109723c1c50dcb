"""Solve a slot's market for a block proposal (the single-solver round).

The clearing a proposer puts in its block: the certified Nash-bargaining
solution when a method finds one; else the fallback every slot with a
candidate pair has (100 Wh on each pair: solver/fallback.py), valid
uncertified and ranked below any certified clearing; a void clearing (every
escrow refunded) only if even that fails (a bug, logged).  CPU-bound: the
daemon runs it in a worker thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from solver import ClearResult, Pairs, SolverError, clear
from solver.market import fallback
from consensus.rules.blocks import BlockClearing
from consensus.rules.genesis import Genesis
from consensus.rules.ledger import SlotMarket

log = logging.getLogger("transx.proposer")

# Tried in turn: the default first, then the other interior-point code, then the dual.
FALLBACKS = ("auto", "scs", "dual")


@dataclass(frozen=True)
class Solution:
    clearing: BlockClearing
    result: ClearResult | None  # None: void
    method: str


def solve_slot(market: SlotMarket, pairs: Pairs, g: Genesis, time_limit: float | None = None) -> Solution:
    inst = market.instance
    errors = []
    for method in FALLBACKS:
        try:
            res = clear(inst, cap=g.candidate_cap, solver=method, time_limit=time_limit, tolerance=g.tolerance,
                        quantum=g.quantum, pairs=pairs)
        except SolverError as e:
            errors.append(f"{method}: {e}")
            continue
        except Exception as e:  # a numerical library's own failure: the slot still gets its block
            log.exception("slot %d: the %s method failed", inst.slot, method)
            errors.append(f"{method}: {type(e).__name__}: {e}")
            continue
        return Solution(BlockClearing.from_clearing(inst, res.clearing), res, method)
    try:
        res = fallback(inst, pairs, tolerance=g.tolerance, quantum=g.quantum)
    except SolverError as e:
        log.error("slot %d: no clearing (%s; %s); proposing a void clearing", inst.slot, "; ".join(errors), e)
        return Solution(BlockClearing(void=True), None, "void")
    kind = "certified" if res.verdict.certified else "uncertified"
    log.warning("slot %d: no method certified a clearing (%s); proposing the fallback clearing (%s)",
                inst.slot, "; ".join(errors), kind)
    return Solution(BlockClearing.from_clearing(inst, res.clearing), res, f"fallback, {kind}")
