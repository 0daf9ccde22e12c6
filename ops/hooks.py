"""Operator-side hooks: local executables run around a deploy or rollback.

``inventory/hooks/<name>`` (or ``hooks_dir`` in the inventory), where name is one of
``pre-deploy``, ``post-deploy``, ``post-rollback``. They get the release in their
environment (OPS_ENV, OPS_VERSION, OPS_RELEASE, OPS_HOSTS, OPS_ACTOR). A failing
``pre-deploy`` stops the deploy before anything is touched; a failing post hook is a
warning (the release is already live). Typical uses: post to chat, tag the release
in Sentry, refuse deploys on Friday evening.
"""

from __future__ import annotations

import os
from pathlib import Path

from ops import local
from ops.errors import ConfigError, LocalToolError
from ops.inventory import Environment

NAMES = ("pre-deploy", "post-deploy", "post-rollback")
TIMEOUT = 300.0


def hook_path(env: Environment, name: str) -> Path:
    if name not in NAMES:
        raise ValueError(name)
    return env.hooks_dir / name


def run_hook(env: Environment, name: str, *, version: str, release: str, hosts: list[str],
             actor: str) -> bool:
    """Run the hook if it exists; True when it ran. Raises ConfigError when it fails."""
    path = hook_path(env, name)
    if not path.exists():
        return False
    if not os.access(path, os.X_OK):
        raise ConfigError(f"hook {path} is not executable", hint=f"chmod +x {path}")
    extra = {"OPS_ENV": env.name, "OPS_VERSION": version, "OPS_RELEASE": release,
             "OPS_HOSTS": ",".join(hosts), "OPS_ACTOR": actor, "OPS_HOOK": name}
    try:
        local.run((str(path),), env=extra, timeout=TIMEOUT)
    except LocalToolError as exc:
        raise ConfigError(f"{name} hook failed: {exc.message}", hint=f"see {path}") from None
    return True
