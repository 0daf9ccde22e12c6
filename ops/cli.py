"""The command-line surface shared by every task: output, confirmation, JSON, exit codes.

Exit codes: 0 ok; 1 the operation failed (or a check found a problem); 2 usage or
configuration error (nothing was attempted); 130 interrupted.

``--json``: every task prints ONE envelope on stdout, on success and on error alike::

    {"ok": true, "data": ..., "warnings": [...], "error": null}
    {"ok": false, "data": null, "warnings": [...], "error": {"type": ..., "message": ...,
     "host": ..., "hint": ...}}

Progress lines go to stderr in JSON mode, so stdout stays one parseable document.
The library (``ops.*`` outside ``ops.tasks``) never imports this module: it reports
through a ``say`` callback and raises ``OpsError``.
"""

from __future__ import annotations

import json as jsonlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from ops.errors import ConfigError, OpsError
from ops.progress import WARNING
from ops.render import marks_for

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class Output:
    """What one task run prints; JSON mode collects instead of printing."""

    json: bool = False
    data: object = None
    has_data: bool = False
    warnings: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        """A progress or result line: stdout, or stderr under --json."""
        print(line, file=sys.stderr if self.json else sys.stdout, flush=True)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        # Yellow with a "!" on a terminal; the same plain line in a pipe, a cron mail, --json, NO_COLOR.
        print(marks_for(sys.stderr, json=self.json).line(f"warning: {text}", WARNING), file=sys.stderr, flush=True)

    def result(self, data) -> None:
        """The task's machine-readable result (printed in the envelope under --json)."""
        self.data, self.has_data = data, True

    def envelope(self, error: BaseException | None = None) -> dict:
        return {"ok": error is None, "data": self.data if self.has_data else None, "warnings": self.warnings,
                "error": None if error is None else error_dict(error)}

    def emit(self, error: BaseException | None = None) -> None:
        if self.json:
            jsonlib.dump(self.envelope(error), sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
            sys.stdout.flush()


def error_dict(error: BaseException) -> dict:
    if isinstance(error, OpsError):
        return {"type": type(error).__name__, "message": error.message, "host": error.host, "hint": error.hint,
                "also": list(error.followups)}
    if isinstance(error, KeyboardInterrupt):
        return {"type": "Interrupted", "message": "interrupted", "host": None, "hint": None, "also": []}
    return {"type": type(error).__name__, "message": str(error), "host": None, "hint": None, "also": []}


class CheckFailed(OpsError):
    """A check ran and found a problem (stale backup, unhealthy host): exit 1."""


def exit_code(error: BaseException) -> int:
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    return EXIT_FAILED


# -- typed flags ----------------------------------------------------------------------------
def number(value, flag: str, *, minimum: float = 0, integer: bool = False, example: str = "") -> float | int:
    """A flag's numeric value, checked: one clear line when it is not."""
    what = "a whole number" if integer else "a number"
    try:
        num = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} {value!r} is not {what}",
                          hint=f"e.g. {flag} {example or (2 if integer else 30)}") from None
    if isinstance(num, float) and not math.isfinite(num):
        raise ConfigError(f"{flag} {value!r} is not {what}", hint=f"e.g. {flag} {example or 30}")
    if num < minimum:
        raise ConfigError(f"{flag} {value!r} must be {minimum:g} or more",
                          hint=f"e.g. {flag} {example or (max(minimum, 1) if integer else 30)}")
    return num


def host_list(value: str, flag: str = "--exclude") -> list[str]:
    """A comma-separated list of host names (``web2`` or ``web2,web3``)."""
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    for name in names:
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"{flag} {name!r} is not a host name", hint=f"e.g. {flag} web2")
    return names


# -- confirmation ---------------------------------------------------------------------------
def confirm(env_name: str, question: str, *, yes: bool = False, ask: Callable[[str], str] = input,
            interactive: Callable[[], bool] | None = None, nothing: str = "nothing was changed") -> None:
    """Type the environment name, or nothing happens. No terminal: refuse (scripts pass --yes)."""
    if yes:
        return
    if not (interactive() if interactive is not None else sys.stdin.isatty()):
        raise ConfigError(f"not confirmed: no terminal to ask on; {nothing}", hint="pass --yes to run without asking")
    try:
        answer = ask(f"{question} Type the environment name ({env_name}) to go on: ")
    except EOFError:
        answer = ""
    if answer.strip() != env_name:
        raise ConfigError(f"not confirmed; {nothing}", hint=f"type {env_name} exactly, or pass --yes")
