"""Integration tests run against the sandbox fleet: real sshd, dockerd, registry, S3.

The fleet fixtures live in ``tests/support/fleet.py`` (shared with ``tests/faults``).
"""

from __future__ import annotations

import pytest

from tests.support.fleet import ROOT, gw, host, inv, sandbox_env  # noqa: F401 - fixtures and helpers

__all__ = ["ROOT", "gw", "host", "inv", "sandbox_env"]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
