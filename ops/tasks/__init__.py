"""Invoke collections, one module each. Tasks parse flags, call ``ops``, print.

Every task goes through ``ops_task``:
- an expected failure (``OpsError``) becomes its one-line message on stderr and exit
  status 1 (2 for a usage or configuration error), never a traceback;
- ``--json`` prints one envelope (``ops.cli``) on success and on error alike;
- Invoke's own ``--dry`` ("echo commands instead of running them", accepted after the
  task name too) would otherwise be ignored by our tasks and a real deploy would run:
  it becomes the task's ``--dry-run``, or a mutating task without one refuses it.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import sys

from invoke import task
from invoke.exceptions import Exit
from invoke.parser import argument as _invoke_argument

from ops.cli import EXIT_FAILED, EXIT_USAGE, Output, exit_code
from ops.errors import ConfigError, OpsError

_current: contextvars.ContextVar[Output | None] = contextvars.ContextVar("ops_output", default=None)


def out() -> Output:
    """The running task's output (JSON-aware); plain printing outside a task."""
    return _current.get() or Output()


def ops_task(*args, mutating: bool = False, **kwargs):
    """``@task`` with the CLI contract above. ``mutating=True`` marks tasks that change hosts or backups.

    NOTE: every parameter needs a default: Invoke makes a parameter without one
    positional, so ``inv deploy --dry`` would silently set host='--dry'.
    """

    def decorate(fn):
        params = inspect.signature(fn).parameters
        has_dry_run = "dry_run" in params

        @functools.wraps(fn)
        def wrapper(c, *a, **kw):
            output = Output(json=bool(kw.get("json")))
            token = _current.set(output)
            try:
                if c.config.run.dry:
                    if has_dry_run:
                        print("note: --dry is taken as --dry-run: nothing will be changed", file=sys.stderr)
                        kw["dry_run"] = True
                    elif mutating:
                        raise ConfigError(f"--dry is Invoke's own flag and {fn.__name__.rstrip('_')} has no dry run; "
                                          "nothing was done", hint="run it without --dry")
                result = fn(c, *a, **kw)
            except OpsError as exc:
                output.emit(exc)
                raise Exit(f"error: {exc}", code=exit_code(exc)) from None
            except KeyboardInterrupt as exc:
                output.emit(exc)
                raise Exit("interrupted", code=exit_code(exc)) from None
            except Exit as exc:
                if output.json and exc.code:
                    output.emit(OpsError(str(exc.message or "failed").removeprefix("error: ")))
                raise
            except Exception as exc:
                if os.environ.get("OPS_DEBUG"):
                    raise
                output.emit(exc)
                raise Exit(f"internal error: {type(exc).__name__}: {exc} (a bug: run again with OPS_DEBUG=1 "
                           "for the traceback and report it)", code=EXIT_FAILED) from None
            finally:
                _current.reset(token)
            output.emit()
            return result

        return task(*args, **kwargs)(wrapper)

    return decorate


def print_json(data) -> None:
    """A task's ``--json`` result: goes into the envelope printed when the task ends."""
    out().result(data)


def say(line: str) -> None:
    out().say(line)


def warn(text: str) -> None:
    out().warn(text)


# NOTE: Invoke casts typed flags (``--batch abc`` for an int) with a bare int()/float()
# and lets the ValueError escape as a traceback. Invoke is pinned (2.2.x); this turns that
# one cast into a one-line usage error, exit 2, before any task runs.
_original_set_value = _invoke_argument.Argument.set_value


def _set_value(self, value, cast=True):
    try:
        return _original_set_value(self, value, cast=cast)
    except (TypeError, ValueError):
        kind = {int: "a whole number", float: "a number"}.get(self.kind, f"a {getattr(self.kind, '__name__', '?')}")
        flag = f"--{self.name.replace('_', '-')}"
        raise Exit(f"error: {flag} {value!r} is not {kind}", code=EXIT_USAGE) from None


if getattr(_invoke_argument.Argument.set_value, "__name__", "") != "_set_value":
    _invoke_argument.Argument.set_value = _set_value
