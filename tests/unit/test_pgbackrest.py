"""pgBackRest: the argv and settings builders (by equality), the catalog parser, the backup type
schedule, the restore's target checks, and the inventory's pitr: section."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ops.backup import physical
from ops.commands import pgbackrest as pgbr
from ops.errors import InventoryError
from ops.inventory import load_environment
from ops.pitr_config import PitrRepo, PitrSettings
from ops.restore import pitr
from ops.restore.errors import RestoreRefused

T0 = datetime(2026, 11, 29, 22, 0, 0, tzinfo=UTC)
REPO = PitrRepo(bucket="acme-backups", path="/app/pgbackrest", region="eu-central-1",
                endpoint="s3.eu-central-1.amazonaws.com")
SETTINGS = PitrSettings(stanza="app", repos=(REPO,), archive_timeout=45, process_max=3)


def test_server_command_turns_archiving_on_or_off_and_names_no_secret():
    assert pgbr.server_command(SETTINGS) == (
        "postgres", "-c", "wal_level=replica", "-c", "archive_mode=on",
        "-c", "archive_command=pgbackrest archive-push %p", "-c", "archive_timeout=45", "-c", "max_wal_senders=3")
    assert "archive_mode=off" in pgbr.server_command(SETTINGS, archive=False)


def test_accessory_env_carries_every_repository_and_the_secrets():
    out = pgbr.accessory_env(SETTINGS, data_path="/var/lib/postgresql/data", port=5432, db_user="athlete",
                             credentials={1: ("AKIA1", "s3cret")}, passphrase="pass phrase")
    assert out["PGBACKREST_STANZA"] == "app"
    assert out["PGBACKREST_PG1_USER"] == "athlete" and out["PGBACKREST_PROCESS_MAX"] == "3"
    assert out["PGBACKREST_ARCHIVE_ASYNC"] == "y"
    assert {k: v for k, v in out.items() if k.startswith("PGBACKREST_REPO1_")} == {
        "PGBACKREST_REPO1_TYPE": "s3", "PGBACKREST_REPO1_PATH": "/app/pgbackrest",
        "PGBACKREST_REPO1_S3_BUCKET": "acme-backups", "PGBACKREST_REPO1_S3_ENDPOINT": "s3.eu-central-1.amazonaws.com",
        "PGBACKREST_REPO1_S3_REGION": "eu-central-1", "PGBACKREST_REPO1_S3_URI_STYLE": "host",
        "PGBACKREST_REPO1_STORAGE_PORT": "443", "PGBACKREST_REPO1_S3_KEY": "AKIA1",
        "PGBACKREST_REPO1_S3_KEY_SECRET": "s3cret", "PGBACKREST_REPO1_CIPHER_TYPE": "aes-256-cbc",
        "PGBACKREST_REPO1_CIPHER_PASS": "pass phrase", "PGBACKREST_REPO1_RETENTION_FULL": "2",
        "PGBACKREST_REPO1_BUNDLE": "y"}


def test_a_repository_with_its_own_ca_points_at_the_mounted_file():
    repo = dataclasses.replace(REPO, ca_file=Path("/tmp/ca.pem"))
    env = pgbr.repo_env(2, repo, key="k", secret="s", passphrase="p", retention_full=4)
    assert env["PGBACKREST_REPO2_STORAGE_CA_FILE"] == "/etc/pgbackrest/repo2-ca.pem"
    assert env["PGBACKREST_REPO2_RETENTION_FULL"] == "4"


def test_command_argv():
    assert pgbr.backup_argv("app-postgres", "incr", repo=2) == (
        "docker", "exec", "--user", "postgres", "app-postgres", "pgbackrest", "--type=incr", "--repo=2", "backup")
    assert pgbr.check_argv("c", io_timeout=10)[-2:] == ("--io-timeout=10", "check")
    assert pgbr.info_argv("c")[-2:] == ("--output=json", "info")
    assert pgbr.stanza_create_argv("c", io_timeout=5)[-1] == "stanza-create"
    with pytest.raises(ValueError):
        pgbr.backup_argv("c", "weekly")


def test_restore_args_target_the_second_in_utc_promote_and_keep_archiving_off():
    at = datetime(2026, 11, 30, 1, 5, 7, tzinfo=timezone(timedelta(hours=2)))    # given with an offset
    assert pgbr.restore_args(at, "20261129-220945F", repo=1) == (
        "pgbackrest", "restore", "--repo=1", "--set=20261129-220945F", "--type=time",
        "--target=2026-11-29 23:05:07+00", "--target-action=promote", "--archive-mode=off")


def test_wal_segment_name():
    assert pgbr.wal_segment(1, "0/3000060") == "000000010000000000000003"
    assert pgbr.wal_segment(3, "1/FF000000") == "0000000300000001000000FF"


def _info(*backups, archive=("000000010000000000000001", "00000001000000000000000A")) -> str:
    return json.dumps([{
        "name": "app",
        "archive": [{"database": {"id": 1, "repo-key": r}, "id": "15-1", "min": archive[0], "max": archive[1]}
                    for r in (1, 2)],
        "repo": [{"key": 1, "status": {"code": 0, "message": "ok"}}],
        "backup": [{"label": label, "type": kind, "database": {"id": 1, "repo-key": repo}, "error": err,
                    "timestamp": {"start": start, "stop": stop}, "prior": None,
                    "archive": {"start": "000000010000000000000003", "stop": "000000010000000000000004"},
                    "info": {"size": 1000, "repository": {"delta": 300, "size": 300}}}
                   for label, kind, repo, start, stop, err in backups]}, {"name": "other", "backup": []}])


def _epoch(t: datetime) -> int:
    return int(t.timestamp())


def test_parse_info_reads_backups_per_repository_and_skips_failed_ones():
    cat = physical.parse_info(_info(
        ("F1", "full", 1, _epoch(T0), _epoch(T0 + timedelta(seconds=40)), False),
        ("F1", "full", 2, _epoch(T0), _epoch(T0 + timedelta(seconds=50)), False),
        ("F1_I2", "incr", 1, _epoch(T0 + timedelta(hours=1)), _epoch(T0 + timedelta(hours=1, seconds=5)), False),
        ("BAD", "full", 1, _epoch(T0), _epoch(T0), True)), "app")
    assert [(b.label, b.repo) for b in cat.backups] == [("F1", 1), ("F1", 2), ("F1_I2", 1)]
    assert cat.archive[1] == ("000000010000000000000001", "00000001000000000000000A")
    assert cat.earliest(1) == T0 + timedelta(seconds=40)
    assert cat.earliest_any() == T0 + timedelta(seconds=40) and cat.earliest(2) == T0 + timedelta(seconds=50)
    assert cat.base_for(T0 + timedelta(seconds=40)) is None, "consistent strictly before the target"
    assert cat.base_for(T0 + timedelta(seconds=41)).label == "F1"
    assert cat.base_for(T0 + timedelta(hours=2)).label == "F1_I2"
    assert cat.base_for(T0 + timedelta(hours=2), repo=2).label == "F1"
    assert cat.in_repo(1)[0].to_dict()["kind"] == "physical"


def test_parse_info_of_another_stanza_or_nothing_is_empty():
    assert physical.parse_info("[]", "app").backups == []
    assert physical.parse_info(_info(), "nope").archive == {}


def test_backup_type_follows_the_full_schedule_and_the_flag():
    empty = physical.PhysicalCatalog("app")
    assert physical.choose_type(empty, T0, 7, None) == "full"
    assert physical.choose_type(empty, T0, 7, "incr") == "full", "an incr needs a full first"
    cat = physical.parse_info(_info(("F1", "full", 1, _epoch(T0), _epoch(T0), False)), "app")
    assert physical.choose_type(cat, T0 + timedelta(days=1), 7, None) == "incr"
    assert physical.choose_type(cat, T0 + timedelta(days=7), 7, None) == "full"
    assert physical.choose_type(cat, T0 + timedelta(days=1), 7, "diff") == "diff"


def _archiver(*, failing: bool = False) -> physical.ArchiverState:
    archived = T0 + timedelta(minutes=5, seconds=30, microseconds=5)
    return physical.ArchiverState(now=T0 + timedelta(minutes=10, microseconds=900), last_archived_wal="X",
                                  last_archived_at=archived, last_failed_wal="Y" if failing else None,
                                  last_failed_at=T0 + timedelta(minutes=6) if failing else None, current_wal="Z")


def test_a_healthy_archiver_makes_now_restorable():
    assert pitr.check_target(T0 + timedelta(minutes=10), _archiver(), "prod") == T0 + timedelta(minutes=10)


def test_a_target_after_the_archive_is_refused_with_the_latest_restorable_second():
    with pytest.raises(RestoreRefused, match=r"after the latest restorable second, 2026-11-29T22:05:30Z.*"
                                             r"archiver fails since 2026-11-29T22:06:00Z, on Y"):
        pitr.check_target(T0 + timedelta(minutes=5, seconds=31), _archiver(failing=True), "prod")
    assert pitr.check_target(T0 + timedelta(minutes=5, seconds=30), _archiver(failing=True), "prod")


def test_without_the_live_server_the_latest_second_is_unknown_and_not_refused():
    assert pitr.check_target(T0, None, "prod") is None


SANDBOX_PITR = """
pitr:
  archive_timeout: 0
  default_kind: sometimes
  repos:
    - endpoint: "https://s3.example.org"
      uri_style: sideways
      bucket: UPPER
