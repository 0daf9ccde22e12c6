"""Pure command builders.

A remote command is either an argv tuple (joined with ``shlex.join`` by the gateway)
or a ``ShellLine``: a command line whose every interpolated value went through
``shlex.quote``. The gateway accepts nothing else, so an unquoted value cannot
reach a remote shell by accident.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

Argv = tuple[str, ...]


class ShellLine(str):
    """A shell command line built by ``shell()`` or ``pipeline()``: values are quoted."""


def shell(template: str, **values: object) -> ShellLine:
    """Fill ``{name}`` placeholders in ``template`` with shell-quoted values.

    The template is trusted code (written in this repo); values are not.
    """
    return ShellLine(template.format(**{k: shlex.quote(str(v)) for k, v in values.items()}))


def pipeline(*commands: Sequence[str]) -> ShellLine:
    """``a | b | c`` with each argv quoted, run by bash with pipefail so a failure anywhere shows.

    NOTE: wrapped in ``bash -o pipefail -c`` rather than prefixed with ``set -o
    pipefail``: the SSH user's login shell may be dash, which has no pipefail.
    """
    joined = " | ".join(shlex.join(map(str, argv)) for argv in commands)
    if len(commands) == 1:
        return ShellLine(joined)
    return ShellLine(shlex.join(["bash", "-o", "pipefail", "-c", joined]))


def render(command: Sequence[str] | ShellLine) -> str:
    """The exact text sent to the remote shell."""
    if isinstance(command, ShellLine):
        return str(command)
    if isinstance(command, str):
        raise TypeError(
            "a plain str is not a command: pass an argv tuple or build a ShellLine with shell()"
        )
    return shlex.join(str(part) for part in command)
