"""ops/backup/check.py: freshness, Prometheus textfile, and prune's deletion order and safety."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from ops.backup import check, manifest
from ops.backup.catalog import Entry
from ops.backup.manifest import Manifest
from ops.errors import ConfigError
from ops.inventory import load_environment
from tests.support.fakes import RecordingS3

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def entry(kind: str, finished: datetime, *, verified=None, size=100) -> Entry:
    started = finished - timedelta(minutes=5)
    backup_id = manifest.new_backup_id(kind, started)
    key = f"backups/sandbox/{kind}/{started:%Y/%m/%d}/{backup_id}.{manifest.extension(kind)}"
    m = Manifest(id=backup_id, kind=kind, env="sandbox", object_key=key, size=size, sha256="a" * 64,
                 started_at=started, finished_at=finished, verified=verified)
    return Entry(m, key, finished, size)


@pytest.mark.parametrize("text, seconds", [("26h", 26 * 3600), ("90m", 5400), ("2d", 172800), ("3600s", 3600),
                                           ("1.5h", 5400), ("1w", 604800), (26, 26 * 3600), ("12", 12 * 3600)])
def test_max_age_accepts_units_and_bare_hours(text, seconds):
    assert check.parse_max_age(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "-1h", "0", "26 hours", "1y"])
def test_max_age_refuses_anything_else_with_an_example(text):
    with pytest.raises(ConfigError, match="e.g. 26h"):
        check.parse_max_age(text)


def test_fresh_when_the_newest_good_backup_is_younger_than_max_age():
    entries = [entry("db", NOW - timedelta(hours=30)), entry("db", NOW - timedelta(hours=2))]
    r = check.freshness(entries, "db", now=NOW, max_age=timedelta(hours=26))
    assert r.ok and r.age == timedelta(hours=2) and r.count == 2
    assert "ok: newest good backup" in r.line("sandbox") and "2h00m ago" in r.line("sandbox")


def test_stale_when_older_and_the_age_is_printed():
    r = check.freshness([entry("db", NOW - timedelta(hours=30))], "db", now=NOW, max_age=timedelta(hours=26))
    assert not r.ok and "STALE" in r.line("sandbox") and "1d06h00m ago" in r.line("sandbox")


def test_a_backup_that_failed_its_drill_does_not_count_as_fresh():
    failed = {"at": "2026-11-24T11:00:00Z", "ok": False, "detail": "table x: 3 rows in the manifest, 2 restored"}
    entries = [entry("db", NOW - timedelta(hours=1), verified=failed), entry("db", NOW - timedelta(hours=40))]
    r = check.freshness(entries, "db", now=NOW, max_age=timedelta(hours=26))
    assert not r.ok and r.age == timedelta(hours=40)


def test_no_backup_at_all_is_not_fresh():
    r = check.freshness([entry("uploads", NOW)], "db", now=NOW, max_age=timedelta(hours=26))
    assert not r.ok and r.newest is None and "NO good backup" in r.line("sandbox")


def test_prometheus_text_has_one_series_per_kind_with_env_and_kind_labels():
    ok = {"at": "2026-11-24T11:00:00Z", "ok": True, "detail": ""}
    db = entry("db", NOW - timedelta(hours=1), verified=ok, size=1234)
    results = check.check([db], now=NOW, max_age=timedelta(hours=26))
    text = check.prometheus_text("sandbox", results, now=NOW)
    ts = int(db.finished_at.timestamp())
    assert f'ops_backup_last_success_timestamp_seconds{{env="sandbox",kind="db"}} {ts}' in text
    assert 'ops_backup_last_success_timestamp_seconds{env="sandbox",kind="uploads"} 0' in text
    assert 'ops_backup_fresh{env="sandbox",kind="db"} 1' in text
    assert 'ops_backup_fresh{env="sandbox",kind="uploads"} 0' in text
    assert 'ops_backup_age_seconds{env="sandbox",kind="db"} 3600' in text
    assert 'ops_backup_last_size_bytes{env="sandbox",kind="db"} 1234' in text
    assert f'ops_backup_last_verified_timestamp_seconds{{env="sandbox",kind="db"}} {ts}' in text
    assert "# TYPE ops_backup_fresh gauge" in text and text.endswith("\n")


def test_textfile_is_replaced_atomically_and_readable(tmp_path):
    path = tmp_path / "ops_backup.prom"
    path.write_text("old\n")
    check.write_textfile(path, "new 1\n")
    assert path.read_text() == "new 1\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["ops_backup.prom"]


def test_textfile_in_a_missing_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        check.write_textfile(tmp_path / "nope" / "x.prom", "x\n")


# -- prune, against moto in-process -----------------------------------------------------

@pytest.fixture
def bucket():
    env = load_environment("sandbox")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
        client.create_bucket(Bucket=env.s3.bucket)
        yield env, client


def put_backup(env, client, kind: str, started: datetime) -> str:
    backup_id = manifest.new_backup_id(kind, started)
    key = manifest.data_key(env, kind, backup_id, started, manifest.extension(kind))
    data = backup_id.encode()
    client.put_object(Bucket=env.s3.bucket, Key=key, Body=data)
    m = Manifest(id=backup_id, kind=kind, env=env.name, object_key=key, size=len(data),
                 sha256=hashlib.sha256(data).hexdigest(), started_at=started, finished_at=started + timedelta(minutes=1))
    client.put_object(Bucket=env.s3.bucket, Key=manifest.manifest_key(key), Body=m.to_json())
    return backup_id


def test_prune_deletes_the_manifest_before_the_data_and_keeps_the_policy_set(bucket):
    env, client = bucket  # sandbox policy: last 3, daily 7, weekly 4, monthly 6
    ids = [put_backup(env, client, "db", NOW - timedelta(days=d)) for d in range(0, 400, 10)]
    rec = RecordingS3(client)
    dry = check.prune(env, rec, now=NOW, dry_run=True)
    assert rec.deleted == []
    doomed = {d.entry.id for d in dry.decisions if not d.keep}
    assert ids[0] not in doomed and doomed
    report = check.prune(env, rec, now=NOW, dry_run=False)
    assert set(report.deleted) == doomed
    for i in range(0, len(rec.deleted), 2):
        assert rec.deleted[i].endswith(".manifest.json") and not rec.deleted[i + 1].endswith(".manifest.json")
        assert manifest.id_from_key(rec.deleted[i]) == manifest.id_from_key(rec.deleted[i + 1])
    left = {manifest.id_from_key(o["Key"]) for o in client.list_objects_v2(Bucket=env.s3.bucket)["Contents"]}
    assert left == set(ids) - doomed


def test_prune_never_deletes_the_newest_backup_of_each_kind(bucket):
    env, client = bucket
    old_db = put_backup(env, client, "db", NOW - timedelta(days=900))
    old_uploads = put_backup(env, client, "uploads", NOW - timedelta(days=800))
    report = check.prune(env, client, now=NOW, dry_run=False)
    assert report.deleted == []
    assert {d.entry.id for d in report.decisions if d.keep} == {old_db, old_uploads}


def test_prune_removes_orphans_only_when_older_than_a_day(bucket):
    env, client = bucket
    put_backup(env, client, "db", NOW)
    orphan = manifest.data_key(env, "db", manifest.new_backup_id("db", NOW), NOW, "dump")
    client.put_object(Bucket=env.s3.bucket, Key=orphan, Body=b"interrupted")
    assert check.prune(env, client, now=datetime.now(UTC), dry_run=False).deleted == []
    report = check.prune(env, client, now=datetime.now(UTC) + timedelta(days=2), dry_run=False)
    assert report.deleted == [orphan]
