"""Archiving and stanza state for status and doctor (ops/pitr_health.py): parsing pgBackRest's
and pg_stat_archiver's answers, and judging them with backup.check's rules."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from ops import pitr_health as ph
from ops.backup import physical
from ops.commands import pgbackrest as pgbr
from ops.inventory import load_environment

NOW = datetime(2026, 11, 30, 2, 0, 0, tzinfo=UTC)
W = "00000001000000000000000"  # + one hex digit: a segment on timeline 1


@pytest.fixture
def env():
    return load_environment("sandbox")  # pitr: two repositories, archive_timeout 30, default_kind logical


def info(repo_status=((1, 0, "ok"), (2, 0, "ok")), archive=None, backups=()) -> str:
    archive = archive or {1: (f"{W}1", f"{W}9"), 2: (f"{W}1", f"{W}9")}
    return json.dumps([{
        "name": "athlete-platform",
        "archive": [{"database": {"id": 1, "repo-key": n}, "id": "15-1", "min": lo, "max": hi}
                    for n, (lo, hi) in archive.items()],
        "backup": [{"label": label, "type": kind, "database": {"id": 1, "repo-key": repo},
                    "timestamp": {"start": int(stop.timestamp()) - 5, "stop": int(stop.timestamp())},
                    "info": {"size": 100, "repository": {"delta": 50}}, "archive": {"start": f"{W}2",
                                                                                     "stop": f"{W}3"}}
                   for label, kind, repo, stop in backups],
        "repo": [{"key": n, "status": {"code": code, "message": msg}} for n, code, msg in repo_status],
        "status": {"code": 0, "message": "ok"}}])


def archiver(*, archived=f"{W}9", archived_ago=20.0, failed=None, failed_ago=None, current=f"{W}A",
             failed_count=0) -> ph.Archiver:
    at = NOW - timedelta(seconds=archived_ago) if archived else None
    f_at = NOW - timedelta(seconds=failed_ago) if failed_ago is not None else None
    return ph.Archiver(physical.ArchiverState(NOW, archived, at, failed, f_at, current), 42, failed_count)


def by(findings) -> dict[tuple[str, str], ph.Finding]:
    return {(f.where, f.check): f for f in findings}


def test_the_info_argv_bounds_every_s3_request_and_runs_as_postgres():
    assert pgbr.info_argv("athlete-platform-postgres", io_timeout=10) == (
        "docker", "exec", "--user", "postgres", "athlete-platform-postgres", "pgbackrest", "--io-timeout=10",
        "--output=json", "info")


def test_repository_states_are_read_per_repository_and_a_missing_one_is_named(env):
    text = info(repo_status=((1, 0, "ok"), (2, 99, "[039]: HTTP request failed with 404 (Not Found)")))
    states = ph.parse_repo_states(text, "athlete-platform", 3)
    assert states[1].usable and not states[2].usable and states[2].code == 99
    assert states[3].code is None and states[3].message == "not in pgbackrest info's answer"
    assert ph.parse_repo_states("not json", "athlete-platform", 1)[1].code is None


def test_the_stanza_finding_names_the_failing_repository_its_bucket_and_the_fix(env):
    states = ph.parse_repo_states(info(repo_status=((1, 2, "no valid backups"), (2, 1, "missing stanza path"))),
                                  "athlete-platform", 2)
    got = by(ph.stanza_findings(env, states))
    assert got[("repo1", "stanza")].ok and "no valid backups yet" in got[("repo1", "stanza")].detail
    bad = got[("repo2", "stanza")]
    assert not bad.ok and "s3://ops-sandbox-backups-copy/pgbackrest/athlete-platform" in bad.detail
    assert "missing stanza path (pgBackRest status 1)" in bad.detail
    assert "inv accessory.boot --host sandbox postgres" in bad.detail


def test_the_archiver_line_from_psql_is_parsed_with_its_counts():
    a = ph.parse_archiver(f"2026-11-30 02:00:00+00|{W}9|2026-11-30 01:59:40+00|{W}5|2026-11-30 01:00:00+00|{W}A|42|3")
    assert a.archived_count == 42 and a.failed_count == 3
    assert a.state.last_archived_at == NOW - timedelta(seconds=20) and not a.state.failing
    empty = ph.parse_archiver("2026-11-30 02:00:00+00||||||0|0")
    assert empty.state.last_archived_wal is None and empty.failed_count == 0


def test_a_healthy_archiver_is_ok_and_says_what_it_archived_last(env):
    got = by(ph.archiver_findings(env, "db1", archiver(failed=f"{W}5", failed_ago=3600, failed_count=1), 0.0))
    assert got[("db1", "archiver")].ok
    assert got[("db1", "archiver")].detail.startswith(f"last archived {W}9 20 s ago; 1 failed (last {W}5 at ")
    assert got[("db1", "archive lag")].ok and "limit 90 s = 3x archive_timeout" in got[("db1", "archive lag")].detail


def test_a_failing_archiver_and_a_lag_over_three_archive_timeouts_are_problems(env):
    a = archiver(archived_ago=400, failed=f"{W}A", failed_ago=5, current=f"{W}C", failed_count=7)
    lag = ph._lag(a)
    assert lag == pytest.approx(400)
    got = by(ph.archiver_findings(env, "db1", a, lag))
    assert not got[("db1", "archiver")].ok and "archiving FAILS since" in got[("db1", "archiver")].detail
    assert got[("db1", "archiver")].data["failed_count"] == 7
    assert not got[("db1", "archive lag")].ok and got[("db1", "archive lag")].data["lag_seconds"] == 400
    # Idle: the newest archived segment is old, but nothing completed waits: no lag.
    idle = archiver(archived_ago=7200, current=f"{W}A")
    assert ph._lag(idle) == 0.0
    assert by(ph.archiver_findings(env, "db1", None, 0.0))[("db1", "archiver")].ok is False
    # Right after a promotion the last archived file is the new timeline's history file.
    promoted = archiver(archived="00000002.history", archived_ago=3, current="000000020000000000000005")
    assert ph._lag(promoted) == 0.0


def test_a_repository_behind_the_servers_last_archived_segment_is_named(env):
    catalog = physical.parse_info(info(archive={1: (f"{W}1", f"{W}9"), 2: (f"{W}1", f"{W}7")}), "athlete-platform")
    got = by(ph.repo_archive_findings(env, catalog, archiver()))
    assert got[("repo1", "archive")].ok and got[("repo1", "archive")].detail == f"newest {W}9, archived 20 s ago"
    assert not got[("repo2", "archive")].ok and "behind the server's last archived" in got[("repo2", "archive")].detail
    empty = physical.parse_info(info(archive={1: (f"{W}1", f"{W}9")}), "athlete-platform")
    assert not by(ph.repo_archive_findings(env, empty, archiver()))[("repo2", "archive")].ok


def test_physical_backups_are_judged_only_where_they_are_the_default_kind(env):
    old = NOW - timedelta(hours=30)
    text = info(backups=[("20261129-000000F", "full", 1, old), ("20261129-000000F_20261129-010000I", "incr", 1, old)])
    catalog = physical.parse_info(text, "athlete-platform")
    shown = by(ph.backup_findings(env, catalog, NOW))  # the sandbox: default_kind logical
    assert shown[("repo1", "backups")].ok and shown[("repo1", "backups")].detail.startswith("full 30.0 h ago, incr")
    assert "(not judged: pitr.default_kind is logical)" in shown[("repo1", "backups")].detail
    physical_env = dataclasses.replace(env, pitr=dataclasses.replace(env.pitr, default_kind="physical"))
    judged = by(ph.backup_findings(physical_env, catalog, NOW))
    assert not judged[("repo1", "backups")].ok and "older than backup.max_age_hours (26h)" in \
        judged[("repo1", "backups")].detail
    assert not judged[("repo2", "backups")].ok and judged[("repo2", "backups")].detail.startswith("no physical backup")
    fresh = physical.parse_info(info(backups=[("20261130-010000F", "full", n, NOW - timedelta(hours=1))
                                              for n in (1, 2)]), "athlete-platform")
    assert all(f.ok for f in ph.backup_findings(physical_env, fresh, NOW))
