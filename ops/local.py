"""The single place processes run on the operator's machine (docker, debootstrap, tar...).

argv lists only, never a shell. Failures become ``LocalToolError`` with one line naming
the command and the tail of its stderr.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ops.errors import LocalToolError

DEFAULT_TIMEOUT = 120.0


def describe(argv: Sequence[str], limit: int = 80) -> str:
    """``docker run -d ...`` shortened to one readable line."""
    text = shlex.join(str(a) for a in argv)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tail(data: bytes | str | None, limit: int = 300) -> str:
    """Last non-empty lines of an output, joined into one line of at most ``limit`` chars."""
    if isinstance(data, bytes):
        data = data.decode(errors="replace")
    lines = [line.strip() for line in (data or "").splitlines() if line.strip()]
    text = " | ".join(lines[-3:])
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def run(argv: Sequence[str], *, input: bytes | None = None, timeout: float = DEFAULT_TIMEOUT,
        check: bool = True, env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv``, capture stdout/stderr as bytes; raise ``LocalToolError`` on failure.

    ``env`` entries are added to the current environment. With ``check=False`` a non-zero
    exit is returned, but a missing executable or a timeout still raises.
    """
    argv = [str(a) for a in argv]
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout,
                              env=full_env, cwd=cwd, stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise LocalToolError(f"{argv[0]!r} not found on this machine",
                             hint=f"install it (needed for: {describe(argv)})") from None
    except subprocess.TimeoutExpired as exc:
        raise LocalToolError(f"`{describe(argv)}` timed out after {timeout:g}s ({tail(exc.stderr) or 'no output'})",
                             hint="check the tool's state and retry") from None
    if check and proc.returncode != 0:
        raise LocalToolError(f"`{describe(argv)}` exited {proc.returncode}: "
                             f"{tail(proc.stderr) or tail(proc.stdout) or 'no output'}")
    return proc


def spawn(argv: Sequence[str], *, log: Path, cwd: str | Path | None = None) -> subprocess.Popen:
    """Start a background process in its own session (it outlives us); return its handle.

    stdout and stderr are appended to ``log``; stdin is /dev/null.
    """
    argv = [str(a) for a in argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=cwd, start_new_session=True, close_fds=True)
        except FileNotFoundError:
            raise LocalToolError(f"{argv[0]!r} not found on this machine",
                                 hint=f"install it (needed for: {describe(argv)})") from None
    return proc
