"""ops/backup/dump.py: pg_dump argv, the exit-checked stream, failures that keep nothing."""

from __future__ import annotations

import dataclasses
import io

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from ops import postgres
from ops.backup import command_upload, dump
from ops.backup.context import BackupContext, BackupFailed
from ops.commands import render
from ops.errors import ConfigError, HostUnreachable, RemoteCommandFailed
from ops.inventory import Host, load_environment
from ops.masking import Masker

BUCKET = "ops-sandbox-backups"  # the sandbox inventory's bucket, in moto's in-process mock
VALUES = {"POSTGRES_USER": "athlete", "POSTGRES_DB": "athlete", "POSTGRES_PASSWORD": "pw-0123456789abcdef"}


@pytest.fixture
def env():
    return load_environment("sandbox")


@pytest.fixture
def s3client():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_pg_target_is_the_postgres_accessory_reached_on_its_private_address(env):
    t = postgres.pg_target(env, VALUES)
    assert (t.host.name, t.container, t.user, t.dbname, t.address, t.port) == (
        "db1", "athlete-platform-postgres", "athlete", "athlete", "172.31.250.21", 5432)
    assert VALUES["POSTGRES_PASSWORD"] not in repr(t)


def test_pg_target_refuses_an_environment_without_a_postgres_accessory(env):
    external = dataclasses.replace(env, accessories={})
    with pytest.raises(ConfigError, match="no postgres accessory"):
        postgres.pg_target(external, VALUES)


def test_pg_target_names_missing_credentials(env):
    with pytest.raises(ConfigError, match="POSTGRES_DB not set"):
        postgres.pg_target(env, {"POSTGRES_USER": "a", "POSTGRES_PASSWORD": "b" * 16})


def test_pg_dump_runs_inside_the_accessory_with_the_snapshot_and_no_password_in_argv(env):
    t = postgres.pg_target(env, VALUES)
    argv = dump.pg_dump_argv(t, snapshot="00000003-0000001B-1", application_name="ops-backup-db-x")
    assert argv == ("docker", "exec", "athlete-platform-postgres", "pg_dump", "--format=custom", "--no-password",
                    "--username=athlete", "--snapshot=00000003-0000001B-1",
                    "--dbname=dbname=athlete application_name=ops-backup-db-x")
    assert VALUES["POSTGRES_PASSWORD"] not in render(argv)


def test_conninfo_values_are_quoted_for_libpq_when_not_plain():
    assert postgres.conninfo_value("athlete_2.x-y") == "athlete_2.x-y"
    assert postgres.conninfo_value("my db") == "'my db'"
    assert postgres.conninfo_value("it's") == "'it\\'s'"
    assert postgres.conninfo_value("back\\slash") == "'back\\\\slash'"


def test_terminate_targets_only_the_named_session(env):
    t = postgres.pg_target(env, VALUES)
    argv = postgres.terminate_argv(t, "ops-backup-db-x")
    assert argv[:3] == ("docker", "exec", "athlete-platform-postgres")
    assert "application_name = 'ops-backup-db-x'" in argv[-1]
    assert "--dbname=postgres" in argv


class FakeStream(io.RawIOBase):
    """Like RemoteStream: bytes, then an exit status checked by finish()."""

    def __init__(self, data: bytes, status: int = 0, stderr: str = "", cut_after: int | None = None):
        super().__init__()
        self.data = io.BytesIO(data)
        self.status = status
        self.stderr = stderr
        self.cut_after = cut_after
        self.sent = 0
        self.finished = 0
        self.closed_channel = False
        self.channel = self
        self._drain = self

    def join(self, timeout=None):
        pass

    def close(self):  # channel.close()
        self.closed_channel = True

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.cut_after is not None and self.sent >= self.cut_after:
            raise HostUnreachable("SSH stream lost during pg_dump: EOF", host="db1")
        chunk = self.data.read(len(buffer))
        buffer[:len(chunk)] = chunk
        self.sent += len(chunk)
        return len(chunk)

    def finish(self):
        self.finished += 1
        if self.status:
            raise RemoteCommandFailed(f"exit {self.status}: pg_dump", host="db1", exit_code=self.status,
                                      stderr=self.stderr)
        return 0


def test_exit_checked_stream_checks_the_exit_status_once_at_eof():
    fake = FakeStream(b"abc")
    stream = command_upload.ExitCheckedStream(fake)
    assert stream.read() == b"abc"
    assert stream.read(10) == b""
    assert fake.finished == 1


