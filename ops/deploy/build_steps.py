"""Which step ``docker build`` is on, read from its output as it comes.

A Next.js image takes minutes to build (``npm ci``, ``next build``); without this the
deploy prints "building ..." and nothing until the push. The classic builder announces
each step as ``Step 4/12 : RUN npm ci``; BuildKit as ``#7 [builder 3/6] RUN npm ci``
(plain) or ``=> [builder 3/6] RUN npm ci  12.3s`` (its terminal view). Output lines that
are not step headers are kept (the last few) for the error message when the build fails.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from ops import local_pty

_CLASSIC = re.compile(r"^Step (\d+)/(\d+) : (.+)$")
_BUILDKIT = re.compile(r"^(?:#\d+|=>) \[(?:[^\]\s]+ )?(\d+)/(\d+)\] (.+?)(?:\s+\d+(?:\.\d+)?s)?$")
DETAIL_LIMIT = 70


@dataclass
class BuildSteps:
    """Feed it ``docker build`` output; ``current`` is the newest step as "step 3/6: RUN npm ci"."""

    current: str | None = None
    steps_seen: int = 0
    _pending: str = ""
    _lines: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> bool:
        """Take more output; True when a new step began."""
        text = (self._pending + self._decoder.decode(data)).replace("\r", "\n")
        *complete, self._pending = text.split("\n")
        if len(self._pending) > 4096:  # a run-away line (a minified bundle printed): not a header
            self._pending = ""
        before = self.current
        for line in complete:
            line = local_pty.plain_text(line).strip()
            if line:
                self._line(line)
        return self.current != before

    def last_lines(self, n: int = 5) -> list[str]:
        return self._lines[-n:]

    def _line(self, line: str) -> None:
        m = _CLASSIC.match(line) or _BUILDKIT.match(line)
        if not m:
            self._lines = [*self._lines[-19:], line]
            return
        number, total, what = m.groups()
        what = " ".join(what.split())
        if len(what) > DETAIL_LIMIT:
            what = what[: DETAIL_LIMIT - 3] + "..."
        self.current = f"step {number}/{total}: {what}"
        self.steps_seen += 1
