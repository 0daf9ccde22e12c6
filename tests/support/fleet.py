"""Shared fixtures and helpers for suites that run on the sandbox fleet.

Used by ``tests/integration`` and ``tests/faults`` (each conftest imports the
fixtures by name). The fleet is brought up once per session (idempotent: fast when
already up).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ops import sandbox
from ops.inventory import Environment, load_environment
from ops.remote import Gateway

ROOT = Path(__file__).resolve().parents[2]
INV = str(Path(sys.executable).parent / "inv")


@pytest.fixture(scope="session")
def sandbox_env() -> Environment:
    env = load_environment("sandbox")
    sandbox.up(env)
    return env


@pytest.fixture
def gw(sandbox_env):
    with Gateway(sandbox_env) as gateway:
        yield gateway


@pytest.fixture
def host(sandbox_env):
    return sandbox_env.hosts["web1"]


def inv(*args: str, check: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real CLI the way an operator does."""
    proc = subprocess.run([INV, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"inv {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
