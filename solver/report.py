"""What a clearing means to each participant: energy, money, and the grid.

The grid-only outcome is what a participant would have had without the
market: a seller exports the same Wh at the feed-in tariff, a buyer imports
them at the retail tariff.  The return is the gain over that.
"""

from __future__ import annotations

from dataclasses import dataclass

from .clearing import Clearing
from .instance import Instance


@dataclass(frozen=True)
class Outcome:
    id: str
    side: str  # "sell" or "buy"
    wh: int  # traded
    paid: int  # micro-units: received by a seller, paid by a buyer (with network charge)
    grid: int  # micro-units the same Wh would fetch from / cost at the grid (rounded)
    surplus_nano: int  # over the participant's own limit, nano-units

    @property
    def return_vs_grid(self) -> int:
        """Micro-units gained over the grid-only outcome."""
        return self.paid - self.grid if self.side == "sell" else self.grid - self.paid


def outcomes(inst: Instance, clearing: Clearing) -> list[Outcome]:
    """One row per participant, sellers then buyers, in canonical order."""
    s_idx, b_idx = inst.seller_index, inst.buyer_index
    wh_s = [0] * len(inst.sellers)
    wh_b = [0] * len(inst.buyers)
    pay_s = [0] * len(inst.sellers)
    cost_b = [0] * len(inst.buyers)  # nano-units: payments plus network charge
    sur_s = [0] * len(inst.sellers)
    sur_b = [0] * len(inst.buyers)
    for t in clearing.trades:
        i, j = s_idx[t.seller], b_idx[t.buyer]
        charge = int(inst.charge_matrix[inst.sellers[i].zone, inst.buyers[j].zone])
        wh_s[i] += t.wh
        wh_b[j] += t.wh
        pay_s[i] += t.payment
        cost_b[j] += 1000 * t.payment + charge * t.wh
        sur_s[i] += 1000 * t.payment - int(inst.seller_limit[i]) * t.wh
        sur_b[j] += (int(inst.buyer_limit[j]) - charge) * t.wh - 1000 * t.payment
    rows = [
        Outcome(p.id, "sell", wh_s[k], pay_s[k], inst.feed_in * wh_s[k] // 1000, sur_s[k])
        for k, p in enumerate(inst.sellers)
    ]
    rows += [
        Outcome(p.id, "buy", wh_b[k], -(-cost_b[k] // 1000), -(-inst.retail * wh_b[k] // 1000), sur_b[k])
        for k, p in enumerate(inst.buyers)
    ]
    return rows
