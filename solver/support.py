"""Column generation: solve on a few pairs, add the pairs the duals say pay.

Most candidate pairs carry no trade at the optimum (about one pair in five
does on realistic instances), and an interior-point solver's time grows
fast with the number of pairs and their cycles.  So the program is solved
on a working set of pairs; a pair outside it is added when its reduced cost
``g * max(beta_i/s_i, beta_j/s_j) - lambda_i - mu_j`` is positive, and the
loop ends when no pair outside prices in.  At that point the working-set
optimum satisfies the optimality conditions of the full program, so nothing
is lost; and the certificate checked over *all* candidate pairs is the proof.
"""

from __future__ import annotations

import numpy as np

from .instance import Instance
from .pairs import Pairs

INITIAL_PER_BUYER = 2
_MICRO = 1e6


def subset(pairs: Pairs, mask: np.ndarray) -> Pairs:
    return Pairs(pairs.seller[mask], pairs.buyer[mask], pairs.margin[mask])


def initial_working_set(inst: Instance, pairs: Pairs, per_buyer: int = INITIAL_PER_BUYER) -> np.ndarray:
    """Each buyer's best `per_buyer` margins and each seller's best margin.

    Every participant that can trade is in it, so every one has a surplus
    in the first solve.
    """
    P = len(pairs)
    keep = np.zeros(P, dtype=bool)
    # Pairs are sorted by buyer; rank within a buyer by margin (best first).
    order = np.lexsort((pairs.seller, -pairs.margin, pairs.buyer))
    b_sorted = pairs.buyer[order]
    first = np.searchsorted(b_sorted, b_sorted, side="left")
    rank = np.arange(P) - first
    keep[order[rank < per_buyer]] = True
    order = np.lexsort((pairs.buyer, -pairs.margin, pairs.seller))
    s_sorted = pairs.seller[order]
    head = np.ones(P, dtype=bool)
    head[1:] = s_sorted[1:] != s_sorted[:-1]
    keep[order[head]] = True
    return keep


def pricing(
    inst: Instance, pairs: Pairs, working: np.ndarray, x: np.ndarray, y: np.ndarray, lam: np.ndarray, mu: np.ndarray
) -> np.ndarray:
    """Relative reduced cost of every candidate pair, from a working-set solve.

    `x`, `y` are the solve's shares on the working pairs (tokens); `lam`,
    `mu` its multipliers per Wh over all participants.  Positive means the
    pair would raise the objective.
    """
    n_s, n_b = len(inst.sellers), len(inst.buyers)
    ws, wb = pairs.seller[working], pairs.buyer[working]
    s_sur = np.bincount(ws, x, n_s)
    b_sur = np.bincount(wb, y, n_b)
    with np.errstate(divide="ignore"):
        ps = inst.seller_weight / s_sur
        pb = inst.buyer_weight / b_sur
    need = (pairs.margin / _MICRO / 1000.0) * np.maximum(ps[pairs.seller], pb[pairs.buyer])
    return (need - lam[pairs.seller] - mu[pairs.buyer]) / need


def entering(pairs: Pairs, working: np.ndarray, gain: np.ndarray, threshold: float) -> np.ndarray:
    """Pairs to add: each participant's most profitable pair outside the set.

    Adding every pair that prices in grows the set to most candidate pairs
    (and the solve time with it); one per participant per round keeps the
    set near the optimal support.
    """
    out = np.zeros(len(pairs), dtype=bool)
    cand = np.flatnonzero((gain > threshold) & ~working)
    if not len(cand):
        return out
    for side in (pairs.buyer, pairs.seller):
        order = cand[np.lexsort((cand, -gain[cand], side[cand]))]
        head = np.ones(len(order), dtype=bool)
        head[1:] = side[order][1:] != side[order][:-1]
        out[order[head]] = True
    return out
