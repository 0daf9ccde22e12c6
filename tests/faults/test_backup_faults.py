"""Backups and restores under faults: SSH cut mid-stream, S3 down mid-upload, a corrupted
object, a malformed manifest, a bad --at. Nothing of a failed attempt is kept, nothing
that existed is lost, the live database is never touched by a refused restore.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import UTC, datetime, timedelta

from ops.backup.manifest import MANIFEST_SUFFIX
from ops.sandbox import services
from tests.faults import helpers as h

ACCEPTED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})")


def _manifest_of(out: h.Outcome) -> dict:
    data = json.loads(out.stdout)
    return data["data"] if isinstance(data, dict) and "ok" in data and "data" in data else data


def _databases(env) -> set[str]:
    with h.db_conn(env, "postgres") as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def test_ssh_cut_mid_backup_stream_keeps_nothing_and_loses_nothing(fleet, heal, marker_rows):
    env = fleet.env
    before = h.catalog_ids()
    with h.ballast(env):
        run = h.Running("backup.db", "--host", "sandbox")
        try:
            run.wait_for(r"pg_dump -Fc")
            h.stop_host("db1")
            out = run.finish()
        finally:
            run.kill()
            heal()
            h.run_inv("accessory.boot", "--host", "sandbox", "postgres", timeout=600)
        h.assert_one_clear_error(out, 1, "db1")
        assert re.search(r"ssh|connection|closed|unreachable|lost|reset|eof", out.output, re.I), str(out)
        assert h.catalog_ids() == before
        h.assert_rows_still_there(env, marker_rows)
    h.assert_lock_free_or_stale()
    h.assert_one_version()


def test_s3_down_mid_upload_writes_no_manifest_and_leaves_the_catalog_unchanged(fleet, marker_rows):
    env = fleet.env
    before = h.catalog_ids()
    # NOTE: the sandbox S3 endpoint keeps objects in memory: a stop loses them. The bucket is
    # copied first and put back once the endpoint answers again, so "unchanged" compares
    # what the catalog lists after the failed attempt with what it listed before it.
    objects = h.s3_snapshot(env)
    with h.ballast(env):
        run = h.Running("backup.db", "--host", "sandbox")
        try:
            run.wait_for(r"pg_dump -Fc")
            h.stop_service(env, "s3")
            out = run.finish()
        finally:
            run.kill()
            services.ensure(services.services(env)["s3"])
            h.s3_restore(env, objects)
    h.assert_one_clear_error(out, 1, "s3")
    assert "manifest" in out.output.lower() or "nothing" in out.output.lower(), str(out)
    assert h.catalog_ids() == before
    h.assert_lock_free()
    h.assert_rows_still_there(env, marker_rows)


def test_corrupted_backup_object_is_refused_before_the_restore_changes_anything(fleet, marker_rows):
    env = fleet.env
    out = h.run_inv("backup.db", "--host", "sandbox", "--json")
    assert out.code == 0, str(out)
    m = _manifest_of(out)
    client = services.s3_client(env)
    original = client.get_object(Bucket=env.s3.bucket, Key=m["object_key"])["Body"].read()
    flipped = bytearray(original)
    for i in range(len(flipped) // 2, min(len(flipped), len(flipped) // 2 + 16)):
        flipped[i] ^= 0xFF
    databases = _databases(env)
    time.sleep(1.1)
    at = (datetime.now(UTC) - timedelta(seconds=0)).strftime("%Y-%m-%dT%H:%M:%SZ")
    client.put_object(Bucket=env.s3.bucket, Key=m["object_key"], Body=bytes(flipped))
    try:
        restore = h.run_inv("restore", "--host", "sandbox", "--logical", "--at", at, "--yes", timeout=600)
    finally:
        client.put_object(Bucket=env.s3.bucket, Key=m["object_key"], Body=original)
    h.assert_one_clear_error(restore, 1, m["id"])
    assert re.search(r"sha-?256|checksum", restore.output, re.I), str(restore)
    assert "swap" not in restore.output.lower() or "nothing" in restore.output.lower(), str(restore)
    assert _databases(env) == databases, "the refused restore created or renamed a database"
    h.assert_rows_still_there(env, marker_rows)
    assert m["id"] in h.catalog_ids()
    h.assert_lock_free()
    h.assert_one_version()


def test_malformed_manifest_is_reported_by_list_check_and_prune_without_a_crash(fleet):
    env = fleet.env
    before = h.catalog_ids()
    client = services.s3_client(env)
    listed = client.list_objects_v2(Bucket=env.s3.bucket, Prefix=env.s3.prefix)
    real = next((o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith(MANIFEST_SUFFIX)), None)
    if real is None:
        assert h.run_inv("backup.db", "--host", "sandbox").code == 0
        listed = client.list_objects_v2(Bucket=env.s3.bucket, Prefix=env.s3.prefix)
        real = next(o["Key"] for o in listed["Contents"] if o["Key"].endswith(MANIFEST_SUFFIX))
        before = h.catalog_ids()
    doc = json.loads(client.get_object(Bucket=env.s3.bucket, Key=real)["Body"].read())
    bad_id = f"db-20200101T000000Z-{secrets.token_hex(3)}"
    bad_key = f"{real.rsplit('/', 1)[0]}/{bad_id}{MANIFEST_SUFFIX}"
    doc.update(id=bad_id, kind=[])
    client.put_object(Bucket=env.s3.bucket, Key=bad_key, Body=json.dumps(doc).encode())
    try:
        listing = h.run_inv("backup.list", "--host", "sandbox", "--json")
        check = h.run_inv("backup.check", "--host", "sandbox")
        prune = h.run_inv("backup.prune", "--host", "sandbox", "--dry-run")
    finally:
        client.delete_object(Bucket=env.s3.bucket, Key=bad_key)
    for out in (listing, check, prune):
        assert "Traceback" not in out.output, str(out)
        assert bad_id in out.output or bad_key in out.output, f"the malformed manifest is not named:\n{out}"
        assert "warning" in out.output.lower(), str(out)
    assert listing.code == 0, str(listing)
    envelope = json.loads(listing.stdout)
    assert envelope["ok"] is True and any(bad_id in w or bad_key in w for w in envelope["warnings"]), listing.stdout
    assert before <= {item["id"] for item in envelope["data"]}
    assert check.code in (0, 1), str(check)
    assert prune.code == 0, str(prune)
    assert h.catalog_ids() == before


def test_restore_with_a_bad_at_exits_2_with_one_line_showing_an_accepted_form(fleet):
    out = h.run_inv("restore", "--host", "sandbox", "--at", "yesterday")
    h.assert_one_clear_error(out, 2, "yesterday")
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert len(lines) == 1, str(out)
    assert ACCEPTED_AT.search(lines[0]), str(out)


def test_a_deploy_proceeds_while_a_backup_holds_its_lock_and_a_restore_is_refused(fleet, marker_rows):
    """The backup lock scope: an emergency deploy is never held up by a backup; a restore is."""
    from ops.lock import EnvironmentLock, Holder
    from ops.remote import Gateway

    env = fleet.env
    old = h.assert_one_version()
    new = fleet.other(old)
    databases = _databases(env)
    with Gateway(env) as gw, EnvironmentLock(gw, list(env.hosts.values()),
                                             Holder("backup.db", "db-held-by-the-fault-test", scope="backup")):
        status = h.lock_status()
        assert "backup.db db-held-by-the-fault-test" in status.stdout, str(status)
        deploy = h.run_inv("deploy", "--host", "sandbox", "--version", new, timeout=600)
        assert deploy.code == 0, str(deploy)
        h.assert_one_version({new})
        restore = h.run_inv("restore", "--host", "sandbox", "--logical", "--at", "now", "--yes", timeout=300)
        h.assert_one_clear_error(restore, 1, "a backup is running", "db-held-by-the-fault-test")
        assert _databases(env) == databases, "the refused restore created or renamed a database"
        h.assert_rows_still_there(env, marker_rows)
    h.assert_lock_free()
    assert "db-held-by-the-fault-test" not in h.lock_status().stdout  # the backup lock is free again
