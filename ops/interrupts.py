"""Ctrl-C during cleanup: finish it, say so, never abandon it half way."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable


@contextlib.contextmanager
def shielded_from_ctrl_c(say: Callable[[str], None], message: str = "cleanup in progress: not interrupting it"):
    """Finish the block (rollback, unlock, audit, a host's current step) even if Ctrl-C is pressed again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: say(message))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
