"""What a float solve of the Nash-bargaining program returns, whichever method."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class SolverError(RuntimeError):
    """The numerical solve failed or ran out of time; never an empty market."""


@dataclass(frozen=True)
class Relaxation:
    """Float solution: gain shares per pair (tokens), multipliers per Wh."""

    x: np.ndarray  # seller's share per candidate pair
    y: np.ndarray  # buyer's share per candidate pair
    lam: np.ndarray  # per seller (canonical index), per Wh
    mu: np.ndarray  # per buyer, per Wh
    compile_s: float
    solve_s: float
    status: str
