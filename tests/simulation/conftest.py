"""Simulator tests: many real nodes (stores, chains, engines) in one process over a simulated network
with a virtual clock (consensus/sim.py), with adversaries, over many rounds and seeds."""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/simulation/" in str(item.fspath):
            item.add_marker(pytest.mark.slow)
