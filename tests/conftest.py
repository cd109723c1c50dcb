"""Fixtures shared by the test modules (the chain fixture lives with its helpers in chain_support.py)."""

from chain_support import net  # noqa: F401  (a fixture: pytest finds it here for every module)
