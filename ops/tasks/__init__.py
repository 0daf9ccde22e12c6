"""Invoke collections, one module each. Tasks parse flags, call ``ops``, print.

Every task goes through ``ops_task``: an expected failure (``OpsError``) becomes
its one-line message on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys

from invoke import task
from invoke.exceptions import Exit

from ops.errors import OpsError


def ops_task(*args, **kwargs):
    """``@task`` that turns ``OpsError`` into a clean exit.

    NOTE: every parameter needs a default: Invoke makes a parameter without one
    positional, so ``inv deploy --dry`` would silently set host='--dry'.
    """

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(c, *a, **kw):
            try:
                return fn(c, *a, **kw)
            except OpsError as exc:
                raise Exit(f"error: {exc}", code=1) from None
            except KeyboardInterrupt:
                raise Exit("interrupted", code=130) from None

        return task(*args, **kwargs)(wrapper)

    return decorate


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
