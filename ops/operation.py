"""The one envelope every mutating task runs in.

plan -> confirm -> lock -> audit -> apply -> cleanup. This module holds the parts
every operation shares; see ``Operation``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable

Say = Callable[[str], None]


@contextlib.contextmanager
def shielded_from_ctrl_c(say: Say):
    """Finish cleanup (rollback, unlock, audit) even if Ctrl-C is pressed again meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: say("cleanup in progress: not interrupting it"))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
