"""One malformed manifest in the bucket: every consumer warns, names its key and field, and goes on.

Against the in-process moto S3 server (tests/unit/conftest.py). Each case stores two good
db backups and, NEWER than both, a backup whose manifest is broken in one way.
"""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest

from ops.backup import check, verify
from ops.backup.catalog import BackupNotFound, find_at, get, list_backups, newest
from ops.backup.manifest import manifest_key
from ops.backup.retention import Policy
from tests.unit.test_catalog import put_backup, t


def with_field(name, value):
    def change(doc: dict) -> bytes:
        doc[name] = value
        return json.dumps(doc).encode()
    return change


def without(name):
    def change(doc: dict) -> bytes:
        del doc[name]
        return json.dumps(doc).encode()
    return change


# (how the manifest is broken, what the warning says about it)
BROKEN = {
    "kind is a list": (with_field("kind", []), "field 'kind' is a list, expected one of db, uploads"),
    "finished_at is a number": (with_field("finished_at", 5), "field 'finished_at' is a number (5), expected an ISO"),
    "size is a string": (with_field("size", "x"), "field 'size' is the string 'x', expected a non-negative integer"),
    "id is missing": (without("id"), "missing id"),
    "id is a number": (with_field("id", 7), "field 'id' is a number (7), expected a backup id"),
    "verified is a list": (with_field("verified", []), "field 'verified' is a list"),
    "table_counts is a string": (with_field("table_counts", "3"), "field 'table_counts' is the string '3'"),
    "not JSON": (lambda doc: b"{\"id\": ", "not valid JSON"),
    "a JSON list": (lambda doc: json.dumps([doc]).encode(), "not a JSON object (it is a list)"),
    "JSON null": (lambda doc: b"null", "not a JSON object (it is null)"),
}


@pytest.fixture(params=sorted(BROKEN))
def bucket_with_a_bad_manifest(request, fresh_bucket):
    env, client = fresh_bucket("bad-manifest")
    good = [put_backup(env, client, "db", t(f"2026-11-{day}T03:00:00"), suffix=f"00000{day[-1]}")
            for day in ("22", "23")]
    bad = put_backup(env, client, "db", t("2026-11-24T03:00:00"), suffix="bad000")
    break_it, problem = BROKEN[request.param]
    body = break_it(json.loads(bad.to_json()))
    client.put_object(Bucket=env.s3.bucket, Key=manifest_key(bad.object_key), Body=body)
    return env, client, good, bad, problem


def test_listing_skips_the_bad_manifest_with_a_warning_naming_its_key_and_field(bucket_with_a_bad_manifest):
    env, client, good, bad, problem = bucket_with_a_bad_manifest
    listing = list_backups(env, client)
    assert [e.id for e in listing] == [good[1].id, good[0].id]
    [warning] = listing.warnings
    assert warning.startswith(f"manifest {manifest_key(bad.object_key)}: {problem}")
    assert warning.endswith(" — skipped") and "\n" not in warning


def test_the_data_of_a_skipped_manifest_is_kept_and_never_called_an_orphan(bucket_with_a_bad_manifest):
    env, client, _good, bad, _problem = bucket_with_a_bad_manifest
    listing = list_backups(env, client)
    assert listing.orphans == []
    [skipped] = listing.skipped
    assert skipped.id == bad.id and skipped.data_keys == (bad.object_key,)


def test_find_at_newest_and_get_choose_among_the_valid_backups_only(bucket_with_a_bad_manifest):
    env, client, good, bad, _problem = bucket_with_a_bad_manifest
    listing = list_backups(env, client)
    assert find_at(listing, t("2026-11-30T00:00:00"), "db").id == good[1].id
    assert newest(listing, "db").id == good[1].id
    assert get(listing, good[0].id).manifest == good[0]
    with pytest.raises(BackupNotFound, match=f"backup {bad.id} cannot be used: its manifest "):
        get(listing, bad.id)


def test_check_measures_freshness_from_the_newest_valid_backup(bucket_with_a_bad_manifest):
    env, client, good, _bad, _problem = bucket_with_a_bad_manifest
    [db, uploads] = check.check(list_backups(env, client), now=t("2026-11-23T04:00:00"), max_age=timedelta(hours=26))
    assert db.newest.id == good[1].id and db.ok and db.count == 2
    assert uploads.newest is None and not uploads.ok


def test_prune_keeps_the_data_of_a_skipped_manifest_and_says_so(bucket_with_a_bad_manifest):
    env, client, good, bad, _problem = bucket_with_a_bad_manifest
    plan = check.plan_prune(env, client, now=t("2027-06-01T00:00:00"), policy=Policy(1, 0, 0, 0))
    assert [d.label for d in plan.doomed] == [good[0].id]
    assert any(w.startswith(f"kept {bad.object_key}: its manifest") for w in plan.warnings)
    assert any(line.startswith(f"keep  {bad.object_key}  its manifest could not be used") for line in plan.lines())
    report = check.apply_prune(env, client, plan)
    assert report.deleted == [good[0].id]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=env.s3.bucket)["Contents"]}
    assert {bad.object_key, manifest_key(bad.object_key)} <= keys


def test_verify_drills_the_newest_valid_backup_and_warns_about_the_skipped_one(bucket_with_a_bad_manifest):
    env, client, good, bad, _problem = bucket_with_a_bad_manifest
    said: list[str] = []
    ctx = SimpleNamespace(env=env, client=client, say=said.append)
    assert verify.choose(ctx, None).id == good[1].id
    assert verify.choose(ctx, good[0].id).id == good[0].id
    assert any(line.startswith(f"warning: manifest {manifest_key(bad.object_key)}: ") for line in said)
    with pytest.raises(BackupNotFound, match="cannot be used"):
        verify.choose(ctx, bad.id)


def test_a_manifest_of_another_kind_than_its_key_is_skipped_not_a_crash(fresh_bucket):
    env, client = fresh_bucket("bad-manifest")
    ok = put_backup(env, client, "uploads", t("2026-11-24T03:00:00"))
    bad = put_backup(env, client, "db", t("2026-11-24T04:00:00"), suffix="bad000")
    doc = json.loads(bad.to_json())
    doc["kind"] = "uploads"
    client.put_object(Bucket=env.s3.bucket, Key=manifest_key(bad.object_key), Body=json.dumps(doc).encode())
    listing = list_backups(env, client)
    assert [e.id for e in listing] == [ok.id]
    assert listing.warnings == [f"manifest {manifest_key(bad.object_key)}: id is of kind db but kind is uploads "
                                "— skipped"]
