"""ops/restore/ (objects, plan) against moto's in-process S3: choosing a backup, refusing a damaged object."""

from __future__ import annotations

import hashlib
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
    assert check_object(ctx, m) >= 0


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
    assert by_id.manifest.id == first.id and [h.name for h in by_id.hosts] == ["web1", "web2"]
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
    enc = crypto.encryptor("correct horse battery staple")
    stored = enc.update(plain) + enc.finalize()
    m = put_backup(ctx, "db", datetime(2026, 11, 24, 3, 0, tzinfo=UTC), stored, encryption=enc.info)
    monkeypatch.setattr(ctx, "passphrase", lambda: "correct horse battery staple")
    with object_stream(ctx, m) as (hashed, reader):
        assert b"".join(iter(lambda: reader.read(65536), b"")) == plain
    check_streamed(m, hashed)
    monkeypatch.setattr(ctx, "passphrase", lambda: "wrong")
    with pytest.raises(crypto.DecryptError, match="wrong passphrase"):
        plain_reader(ctx, m, io.BytesIO(stored))
    monkeypatch.setattr(ctx, "passphrase", lambda: None)
    with pytest.raises(ConfigError, match="encrypted .* no passphrase"):
        plain_reader(ctx, m, io.BytesIO(stored))
