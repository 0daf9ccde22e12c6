"""ops/backup/retention.py: GFS plans over a year of backups with a fixed clock."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from ops.backup.catalog import Entry
from ops.backup.manifest import SAFETY_REASON, Manifest
from ops.backup.retention import SAFETY_KEEP, Policy, plan, protected
from ops.errors import ConfigError
from ops.inventory import BackupSettings

SHA = hashlib.sha256(b"x").hexdigest()
NOW = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)


def bid(kind: str, started: datetime, suffix: str = "000000") -> str:
    return f"{kind}-{started:%Y%m%dT%H%M%SZ}-{suffix}"


def entry(kind: str, started: datetime, *, good: bool = True) -> Entry:
    ext = "dump" if kind == "db" else "tar.gz"
    key = f"p/backups/prod/{kind}/{started:%Y/%m/%d}/{bid(kind, started, '000000' if good else 'dead00')}.{ext}"
    if not good:
        return Entry(None, key, started + timedelta(minutes=5), 10)
    m = Manifest(id=bid(kind, started), kind=kind, env="prod", object_key=key, size=10, sha256=SHA,
                 started_at=started, finished_at=started + timedelta(minutes=5))
    return Entry(m, key, m.finished_at, 10)


def every(kind: str, start: datetime, step: timedelta, until: datetime) -> list[Entry]:
    out, t = [], start
    while t < until:
        out.append(entry(kind, t))
        t += step
    return out


# A year of backups every 6 hours: 2025-01-01T00:00Z ... 2025-12-31T18:00Z (1,460).
YEAR = every("db", datetime(2025, 1, 1, tzinfo=UTC), timedelta(hours=6), NOW)


def at(text: str) -> str:
    """db id of a backup started at e.g. '12-31T18' (2025)."""
    return bid("db", datetime.strptime(f"2025-{text}", "%Y-%m-%dT%H").replace(tzinfo=UTC))


def kept(decisions) -> dict[str, list[str]]:
    return {d.entry.id: d.reasons for d in decisions if d.keep}


def test_year_of_backups_default_policy_keeps_exactly_these():
    decisions = plan(YEAR, NOW, Policy(keep_last=7, daily=7, weekly=4, monthly=6))
    assert len(decisions) == len(YEAR) == 1460
    assert [d.entry.id for d in decisions] == sorted((e.id for e in YEAR), reverse=True)  # newest first
    assert kept(decisions) == {
        # 2025-12-31 is a Wednesday of ISO week 2026-W01 (Mon 12-29 ... Sun 2026-01-04).
        at("12-31T18"): ["newest", "last 7", "daily 2025-12-31", "weekly 2026-W01", "monthly 2025-12"],
        at("12-31T12"): ["last 7"],
        at("12-31T06"): ["last 7"],
        at("12-31T00"): ["last 7"],
        at("12-30T18"): ["last 7", "daily 2025-12-30"],
        at("12-30T12"): ["last 7"],
        at("12-30T06"): ["last 7"],
        at("12-29T18"): ["daily 2025-12-29"],
        at("12-28T18"): ["daily 2025-12-28", "weekly 2025-W52"],
        at("12-27T18"): ["daily 2025-12-27"],
        at("12-26T18"): ["daily 2025-12-26"],
        at("12-25T18"): ["daily 2025-12-25"],
        at("12-21T18"): ["weekly 2025-W51"],
        at("12-14T18"): ["weekly 2025-W50"],
        at("11-30T18"): ["monthly 2025-11"],
        at("10-31T18"): ["monthly 2025-10"],
        at("09-30T18"): ["monthly 2025-09"],
        at("08-31T18"): ["monthly 2025-08"],
        at("07-31T18"): ["monthly 2025-07"],
    }
    deleted = {d.entry.id: d.reasons for d in decisions if not d.keep}
    assert len(deleted) == 1460 - 19
    assert deleted[at("12-29T12")] == [f"daily 2025-12-29 keeps the newer {at('12-29T18')}"]
    assert deleted[at("12-20T18")] == [f"weekly 2025-W51 keeps the newer {at('12-21T18')}"]
    assert deleted[at("12-01T00")] == [f"monthly 2025-12 keeps the newer {at('12-31T18')}"]
    assert deleted[at("01-01T00")] == ["older than the policy keeps (last 7, daily 7, weekly 4, monthly 6)"]


def test_year_of_backups_monthly_only():
    decisions = plan(YEAR, NOW, Policy(keep_last=1, daily=0, weekly=0, monthly=12))
    assert kept(decisions) == {
        at("12-31T18"): ["newest", "last 1", "monthly 2025-12"],
        **{at(f"{m}T18"): [f"monthly 2025-{m[:2]}"] for m in (
            "11-30", "10-31", "09-30", "08-31", "07-31", "06-30", "05-31", "04-30", "03-31", "02-28", "01-31")},
    }


def test_year_of_backups_weekly_spans_iso_years():
    decisions = plan(YEAR, NOW, Policy(keep_last=2, daily=0, weekly=3, monthly=0))
    assert kept(decisions) == {
        at("12-31T18"): ["newest", "last 2", "weekly 2026-W01"],
        at("12-31T12"): ["last 2"],
        at("12-28T18"): ["weekly 2025-W52"],
        at("12-21T18"): ["weekly 2025-W51"],
    }


def test_minimal_policy_still_keeps_the_newest_good_backup():
    decisions = plan(YEAR, NOW, Policy(keep_last=1, daily=0, weekly=0, monthly=0))
    assert kept(decisions) == {at("12-31T18"): ["newest", "last 1"]}


@pytest.mark.parametrize("changes", [{"keep_last": 0}, {"keep_last": -1}, {"daily": -1}, {"monthly": 1.5},
                                     {"weekly": True}])
def test_policy_refuses_settings_that_could_delete_everything(changes):
    with pytest.raises(ConfigError) as info:
        Policy(**{"keep_last": 3, "daily": 7, "weekly": 4, "monthly": 6, **changes})
    assert "backup." in str(info.value) and "\n" not in str(info.value)


def test_policy_from_inventory_settings():
    assert Policy.from_settings(BackupSettings(keep_last=3, daily=5, weekly=2, monthly=1)) == Policy(3, 5, 2, 1)


def test_only_periods_with_backups_count_when_backups_stopped():
    # Backups stopped on 2025-10-01: 'daily 7' keeps the last 7 days that HAVE
    # backups instead of treating them all as expired.
    stopped = [e for e in YEAR if e.started_at < datetime(2025, 10, 1, tzinfo=UTC)]
    decisions = plan(stopped, NOW, Policy(keep_last=1, daily=7, weekly=0, monthly=0))
    assert kept(decisions) == {
        at("09-30T18"): ["newest", "last 1", "daily 2025-09-30"],
        **{at(f"09-{d}T18"): [f"daily 2025-09-{d}"] for d in ("29", "28", "27", "26", "25", "24")},
    }


def test_orphans_are_not_considered():
    newest_orphan = entry("db", datetime(2025, 12, 31, 23, tzinfo=UTC), good=False)
    old_orphan = entry("db", datetime(2025, 3, 1, tzinfo=UTC), good=False)
    decisions = plan([newest_orphan, *YEAR, old_orphan], NOW, Policy(keep_last=1, daily=0, weekly=0, monthly=0))
    ids = {d.entry.id for d in decisions}
    assert newest_orphan.id not in ids and old_orphan.id not in ids
    # The orphan, though newer, does not displace the newest GOOD backup.
    assert kept(decisions) == {at("12-31T18"): ["newest", "last 1"]}


def test_kinds_are_independent():
    uploads = every("uploads", datetime(2025, 1, 1, 4, tzinfo=UTC), timedelta(days=1), datetime(2025, 12, 1, tzinfo=UTC))
    decisions = plan([*YEAR, *uploads], NOW, Policy(keep_last=2, daily=0, weekly=0, monthly=2))
    uploads_kept = {i: r for i, r in kept(decisions).items() if i.startswith("uploads-")}
    db_kept = {i: r for i, r in kept(decisions).items() if i.startswith("db-")}
    # The uploads' newest is kept though every db backup is newer.
    assert uploads_kept == {
        bid("uploads", datetime(2025, 11, 30, 4, tzinfo=UTC)): ["newest", "last 2", "monthly 2025-11"],
        bid("uploads", datetime(2025, 11, 29, 4, tzinfo=UTC)): ["last 2"],
        bid("uploads", datetime(2025, 10, 31, 4, tzinfo=UTC)): ["monthly 2025-10"],
    }
    assert db_kept == {
        at("12-31T18"): ["newest", "last 2", "monthly 2025-12"],
        at("12-31T12"): ["last 2"],
        at("11-30T18"): ["monthly 2025-11"],
    }
    assert len(decisions) == len(YEAR) + len(uploads)


def test_backups_after_now_are_kept_and_flagged():
    future = entry("db", NOW + timedelta(hours=2))
    decisions = plan([*YEAR[-10:], future], NOW, Policy(keep_last=1, daily=0, weekly=0, monthly=0))
    assert kept(decisions) == {future.id: ["newest", "last 1", "started after now (clock skew?)"]}


def test_empty_input_gives_an_empty_plan():
    assert plan([], NOW, Policy()) == []


# -- drills and safety backups ------------------------------------------------------------------

TODAY = datetime(2025, 12, 31, 12, tzinfo=UTC)


def made(hours_ago: float, *, verified: bool | None = None, safety: bool = False, kind: str = "db") -> Entry:
    started = TODAY - timedelta(hours=hours_ago)
    e = entry(kind, started)
    if verified is not None:
        e.manifest.mark_verified(verified, "drill", started + timedelta(hours=1))
    if safety:
        e.manifest.extra["reason"] = SAFETY_REASON
    return e


def decided(decisions) -> dict[str, tuple[bool, list[str]]]:
    return {d.entry.id: (d.keep, d.reasons) for d in decisions}


def test_last_1_daily_1_keeps_the_only_verified_backup_when_a_newer_one_failed_its_drill():
    failed = made(1, verified=False)
    good = made(6, verified=True)
    older = made(30)
    decisions = plan([failed, good, older], TODAY, Policy(keep_last=1, daily=1, weekly=0, monthly=0))
    assert decided(decisions) == {
        failed.id: (True, ["newest of its kind (verification failed)"]),
        good.id: (True, ["newest", "newest verified", "last 1", "daily 2025-12-31"]),
        older.id: (False, ["older than the policy keeps (last 1, daily 1, weekly 0, monthly 0)"]),
    }


def test_a_failed_backup_never_takes_a_slot_and_is_deleted_when_not_the_newest():
    ok = [made(h) for h in (0, 24, 48)]
    failed = [made(h, verified=False) for h in (12, 36)]
    decisions = plan([*ok, *failed], TODAY, Policy(keep_last=3, daily=0, weekly=0, monthly=0))
    assert {i for i, (keep, _) in decided(decisions).items() if keep} == {e.id for e in ok}
    assert all(decided(decisions)[e.id] == (False, ["verification failed"]) for e in failed)


def test_a_kind_whose_every_backup_failed_keeps_its_newest():
    failed = [made(h, verified=False) for h in (0, 24)]
    decisions = plan(failed, TODAY, Policy(keep_last=1, daily=7, weekly=4, monthly=6))
    assert decided(decisions) == {failed[0].id: (True, ["newest of its kind (verification failed)"]),
                                  failed[1].id: (False, ["verification failed"])}


def test_the_newest_verified_backup_is_kept_though_newer_unverified_ones_fill_every_slot():
    newer = [made(h) for h in (0, 6, 12)]
    verified = made(100, verified=True)
    decisions = plan([*newer, verified], TODAY, Policy(keep_last=2, daily=1, weekly=0, monthly=0))
    assert decided(decisions)[verified.id] == (True, ["newest verified"])
    assert decided(decisions)[newer[2].id][0] is False


def test_safety_backups_do_not_crowd_scheduled_ones_out_of_the_slots():
    safety = [made(h, safety=True) for h in (1, 2, 3)]
    scheduled = [made(h) for h in (10, 34, 58)]
    decisions = plan([*safety, *scheduled], TODAY, Policy(keep_last=2, daily=0, weekly=0, monthly=0))
    assert decided(decisions) == {
        safety[0].id: (True, ["newest", "safety backup, kept 7 days"]),
        safety[1].id: (True, ["safety backup, kept 7 days"]),
        safety[2].id: (True, ["safety backup, kept 7 days"]),
        scheduled[0].id: (True, ["last 2"]),
        scheduled[1].id: (True, ["last 2"]),
        scheduled[2].id: (False, ["older than the policy keeps (last 2, daily 0, weekly 0, monthly 0)"]),
    }


def test_safety_backups_go_after_seven_days_unless_they_are_the_newest_good_backup():
    week = SAFETY_KEEP.total_seconds() / 3600
    old_safety = made(week + 1, safety=True)
    fresh_enough = made(week - 1, safety=True)
    failed_safety = made(2, safety=True, verified=False)
    scheduled = made(1)
    decisions = plan([old_safety, fresh_enough, failed_safety, scheduled], TODAY, Policy(1, 0, 0, 0))
    assert decided(decisions)[old_safety.id] == (False, ["safety backup older than 7 days"])
    assert decided(decisions)[fresh_enough.id] == (True, ["safety backup, kept 7 days"])
    assert decided(decisions)[failed_safety.id] == (False, ["verification failed"])
    only_safety = made(400, safety=True, kind="uploads")
    assert decided(plan([only_safety], TODAY, Policy(1, 0, 0, 0)))[only_safety.id] == (True, ["newest"])


def test_protected_names_what_no_plan_may_delete_per_kind():
    failed, good, verified = made(0, verified=False), made(5), made(50, verified=True)
    uploads = made(3, kind="uploads")
    assert protected([failed, good, verified, uploads]) == {
        failed.id: ["newest of its kind (verification failed)"], good.id: ["newest"],
        verified.id: ["newest verified"], uploads.id: ["newest"]}
