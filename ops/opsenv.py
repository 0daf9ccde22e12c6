"""Operator-side secrets: S3 credentials, registry login, backup passphrase.

They live in the operator's environment or in ``ops_env_file`` (python-dotenv
syntax, 0600), which is never uploaded to a host: the app's env file goes to every
web host and into the app's containers, which must not hold these.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from ops.appenv import load_env_file
from ops.inventory import Environment


@lru_cache(maxsize=8)
def _file_values(path: Path) -> dict[str, str]:
    return load_env_file(path)


def operator_value(env: Environment, name: str) -> str | None:
    """``name`` from ``ops_env_file`` when it has it, else from the process environment."""
    if env.ops_env_file is not None and env.ops_env_file.exists():
        value = _file_values(env.ops_env_file).get(name)
        if value:
            return value
    return os.environ.get(name) or None
