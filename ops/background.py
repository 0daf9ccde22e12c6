"""A call running in a daemon thread, joined later for its result."""

from __future__ import annotations

import threading


class Background:
    """``fn(*args)`` in a daemon thread: a stuck call can never keep the process from exiting."""

    def __init__(self, fn, *args, **kwargs):
        self._value = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to result()
                self._error = exc

        self._thread = threading.Thread(target=run, daemon=True, name="ops-background")
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def result(self, timeout: float | None = None):
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"still running after {timeout:g}s")
        if self._error is not None:
            raise self._error
        return self._value
