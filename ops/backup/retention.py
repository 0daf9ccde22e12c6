"""Grandfather-father-son retention: which backups ``backup.prune`` keeps, and why.

Semantics (restic's ``--keep-*``; each rule independent, reasons accumulate):

- Rules apply per kind (``db`` and ``uploads`` never affect each other) and only to
  backups with a readable manifest. Orphans are not this module's business: prune
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
  policy; ``keep_last`` must be at least 1 anyway. So is the newest backup that
  passed a restore drill ("newest verified"): a newer, unverified one may be bad.
- A backup whose drill FAILED (manifest ``verified.ok`` false) never fills a slot:
  it is deleted ("verification failed") unless it is the newest backup of its kind
  (then kept, so a kind is never left with nothing).
- A restore's safety backup (``extra.reason == SAFETY_REASON``) never fills a slot
  either (a run of restores must not crowd out the scheduled backups): it is kept
  ``SAFETY_KEEP`` (7 days) after it finished, then deleted, unless it is the newest.
- A backup that started after ``now`` (clock skew somewhere) is kept and flagged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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


# NOTE: a safety backup (taken by a restore right before it replaced the database) is the way
# back from a bad restore. A week is long enough to notice one and undo it, short enough that
# a string of restores does not pile up full dumps; it never takes a last/daily/... slot.
SAFETY_KEEP = timedelta(days=7)


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


def _failed(entry: Entry) -> bool:
    return entry.manifest.verification_failed


def _safety(entry: Entry) -> bool:
    return entry.manifest.is_safety


def protected(entries: Iterable[Entry]) -> dict[str, list[str]]:
    """id -> why, for what no plan may ever delete: per kind, the newest backup whose drill did
    not fail ("newest"), the newest that passed one ("newest verified"), and the newest backup
    of all even when its drill failed (so no kind is ever left with nothing, and the latest
    failure stays there to be looked at)."""
    by_kind: dict[str, list[Entry]] = {}
    for entry in entries:
        if entry.good:
            by_kind.setdefault(entry.kind, []).append(entry)
    keep: dict[str, list[str]] = {}
    for group in by_kind.values():
        group.sort(key=_order, reverse=True)
        usable = [e for e in group if not _failed(e)]
        verified = [e for e in usable if e.manifest.verified_ok]
        if _failed(group[0]):
            keep.setdefault(group[0].id, []).append("newest of its kind (verification failed)")
        if usable:
            keep.setdefault(usable[0].id, []).append("newest")
        if verified:
            keep.setdefault(verified[0].id, []).append("newest verified")
    return keep


def plan(backups: Iterable[Entry], now: datetime, policy: Policy) -> list[Decision]:
    """A decision for every good backup, newest first; entries without a manifest are left out."""
    now = as_utc(now)
    by_kind: dict[str, list[Entry]] = {}
    for entry in backups:
        if entry.good:
            by_kind.setdefault(entry.kind, []).append(entry)
    decisions = [d for entries in by_kind.values() for d in _plan_kind(entries, now, policy)]
    decisions.sort(key=lambda d: _order(d.entry), reverse=True)
    return decisions


def _plan_kind(entries: list[Entry], now: datetime, policy: Policy) -> list[Decision]:
    entries = sorted(entries, key=_order, reverse=True)
    reasons: dict[str, list[str]] = {e.id: [] for e in entries}
    for backup_id, why in protected(entries).items():
        reasons[backup_id] += why
    # NOTE: only backups that can be relied on and were taken on schedule fill the slots: a
    # failed drill must not take the place of a good backup, a safety backup not crowd one out.
    regular = [e for e in entries if not _failed(e) and not _safety(e)]
    for entry in regular[:policy.keep_last]:
        reasons[entry.id].append(f"last {policy.keep_last}")
    kept_for = _fill_periods(regular, policy, reasons)
    for entry in entries:
        if _safety(entry) and not _failed(entry) and now - entry.finished_at <= SAFETY_KEEP:
            reasons[entry.id].append(f"safety backup, kept {SAFETY_KEEP.days} days")
        if entry.started_at > now:
            reasons[entry.id].append("started after now (clock skew?)")
    return [Decision(e, True, reasons[e.id]) if reasons[e.id]
            else Decision(e, False, [_why_not(e, kept_for, policy)]) for e in entries]


def _fill_periods(regular: list[Entry], policy: Policy, reasons: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """Per rule, period label -> id of the backup kept for it (``regular`` is newest first)."""
    kept_for: dict[str, dict[str, str]] = {}
    for rule, period_of in _RULES:
        count = getattr(policy, rule)
        kept_for[rule] = {}
        for entry in regular:  # newest first: the first seen in a period is its newest
            period = period_of(entry.started_at)
            if period in kept_for[rule]:
                continue
            if len(kept_for[rule]) >= count:
                break
            kept_for[rule][period] = entry.id
            reasons[entry.id].append(f"{rule} {period}")
    return kept_for


def _why_not(entry: Entry, kept_for: dict[str, dict[str, str]], policy: Policy) -> str:
    if _failed(entry):
        return "verification failed"
    if _safety(entry):
        return f"safety backup older than {SAFETY_KEEP.days} days"
    for rule, period_of in _RULES:
        period = period_of(entry.started_at)
        if period in kept_for[rule]:
            return f"{rule} {period} keeps the newer {kept_for[rule][period]}"
    return f"older than the policy keeps ({policy.describe()})"
