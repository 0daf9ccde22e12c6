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
    """``a | b | c`` with each argv quoted; ``set -o pipefail`` so a failure anywhere shows."""
    joined = " | ".join(shlex.join(map(str, argv)) for argv in commands)
    return ShellLine(f"set -o pipefail; {joined}" if len(commands) > 1 else joined)


def render(command: Sequence[str] | ShellLine) -> str:
    """The exact text sent to the remote shell."""
    if isinstance(command, ShellLine):
        return str(command)
    if isinstance(command, str):
        raise TypeError(
            "a plain str is not a command: pass an argv tuple or build a ShellLine with shell()"
        )
    return shlex.join(str(part) for part in command)
