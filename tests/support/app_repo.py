"""Git checkouts of the sample app (``examples/app``) for deploy tests.

``make_app_repo(dest)`` copies the app into ``dest`` and commits it;
``apply_variant(repo, name)`` copies ``examples/variants/<name>/`` on top and commits,
giving a new release (a new commit SHA) to build and deploy. Plain ``git`` through
subprocess, with the identity set per repository (no global git config is read or
written).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "examples" / "app"
VARIANTS_DIR = ROOT / "examples" / "variants"

GIT_USER_NAME = "Ops Tests"
GIT_USER_EMAIL = "ops-tests@example.invalid"
# Deterministic and isolated from whoever runs the tests: no ~/.gitconfig, no
# /etc/gitconfig, no hooks or signing configured there.
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": GIT_USER_NAME,
    "GIT_AUTHOR_EMAIL": GIT_USER_EMAIL,
    "GIT_COMMITTER_NAME": GIT_USER_NAME,
    "GIT_COMMITTER_EMAIL": GIT_USER_EMAIL,
    "GIT_TERMINAL_PROMPT": "0",
}
_IGNORE = shutil.ignore_patterns("node_modules", ".git", "__pycache__")


def variants() -> list[str]:
    """Names of the overlays under ``examples/variants``."""
    return sorted(p.name for p in VARIANTS_DIR.iterdir() if p.is_dir())


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV}
    proc = subprocess.run(("git", "-C", str(repo), *args), capture_output=True, text=True, env=env,
                          timeout=60, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def head_sha(repo: Path) -> str:
    """The full SHA of ``HEAD``."""
    return git(Path(repo), "rev-parse", "HEAD").strip()


def _commit(repo: Path, message: str) -> str:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--no-verify", "--no-gpg-sign", "--allow-empty", "-m", message)
    return head_sha(repo)


def make_app_repo(dest: Path) -> Path:
    """Copy ``examples/app`` into ``dest`` (created; must not exist or be empty), ``git init``, commit."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty")
    shutil.copytree(APP_DIR, dest, ignore=_IGNORE, dirs_exist_ok=True)
    git(dest, "init", "--quiet", "--initial-branch=main")
    git(dest, "config", "user.name", GIT_USER_NAME)
    git(dest, "config", "user.email", GIT_USER_EMAIL)
    git(dest, "config", "commit.gpgsign", "false")
    _commit(dest, "Sample app v1")
    return dest


def apply_variant(repo: Path, name: str, message: str | None = None) -> str:
    """Copy the overlay ``examples/variants/<name>/`` over ``repo``, commit; return the new full SHA."""
    overlay = VARIANTS_DIR / name
    if not overlay.is_dir():
        raise ValueError(f"unknown variant {name!r} (have: {', '.join(variants())})")
    shutil.copytree(overlay, repo, ignore=_IGNORE, dirs_exist_ok=True)
    return _commit(Path(repo), message or f"Apply variant {name}")
