"""Grandfather-father-son retention: which backups ``backup.prune`` keeps, and why.

Semantics (restic's ``--keep-*``; each rule independent, reasons accumulate):

- Rules apply per kind (``db`` and ``uploads`` never affect each other) and only to
  GOOD backups (manifest present). Orphans are not this module's business: prune
  removes them by age.
- ``keep_last N``: the N newest backups ("last N").
- ``daily D``: the newest backup of each of the D most recent UTC calendar days
  THAT HAVE A BACKUP ("daily 2026-11-24"). Likewise ``weekly W`` per ISO week
  ("weekly 2026-W48", ISO week-year) and ``monthly M`` per month ("monthly 2026-11").
  Periods are counted back from the newest backup, and a day without backups does
  not use up a slot: if backups stopped a month ago, ``daily 7`` still keeps the
  last 7 days that had backups instead of deleting everything.
- A backup's period is taken from its start time (the time in its id and key).
- The newest good backup of each kind is always kept ("newest"), whatever the
  policy; ``keep_last`` must be at least 1 anyway.
- A backup that started after ``now`` (clock skew somewhere) is kept and flagged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ops.backup.catalog import Entry
from ops.backup.timeparse import as_utc
from ops.errors import ConfigError


@dataclass(frozen=True)
class Policy:
    keep_last: int = 7
    daily: int = 7
    weekly: int = 4
    monthly: int = 6

    def __post_init__(self) -> None:
        for name in ("keep_last", "daily", "weekly", "monthly"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"backup.{name} must be a whole number >= 0, got {value!r}",
                                  hint="fix the backup section of the inventory")
        if self.keep_last < 1:
            raise ConfigError(f"backup.keep_last must be at least 1, got {self.keep_last}",
                              hint="the newest backup is always kept; set keep_last: 1 or more")

    @classmethod
    def from_settings(cls, settings) -> Policy:
        """From the inventory's ``BackupSettings``."""
        return cls(settings.keep_last, settings.daily, settings.weekly, settings.monthly)

    def describe(self) -> str:
        return f"last {self.keep_last}, daily {self.daily}, weekly {self.weekly}, monthly {self.monthly}"


@dataclass
class Decision:
    entry: Entry
    keep: bool
    reasons: list[str] = field(default_factory=list)


def _day(t: datetime) -> str:
    return f"{t:%Y-%m-%d}"


def _week(t: datetime) -> str:
    year, week, _ = t.isocalendar()
    return f"{year}-W{week:02d}"


def _month(t: datetime) -> str:
    return f"{t:%Y-%m}"


_RULES = (("daily", _day), ("weekly", _week), ("monthly", _month))


def _order(entry: Entry):
    return (entry.started_at, entry.finished_at, entry.id)


def plan(backups: Iterable[Entry], now: datetime, policy: Policy) -> list[Decision]:
    """A decision for every good backup, newest first; entries without a manifest are left out."""
    now = as_utc(now)
    by_kind: dict[str, list[Entry]] = {}
    for entry in backups:
        if entry.good:
            by_kind.setdefault(entry.kind, []).append(entry)

    decisions: list[Decision] = []
    for entries in by_kind.values():
        entries.sort(key=_order, reverse=True)
        reasons: dict[str, list[str]] = {e.id: [] for e in entries}
        reasons[entries[0].id].append("newest")
        for entry in entries[:policy.keep_last]:
            reasons[entry.id].append(f"last {policy.keep_last}")
        # period label -> id of the backup kept for it, per rule
        kept_for: dict[str, dict[str, str]] = {}
        for rule, period_of in _RULES:
            count = getattr(policy, rule)
            kept_for[rule] = {}
            for entry in entries:  # newest first: the first seen in a period is its newest
                period = period_of(entry.started_at)
                if period in kept_for[rule]:
                    continue
                if len(kept_for[rule]) >= count:
                    break
                kept_for[rule][period] = entry.id
                reasons[entry.id].append(f"{rule} {period}")
        for entry in entries:
            if entry.started_at > now:
                reasons[entry.id].append("started after now (clock skew?)")
            why = reasons[entry.id]
            if why:
                decisions.append(Decision(entry, True, why))
            else:
                decisions.append(Decision(entry, False, [_why_not(entry, kept_for, policy)]))
    decisions.sort(key=lambda d: _order(d.entry), reverse=True)
    return decisions


def _why_not(entry: Entry, kept_for: dict[str, dict[str, str]], policy: Policy) -> str:
    for rule, period_of in _RULES:
        period = period_of(entry.started_at)
        if period in kept_for[rule]:
            return f"{rule} {period} keeps the newer {kept_for[rule][period]}"
    return f"older than the policy keeps ({policy.describe()})"
