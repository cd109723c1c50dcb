"""What a clearing means to each participant: energy, money, and the grid.

The grid-only outcome is what a participant would have had without the
market: a seller exports the same Wh at the feed-in tariff, a buyer imports
them at the retail tariff.  The return is the gain over that.

`slot_report` adds what a slot's clearing costs in efficiency and buys in
fairness: its welfare beside the welfare LP's optimum on the same candidate
pairs (the price of fairness), Jain's index of the gains, trades per trading
participant, and the tradable sellers the candidate rule left out.  A report
for people and benchmarks (floats, a float LP), never a consensus decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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


# --------------------------------------------------------------------------
# Per-slot fairness report.  Floats are fine here: nothing below is a consensus
# decision (the chain ranks clearings by the verifier's exact objective only).


@dataclass(frozen=True)
class SlotReport:
    """How efficient and how fair one slot's clearing is; see `slot_report`.

    Money in nano-units (1/1000 micro-unit: a Wh times a price per kWh), as
    integers; `lp_welfare_nano` is the float LP optimum rounded to an integer.
    """

    slot: int
    pairs: int  # candidate pairs
    trades: int
    traders: int  # participants with at least one trade
    able: int  # participants with a candidate pair (the NBS objective's terms)
    welfare_nano: int  # total gain of the clearing: sum of surpluses over own limits
    lp_welfare_nano: int  # the welfare LP's optimum on the same candidate pairs
    lp_traders: int  # participants the LP's optimal vertex trades (one of possibly many optima)
    objective: int | None  # the verifier's NBS objective, quanta of 1e-6 nats (None: does not verify)
    certified: bool
    jain: float | None  # Jain's index of the gains of participants with a candidate pair
    tradable_sellers: int  # sellers some buyer could trade with under the candidate rule's minimum gain
    left_out_sellers: int  # of those, sellers without a candidate pair
    outcomes: tuple[Outcome, ...]  # every participant, gain against the grid included
    # Per participant, sellers then buyers: does the LP's optimal vertex trade it?  (lp_traders counts them.)
    lp_traded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool), compare=False, repr=False)

    @property
    def price_of_fairness(self) -> float | None:
        """1 - NBS welfare / LP welfare: the share of the attainable gain given up for fairness."""
        return None if self.lp_welfare_nano <= 0 else 1 - self.welfare_nano / self.lp_welfare_nano

    @property
    def trades_per_trader(self) -> float | None:
        """Trades over trading participants (each trade has two sides: a trader is in twice this many on average)."""
        return None if not self.traders else self.trades / self.traders

    @property
    def left_out_share(self) -> float | None:
        """Share of the tradable sellers that got no candidate pair."""
        return None if not self.tradable_sellers else self.left_out_sellers / self.tradable_sellers

    def to_json(self) -> dict:
        """Integers for money and counts, ratios rounded to 6 digits."""

        def r6(v: float | None) -> float | None:
            return None if v is None else round(v, 6)

        return {
            "slot": self.slot, "pairs": self.pairs, "trades": self.trades, "traders": self.traders,
            "able": self.able, "welfare_nano": self.welfare_nano, "lp_welfare_nano": self.lp_welfare_nano,
            "lp_traders": self.lp_traders, "price_of_fairness": r6(self.price_of_fairness),
            "objective": self.objective, "certified": self.certified, "jain": r6(self.jain),
            "trades_per_trader": r6(self.trades_per_trader), "tradable_sellers": self.tradable_sellers,
            "left_out_sellers": self.left_out_sellers,
            "return_vs_grid": {o.id: o.return_vs_grid for o in self.outcomes},
        }


def slot_report(inst: Instance, clearing: Clearing, pairs=None, verdict=None) -> SlotReport:
    """Welfare, the NBS objective, the welfare LP's optimum on the same candidate pairs, the price
    of fairness, Jain's index of the gains, trades per trading participant, the tradable sellers
    the candidate rule left out, and each participant's gain against the grid.

    A report for people and benchmarks, not a consensus decision: the LP is solved in floats
    (HiGHS, imported here only) and Jain's index is a float.  `pairs` and `verdict` may be passed
    when the caller has them (the verdict must be `verify(inst, clearing, pairs=pairs)`'s).
    """
    from .pairs import candidate_pairs
    from .verifier import verify

    if pairs is None:
        pairs = candidate_pairs(inst)
    if verdict is None:
        verdict = verify(inst, clearing, pairs=pairs)
    rows = outcomes(inst, clearing)
    n_s = len(inst.sellers)
    able = np.zeros(n_s + len(inst.buyers), dtype=bool)
    able[pairs.seller] = True
    able[n_s + pairs.buyer] = True
    gains = [rows[k].surplus_nano for k in np.flatnonzero(able).tolist()]
    lp, x = welfare_lp(inst, pairs)
    on = x > 1e-6 * np.maximum(x.max(initial=0.0), 1.0)
    lp_traded = np.zeros(len(able), dtype=bool)
    lp_traded[pairs.seller[on]] = True
    lp_traded[n_s + pairs.buyer[on]] = True
    tradable = tradable_sellers(inst)
    left_out = tradable.copy()
    left_out[pairs.seller] = False
    return SlotReport(
        slot=inst.slot, pairs=len(pairs), trades=len(clearing.trades), traders=sum(1 for o in rows if o.wh),
        able=len(gains), welfare_nano=sum(o.surplus_nano for o in rows), lp_welfare_nano=round(lp),
        lp_traders=int(lp_traded.sum()), objective=verdict.objective if verdict.ok else None, certified=verdict.ok,
        jain=jain_index(gains), tradable_sellers=int(tradable.sum()), left_out_sellers=int(left_out.sum()),
        outcomes=tuple(rows), lp_traded=lp_traded,
    )


def jain_index(values) -> float | None:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 when all are equal, 1/n when one has all.

    None for no values, or all zero.  Exact integer sums, one float division."""
    v = [int(x) for x in values]
    sq = sum(x * x for x in v)
    return None if not v or not sq else sum(v) ** 2 / (len(v) * sq)


def welfare_lp(inst: Instance, pairs) -> tuple[float, np.ndarray]:
    """The welfare LP: maximum total gain (nano-units) over the candidate pairs within every
    capacity, and its Wh per pair (HiGHS; a float optimum, the efficiency benchmark)."""
    if not len(pairs):
        return 0.0, np.zeros(0)
    import scipy.sparse as sp
    from scipy.optimize import linprog

    P, n_s = len(pairs), len(inst.sellers)
    rows = np.concatenate([pairs.seller, n_s + pairs.buyer])
    A = sp.csr_matrix((np.ones(2 * P), (rows, np.tile(np.arange(P), 2))), shape=(n_s + len(inst.buyers), P))
    cap = np.concatenate([inst.seller_wh, inst.buyer_wh]).astype(float)
    res = linprog(-pairs.margin.astype(float), A_ub=A, b_ub=cap, bounds=(0, None), method="highs")
    if res.status != 0:
        raise RuntimeError(f"welfare LP: {res.message}")
    return -float(res.fun), res.x


def tradable_sellers(inst: Instance) -> np.ndarray:
    """Per seller: can some buyer trade with it under the candidate rule, i.e. is
    ``margin * min(S_i, D_j, MIN_TRADE_WH) >= MIN_PAIR_GAIN`` for some buyer j that takes its kind of
    energy (pairs.py; a buyer that takes one kind only trades with sellers of that kind)?

    Exact and O(sellers x zones x MIN_TRADE_WH): only a buyer's zone, the kind it takes and its
    capacity up to MIN_TRADE_WH matter, so the highest buyer limit per (kind, zone, capped capacity)
    decides."""
    from .pairs import MIN_PAIR_GAIN, MIN_TRADE_WH

    n_s, n_b, zones = len(inst.sellers), len(inst.buyers), len(inst.network_charge)
    out = np.zeros(n_s, dtype=bool)
    if not n_s or not n_b:
        return out
    # Kinds of energy, where the instance has them (0: a seller's unstated kind, a buyer taking any).
    s_kind = getattr(inst, "seller_kind", np.zeros(n_s, dtype=np.int64))
    b_kind = getattr(inst, "buyer_kind", np.zeros(n_b, dtype=np.int64))
    kinds = int(max(s_kind.max(), b_kind.max())) + 1
    # best[k, z, d - 1]: the highest limit of a zone-z buyer taking kind k whose capacity, capped at
    # MIN_TRADE_WH, is d.
    none = np.iinfo(np.int64).min // 4
    best = np.full((kinds, zones, MIN_TRADE_WH), none, dtype=np.int64)
    np.maximum.at(best, (b_kind, inst.buyer_zone, np.minimum(inst.buyer_wh, MIN_TRADE_WH) - 1), inst.buyer_limit)
    d = np.arange(1, MIN_TRADE_WH + 1, dtype=np.int64)
    for k in range(kinds):
        for z in range(zones):
            sel = np.flatnonzero((inst.seller_zone == z) & (s_kind == k))
            if not len(sel):
                continue
            takers = best[[0, k]] if k else best[:1]  # buyers taking any kind, and those taking only k
            net = np.where(takers == none, none, takers - inst.charge_matrix[z][None, :, None])
            net = net.max(axis=0)  # (buyer zone, d): the highest net limit
            for chunk in np.array_split(sel, max(1, len(sel) // 4096)):
                margin = net[None, :, :] - inst.seller_limit[chunk][:, None, None]
                reach = np.minimum(np.minimum(inst.seller_wh[chunk], MIN_TRADE_WH)[:, None, None], d[None, None, :])
                gain = np.where(margin > 0, margin * reach, -1)
                out[chunk] = (gain >= MIN_PAIR_GAIN).reshape(len(chunk), -1).any(axis=1)
    return out
