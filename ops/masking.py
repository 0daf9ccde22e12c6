"""Keep secret values out of everything printed or logged."""

from __future__ import annotations

import threading
from collections.abc import Iterable

MASK = "********"
# NOTE: very short values ("1", "on") would mask unrelated text everywhere and
# are not secrets worth the name; a secret that short is rejected by validation.
MIN_SECRET_LENGTH = 4


class Masker:
    """Replaces every registered secret value with ``MASK``. Thread-safe."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self.add(*secrets)

    def add(self, *values: str | None) -> None:
        with self._lock:
            known = set(self._secrets)
            known.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)
            # Longest first, so a secret containing another is masked whole.
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
