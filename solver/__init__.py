"""Market clearing for one slot: a certified Nash-bargaining allocation.

`clear` computes a clearing (Clarabel through CVXPY, SCS, or the smoothed
dual for large markets); `verify` decides, exactly and without any solver,
whether a clearing is valid and how good it is (its exact objective; how
proposals rank is consensus's rule, consensus/rules/ranking.py).  Nothing here imports the rest of TransX, and
CVXPY is imported only when a CVXPY method runs.
"""

from .clearing import (
    MULTIPLIER_SCALE,
    Clearing,
    ClearingError,
    Trade,
    clearing_from_json,
    load_clearing,
)
from .instance import (
    ENERGY_KINDS,
    MAX_KIND,
    MAX_PREFER,
    Instance,
    InstanceError,
    Participant,
    instance_from_json,
    load_instance,
)
from .market import DEFAULT_SOLVER, SOLVERS, ClearResult, clear
from .pairs import DEFAULT_CAP, Pairs, candidate_pairs
from .relaxation import SolverError
from .verifier import (
    DEFAULT_QUANTUM,
    DEFAULT_TOLERANCE,
    Verdict,
    verify,
)

__all__ = [
    "DEFAULT_CAP",
    "DEFAULT_QUANTUM",
    "DEFAULT_SOLVER",
    "DEFAULT_TOLERANCE",
    "ENERGY_KINDS",
    "MAX_KIND",
    "MAX_PREFER",
    "MULTIPLIER_SCALE",
    "SOLVERS",
    "ClearResult",
    "Clearing",
    "ClearingError",
    "Instance",
    "InstanceError",
    "Pairs",
    "Participant",
    "SolverError",
    "Trade",
    "Verdict",
    "candidate_pairs",
    "clear",
    "clearing_from_json",
    "instance_from_json",
    "load_clearing",
    "load_instance",
    "verify",
]
