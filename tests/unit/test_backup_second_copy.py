"""ops/backup/second_copy.py: the second copy of logical and uploads backups (``s3.copy``), against the
in-process moto S3 server (tests/unit/conftest.py): replicate (server-side and streamed), where each
backup exists, catching up, and restore/verify reading the copy when the primary lost a backup."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ConnectionClosedError

from ops.backup import authenticity, check, second_copy, stream_upload, verify
from ops.backup.catalog import BackupNotFound, list_backups
from ops.backup.context import BackupContext
from ops.backup.manifest import manifest_key
from ops.restore import plan as restore_plan
from ops.restore.errors import RestoreRefused
from tests.unit.test_catalog import put_backup

PASSPHRASE = "correct-horse-battery-staple-second-copy"


def days_ago(n: float) -> datetime:
    return (datetime.now(UTC) - timedelta(days=n)).replace(microsecond=0)


@pytest.fixture
def pair(fresh_bucket, s3_endpoint, tmp_path):
    """(ctx, client of the primary, client of the copy): two buckets, authenticated manifests."""
    env, client = fresh_bucket("primary")
    copy_env, copy_client = fresh_bucket("copy")
    ops_env = tmp_path / "ops.env"
    ops_env.write_text(f"BACKUP_PASSPHRASE={PASSPHRASE}\n")
    os.chmod(ops_env, 0o600)
    env = replace(env, ops_env_file=ops_env, backup=replace(env.backup, encryption_key_var="BACKUP_PASSPHRASE"),
                  s3=replace(env.s3, copy=replace(copy_env.s3, prefix=env.s3.prefix)))
    return BackupContext(env), client, copy_client


def signed_backup(ctx: BackupContext, client, started: datetime, *, suffix: str, kind: str = "db"):
    """A backup in the primary whose manifest is authenticated and says it is encrypted, as ours are."""
    m = put_backup(ctx.env, client, kind, started, suffix=suffix, encryption={"scheme": "test"})
    authenticity.sign(m, ctx.manifest_key())
    client.put_object(Bucket=ctx.bucket, Key=manifest_key(m.object_key), Body=m.to_json())
    return m


def stored(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_a_backup_is_copied_server_side_with_the_same_manifest_bytes(pair):
    ctx, client, copy_client = pair
    m = signed_backup(ctx, client, days_ago(1), suffix="000001")
    done = second_copy.replicate(ctx, m)
    copy_bucket = ctx.env.s3.copy.bucket
    assert done.how == "server-side copy" and done.bucket == copy_bucket
    assert stored(copy_client, copy_bucket, m.object_key) == stored(client, ctx.bucket, m.object_key)
    assert stored(copy_client, copy_bucket, manifest_key(m.object_key)) == \
        stored(client, ctx.bucket, manifest_key(m.object_key))
    located = second_copy.locate(list_backups(ctx.env, client), list_backups(ctx.copy_context().env, copy_client),
                                 ctx.manifest_key())
    assert [(loc.id, loc.where) for loc in located] == [(m.id, "both")]


def test_another_endpoint_gets_a_streamed_copy_checked_against_the_manifest_sha256(pair, s3_endpoint):
    ctx, client, copy_client = pair
    # The same server under another name: a different endpoint for the tool, so no server-side copy.
    other = s3_endpoint.replace("127.0.0.1", "localhost")
    ctx = BackupContext(replace(ctx.env, s3=replace(ctx.env.s3, copy=replace(ctx.env.s3.copy, endpoint_url=other))))
    assert not second_copy.server_side(ctx)
    m = signed_backup(ctx, client, days_ago(1), suffix="000002")
    done = second_copy.replicate(ctx, m)
    assert done.how == "streamed"
    assert stored(copy_client, ctx.env.s3.copy.bucket, m.object_key) == stored(client, ctx.bucket, m.object_key)


def test_a_primary_object_that_is_not_the_manifests_is_not_copied(pair, s3_endpoint):
    ctx, client, copy_client = pair
    other = s3_endpoint.replace("127.0.0.1", "localhost")
    ctx = BackupContext(replace(ctx.env, s3=replace(ctx.env.s3, copy=replace(ctx.env.s3.copy, endpoint_url=other))))
    m = signed_backup(ctx, client, days_ago(1), suffix="000003")
    client.put_object(Bucket=ctx.bucket, Key=m.object_key, Body=b"x" * m.size)  # same size, other bytes
    with pytest.raises(second_copy.CopyFailed, match="are not the manifest's"):
        second_copy.replicate(ctx, m)
    assert copy_client.list_objects_v2(Bucket=ctx.env.s3.copy.bucket).get("KeyCount", 0) == 0


def test_a_copy_that_fails_is_a_warning_and_the_primary_backup_stays(pair):
    ctx, client, copy_client = pair
    m = signed_backup(ctx, client, days_ago(1), suffix="000004")
    ctx = BackupContext(replace(ctx.env, s3=replace(ctx.env.s3, copy=replace(ctx.env.s3.copy,
                                                                             bucket="no-such-bucket-here"))))
    assert second_copy.replicate_or_warn(ctx, m) is None
    assert len(ctx.warnings) == 1
    assert "second copy of " + m.id in ctx.warnings[0] and "NoSuchBucket" in ctx.warnings[0]
    assert "inv backup.copy --host sandbox" in ctx.warnings[0]
    assert [e.id for e in list_backups(ctx.env, client)] == [m.id]


def test_locate_and_check_name_every_divergence_and_the_metric_counts_them(pair):
    ctx, client, copy_client = pair
    both, lost, only_copy, differs, forged = (signed_backup(ctx, client, days_ago(d), suffix=f"00001{d}")
                                              for d in (1, 2, 3, 4, 5))
    for m in (both, lost, only_copy, differs, forged):
        second_copy.replicate(ctx, m)
    cc = ctx.copy_context()
    client.delete_object(Bucket=ctx.bucket, Key=manifest_key(only_copy.object_key))
    copy_client.delete_object(Bucket=cc.bucket, Key=manifest_key(lost.object_key))
    copy_client.put_object(Bucket=cc.bucket, Key=differs.object_key, Body=b"z" * (differs.size + 1))
    tampered = replace(forged, table_counts={"public.users": 1})  # changed without the key: its MAC fails
    copy_client.put_object(Bucket=cc.bucket, Key=manifest_key(forged.object_key), Body=tampered.to_json())

    located = second_copy.locate(list_backups(ctx.env, client), list_backups(cc.env, copy_client),
                                 ctx.manifest_key())
    assert {loc.id: loc.where for loc in located} == {
        both.id: "both", lost.id: "primary only", only_copy.id: "copy only", differs.id: "DIFFERS",
        forged.id: "DIFFERS"}
    result = check.copy_check(located, reachable=True)
    assert not result.ok and result.per_kind == {"db": 4, "uploads": 0}
    assert f"db backup {lost.id} missing from the copy" in result.problems
    assert f"db backup {only_copy.id} missing from the primary" in result.problems
    assert any(f"{forged.id} differs" in p and "copy FORGED" in p for p in result.problems)
    text = check.copy_prometheus_text("sandbox", result)
    assert 'ops_backup_copy_diverging{env="sandbox",kind="db"} 4' in text
    assert 'ops_backup_copy_reachable{env="sandbox"} 1' in text


def test_an_unreachable_copy_fails_the_check_but_not_the_listing(pair):
    ctx, client, _ = pair
    signed_backup(ctx, client, days_ago(1), suffix="000021")
    ctx = BackupContext(replace(ctx.env, s3=replace(ctx.env.s3, copy=replace(ctx.env.s3.copy,
                                                                             bucket="no-such-copy-bucket"))))
    primary, copy, warnings = second_copy.listings(ctx)
    assert len(primary) == 1 and copy is None and "could not be listed" in warnings[0]
    result = check.copy_check(second_copy.locate(primary, copy), reachable=False, unreachable_reason=warnings[0])
    assert not result.ok and "no-such-copy-bucket" in result.problems[0]
    assert 'ops_backup_copy_reachable{env="sandbox"} 0' in check.copy_prometheus_text("sandbox", result)


def test_sync_copies_what_the_copy_lacks_and_leaves_copy_only_backups_alone(pair):
    ctx, client, copy_client = pair
    a, b = (signed_backup(ctx, client, days_ago(d), suffix=f"00003{d}") for d in (1, 2))
    second_copy.replicate(ctx, b)
    plan = second_copy.plan_sync(ctx)
    assert [e.id for e in plan.to_copy] == [a.id] and plan.copy_only == []
    assert any(f"copy {a.id}" in line for line in plan.lines(ctx))
    said = []
    done = second_copy.sync(ctx, plan, say=said.append)
    assert [d.backup for d in done] == [a.id] and said and a.id in said[0]
    assert second_copy.plan_sync(ctx).to_copy == []


def test_a_rewritten_manifest_is_rewritten_in_the_copy_too(pair):
    ctx, client, copy_client = pair
    m = signed_backup(ctx, client, days_ago(1), suffix="000041")
    second_copy.replicate(ctx, m)
    m.mark_verified(True, "drill ok", datetime.now(UTC))
    ctx.put_manifest(m)
    key = manifest_key(m.object_key)
    assert stored(copy_client, ctx.env.s3.copy.bucket, key) == stored(client, ctx.bucket, key)
    assert b"drill ok" in stored(copy_client, ctx.env.s3.copy.bucket, key)


def test_restore_reads_the_copy_when_the_primary_lost_the_backup_and_says_so(pair):
    ctx, client, _ = pair
    m = signed_backup(ctx, client, days_ago(1), suffix="000051")
    second_copy.replicate(ctx, m)
    client.delete_object(Bucket=ctx.bucket, Key=m.object_key)
    src, entry, _, _, warnings = restore_plan.choose_source(ctx, "db", at_text="", backup_id=m.id,
                                                            now=datetime.now(UTC))
    assert src.target == "copy" and entry.id == m.id
    assert any("reading " + m.id + " from the second copy" in w for w in warnings)
    checked = restore_plan._check(ctx, src, entry.manifest, trust_unauthenticated=False)
    assert checked.source == "copy" and checked.bucket == ctx.env.s3.copy.bucket
    # verify's choice does the same
    vsrc, ventry = verify.choose_source(ctx, m.id)
    assert vsrc.target == "copy" and ventry.id == m.id


def test_restore_at_a_time_prefers_a_newer_backup_only_the_copy_holds(pair):
    ctx, client, _ = pair
    old, new = (signed_backup(ctx, client, days_ago(d), suffix=f"00006{d}") for d in (2, 1))
    for m in (old, new):
        second_copy.replicate(ctx, m)
    client.delete_object(Bucket=ctx.bucket, Key=manifest_key(new.object_key))
    src, entry, *_, warnings = restore_plan.choose_source(ctx, "db", at_text="now", backup_id="",
                                                          now=datetime.now(UTC))
    assert (src.target, entry.id) == ("copy", new.id) and "only in the second copy" in warnings[-1]
    src, entry, *_ = restore_plan.choose_source(ctx, "db", at_text="now", backup_id="", now=datetime.now(UTC),
                                                source="primary")
    assert (src.target, entry.id) == ("primary", old.id)


def test_a_tampered_copy_manifest_is_refused_when_read_from_the_copy(pair):
    ctx, client, copy_client = pair
    m = signed_backup(ctx, client, days_ago(1), suffix="000071")
    second_copy.replicate(ctx, m)
    cc = ctx.copy_context()
    copy_client.put_object(Bucket=cc.bucket, Key=manifest_key(m.object_key),
                           Body=replace(m, newest_migration="forged").to_json())
    src, entry, *_ = restore_plan.choose_source(ctx, "db", at_text="", backup_id=m.id, now=datetime.now(UTC),
                                                source="copy")
    with pytest.raises(RestoreRefused, match="fails authentication"):
        restore_plan._check(ctx, src, entry.manifest, trust_unauthenticated=False)


def test_a_damaged_primary_object_is_refused_naming_the_copy_as_the_way_out(pair):
    ctx, client, _ = pair
    m = signed_backup(ctx, client, days_ago(1), suffix="000081")
    second_copy.replicate(ctx, m)
    client.put_object(Bucket=ctx.bucket, Key=m.object_key, Body=b"y" * m.size)
    src, entry, *_ = restore_plan.choose_source(ctx, "db", at_text="", backup_id=m.id, now=datetime.now(UTC))
    with pytest.raises(RestoreRefused, match="SHA-256") as err:
        restore_plan._check(ctx, src, entry.manifest, trust_unauthenticated=False)
    assert "--from copy" in err.value.hint


def test_from_copy_without_a_copy_configured_is_a_usage_error(fresh_bucket):
    env, _ = fresh_bucket("nocopy")
    ctx = BackupContext(replace(env, s3=replace(env.s3, copy=None)))
    with pytest.raises(Exception, match="has no s3.copy") as err:
        second_copy.source_context(ctx, "copy")
    assert type(err.value).__name__ == "ConfigError"
    with pytest.raises(BackupNotFound):
        verify.choose_source(ctx, "db-20261124T030000Z-a1b2c3")


class CutAfterParts:
    """The copy's real client, with the connection cut before its Nth part upload (a copy interrupted)."""

    def __init__(self, inner, n: int = 2):
        self.inner, self.n, self.parts = inner, n, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def upload_part(self, **kw):
        self.parts += 1
        if self.parts == self.n:
            raise ConnectionClosedError(endpoint_url="copy endpoint")
        return self.inner.upload_part(**kw)


