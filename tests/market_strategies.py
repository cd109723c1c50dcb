"""Hypothesis strategies and settings shared by the market tests."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from solver.instance import Instance, Participant

FEED_IN = 170_000
RETAIL = 570_000

PROPERTY = settings(
    max_examples=20,
    deadline=None,
    # The same examples on every run of the same code: a failure replays, never
    # flaky.  (Hypothesis also draws constants found in solver/'s source, so
    # editing solver/ may change the examples.)
    derandomize=True,
    database=None,
    # No shrinking: a failing example costs ~45 s of solves to shrink.  With
    # derandomize the raw failing example is printed and replays every run.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def instances(draw, max_side: int = 8, weights: bool = False, slot: int = 0) -> Instance:
    """1..max_side sellers and buyers, 1-3 zones, realistic Malaysian numbers."""
    zones = draw(st.integers(1, 3))
    charge = tuple(tuple(draw(st.integers(0, 80_000)) for _ in range(zones)) for _ in range(zones))

    def side(prefix: str) -> tuple[Participant, ...]:
        n = draw(st.integers(1, max_side))
        return tuple(
            Participant(
                f"{prefix}{k}",
                draw(st.integers(1_000, 10_000)),
                draw(st.integers(150_000, 600_000)),
                draw(st.integers(0, zones - 1)),
                draw(st.integers(1, 3)) if weights else 1,
            )
            for k in range(n)
        )

    return Instance(slot, FEED_IN, RETAIL, charge, side("s"), side("b"))
