"""The Nash-bargaining program in CVXPY, solved in floats.

Variables per candidate pair e = (i, j): the seller's share x_e and the
buyer's share y_e of the pair's gain (token units).  The pair then trades
q_e = (x_e + y_e) / g_e kWh, which makes the design brief's bound
0 <= x_e <= g_e q_e implicit.  Maximise sum beta log(surplus) subject to
each participant's capacity.  The capacity rows' duals are lambda and mu.

Scaling: inside the program money is in tokens and energy in kWh, so every
number is O(1); in micro-units SCS returned negative surpluses.
"""

from __future__ import annotations

import time
import warnings

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from .instance import Instance
from .pairs import Pairs
from .relaxation import Relaxation, SolverError

SOLVERS = ("clarabel", "scs")
_MICRO = 1e6


def _solver_opts(name: str, eps: float | None, time_limit: float | None) -> dict:
    if name == "scs":
        e = 1e-5 if eps is None else eps  # tighter buys nothing: rounding dominates the gap
        opts: dict = {"solver": cp.SCS, "eps_abs": e, "eps_rel": e, "max_iters": 200_000}
        if time_limit:
            opts["time_limit_secs"] = time_limit
        return opts
    if name == "clarabel":
        e = 1e-8 if eps is None else eps
        # qdldl, not the "auto" choice (faer at this size): 3x faster here.
        opts = {"solver": cp.CLARABEL, "tol_gap_abs": e, "tol_gap_rel": e, "tol_feas": e, "direct_solve_method": "qdldl"}
        if time_limit:
            opts["time_limit"] = time_limit
        return opts
    raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")


def solve_relaxation(
    inst: Instance,
    pairs: Pairs,
    solver: str = "clarabel",
    *,
    eps: float | None = None,
    time_limit: float | None = None,
) -> Relaxation:
    """Solve the program on `pairs` (non-empty) and return its float optimum."""
    opts = _solver_opts(solver, eps, time_limit)
    t0 = time.perf_counter()
    P = len(pairs)
    g = pairs.margin / _MICRO  # tokens per kWh
    sellers, s_row = np.unique(pairs.seller, return_inverse=True)
    buyers, b_row = np.unique(pairs.buyer, return_inverse=True)
    cols = np.arange(P)
    inc_s = sp.csr_matrix((np.ones(P), (s_row, cols)), shape=(len(sellers), P))
    inc_b = sp.csr_matrix((np.ones(P), (b_row, cols)), shape=(len(buyers), P))
    cap_s = inst.seller_wh[sellers] / 1000.0
    cap_b = inst.buyer_wh[buyers] / 1000.0
    # Each pair's shares are in units of its largest possible gain (g times the smaller capacity), each
    # capacity row is divided by its capacity, and each log's argument by its largest coefficient: the
    # program's numbers stay in (0, 1] from 1 Wh to 1 GWh and from 1 micro-unit to 1,000 tokens per kWh
    # (unscaled, such markets spanned 1e18 and Clarabel failed on one in five).  None of it moves the
    # optimum: a row's dual comes back divided by its capacity, a log's factor is a constant.
    reach = np.minimum(cap_s[s_row], cap_b[b_row])  # kWh
    unit = g * reach  # tokens: a pair's share of 1 is its largest gain
    x = cp.Variable(P, nonneg=True)
    y = cp.Variable(P, nonneg=True)
    rows_s = sp.diags(1.0 / cap_s) @ inc_s @ sp.diags(reach)
    rows_b = sp.diags(1.0 / cap_b) @ inc_b @ sp.diags(reach)
    cons_s = rows_s @ (x + y) <= 1.0
    cons_b = rows_b @ (x + y) <= 1.0
    top_s = np.zeros(len(sellers))
    np.maximum.at(top_s, s_row, unit)
    top_b = np.zeros(len(buyers))
    np.maximum.at(top_b, b_row, unit)
    gain_s = inc_s @ sp.diags(unit / top_s[s_row])
    gain_b = inc_b @ sp.diags(unit / top_b[b_row])
    objective = cp.sum(cp.multiply(inst.seller_weight[sellers], cp.log(gain_s @ x))) + cp.sum(
        cp.multiply(inst.buyer_weight[buyers], cp.log(gain_b @ y))
    )
    problem = cp.Problem(cp.Maximize(objective), [cons_s, cons_b])
    t1 = time.perf_counter()
    try:
        with warnings.catch_warnings():  # the status below says what went wrong, once
            warnings.simplefilter("ignore")
            problem.solve(**opts)
    except cp.SolverError as e:
        raise SolverError(f"{solver} failed: {e}") from None
    t2 = time.perf_counter()
    compile_s = (t1 - t0) + (problem.compilation_time or 0.0)
    if problem.status == cp.USER_LIMIT:
        raise SolverError(f"{solver} ran out of its time limit ({time_limit:g}s)" if time_limit else f"{solver} hit an iteration limit")
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or x.value is None:
        raise SolverError(f"{solver} returned status {problem.status!r}")
    lam = np.zeros(len(inst.sellers))
    mu = np.zeros(len(inst.buyers))
    lam[sellers] = np.maximum(np.asarray(cons_s.dual_value, dtype=float), 0.0) / cap_s / 1000.0
    mu[buyers] = np.maximum(np.asarray(cons_b.dual_value, dtype=float), 0.0) / cap_b / 1000.0
    return Relaxation(
        x=np.maximum(x.value, 0.0) * unit,
        y=np.maximum(y.value, 0.0) * unit,
        lam=lam,
        mu=mu,
        compile_s=compile_s,
        solve_s=t2 - t0 - compile_s,
        status=f"{solver}, {problem.status}",
    )
