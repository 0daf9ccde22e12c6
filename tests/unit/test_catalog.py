"""ops/backup/catalog.py: listing backups from a real (in-process) moto S3 server."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from ops.backup.catalog import BackupNotFound, find_at, get, list_backups, newest, paste_time
from ops.backup.manifest import Manifest, data_key, manifest_key
from ops.errors import OpsError


@pytest.fixture
def env_client(fresh_bucket):
    return fresh_bucket("catalog-test")


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def put_backup(env, client, kind: str, started: datetime, minutes: int = 5, *, suffix: str = "a1b2c3",
               manifest: bool = True, data: bytes | None = None, env_name: str | None = None,
               **fields) -> Manifest:
    """Data + manifest as a backup writes them; ``fields`` (verified=, extra=...) go into the manifest."""
    backup_id = f"{kind}-{started:%Y%m%dT%H%M%SZ}-{suffix}"
    key = data_key(env, kind, backup_id, started, "dump" if kind == "db" else "tar.gz")
    body = data if data is not None else f"data of {backup_id}".encode()
    client.put_object(Bucket=env.s3.bucket, Key=key, Body=body)
    m = Manifest(id=backup_id, kind=kind, env=env_name or env.name, object_key=key, size=len(body),
                 sha256=hashlib.sha256(body).hexdigest(), started_at=started,
                 finished_at=started + timedelta(minutes=minutes), **fields)
    if manifest:
        client.put_object(Bucket=env.s3.bucket, Key=manifest_key(key), Body=m.to_json())
    return m


@pytest.fixture
def populated(env_client):
    env, client = env_client
    made = {
        "db1": put_backup(env, client, "db", t("2026-11-22T03:00:00"), suffix="000001"),
        "db2": put_backup(env, client, "db", t("2026-11-23T03:00:00"), suffix="000002"),
        "db3": put_backup(env, client, "db", t("2026-11-24T03:00:00"), minutes=30, suffix="000003"),
        "up1": put_backup(env, client, "uploads", t("2026-11-23T04:00:00"), suffix="000004"),
        "up2": put_backup(env, client, "uploads", t("2026-11-24T04:00:00"), suffix="000005"),
    }
    # Interrupted backup: data, no manifest (newest of all, must never be chosen).
    made["orphan"] = put_backup(env, client, "db", t("2026-11-24T06:00:00"), suffix="dead00", manifest=False)
    bucket = env.s3.bucket
    # A manifest that does not parse.
    broken = put_backup(env, client, "db", t("2026-11-24T05:00:00"), suffix="bad000")
    client.put_object(Bucket=bucket, Key=manifest_key(broken.object_key), Body=b"{truncated")
    made["broken"] = broken
    # A manifest whose data object is gone.
    gone = put_backup(env, client, "db", t("2026-11-24T05:30:00"), suffix="90e000")
    client.delete_object(Bucket=bucket, Key=gone.object_key)
    made["gone"] = gone
    # A manifest copied from another environment.
    made["foreign"] = put_backup(env, client, "db", t("2026-11-21T03:00:00"), suffix="f0f0f0", env_name="prod")
    # Unrelated object under the prefix.
    client.put_object(Bucket=bucket, Key=f"{env.s3.prefix}backups/{env.name}/README.txt", Body=b"hi")
    return env, client, made


def test_lists_good_backups_newest_first_and_reports_what_it_left_out(populated):
    env, client, made = populated
    listing = list_backups(env, client)
    assert [e.id for e in listing] == [made[k].id for k in ("up2", "db3", "up1", "db2", "db1")]
    assert all(e.good for e in listing)
    first = listing[1]
    assert first.manifest == made["db3"] and first.data_key == made["db3"].object_key
    assert first.size == made["db3"].size and first.last_modified.tzinfo is not None
    assert first.manifest_key == manifest_key(first.data_key)
    # Only data with no manifest object at all is an orphan (prune may delete those);
    # data whose manifest is unreadable or foreign is not.
    assert [o.id for o in listing.orphans] == [made["orphan"].id]
    assert listing.orphans[0].manifest is None and listing.orphans[0].kind == "db"
    assert listing.orphans[0].started_at == t("2026-11-24T06:00:00")
    warnings = "\n".join(listing.warnings)
    assert f"manifest {manifest_key(made['broken'].object_key)}: not valid JSON" in warnings
    assert (f"manifest {manifest_key(made['gone'].object_key)}: its data object {made['gone'].object_key} "
            f"is missing — skipped") in warnings
    assert "belongs to environment prod, not sandbox — skipped" in warnings
    assert "README.txt: not a backup object" in warnings
    assert len(listing.warnings) == 4


def test_listing_one_kind(populated):
    env, client, made = populated
    assert [e.id for e in list_backups(env, client, kind="uploads")] == [made["up2"].id, made["up1"].id]
    listing = list_backups(env, client, kind="db")
    assert [e.kind for e in listing] == ["db"] * 3
    with pytest.raises(OpsError, match="unknown backup kind 'files'"):
        list_backups(env, client, kind="files")


def test_size_mismatch_is_warned_but_listed(env_client):
    env, client = env_client
    m = put_backup(env, client, "db", t("2026-11-24T03:00:00"))
    client.put_object(Bucket=env.s3.bucket, Key=m.object_key, Body=b"short")
    listing = list_backups(env, client)
    assert [e.id for e in listing] == [m.id]
    assert listing.warnings == [f"{m.id}: object is 5 bytes but the manifest says {m.size} (damaged?)"]


def test_empty_bucket_and_missing_bucket(env_client):
    env, client = env_client
    listing = list_backups(env, client)
    assert list(listing) == [] and listing.orphans == [] and listing.warnings == []
    missing = replace(env, s3=replace(env.s3, bucket="no-such-bucket-here"))
    with pytest.raises(OpsError) as info:
        list_backups(missing, client)
    assert "NoSuchBucket" in str(info.value) and "create bucket no-such-bucket-here" in str(info.value)
    assert "\n" not in str(info.value)


def test_find_at_picks_the_newest_whose_data_is_from_at_or_before(populated):
    env, client, made = populated
    entries = list_backups(env, client)
    # db3 started 03:00 and finished 03:30: its data is from 03:00 (its snapshot), so at 03:15 it is
    # the closest (db2 lacks a whole day), and at 02:59 it is not yet.
    assert find_at(entries, t("2026-11-24T03:15:00"), "db").id == made["db3"].id
    assert find_at(entries, t("2026-11-24T03:00:00"), "db").id == made["db3"].id  # data exactly at
    assert find_at(entries, t("2026-11-24T02:59:59"), "db").id == made["db2"].id
    assert find_at(entries, t("2026-11-30T00:00:00"), "db").id == made["db3"].id  # orphan/broken never chosen
    assert find_at(entries, t("2026-11-23T03:05:00"), "db").id == made["db2"].id
    assert find_at(entries, t("2026-11-23T12:00:00"), "uploads").id == made["up1"].id
    offset = datetime.fromisoformat("2026-11-23T05:05:00+01:00")  # 04:05Z
    assert find_at(entries, offset, "uploads").id == made["up1"].id


def test_find_at_prefers_the_recorded_snapshot_time_and_list_shows_a_time_that_pastes(env_client):
    env, client = env_client
    early = put_backup(env, client, "db", t("2026-11-24T03:00:00"), suffix="000001",
                       snapshot_at=t("2026-11-24T03:00:02.250000"))
    assert paste_time(list_backups(env, client)[0]) == "2026-11-24T03:00:03Z"  # rounded up, not down
    entries = list_backups(env, client)
    with pytest.raises(BackupNotFound):
        find_at(entries, t("2026-11-24T03:00:02"), "db")  # the snapshot is later than that
    assert find_at(entries, t("2026-11-24T03:00:03"), "db").id == early.id


def test_find_at_too_early_names_oldest_and_newest(populated):
    env, client, made = populated
    entries = list_backups(env, client)
    with pytest.raises(BackupNotFound) as info:
        find_at(entries, t("2026-11-22T02:59:59"), "db")
    message = str(info.value)
    assert "no db backup holds data from at or before 2026-11-22T02:59:59Z" in message
    assert f"oldest is {made['db1'].id} (data as of 2026-11-22T03:00:00Z)" in message
    assert f"newest is {made['db3'].id} (data as of 2026-11-24T03:00:00Z)" in message
    assert "pick a time at or after 2026-11-22T03:00:00Z" in message and "\n" not in message


def test_find_at_with_no_backups_of_that_kind(env_client):
    env, client = env_client
    put_backup(env, client, "db", t("2026-11-24T03:00:00"))
    with pytest.raises(BackupNotFound, match=r"no uploads backups found — take one with `inv backup.uploads"):
        find_at(list_backups(env, client), t("2026-11-25T00:00:00"), "uploads")
    with pytest.raises(BackupNotFound, match="no db backups found"):
        find_at([], t("2026-11-25T00:00:00"), "db")
    with pytest.raises(ValueError):
        find_at([], datetime(2026, 11, 25), "db")  # naive


def test_get_and_newest(populated):
    env, client, made = populated
    entries = list_backups(env, client)
    assert get(entries, made["db2"].id).manifest == made["db2"]
    assert newest(entries, "db").id == made["db3"].id and newest(entries, "uploads").id == made["up2"].id
    assert newest([], "db") is None
    with pytest.raises(BackupNotFound, match=f"no backup db-20260101T000000Z-000000 \\(newest is {made['db3'].id}\\)"):
        get(entries, "db-20260101T000000Z-000000")
    with pytest.raises(BackupNotFound, match="is incomplete"):
        get(entries, made["orphan"].id)
    with pytest.raises(BackupNotFound, match=f"no backup uploads-20260101T000000Z-000000 \\(newest is {made['up2'].id}"):
        get(entries, "uploads-20260101T000000Z-000000")
    with pytest.raises(BackupNotFound, match="there are no backups"):
        get([], "x")


def test_a_manifest_that_cannot_be_read_right_now_does_not_make_an_orphan(populated):
    env, client, made = populated

    class Flaky:
        def __getattr__(self, name):
            return getattr(client, name)

        def get_object(self, **kwargs):
            if kwargs["Key"] == manifest_key(made["db2"].object_key):
                raise ClientError({"Error": {"Code": "InternalError", "Message": "try again"}}, "GetObject")
            return client.get_object(**kwargs)

    listing = list_backups(env, Flaky())
    assert made["db2"].id not in [e.id for e in listing]
    assert [o.id for o in listing.orphans] == [made["orphan"].id]
    assert any(w.startswith(f"manifest {manifest_key(made['db2'].object_key)}: S3 read") and "InternalError" in w
               for w in listing.warnings)
    assert [s.data_keys for s in listing.skipped if s.id == made["db2"].id] == [(made["db2"].object_key,)]
