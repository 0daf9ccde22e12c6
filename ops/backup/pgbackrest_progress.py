"""Bytes of a pgBackRest backup or restore as it goes, read from its own detail log lines.

With ``--log-level-console=detail`` pgBackRest prints one line per file it copies (or finds
unchanged since the prior backup), with the file's size and how far the whole backup has
got, e.g. ``P01 DETAIL: backup file /var/lib/postgresql/data/base/5/1259 (bundle 1/0, 112KB,
12.34%) checksum 5f...``; a restore's are ``restore file ...``. The sizes add up to the bytes done; done / percent is the total
pgBackRest itself works from, so the bar's total is its own, not an estimate of ours.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

_FILE_LINE = re.compile(r"(?:backup|match|restore) file \S.*\((?:[^()]*, )?(\d+(?:\.\d+)?)(B|KB|MB|GB|TB), "
                        r"(\d+(?:\.\d+)?)%\)")
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


@dataclass
class BackupBytes:
    """Feed it pgBackRest's console output; ``done`` and ``total`` are bytes (total None before 1%)."""

    done: int = 0
    percent: float = 0.0
    _pending: str = ""
    _lines: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def total(self) -> int | None:
        if self.percent >= 100:
            return self.done
        return int(self.done * 100 / self.percent) if self.percent >= 1 else None

    def feed(self, data: bytes) -> bool:
        """Take more output; True when the byte count changed."""
        *complete, self._pending = (self._pending + self._decoder.decode(data)).split("\n")
        if len(self._pending) > 65536:
            self._pending = ""
        before = self.done
        for line in complete:
            m = _FILE_LINE.search(line)
            if m:
                self.done += int(float(m.group(1)) * _UNITS[m.group(2)])
                self.percent = max(self.percent, float(m.group(3)))
            elif line.strip():
                self._lines = [*self._lines[-9:], line.strip()]
        return self.done != before

    def last_lines(self, n: int = 3) -> list[str]:
        """The last lines that were not per-file progress (warnings and errors among them)."""
        return self._lines[-n:]