"""


def test_inventory_pitr_problems_are_each_one_line(tmp_path):
    text = (load_environment("sandbox").path.read_text().split("\npitr:")[0]
            + "\n" + SANDBOX_PITR + "\ndoctor:\n  min_free_gb: 1\n")
    (tmp_path / "bad.yml").write_text(text.replace("\ndoctor:\n  min_free_gb: 1\n  max_clock_skew: 2\n", "\n"))
    with pytest.raises(InventoryError) as exc:
        load_environment("bad", tmp_path)
    lines = [line for line in exc.value.problems if "pitr" in line]
    assert any("pitr.archive_timeout" in line for line in lines)
    assert any("pitr.default_kind: 'sometimes'" in line for line in lines)
    assert any("pitr.repos[1].endpoint" in line for line in lines)
    assert any("pitr.repos[1].uri_style" in line for line in lines)
    assert any("pitr.repos[1].bucket" in line for line in lines)
    assert any("pitr.encryption_key_var" in line for line in lines)


def test_the_sandbox_pitr_section_fills_in_defaults():
    env = load_environment("sandbox")
    assert env.pitr.stanza == "athlete-platform" and len(env.pitr.repos) == 2
    assert env.pitr.repos[0].bucket == env.s3.bucket and env.pitr.repos[1].bucket != env.s3.bucket
    assert env.pitr.repos[0].uri_style == "path" and env.pitr.repos[0].port == 9443


def _status(archiver, *backups, archive=None) -> physical.PhysicalStatus:
    cat = physical.parse_info(_info(*backups), "app")
    if archive is not None:
        cat.archive = archive
    return physical.PhysicalStatus(cat, archiver, T0 + timedelta(hours=1))


def test_freshness_names_a_failing_archiver_a_missing_repository_and_diverging_repositories():
    full = ("F1", "full", 1, _epoch(T0), _epoch(T0 + timedelta(minutes=1)), False)
    st = _status(_archiver(failing=True), full, archive={1: ("a", "00000001000000000000000A"),
                                                         2: ("a", "000000010000000000000008")})
    problems = st.problems(archive_timeout=60, max_age=timedelta(hours=26), full_every_days=7, repos=2)
    assert any(p.startswith("WAL archiving fails since 2026-11-29T22:06:00Z") for p in problems)
    assert "no physical backup in repo2" in problems
    assert any(p.startswith("the repositories diverge") for p in problems)


def test_freshness_of_a_healthy_setup_is_quiet_and_a_stale_one_is_not():
    full = ("F1", "full", 1, _epoch(T0), _epoch(T0 + timedelta(minutes=1)), False)
    healthy = _status(_archiver(), full)
    assert healthy.problems(archive_timeout=60, max_age=timedelta(hours=26), full_every_days=7, repos=1) == []
    stale = healthy.problems(archive_timeout=60, max_age=timedelta(minutes=30), full_every_days=7, repos=1)
    assert stale and "is 1.0h old" in stale[0]


def test_archive_lag_counts_only_completed_segments_waiting():
    idle = dataclasses.replace(_archiver(), last_archived_wal="000000010000000000000009",
                               current_wal="00000001000000000000000A")
    assert _status(idle).archive_lag() == 0.0
    behind = dataclasses.replace(idle, current_wal="00000001000000000000000C")
    assert _status(behind).archive_lag() == pytest.approx(270.0, abs=1)
    assert 'ops_pitr_archive_lag_seconds{env="prod"} 270.0' in _status(behind).prometheus("prod")


def test_the_base_backup_comes_from_the_second_repository_when_the_first_has_none():
    cat = physical.parse_info(_info(("F2", "full", 2, _epoch(T0), _epoch(T0 + timedelta(seconds=30)), False)), "app")
    assert cat.base_in_any(T0 + timedelta(minutes=1), 2).repo == 2
    assert cat.base_in_any(T0 + timedelta(minutes=1), 1) is None


@pytest.mark.parametrize("last, current, lag", [
    ("000000020000000100000024", "000000020000000100000026", 270.0),  # a completed segment waits
    ("000000020000000100000025", "000000020000000100000026", 0.0),    # only the one being written
    ("00000002.history", "000000020000000100000026", 0.0),            # just promoted: nothing to compare
])
def test_archive_lag_compares_segments_and_takes_a_timeline_history_file_in_its_stride(last, current, lag):
    archiver = dataclasses.replace(_archiver(), last_archived_wal=last, current_wal=current)
    status = physical.PhysicalStatus(physical.parse_info("[]", "app"), archiver, archiver.now)
    assert status.archive_lag() == pytest.approx(lag, abs=1)
