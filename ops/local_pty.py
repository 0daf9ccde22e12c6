"""Run a local command under a pseudo-terminal and hand its output over as it comes.

``ops.local.run`` captures output at the end, which suits every tool but one kind:
those that report progress only to a terminal (``docker push`` prints byte counts
only when its output is a TTY). This runs such a command with a pty as its stdout and
stderr and passes each chunk to ``on_output`` while it runs. argv lists only, never a
shell; failures are ``LocalToolError`` like ``ops.local.run``'s.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Callable, Sequence

from ops.errors import LocalToolError
from ops.local import describe, tail

TAIL_BYTES = 8192
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain_text(data: bytes | str) -> str:
    """Terminal output as plain lines: cursor moves and colours gone, carriage returns as line ends."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def run(argv: Sequence[str], on_output: Callable[[bytes], None], *, timeout: float) -> str:
    """Run ``argv`` to its end under a pty; return the tail of its output (for messages).

    A non-zero exit, a missing program or ``timeout`` seconds in all raise
    ``LocalToolError``; Ctrl-C (or any exception from ``on_output``) kills the command.
    """
    argv = [str(a) for a in argv]
    master, slave = pty.openpty()
    try:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
        except FileNotFoundError:
            raise LocalToolError(f"{argv[0]!r} not found on this machine",
                                 hint=f"install it (needed for: {describe(argv)})") from None
        finally:
            # NOTE: our copy of the slave end must go, or reading the master never sees the
            # end of output (EIO) once the command exits.
            os.close(slave)
        kept = b""
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LocalToolError(f"`{describe(argv)}` timed out after {timeout:g}s ({tail(kept) or 'no output'})",
                                         hint="check the tool's state and retry")
                ready, _, _ = select.select([master], [], [], min(left, 1.0))
                if not ready:
                    continue
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    break
                if not data:
                    break
                kept = (kept + data)[-TAIL_BYTES:]
                on_output(data)
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    finally:
        os.close(master)
    text = plain_text(kept)
    if code != 0:
        raise LocalToolError(f"`{describe(argv)}` exited {code}: {tail(text) or 'no output'}")
    return text
