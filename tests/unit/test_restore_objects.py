"""ops/restore/ (objects, plan) against moto's in-process S3: choosing a backup, refusing a damaged object."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from ops.backup import manifest as mf
from ops.backup.catalog import BackupNotFound
from ops.backup.context import BackupContext
from ops.errors import ConfigError
from ops.inventory import load_environment
from ops.restore.errors import RestoreRefused
from ops.restore.objects import check_object, check_streamed, object_stream, plain_reader
from ops.restore.plan import prepare_db, prepare_uploads

BUCKET = "ops-sandbox-backups"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def ctx():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
        client.create_bucket(Bucket=BUCKET)
        yield BackupContext(load_environment("sandbox"), client=client)


def put_backup(ctx, kind: str, started: datetime, data: bytes, **extra) -> mf.Manifest:
    backup_id = mf.new_backup_id(kind, started)
    key = mf.data_key(ctx.env, kind, backup_id, started, mf.extension(kind))
    ctx.client.put_object(Bucket=BUCKET, Key=key, Body=data)
    m = mf.Manifest(id=backup_id, kind=kind, env=ctx.env.name, object_key=key, size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), started_at=started,
                    finished_at=started.replace(second=30), **extra)
    ctx.client.put_object(Bucket=BUCKET, Key=mf.manifest_key(key), Body=m.to_json())
    return m


def test_an_intact_object_passes_the_check(ctx):
    m = put_backup(ctx, "db", datetime(2026, 11, 24, 3, 0, tzinfo=UTC), b"PGDMP" + b"x" * 100_000)
    checked = check_object(ctx, m)
    assert checked.seconds >= 0 and checked.etag
    assert not checked.authenticity.authenticated  # no key configured in the sandbox: nothing to check with


def test_an_object_overwritten_with_other_bytes_of_the_same_size_is_refused(ctx):
    m = put_backup(ctx, "db", datetime(2026, 11, 24, 3, 0, tzinfo=UTC), b"PGDMP" + b"x" * 1000)
    ctx.client.put_object(Bucket=BUCKET, Key=m.object_key, Body=b"PGDMP" + b"y" * 1000)
    with pytest.raises(RestoreRefused, match=r"SHA-256 .* refusing to restore it \(nothing was changed\)"):
        check_object(ctx, m)


def test_an_object_of_another_size_is_refused(ctx):
    m = put_backup(ctx, "db", datetime(2026, 11, 24, 3, 0, tzinfo=UTC), b"PGDMP" + b"x" * 1000)
    ctx.client.put_object(Bucket=BUCKET, Key=m.object_key, Body=b"short")
    with pytest.raises(RestoreRefused, match="5 bytes, its manifest says 1005"):
        check_object(ctx, m)


def test_a_time_before_the_first_backup_names_the_oldest_and_newest(ctx):
    put_backup(ctx, "db", datetime(2026, 11, 24, 3, 0, tzinfo=UTC), b"a")
    put_backup(ctx, "db", datetime(2026, 11, 25, 3, 0, tzinfo=UTC), b"b")
    with pytest.raises(BackupNotFound, match=r"oldest is db-20261124T030000Z-\w+ .*newest is db-20261125T030000Z"):
        prepare_db(ctx, None, "2026-11-23T00:00:00Z", now=NOW)


@pytest.mark.parametrize("text, message", [
    ("2026-11-24T03:00:00", "no UTC offset"),
    ("last tuesday", "not ISO 8601"),
    ("2026-11-26T00:00:00Z", "in the future"),
])
def test_naive_malformed_and_future_times_are_refused_before_anything_is_read(ctx, text, message):
    with pytest.raises(ConfigError, match=message):
        prepare_db(ctx, None, text, now=NOW)


def test_uploads_restore_needs_exactly_one_of_at_and_id(ctx):
    hosts = list(ctx.env.hosts.values())
    with pytest.raises(ConfigError, match="--at TIMESTAMP or --id ID"):
        prepare_uploads(ctx, hosts, now=NOW)
    with pytest.raises(ConfigError, match="--at TIMESTAMP or --id ID"):
        prepare_uploads(ctx, hosts, at_text="2026-11-24T03:00Z", backup_id="uploads-x", now=NOW)
    with pytest.raises(ConfigError, match="no web host"):
        prepare_uploads(ctx, [ctx.env.hosts["db1"]], backup_id="x", now=NOW)


def test_uploads_restore_picks_by_id_or_time_and_checks_the_object(ctx):
    first = put_backup(ctx, "uploads", datetime(2026, 11, 24, 3, 0, tzinfo=UTC), b"tar1", file_count=1)
    second = put_backup(ctx, "uploads", datetime(2026, 11, 25, 3, 0, tzinfo=UTC), b"tar2", file_count=2)
    hosts = list(ctx.env.hosts.values())
    by_id = prepare_uploads(ctx, hosts, backup_id=first.id, now=NOW)
    # The sandbox's uploads are one set on shared storage: restored once, through the first web host.
    assert by_id.manifest.id == first.id and [h.name for h in by_id.hosts] == ["web1"]
    assert "one set on the shared uploads.path" in "\n".join(by_id.lines())
    by_time = prepare_uploads(ctx, hosts, at_text="2026-11-25T05:00:00+01:00", now=NOW)
    assert by_time.manifest.id == second.id
    assert "move the current files into .before-restore-20261125_120000/" in "\n".join(by_time.lines())
    ctx.client.put_object(Bucket=BUCKET, Key=second.object_key, Body=b"tarX")
    with pytest.raises(RestoreRefused):
        prepare_uploads(ctx, hosts, backup_id=second.id, now=NOW)


def test_an_encrypted_backup_is_decrypted_on_the_way_and_a_wrong_passphrase_refused(ctx, monkeypatch):
    import io

    from ops.backup import crypto

    plain = b"PGDMP" + bytes(range(256)) * 5000
    started = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    backup_id = mf.new_backup_id("db", started)
    enc = crypto.encryptor("correct horse battery staple", backup_id)
    stored = enc.update(plain) + enc.finalize()
    monkeypatch.setattr(ctx, "passphrase", lambda: "correct horse battery staple")
    m = put_signed(ctx, backup_id, started, stored, encryption=enc.info)
    checked = check_object(ctx, m)
    assert checked.authenticity.authenticated and checked.authenticity.bound_to == m.id
    with object_stream(ctx, m, checked) as (hashed, reader):
        assert b"".join(iter(lambda: reader.read(65536), b"")) == plain
    check_streamed(m, hashed)
    monkeypatch.setattr(ctx, "passphrase", lambda: "wrong")
    with pytest.raises(RestoreRefused, match="wrong passphrase"):
        plain_reader(ctx, m, io.BytesIO(stored), m.id)
    monkeypatch.setattr(ctx, "passphrase", lambda: None)
    with pytest.raises(ConfigError, match="encrypted .* no passphrase"):
        plain_reader(ctx, m, io.BytesIO(stored), m.id)


# ---------------------------------------------------------------- backups nobody can forge

PASS = "correct horse battery staple"


def put_signed(ctx, backup_id: str, started: datetime, data: bytes, **fields) -> mf.Manifest:
    """A backup as the tool writes it with a key configured: the object, then the signed manifest."""
    key = mf.data_key(ctx.env, "db", backup_id, started, mf.extension("db", encrypted="encryption" in fields))
    ctx.client.put_object(Bucket=BUCKET, Key=key, Body=data)
    m = mf.Manifest(id=backup_id, kind="db", env=ctx.env.name, object_key=key, size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(), started_at=started,
                    finished_at=started.replace(second=30), **fields)
    ctx.put_manifest(m)
    return m


def encrypted_backup(ctx, started: datetime, plain: bytes) -> tuple[mf.Manifest, bytes]:
    from ops.backup import crypto

    backup_id = mf.new_backup_id("db", started)
    enc = crypto.encryptor(PASS, backup_id)
    stored = enc.update(plain) + enc.finalize()
    return put_signed(ctx, backup_id, started, stored, encryption=enc.info), stored


def reread(ctx, m: mf.Manifest) -> mf.Manifest:
    body = ctx.client.get_object(Bucket=BUCKET, Key=mf.manifest_key(m.object_key))["Body"].read()
    return mf.Manifest.from_json(body)


@pytest.fixture
def keyed(ctx, monkeypatch):
    monkeypatch.setattr(ctx, "passphrase", lambda: PASS)
    return ctx


def test_a_manifest_written_with_a_key_is_authenticated_and_binds_id_kind_env_and_object(keyed):
    m, _ = encrypted_backup(keyed, datetime(2026, 11, 24, 3, 0, tzinfo=UTC), b"PGDMP rows")
    stored = reread(keyed, m)
    assert stored.auth["scheme"] == "hmac-sha256+scrypt/v1" and len(stored.auth["mac"]) == 64
    assert check_object(keyed, stored).authenticity.authenticated


@pytest.mark.parametrize("change", [
    {"sha256": "0" * 64}, {"size": 1}, {"table_counts": {"public.t": 5}}, {"env": "prod"},
    {"snapshot_at": "2026-11-25T00:00:00Z"}, {"encryption": None},
])
def test_a_tampered_manifest_is_refused_before_the_object_is_read(keyed, change):
    m, _ = encrypted_backup(keyed, datetime(2026, 11, 24, 3, 0, tzinfo=UTC), b"PGDMP rows")
    data = json.loads(keyed.client.get_object(Bucket=BUCKET, Key=mf.manifest_key(m.object_key))["Body"].read())
    data.update(change)
    keyed.client.put_object(Bucket=BUCKET, Key=mf.manifest_key(m.object_key), Body=json.dumps(data).encode())
    with pytest.raises(RestoreRefused, match="its manifest fails authentication .* refusing it"):
        check_object(keyed, mf.Manifest.from_dict(data))


def test_a_downgraded_backup_with_encryption_removed_and_the_mac_dropped_is_refused(keyed):
    plain = b"PGDMP" + b"COPY x FROM PROGRAM" * 100
    m, _ = encrypted_backup(keyed, datetime(2026, 11, 24, 3, 0, tzinfo=UTC), plain)
    # Someone with write access puts plaintext in place and rewrites the manifest without its MAC.
    keyed.client.put_object(Bucket=BUCKET, Key=m.object_key, Body=plain)
    forged = mf.Manifest(**{**{f: getattr(m, f) for f in ("id", "kind", "env", "object_key", "started_at",
                                                          "finished_at")},
                            "size": len(plain), "sha256": hashlib.sha256(plain).hexdigest()})
    keyed.client.put_object(Bucket=BUCKET, Key=mf.manifest_key(m.object_key), Body=forged.to_json())
    with pytest.raises(RestoreRefused, match="predates authenticated manifests .* --trust-unauthenticated"):
        check_object(keyed, reread(keyed, m))
    # Even vouched for by the operator, a plain object under a key-configured environment is named.
    checked = check_object(keyed, reread(keyed, m), trust_unauthenticated=True)
    assert "NOT authenticated" in checked.authenticity.line and "NOT encrypted" in checked.authenticity.line


def test_a_swapped_object_is_refused_and_never_reaches_the_consumer(keyed):
    a, _ = encrypted_backup(keyed, datetime(2026, 11, 24, 3, 0, tzinfo=UTC), b"PGDMP A" * 1000)
    b, stored_b = encrypted_backup(keyed, datetime(2026, 11, 25, 3, 0, tzinfo=UTC), b"PGDMP B" * 1000)
    checked = check_object(keyed, a)
    keyed.client.put_object(Bucket=BUCKET, Key=a.object_key, Body=stored_b)  # b's valid object under a's key
    with pytest.raises(RestoreRefused, match="SHA-256 .* refusing to restore it"):
        check_object(keyed, a)
    # Swapped between the check and the restore: S3 refuses the changed object (If-Match) ...
    with pytest.raises(RestoreRefused, match="replaced after it was checked"), object_stream(keyed, a, checked):
        raise AssertionError("the consumer must never start")
    # ... and were the ETag check absent, b's object fails a's binding on its first chunk.
    import io

    with pytest.raises(RestoreRefused, match=f"fails authentication for backup {a.id}"):
        plain_reader(keyed, a, io.BytesIO(stored_b), a.id)


def test_a_backup_from_before_authentication_gets_a_clear_message_not_a_crash(keyed, monkeypatch):
    monkeypatch.setattr(keyed, "passphrase", lambda: None)
    old = put_backup(keyed, "db", datetime(2026, 11, 24, 3, 0, tzinfo=UTC), b"PGDMP old")  # no key then
    monkeypatch.setattr(keyed, "passphrase", lambda: PASS)
    with pytest.raises(RestoreRefused) as info:
        check_object(keyed, old)
    assert f"backup {old.id} predates authenticated manifests" in info.value.message
    assert "re-take it" in info.value.hint and "--trust-unauthenticated after checking it" in info.value.hint
