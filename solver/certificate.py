"""Multipliers that certify a rounded clearing, as exact fixed-point integers.

Rounding moves the surpluses, so the solver's duals may no longer satisfy
``lambda_i + mu_j >= g_ij * max(beta_i/U_i, beta_j/W_j)`` on every pair.
Given the final integer surpluses the best multipliers solve the
transportation LP ``min lambda.S + mu.D`` subject to those rows; HiGHS
solves it.  The solver's own multipliers, tightened, are kept instead when
they already certify well (the LP takes 0.7 s at 10,000 participants).
The floats are then rounded up to the fixed-point grid and any pair still
short by a rounding hair is fixed in integers.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from .clearing import MULTIPLIER_SCALE
from .instance import Instance
from .pairs import Pairs
from .relaxation import SolverError
from .verifier import pair_violations


def _pair_need(inst: Instance, pairs: Pairs, U: np.ndarray, W: np.ndarray) -> np.ndarray:
    """g * max(beta/U, beta/W) per pair, per Wh (floats)."""
    with np.errstate(divide="ignore"):
        ps = inst.seller_weight[pairs.seller] / U[pairs.seller].astype(float)
        pb = inst.buyer_weight[pairs.buyer] / W[pairs.buyer].astype(float)
    return pairs.margin * np.maximum(ps, pb)


def _dual_value(inst: Instance, lam: np.ndarray, mu: np.ndarray) -> float:
    return float(lam @ inst.seller_wh + mu @ inst.buyer_wh)


def repair_tighten(inst: Instance, pairs: Pairs, U, W, lam0: np.ndarray, mu0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From the solver's multipliers: each lambda_i the least that covers its
    pairs given mu, then each mu_j the least given that lambda.  Feasible, and
    a fixed point after one pass on the benchmark instances."""
    need = _pair_need(inst, pairs, U, W)
    lam = np.zeros_like(lam0)
    np.maximum.at(lam, pairs.seller, need - mu0[pairs.buyer])
    mu = np.zeros_like(mu0)
    np.maximum.at(mu, pairs.buyer, need - lam[pairs.seller])
    return lam, mu


def repair_lp(inst: Instance, pairs: Pairs, U, W) -> tuple[np.ndarray, np.ndarray]:
    """The best multipliers for these surpluses (transportation LP, HiGHS)."""
    n_s, n_b = len(inst.sellers), len(inst.buyers)
    P = len(pairs)
    need = _pair_need(inst, pairs, U, W)
    scale = float(np.median(need)) or 1.0  # keep the LP's numbers O(1)
    rows = np.concatenate([np.arange(P), np.arange(P)])
    cols = np.concatenate([pairs.seller, n_s + pairs.buyer])
    A = sp.csr_matrix((-np.ones(2 * P), (rows, cols)), shape=(P, n_s + n_b))
    c = np.concatenate([inst.seller_wh, inst.buyer_wh]).astype(float)
    res = linprog(c, A_ub=A, b_ub=-need / scale, bounds=(0, None), method="highs")
    if res.status != 0:
        raise SolverError(f"the multiplier LP failed: {res.message}")
    z = np.maximum(res.x, 0.0) * scale
    return z[:n_s], z[n_s:]


def to_fixed_point(
    inst: Instance, pairs: Pairs, U, W, lam: np.ndarray, mu: np.ndarray
) -> tuple[list[int], list[int]]:
    """Round multipliers up to integers over MULTIPLIER_SCALE that certify exactly."""
    pad = 1.0 + 1e-10  # covers the LP's feasibility tolerance in most pairs
    Lam = [int(v) for v in np.ceil(lam * MULTIPLIER_SCALE * pad)]
    Mu = [int(v) for v in np.ceil(mu * MULTIPLIER_SCALE * pad)]
    for k in pair_violations(inst, pairs, U, W, Lam, Mu):
        i, j = int(pairs.seller[k]), int(pairs.buyer[k])
        g = int(pairs.margin[k])
        need = max(
            -(-g * int(inst.seller_weight[i]) * MULTIPLIER_SCALE // int(U[i])),
            -(-g * int(inst.buyer_weight[j]) * MULTIPLIER_SCALE // int(W[j])),
        )
        if need <= Lam[i] + Mu[j]:
            continue  # covered by a raise made for an earlier pair
        # Raise the side whose capacity makes it cheaper: a pair the LP left short (a need below its
        # feasibility tolerance) must not cost a large buyer's whole capacity.
        if int(inst.seller_wh[i]) <= int(inst.buyer_wh[j]):
            Lam[i] = need - Mu[j]
        else:
            Mu[j] = need - Lam[i]
    return Lam, Mu


def certify(
    inst: Instance,
    pairs: Pairs,
    U,
    W,
    lam0: np.ndarray | None = None,
    mu0: np.ndarray | None = None,
    good_enough: float = 5e-4,
) -> tuple[list[int], list[int], str]:
    """Fixed-point multipliers for the clearing with surpluses U, W.

    The solver's duals, tightened, are kept when their gap is at most
    `good_enough` nats per unit of weight (Clarabel's usually are, at ~1.6e-4);
    otherwise the LP finds the best.  Returns (Lambda, M, method).
    """
    candidates = []
    if lam0 is not None and mu0 is not None:
        candidates.append(("solver duals, tightened", *repair_tighten(inst, pairs, U, W, lam0, mu0)))
    weight = float(inst.seller_weight[np.unique(pairs.seller)].sum() + inst.buyer_weight[np.unique(pairs.buyer)].sum())
    if not candidates or _dual_value(inst, candidates[0][1], candidates[0][2]) - weight > good_enough * weight:
        candidates.append(("transportation LP", *repair_lp(inst, pairs, U, W)))
    method, lam, mu = min(candidates, key=lambda c: _dual_value(inst, c[1], c[2]))
    Lam, Mu = to_fixed_point(inst, pairs, U, W, lam, mu)
    return Lam, Mu, method
