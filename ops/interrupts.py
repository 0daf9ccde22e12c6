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


@contextlib.contextmanager
def deferred_ctrl_c(handler: Callable[..., None]):
    """Run ``handler`` instead of raising KeyboardInterrupt while the block runs; the caller decides
    what an interrupt means once it is safe. Leaves an existing non-default handler (a cleanup's
    shield) in place, and does nothing outside the main thread (signals only reach that one)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