def test_an_interrupted_streamed_copy_leaves_nothing_in_the_copy_and_the_primary_intact(pair, s3_endpoint,
                                                                                      monkeypatch):
    monkeypatch.setattr(stream_upload, "_min_part_size", 5 * stream_upload.MiB)
    monkeypatch.setattr(second_copy, "part_size_for", lambda size: 5 * stream_upload.MiB)
    ctx, client, copy_client = pair
    other = s3_endpoint.replace("127.0.0.1", "localhost")
    ctx = BackupContext(replace(ctx.env, s3=replace(ctx.env.s3, copy=replace(ctx.env.s3.copy, endpoint_url=other))))
    m = put_backup(ctx.env, client, "db", days_ago(1), suffix="000091", data=os.urandom(11 * stream_upload.MiB))
    cc = ctx.copy_context()
    cc.client = CutAfterParts(cc.client)
    with pytest.raises(second_copy.CopyFailed, match="ConnectionClosedError") as err:
        second_copy.replicate(ctx, m)
    assert "the backup itself is good" in err.value.hint
    bucket = ctx.env.s3.copy.bucket
    assert copy_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert copy_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert [e.id for e in list_backups(ctx.env, client)] == [m.id]
    cc.client = cc.client.inner  # the connection is back: the copy can be redone
    assert second_copy.replicate(ctx, m).how == "streamed"
    assert stored(copy_client, bucket, m.object_key) == stored(client, ctx.bucket, m.object_key)


def test_sync_never_spreads_a_forged_primary_manifest_over_the_copy(pair):
    ctx, client, copy_client = pair
    m = signed_backup(ctx, client, days_ago(1), suffix="000101")
    second_copy.replicate(ctx, m)
    client.put_object(Bucket=ctx.bucket, Key=manifest_key(m.object_key),
                      Body=replace(m, newest_migration="forged").to_json())
    plan = second_copy.plan_sync(ctx)
    assert plan.to_copy == [] and any("fails authentication: not copied" in w for w in plan.warnings)
    assert b"forged" not in stored(copy_client, ctx.env.s3.copy.bucket, manifest_key(m.object_key))
