"""Functional tests: real `transx` processes driven through the CLI and the HTTP API (node_support.py)."""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/functional/" in str(item.fspath):
            item.add_marker(pytest.mark.process)
            item.add_marker(pytest.mark.slow)