def test_exit_checked_stream_raises_at_eof_when_the_command_failed():
    stream = command_upload.ExitCheckedStream(FakeStream(b"partial", status=1))
    assert stream.read(7) == b"partial"
    with pytest.raises(RemoteCommandFailed):
        stream.read(10)


class FakeGateway:
    def __init__(self, stream):
        self._stream = stream

    def stream(self, host, command):
        return self._stream


def context(env, client) -> BackupContext:
    return BackupContext(env, client=client, masker=Masker([VALUES["POSTGRES_PASSWORD"]]))


def objects(client) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def uploads_open(client) -> list:
    return client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def test_a_successful_stream_lands_whole_with_its_sha256(env, s3client):
    import hashlib
    data = bytes(range(256)) * 100
    ctx = context(env, s3client)
    result, _ = command_upload.stream_to_s3(ctx, FakeGateway(FakeStream(data)), Host("db1", "127.0.0.1"), ("true",), "k/x.dump",
                                  what="pg_dump")
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert objects(s3client) == ["k/x.dump"]


@pytest.mark.parametrize("stream, expected", [
    (FakeStream(b"x" * 1000, status=1, stderr='pg_dump: error: database "nope" does not exist\n'),
     'database "nope" does not exist'),
    (FakeStream(b"x" * 100_000, cut_after=50_000, stderr=""), "SSH stream lost"),
])
def test_a_failed_command_or_cut_stream_keeps_nothing_and_shows_why(env, s3client, stream, expected):
    ctx = context(env, s3client)
    cleaned = []
    with pytest.raises(BackupFailed, match=expected) as info:
        command_upload.stream_to_s3(ctx, FakeGateway(stream), Host("db1", "127.0.0.1"), ("true",), "k/x.dump",
                          what="pg_dump", on_failure=lambda: cleaned.append(True))
    assert "no manifest" in str(info.value)
    assert "\n" not in str(info.value)
    assert objects(s3client) == [] and uploads_open(s3client) == []
    assert cleaned == [True] and stream.closed_channel


def test_an_s3_failure_mid_stream_aborts_the_multipart_upload(env, s3client, monkeypatch):
    from ops.backup import stream_upload
    monkeypatch.setattr(stream_upload, "_min_part_size", 5 * 1024 * 1024)

    class Failing:
        def __init__(self, inner):
            self.inner, self.parts = inner, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def upload_part(self, **kw):
            self.parts += 1
            if self.parts == 2:
                from botocore.exceptions import EndpointConnectionError
                raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9000")
            return self.inner.upload_part(**kw)

    ctx = context(env, Failing(s3client))
    stream = FakeStream(b"y" * (16 * 1024 * 1024))
    with pytest.raises(BackupFailed, match="S3 upload failed: .*Could not connect"):
        command_upload.stream_to_s3(ctx, FakeGateway(stream), Host("db1", "127.0.0.1"), ("true",), "k/x.dump",
                          what="pg_dump", part_size=5 * 1024 * 1024)
    assert objects(s3client) == [] and uploads_open(s3client) == []
    assert stream.closed_channel


def test_failure_message_is_one_line_with_the_last_stderr_line():
    msg = command_upload.failure_message("pg_dump", RemoteCommandFailed("exit 1: pg_dump", host="db1", exit_code=1),
                               "pg_dump: detail\npg_dump: error: connection lost\n", Masker())
    assert msg == "pg_dump failed: db1: exit 1: pg_dump; stderr: pg_dump: error: connection lost"


def test_failure_message_masks_secrets():
    msg = command_upload.failure_message("S3 upload", RuntimeError("denied for key s3cr3t-value"), "", Masker(["s3cr3t-value"]))
    assert "s3cr3t-value" not in msg


def test_passphrase_missing_from_the_ops_env_file_is_a_clear_error(env, s3client, tmp_path):
    path = tmp_path / "ops.env"
    path.write_text("OTHER=1\n")
    path.chmod(0o600)
    e = dataclasses.replace(env, ops_env_file=path,
                            backup=dataclasses.replace(env.backup, encryption_key_var="BACKUP_PASSPHRASE"))
    with pytest.raises(ConfigError, match="BACKUP_PASSPHRASE is not set in"):
        BackupContext(e, client=s3client).passphrase()
    other = tmp_path / "ops2.env"
    other.write_text("BACKUP_PASSPHRASE=correct-horse-battery-staple\n")
    other.chmod(0o600)
    e = dataclasses.replace(e, ops_env_file=other)
    assert BackupContext(e, client=s3client).passphrase() == "correct-horse-battery-staple"


def test_no_encryption_when_no_key_variable_is_configured(env, s3client):
    assert BackupContext(env, client=s3client).passphrase() is None
