"""ops/backup/check.py: prune is planned once, shown, then exactly that plan is applied.

Against the in-process moto S3 server (tests/unit/conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ops.backup import check, retention
from ops.backup.manifest import backups_prefix, data_key, manifest_key, new_backup_id
from ops.backup.retention import Policy
from ops.errors import ConfigError
from tests.support.fakes import RecordingS3
from tests.unit.test_catalog import put_backup

# moto stamps objects with the real clock: plan "two days from now" so orphans and uploads are old.
LATER = datetime.now(UTC) + timedelta(days=2)
LAST_1 = Policy(keep_last=1, daily=0, weekly=0, monthly=0)


def days_ago(n: float) -> datetime:
    return (datetime.now(UTC) - timedelta(days=n)).replace(microsecond=0)


@pytest.fixture
def bucket(fresh_bucket):
    env, client = fresh_bucket("prune")
    return env, RecordingS3(client)


def keys(env, client) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=env.s3.bucket).get("Contents", [])}


def put_orphan(env, client, started: datetime) -> str:
    key = data_key(env, "db", new_backup_id("db", started), started, "dump")
    client.put_object(Bucket=env.s3.bucket, Key=key, Body=b"interrupted")
    return key


def test_planning_deletes_nothing_and_apply_deletes_exactly_the_plan_manifest_first(bucket):
    env, client = bucket
    made = [put_backup(env, client, "db", days_ago(d), suffix=f"00000{d}") for d in (1, 2, 3)]
    orphan = put_orphan(env, client, days_ago(4))
    plan = check.plan_prune(env, client, now=LATER, policy=LAST_1)
    assert client.deleted == []
    assert [d.label for d in plan.doomed] == [made[1].id, made[2].id, orphan]
    report = check.apply_prune(env, client, plan)
    assert report.deleted == [made[1].id, made[2].id, orphan] and report.skipped == []
    assert client.deleted == [manifest_key(made[1].object_key), made[1].object_key,
                              manifest_key(made[2].object_key), made[2].object_key, orphan]
    assert keys(env, client) == {made[0].object_key, manifest_key(made[0].object_key)}


def test_apply_deletes_what_was_planned_not_what_a_new_plan_would_say(bucket):
    env, client = bucket
    old, kept = (put_backup(env, client, "db", days_ago(d), suffix=f"00000{d}") for d in (2, 1))
    plan = check.plan_prune(env, client, now=LATER, policy=LAST_1)
    newer = put_backup(env, client, "db", days_ago(0.5), suffix="000009")  # would doom `kept` if re-planned
    report = check.apply_prune(env, client, plan)
    assert report.deleted == [old.id]
    assert {kept.object_key, newer.object_key} <= keys(env, client)


def test_a_backup_whose_manifest_changed_since_the_plan_is_left_alone(bucket):
    env, client = bucket
    old = put_backup(env, client, "db", days_ago(2), suffix="000002")
    put_backup(env, client, "db", days_ago(1), suffix="000001")
    plan = check.plan_prune(env, client, now=LATER, policy=LAST_1)
    old.mark_verified(True, "drill passed meanwhile", datetime.now(UTC))
    client.put_object(Bucket=env.s3.bucket, Key=manifest_key(old.object_key), Body=old.to_json())
    report = check.apply_prune(env, client, plan)
    assert report.deleted == [] and report.skipped == [old.id]
    assert f"not deleted {old.id}: its manifest changed since the plan" in report.warnings
    assert client.deleted == []


def test_a_backup_whose_manifest_vanished_since_the_plan_is_left_alone(bucket):
    env, client = bucket
    old = put_backup(env, client, "db", days_ago(2), suffix="000002")
    put_backup(env, client, "db", days_ago(1), suffix="000001")
    plan = check.plan_prune(env, client, now=LATER, policy=LAST_1)
    client.inner.delete_object(Bucket=env.s3.bucket, Key=manifest_key(old.object_key))
    report = check.apply_prune(env, client, plan)
    assert report.deleted == [] and f"not deleted {old.id}: its manifest vanished since the plan" in report.warnings
    assert old.object_key in keys(env, client)


def test_an_orphan_that_got_its_manifest_since_the_plan_is_left_alone(bucket):
    env, client = bucket
    put_backup(env, client, "db", days_ago(1))
    late = put_backup(env, client, "db", days_ago(3), suffix="1a7e00", manifest=False)
    plan = check.plan_prune(env, client, now=LATER, policy=LAST_1)
    assert [d.label for d in plan.doomed] == [late.object_key]
    client.put_object(Bucket=env.s3.bucket, Key=manifest_key(late.object_key), Body=late.to_json())
    report = check.apply_prune(env, client, plan)
    assert report.deleted == [] and f"not deleted {late.object_key}: it has a manifest now" in report.warnings


def test_apply_never_deletes_what_became_the_newest_good_backup_since_the_plan(bucket):
    env, client = bucket
    old = put_backup(env, client, "db", days_ago(2), suffix="000002")
    newest = put_backup(env, client, "db", days_ago(1), suffix="000001")
    plan = check.plan_prune(env, client, now=LATER, policy=LAST_1)
    for key in (manifest_key(newest.object_key), newest.object_key):  # someone else removed it meanwhile
        client.inner.delete_object(Bucket=env.s3.bucket, Key=key)
    report = check.apply_prune(env, client, plan)
    assert report.deleted == [] and f"not deleted {old.id}: it is now the newest db backup" in report.warnings


def test_stale_multipart_uploads_are_planned_then_aborted_by_apply(bucket):
    env, client = bucket
    key = f"{backups_prefix(env, 'db')}2026/11/24/db-20261124T030000Z-abcdef.dump"
    client.create_multipart_upload(Bucket=env.s3.bucket, Key=key)
    # NOTE: moto reports every upload as initiated on 2010-11-10: "a day after that" is not yet stale.
    young = check.plan_prune(env, client, now=datetime(2010, 11, 10, 23, tzinfo=UTC), policy=LAST_1)
    assert young.stale_uploads == []
    plan = check.plan_prune(env, client, now=LATER, policy=LAST_1)
    assert [u.key for u in plan.stale_uploads] == [key]
    assert client.list_multipart_uploads(Bucket=env.s3.bucket).get("Uploads")  # planning aborts nothing
    report = check.apply_prune(env, client, plan)
    assert report.stale_uploads == [key] and not client.list_multipart_uploads(Bucket=env.s3.bucket).get("Uploads")


def test_plan_lines_show_every_decision_with_its_reason_and_a_summary(bucket):
    env, client = bucket
    kept, old = (put_backup(env, client, "db", days_ago(d), suffix=f"00000{d}") for d in (1, 2))
    failed = put_backup(env, client, "db", days_ago(3), suffix="000003", verified={
        "at": "2026-01-01T00:00:00Z", "ok": False, "detail": "sha256 mismatch"})
    orphan = put_orphan(env, client, days_ago(4))
    lines = check.plan_prune(env, client, now=LATER, policy=LAST_1).lines()
    assert lines[0].startswith(f"keep  {kept.id}  finished ") and lines[0].endswith("newest, last 1")
    assert lines[1].startswith(f"DELETE  {old.id}") and "older than the policy keeps" in lines[1]
    assert lines[2].startswith(f"DELETE  {failed.id}") and lines[2].endswith("verification failed")
    assert lines[3].startswith(f"DELETE  {orphan}  (no manifest, uploaded ")
    assert lines[-1] == ("delete 2 of 3 backup(s) and 1 orphan(s), abort 0 stale upload(s) "
                         "(policy: last 1, daily 0, weekly 0, monthly 0)")


def test_a_plan_that_would_delete_the_newest_good_backup_is_refused(bucket, monkeypatch):
    env, client = bucket
    only = put_backup(env, client, "db", days_ago(1))

    def delete_everything(entries, now, policy):
        return [retention.Decision(e, False, ["bug"]) for e in entries]

    monkeypatch.setattr(retention, "plan", delete_everything)
    with pytest.raises(ConfigError, match=f"would delete the newest db backup {only.id}; refusing"):
        check.plan_prune(env, client, now=LATER, policy=LAST_1)


def test_the_old_prune_call_still_plans_then_applies(bucket):
    env, client = bucket  # sandbox policy: last 3, daily 7, weekly 4, monthly 6
    for d in range(1, 30):
        put_backup(env, client, "db", days_ago(d), suffix=f"{d:06d}")
    dry = check.prune(env, client, now=LATER, dry_run=True)
    doomed = {d.entry.id for d in dry.decisions if not d.keep}
    assert client.deleted == [] and doomed
    assert set(check.prune(env, client, now=LATER, dry_run=False).deleted) == doomed
