"""ops/backup/manifest.py: ids, object keys, manifest JSON."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

import ops
from ops.backup.manifest import (
    FIELD_TYPES,
    SAFETY_REASON,
    Manifest,
    ManifestError,
    backups_prefix,
    data_key,
    extension,
    id_from_key,
    manifest_key,
    new_backup_id,
    parse_backup_id,
)
from ops.inventory import load_environment

STARTED = datetime(2026, 11, 24, 3, 0, 0, tzinfo=UTC)
FINISHED = datetime(2026, 11, 24, 3, 4, 30, 500000, tzinfo=UTC)
SHA = hashlib.sha256(b"dump").hexdigest()


@pytest.fixture(scope="module")
def env():
    return load_environment("sandbox")  # s3.prefix "athlete-platform/"


def db_manifest(**changes) -> Manifest:
    key = "athlete-platform/backups/sandbox/db/2026/11/24/db-20261124T030000Z-a1b2c3.dump"
    fields = dict(id="db-20261124T030000Z-a1b2c3", kind="db", env="sandbox", object_key=key, size=1234,
                  sha256=SHA, started_at=STARTED, finished_at=FINISHED, database="app",
                  server_version="15.8", newest_migration="20261101000000_init", app_release="abc123",
                  table_counts={"public.users": 3, "public._prisma_migrations": 1},
                  table_checksums={"public.users": "0123abcd"})
    fields.update(changes)
    return Manifest(**fields)


def test_backup_ids_carry_kind_and_utc_start_and_do_not_collide():
    started = datetime(2026, 11, 24, 4, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    ids = {new_backup_id("db", started) for _ in range(50)}
    assert len(ids) == 50
    for backup_id in ids:
        assert re.fullmatch(r"db-20261124T030000Z-[0-9a-f]{6}", backup_id)
        assert parse_backup_id(backup_id) == ("db", STARTED)
    assert new_backup_id("uploads", STARTED).startswith("uploads-20261124T030000Z-")
    with pytest.raises(ValueError):
        new_backup_id("files", STARTED)
    with pytest.raises(ValueError):
        new_backup_id("db", datetime(2026, 11, 24, 3))  # naive
    for bad in ("db-20261124T030000Z", "db-20261124T030000-a1b2c3", "logs-20261124T030000Z-a1b2c3", ""):
        with pytest.raises(ValueError):
            parse_backup_id(bad)


def test_data_and_manifest_keys_follow_the_layout(env):
    started = datetime(2026, 11, 24, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # 2026-11-23 22:30Z
    key = data_key(env, "db", "db-20261123T223000Z-a1b2c3", started, "dump")
    assert key == "athlete-platform/backups/sandbox/db/2026/11/23/db-20261123T223000Z-a1b2c3.dump"
    assert manifest_key(key) == "athlete-platform/backups/sandbox/db/2026/11/23/db-20261123T223000Z-a1b2c3.manifest.json"
    enc = data_key(env, "uploads", "uploads-20261124T030000Z-00ff00", STARTED, extension("uploads", encrypted=True))
    assert enc.endswith("/uploads/2026/11/24/uploads-20261124T030000Z-00ff00.tar.gz.enc")
    assert manifest_key(enc).endswith("/uploads-20261124T030000Z-00ff00.manifest.json")
    assert id_from_key(enc) == id_from_key(manifest_key(enc)) == "uploads-20261124T030000Z-00ff00"
    assert id_from_key("athlete-platform/backups/sandbox/db/README") is None
    assert backups_prefix(env) == "athlete-platform/backups/sandbox/"
    assert backups_prefix(env, "db") == "athlete-platform/backups/sandbox/db/"
    assert extension("db") == "dump" and extension("db", encrypted=True) == "dump.enc"
    with pytest.raises(ValueError):
        data_key(env, "uploads", "db-20261124T030000Z-a1b2c3", STARTED, "dump")  # id of another kind
    with pytest.raises(ValueError):
        manifest_key(manifest_key(key))


def test_manifest_round_trips_through_json_with_z_timestamps():
    m = db_manifest(encryption={"scheme": "aes-256-gcm-chunked+scrypt/v1", "chunk_size": 1048576})
    m.mark_verified(True, "7 tables, counts match", datetime(2026, 11, 25, 1, tzinfo=UTC))
    raw = m.to_json()
    data = json.loads(raw)
    assert data["started_at"] == "2026-11-24T03:00:00Z"
    assert data["finished_at"] == "2026-11-24T03:04:30.500000Z"
    assert data["verified"] == {"at": "2026-11-25T01:00:00Z", "ok": True, "detail": "7 tables, counts match"}
    assert data["tool_version"] == ops.__version__ and data["format"] == 1
    back = Manifest.from_json(raw)
    assert back == m
    assert back.started_at.tzinfo is UTC and back.encrypted


def test_uploads_manifest_and_iso_strings_in_constructor():
    m = Manifest(id="uploads-20261124T030000Z-a1b2c3", kind="uploads", env="sandbox",
                 object_key="p/backups/sandbox/uploads/2026/11/24/uploads-20261124T030000Z-a1b2c3.tar.gz",
                 size=10, sha256=SHA, started_at="2026-11-24T04:00:00+01:00", finished_at="2026-11-24T03:01:00Z",
                 file_count=3, source_bytes=30)
    assert m.started_at == STARTED and not m.encrypted
    assert Manifest.from_json(m.to_json()) == m


def test_unknown_keys_from_a_newer_tool_are_kept():
    data = json.loads(db_manifest().to_json())
    data["compression"] = "zstd"
    m = Manifest.from_json(json.dumps(data))
    assert m.extra == {"compression": "zstd"}
    assert json.loads(m.to_json())["compression"] == "zstd"


@pytest.mark.parametrize(("change", "message"), [
    ({"sha256": "abc"}, "field 'sha256' is the string 'abc', expected 64 lowercase hex digits"),
    ({"size": -1}, "field 'size' is a number (-1), expected a non-negative integer"),
    ({"size": "12"}, "field 'size' is the string '12', expected a non-negative integer"),
    ({"kind": "uploads"}, "id is of kind db but kind is uploads"),
    ({"kind": "files"}, "field 'kind' is the string 'files', expected one of db, uploads"),
    ({"kind": []}, "field 'kind' is a list, expected one of db, uploads"),
    ({"id": 5}, "field 'id' is a number (5), expected a backup id"),
    ({"finished_at": 5}, "field 'finished_at' is a number (5), expected an ISO 8601 time"),
    ({"database": ["app"]}, "field 'database' is a list, expected null or a string"),
    ({"object_key": "p/backups/sandbox/db/2026/11/24/db-20261124T030000Z-ffffff.dump"}, "does not name this backup"),
    ({"finished_at": "2026-11-24T02:00:00Z"}, "is before started_at"),
    ({"encryption": {"chunk": 1}}, "field 'encryption' is an object, expected null or an object with a 'scheme'"),
    ({"table_counts": {"public.users": "3"}}, "field 'table_counts' is an object, expected an object mapping"),
    ({"verified": {"ok": "yes"}}, "field 'verified' is an object, expected null or an object {at"),
    ({"verified": {"ok": True, "at": 5}}, "field 'verified' is an object, expected null or an object {at"),
    ({"format": "1"}, "field 'format' is the string '1', expected an integer"),
])
def test_invalid_manifests_name_the_field(change, message):
    data = json.loads(db_manifest().to_json())
    data.update(change)
    with pytest.raises(ManifestError) as info:
        Manifest.from_json(json.dumps(data), source="some/key.manifest.json")
    assert message in str(info.value)
    assert str(info.value).startswith("some/key.manifest.json: ")
    assert "\n" not in str(info.value)


def test_unreadable_manifests_are_clear_errors():
    with pytest.raises(ManifestError, match="k: not valid JSON"):
        Manifest.from_json(b"{not json", source="k")
    with pytest.raises(ManifestError, match=r"k: not a JSON object \(it is a list\)"):
        Manifest.from_json(b"[]", source="k")
    data = json.loads(db_manifest().to_json())
    del data["sha256"], data["finished_at"]
    with pytest.raises(ManifestError, match="k: missing sha256, finished_at"):
        Manifest.from_json(json.dumps(data), source="k")
    data = json.loads(db_manifest().to_json())
    data["format"] = 2
    with pytest.raises(ManifestError, match="newer than this tool understands"):
        Manifest.from_json(json.dumps(data), source="k")
    data = json.loads(db_manifest().to_json())
    data["started_at"] = "2026-11-24T03:00:00"
    with pytest.raises(ManifestError, match="k: field 'started_at' is the string '2026-11-24T03:00:00', expected an ISO 8601 time with Z or an offset"):
        Manifest.from_json(json.dumps(data), source="k")


def test_naive_datetimes_are_refused_and_bad_manifests_are_not_written():
    with pytest.raises(ManifestError, match="naive"):
        db_manifest(started_at=datetime(2026, 11, 24, 3))
    with pytest.raises(ManifestError, match="sha256"):
        db_manifest(sha256="nothex").to_json()


# -- field types: one odd manifest is a ManifestError naming the field, never a TypeError ---------------

ODD_VALUES = [[], {}, 5, -1, 1.5, "x", "", True, None, {"ok": True}, ["db"]]


def test_every_manifest_field_has_a_declared_type():
    assert set(FIELD_TYPES) == {f.name for f in dataclasses.fields(Manifest)} - {"extra"}


@pytest.mark.parametrize("name", sorted(FIELD_TYPES))
def test_an_odd_json_value_in_any_field_is_a_manifest_error_never_a_crash(name):
    for value in ODD_VALUES:
        data = json.loads(db_manifest().to_json())
        data[name] = value
        try:
            Manifest.from_json(json.dumps(data), source="db/2026/k.manifest.json")
        except ManifestError as exc:
            assert str(exc).startswith("db/2026/k.manifest.json: ") and "\n" not in str(exc)
            assert name in exc.problem


@pytest.mark.parametrize("document", [b"[]", b"5", b'"db"', b"null", b"\xff\xfe", b"", b'{"id": null}'])
def test_a_manifest_that_is_not_a_json_object_is_a_manifest_error(document):
    with pytest.raises(ManifestError) as info:
        Manifest.from_json(document, source="k")
    assert str(info.value).startswith("k: ")


def test_the_error_names_the_field_its_odd_value_and_what_was_expected():
    data = json.loads(db_manifest().to_json())
    data["kind"] = []
    with pytest.raises(ManifestError) as info:
        Manifest.from_json(json.dumps(data), source="db/2026/k.manifest.json")
    assert info.value.problem == "field 'kind' is a list, expected one of db, uploads"
    assert info.value.source == "db/2026/k.manifest.json"


def test_a_manifest_built_in_python_with_a_wrong_type_is_never_written():
    with pytest.raises(ManifestError, match="field 'kind' is a list"):
        db_manifest(kind=[]).to_json()
    with pytest.raises(ManifestError, match="field 'table_counts' is a list"):
        db_manifest(table_counts=[]).to_json()


def test_a_stored_null_in_a_field_with_a_default_means_absent():
    data = json.loads(db_manifest().to_json())
    data.update(tool_version=None, table_counts=None, table_checksums=None)
    m = Manifest.from_json(json.dumps(data))
    assert m.tool_version == ops.__version__ and m.table_counts == {} and m.table_checksums == {}


def test_verification_and_safety_flags_read_the_manifest():
    m = db_manifest()
    assert not m.verification_failed and not m.verified_ok and not m.is_safety
    m.mark_verified(False, "sha256 mismatch", STARTED)
    assert m.verification_failed and not m.verified_ok
    m.mark_verified(True, "ok", STARTED)
    assert m.verified_ok and not m.verification_failed
    assert db_manifest(extra={"reason": SAFETY_REASON}).is_safety


def test_the_restore_marks_its_safety_backups_with_the_reason_retention_looks_for():
    from ops import restore

    assert restore.SAFETY_REASON == SAFETY_REASON
