"""Backups on the sandbox fleet: pg_dump in the Postgres accessory on db1 streamed over SSH into the
moto S3 endpoint; failures that must keep nothing; restore drills; freshness; rotation; uploads.

Isolation (another suite restores the app's database on the same fleet): the library tests dump
their own database (``ops_bk_<hex>``, via a copy of the env file with POSTGRES_DB changed) under
their own S3 prefix, both removed at the end. The CLI tests use the real sandbox inventory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import secrets
import subprocess
import tarfile
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ops import postgres, s3
from ops.accessory import container_name
from ops.appenv import load_env_file
from ops.backup import catalog, check, command_upload, dump, manifest, retention, verify
from ops.backup import uploads as upload_backup
from ops.backup.context import BackupContext, BackupFailed
from ops.backup.stream_upload import sha256_of_object
from ops.commands import docker, shell
from ops.deploy.release import current_release_id
from ops.errors import OpsError
from ops.lock import status as lock_status
from ops.registry import registry_access, service_ref
from ops.remote import Gateway
from tests.integration.conftest import ROOT, inv

pytestmark = pytest.mark.integration

PG_LOCAL_PORT = 15432          # db1's 5432, published on 127.0.0.1 by the sandbox
MiB = 1024 * 1024
ITEMS = [(1, "alpha", 1.5), (2, "beta", None), (3, "gamma 'quoted'", -2.25)]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base(sandbox_env):
    # Another suite may be booting it too (both pull through the same tunnel port): retry, bounded.
    for attempt in range(3):
        proc = inv("accessory.boot", "--host", "sandbox", "postgres")
        if proc.returncode == 0:
            return sandbox_env
        time.sleep(3 + 3 * attempt)
    raise AssertionError(f"accessory.boot failed: {proc.stdout}\n{proc.stderr}")


@pytest.fixture(scope="module")
def scratch(base, tmp_path_factory):
    """Our own database and S3 prefix, and an env pointing at them."""
    tag = secrets.token_hex(3)
    values = load_env_file(base.env_file)
    dbname = f"ops_bk_{tag}"
    env_file = tmp_path_factory.mktemp("backup") / "app.env"
    env_file.write_text("".join(f"{k}={dbname if k == 'POSTGRES_DB' else v}\n" for k, v in values.items()))
    os.chmod(env_file, 0o600)
    env = dataclasses.replace(base, env_file=env_file,
                              s3=dataclasses.replace(base.s3, prefix=f"ops-bk-test-{tag}/"))
    with admin(values) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    with connect(values, dbname) as conn:
        conn.execute("CREATE TABLE ops_bk_items (id int PRIMARY KEY, name text, score float8)")
        conn.cursor().executemany("INSERT INTO ops_bk_items VALUES (%s, %s, %s)", ITEMS)
        conn.execute("CREATE TABLE ops_bk_events (id bigserial PRIMARY KEY, at timestamptz NOT NULL, data jsonb)")
        conn.execute("INSERT INTO ops_bk_events (at, data) SELECT now() - n * interval '1 minute', "
                     "jsonb_build_object('n', n) FROM generate_series(1, 500) n")
        conn.execute("CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL, "
                     "finished_at timestamptz, migration_name varchar(255) NOT NULL, logs text, "
                     "rolled_back_at timestamptz, started_at timestamptz NOT NULL DEFAULT now(), "
                     "applied_steps_count int NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, applied_steps_count) "
                     "VALUES ('1', 'c1', now(), '20240105093000_init', 1), ('2', 'c2', now(), "
                     "'20240212141500_add_uploads', 1), ('3', 'c3', NULL, '20240301000000_failed', 0)")
    yield env, values, dbname
    with admin(values) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    # NOTE: the second copy (s3.copy) holds the same keys in its own bucket: emptied too.
    for target in (env.s3, env.s3.copy) if env.s3.copy else (env.s3,):
        client = s3.client(dataclasses.replace(env, s3=target))
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket, Prefix=env.s3.prefix):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=target.bucket, Key=obj["Key"])


def connect(values, dbname) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=PG_LOCAL_PORT, user=values["POSTGRES_USER"],
                           password=values["POSTGRES_PASSWORD"], dbname=dbname, autocommit=True, connect_timeout=5)


def admin(values) -> psycopg.Connection:
    return connect(values, "postgres")


@pytest.fixture
def env(scratch):
    return scratch[0]


@pytest.fixture
def ctx(env):
    return BackupContext(env)


@pytest.fixture
def gw(env):
    with Gateway(env) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def first_backup(scratch):
    env = scratch[0]
    ctx = BackupContext(env)
    with Gateway(env) as gw:
        m = dump.backup_db(ctx, gw, lock_wait=60)
        release = current_release_id(gw, env.hosts["web1"])
    return m, release


def keys(env) -> list[str]:
    """Objects under the environment's backups/ (audit copies live elsewhere under the prefix)."""
    client = s3.client(env)
    prefix = manifest.backups_prefix(env)
    return [o["Key"] for o in client.list_objects_v2(Bucket=env.s3.bucket, Prefix=prefix).get("Contents", [])]


def open_uploads(env) -> list:
    return s3.client(env).list_multipart_uploads(Bucket=env.s3.bucket, Prefix=env.s3.prefix).get("Uploads", [])


def dump_sessions(values) -> list:
    with admin(values) as conn:
        return conn.execute("SELECT pid, state FROM pg_stat_activity "
                            "WHERE application_name LIKE 'ops-backup-%'").fetchall()


def wait_no_dump_left(values, gw, env) -> None:
    """No pg_dump session nor process left behind (bounded wait: they end within seconds)."""
    container = container_name(env, env.accessories["postgres"])
    probe = shell("docker exec {c} sh -c 'for p in /proc/[0-9]*; do tr \"\\0\" \" \" < $p/cmdline 2>/dev/null; "
                  "echo; done' | grep -c '^pg_dump' || true", c=container)
    deadline = time.monotonic() + 20
    while True:
        sessions = dump_sessions(values)
        procs = int(gw.query(env.hosts["db1"], probe).stdout.strip() or 0)
        if not sessions and not procs:
            return
        assert time.monotonic() < deadline, f"left behind: sessions {sessions}, pg_dump processes {procs}"
        time.sleep(0.5)


def add_big_table(values, dbname, mib: int = 20) -> None:
    """Incompressible rows, so the dump spans several 8 MiB parts."""
    with connect(values, dbname) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ops_bk_blobs (id int PRIMARY KEY, data bytea)")
        conn.execute("TRUNCATE ops_bk_blobs")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO ops_bk_blobs VALUES (%s, %s)",
                            [(i, os.urandom(MiB)) for i in range(mib)])


def drop_big_table(values, dbname) -> None:
    with connect(values, dbname) as conn:
        conn.execute("DROP TABLE IF EXISTS ops_bk_blobs")


class FailingClient:
    """The real boto3 client, with a hook run before the Nth upload_part (S3 or SSH failing mid-stream)."""

    def __init__(self, inner, on_part, n: int = 2):
        self.inner, self.on_part, self.n, self.parts = inner, on_part, n, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def upload_part(self, **kw):
        self.parts += 1
        if self.parts == self.n:
            self.on_part()
        return self.inner.upload_part(**kw)


# ---------------------------------------------------------------- backup.db


def test_backup_db_writes_object_and_manifest_with_counts_checksums_migration_and_release(first_backup, env, scratch):
    m, release = first_backup
    _, _, dbname = scratch
    assert m.kind == "db" and m.database == dbname and m.env == "sandbox"
    assert m.object_key.startswith(f"{env.s3.prefix}backups/sandbox/db/") and m.object_key.endswith(".dump")
    assert sorted(keys(env)) == sorted([m.object_key, manifest.manifest_key(m.object_key)])
    client = s3.client(env)
    assert sha256_of_object(client, env.s3.bucket, m.object_key) == m.sha256
    assert client.head_object(Bucket=env.s3.bucket, Key=m.object_key)["ContentLength"] == m.size
    stored = manifest.Manifest.from_json(
        client.get_object(Bucket=env.s3.bucket, Key=manifest.manifest_key(m.object_key))["Body"].read())
    assert stored.to_dict() == m.to_dict()
    assert m.table_counts == {"public._prisma_migrations": 3, "public.ops_bk_events": 500, "public.ops_bk_items": 3}
    assert set(m.table_checksums) == set(m.table_counts)
    assert all(v.startswith("hashtext64:") for v in m.table_checksums.values())
    assert m.newest_migration == "20240212141500_add_uploads"   # the unfinished one does not count
    assert m.app_release == release
    assert m.server_version.startswith("15.")
    assert m.encryption is None and m.verified is None
    # The object is a real pg_dump custom archive.
    head = client.get_object(Bucket=env.s3.bucket, Key=m.object_key, Range="bytes=0-4")["Body"].read()
    assert head == b"PGDMP"


def test_backup_db_leaves_the_lock_free_and_an_audit_line(first_backup, env, gw):
    m, _ = first_backup
    assert all(holder is None for holder in lock_status(gw, list(env.hosts.values())).values())
    audit_log = gw.query(env.hosts["db1"], ("tail", "-n", "50", f"{env.app_dir}/audit.log")).stdout
    assert any(json.loads(line).get("action") == "backup.db" and m.id in json.loads(line).get("detail", "")
               for line in audit_log.splitlines() if line.startswith("{"))


def test_s3_failing_mid_upload_leaves_no_manifest_no_object_and_no_open_multipart_upload(env, scratch, gw):
    _, values, dbname = scratch
    add_big_table(values, dbname)
    before = set(keys(env))

    def s3_down():
        from botocore.exceptions import EndpointConnectionError
        raise EndpointConnectionError(endpoint_url=env.s3.endpoint_url)

    ctx = BackupContext(env)
    ctx.client = FailingClient(ctx.client, s3_down)
    try:
        with pytest.raises(BackupFailed, match="S3 upload failed") as info:
            dump.backup_db(ctx, gw, checksums=False, part_size=8 * MiB, lock_wait=60)
    finally:
        drop_big_table(values, dbname)
    assert "no manifest written" in str(info.value) and "Traceback" not in str(info.value)
    assert ctx.client.parts == 2
    assert set(keys(env)) == before and open_uploads(env) == []
    wait_no_dump_left(values, gw, env)
    assert all(holder is None for holder in lock_status(gw, list(env.hosts.values())).values())


def test_ssh_cut_during_pg_dump_leaves_no_manifest_no_object_and_no_open_multipart_upload(env, scratch, gw):
    _, values, dbname = scratch
    add_big_table(values, dbname)
    before = set(keys(env))
    db1 = env.hosts["db1"]

    def cut():  # the SSH connection to db1 drops while pg_dump streams
        gw.connection(db1).client.get_transport().close()

    ctx = BackupContext(env)
    ctx.client = FailingClient(ctx.client, cut)
    try:
        with pytest.raises(BackupFailed, match="SSH stream (lost|closed)") as info:
            dump.backup_db(ctx, gw, checksums=False, part_size=8 * MiB, lock_wait=60)
    finally:
        drop_big_table(values, dbname)
    assert "\n" not in str(info.value)
    assert set(keys(env)) == before and open_uploads(env) == []
    wait_no_dump_left(values, gw, env)
    assert all(holder is None for holder in lock_status(gw, list(env.hosts.values())).values())


def test_pg_dump_error_shows_its_stderr_and_keeps_nothing(env, scratch, gw, ctx):
    _, values, _ = scratch
    target = dataclasses.replace(postgres.pg_target(env, values), dbname="ops_bk_no_such_db")
    key = manifest.data_key(env, "db", manifest.new_backup_id("db", datetime.now(UTC)), datetime.now(UTC), "dump")
    before = set(keys(env))
    with pytest.raises(BackupFailed) as info:
        command_upload.stream_to_s3(ctx, gw, target.host, dump.pg_dump_argv(target, snapshot=None, application_name="x"),
                          key, what="pg_dump")
    assert 'database "ops_bk_no_such_db" does not exist' in str(info.value)
    assert set(keys(env)) == before and open_uploads(env) == []


def test_backup_of_a_missing_database_fails_cleanly_with_no_manifest(env, scratch, gw, tmp_path):
    _, values, _ = scratch
    env_file = tmp_path / "app.env"
    env_file.write_text("".join(f"{k}={'ops_bk_no_such_db' if k == 'POSTGRES_DB' else v}\n"
                                for k, v in values.items()))
    os.chmod(env_file, 0o600)
    bad = dataclasses.replace(env, env_file=env_file)
    before = set(keys(env))
    with Gateway(bad) as bad_gw, pytest.raises(OpsError, match='database "ops_bk_no_such_db" does not exist'):
        dump.backup_db(BackupContext(bad), bad_gw, lock_wait=60)
    assert set(keys(env)) == before and open_uploads(env) == []


# ---------------------------------------------------------------- verify


def test_verify_restores_into_a_scratch_database_and_marks_the_backup_verified(first_backup, env, ctx, gw, scratch):
    m, _ = first_backup
    _, values, _ = scratch
    result = verify.verify(ctx, gw, m.id)
    assert result.ok and result.tables == 3 and result.rows == 506
    stored = catalog.get(catalog.list_backups(env, ctx.client), m.id).manifest
    assert stored.verified["ok"] is True and stored.sha256 == m.sha256
    with admin(values) as conn:
        assert conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'ops_verify_%'").fetchall() == []


def test_verify_fails_on_tampered_row_counts_naming_the_table_and_both_counts(first_backup, env, ctx, gw):
    m, _ = first_backup
    entry = catalog.get(catalog.list_backups(env, ctx.client), m.id)
    tampered = entry.manifest
    tampered.table_counts["public.ops_bk_items"] = 4
    tampered.verified = None
    ctx.put_manifest(tampered)
    with pytest.raises(verify.VerifyFailed, match="table public.ops_bk_items: 4 rows in the manifest, 3 restored"):
        verify.verify(ctx, gw, m.id)
    stored = catalog.get(catalog.list_backups(env, ctx.client), m.id).manifest
    assert stored.verified["ok"] is False
    tampered.table_counts["public.ops_bk_items"] = 3   # put it back for the tests below
    tampered.verified = None
    ctx.put_manifest(tampered)


def test_verify_refuses_a_corrupted_object_on_its_checksum(env, ctx, gw):
    m = dump.backup_db(ctx, gw, checksums=False, lock_wait=60)
    client = ctx.client
    data = bytearray(client.get_object(Bucket=env.s3.bucket, Key=m.object_key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    client.put_object(Bucket=env.s3.bucket, Key=m.object_key, Body=bytes(data))
    with pytest.raises(verify.VerifyFailed, match="sha256 mismatch"):
        verify.verify(ctx, gw, m.id)
    stored = catalog.get(catalog.list_backups(env, client), m.id)
    assert stored.manifest.verified["ok"] is False
    check.delete_backup(client, env.s3.bucket, stored)


def test_encrypted_backup_round_trips_through_verify(env, scratch, gw, tmp_path):
    ops_env = tmp_path / "ops.env"
    ops_env.write_text("BACKUP_PASSPHRASE=correct-horse-battery-staple-42\n")
    os.chmod(ops_env, 0o600)
    enc = dataclasses.replace(env, ops_env_file=ops_env,
                              backup=dataclasses.replace(env.backup, encryption_key_var="BACKUP_PASSPHRASE"))
    ctx = BackupContext(enc)
    m = dump.backup_db(ctx, gw, checksums=False, lock_wait=60)
    assert m.object_key.endswith(".dump.enc") and m.encryption["scheme"].startswith("aes-256-gcm")
    head = ctx.client.get_object(Bucket=env.s3.bucket, Key=m.object_key, Range="bytes=0-7")["Body"].read()
    assert head == b"OPSENC02"  # bound to the backup id
    assert m.auth and m.auth["scheme"] == "hmac-sha256+scrypt/v1"  # the manifest is authenticated
    assert verify.verify(ctx, gw, m.id).ok
    check.delete_backup(ctx.client, env.s3.bucket, catalog.get(catalog.list_backups(env, ctx.client), m.id))


def test_a_crafted_archive_cannot_run_a_program_on_the_db_host_during_a_drill(base, gw, tmp_path):
    """pg_restore runs as the powerless restore role: an archive whose data step calls
    COPY ... FROM PROGRAM (a materialized view refreshed at restore) fails, and nothing runs."""
    values = load_env_file(base.env_file)
    dbname = f"ops_trap_{secrets.token_hex(3)}"
    marker = f"/tmp/ops-trap-{secrets.token_hex(4)}"
    host = base.hosts[base.accessories["postgres"].host]
    container = container_name(base, base.accessories["postgres"])
    with admin(values) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    env_file = tmp_path / "app.env"
    env_file.write_text("".join(f"{k}={dbname if k == 'POSTGRES_DB' else v}\n" for k, v in values.items()))
    os.chmod(env_file, 0o600)
    env = dataclasses.replace(base, env_file=env_file,
                              s3=dataclasses.replace(base.s3, prefix=f"ops-trap-test-{secrets.token_hex(3)}/"))
    ctx = BackupContext(env)
    program = f"touch {marker}; echo x"
    try:
        with connect(values, dbname) as conn:
            conn.execute("CREATE TABLE sink (line text)")
            conn.execute("CREATE FUNCTION run() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN "
                         f"EXECUTE format('COPY sink FROM PROGRAM %L', {program!r}); RETURN 1; END $f$")
            conn.execute("CREATE MATERIALIZED VIEW trap AS SELECT run() AS n")  # runs it once, as the superuser
        gw.run(host, docker.exec_argv(container, "rm", marker))  # that run's trace, gone
        with Gateway(env) as g:
            m = dump.backup_db(ctx, g, checksums=False, lock_wait=60)
            with pytest.raises(verify.VerifyFailed, match=r"pg_restore failed: .*COPY sink FROM PROGRAM .*REFRESH MATERIALIZED VIEW public\.trap"):
                verify.verify(ctx, g, m.id)
        assert not gw.run(host, docker.exec_argv(container, "test", "-e", marker), check=False).ok
    finally:
        with admin(values) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        for page in ctx.client.get_paginator("list_objects_v2").paginate(Bucket=ctx.bucket, Prefix=env.s3.prefix):
            for obj in page.get("Contents", []):
                ctx.client.delete_object(Bucket=ctx.bucket, Key=obj["Key"])


# ---------------------------------------------------------------- check and prune


def test_check_is_fresh_after_a_backup_and_stale_with_a_tiny_max_age(first_backup, env, ctx, tmp_path):
    listing = catalog.list_backups(env, ctx.client)
    now = datetime.now(UTC)
    assert check.freshness(listing, "db", now=now, max_age=check.parse_max_age("26h")).ok
    stale = check.freshness(listing, "db", now=now + timedelta(seconds=2), max_age=check.parse_max_age("1s"))
    assert not stale.ok and "STALE" in stale.line("sandbox")
    prom = tmp_path / "backup.prom"
    check.write_textfile(prom, check.prometheus_text("sandbox", check.check(listing, now=now, max_age=timedelta(hours=26)),
                                                     now=now))
    assert 'ops_backup_fresh{env="sandbox",kind="db"} 1' in prom.read_text()


def put_fake(env, client, kind: str, started: datetime) -> str:
    backup_id = manifest.new_backup_id(kind, started)
    key = manifest.data_key(env, kind, backup_id, started, manifest.extension(kind))
    data = f"fake {backup_id}".encode()
    client.put_object(Bucket=env.s3.bucket, Key=key, Body=data)
    m = manifest.Manifest(id=backup_id, kind=kind, env=env.name, object_key=key, size=len(data),
                          sha256=hashlib.sha256(data).hexdigest(), started_at=started,
                          finished_at=started + timedelta(minutes=3))
    client.put_object(Bucket=env.s3.bucket, Key=manifest.manifest_key(key), Body=m.to_json())
    return backup_id


def test_prune_against_the_endpoint_keeps_exactly_the_planned_set(scratch, gw):
    base = scratch[0]
    env = dataclasses.replace(base, s3=dataclasses.replace(base.s3, prefix=f"{base.s3.prefix}prune/"))
    ctx = BackupContext(env)
    client = ctx.client
    try:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        days_ago = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 22, 29, 40, 70, 100, 130, 160, 200, 400]
        fakes = {d: put_fake(env, client, "db", today - timedelta(days=d) + timedelta(hours=3)) for d in days_ago}
        fake_uploads = put_fake(env, client, "uploads", today - timedelta(days=500))
        real = [dump.backup_db(ctx, gw, checksums=False, lock_wait=60).id for _ in range(2)]
        now = datetime.now(UTC)
        planned = {d.entry.id for d in retention.plan(catalog.list_backups(env, client), now,
                                                      retention.Policy.from_settings(env.backup)) if d.keep}
        report = check.apply_prune(env, client, check.plan_prune(env, client, now=now))
        left = catalog.list_backups(env, client)
        assert {e.id for e in left} == planned
        assert left.orphans == [] and left.warnings == []
        assert len(keys(env)) == 2 * len(planned)                       # manifest + data each, nothing else
        assert set(report.deleted) == (set(fakes.values()) | set(real) | {fake_uploads}) - planned
        # Whatever the weekday: the real ones (today), the last 6 days, the only uploads backup stay;
        # the 400-day-old one (beyond 6 months that have backups) goes.
        assert set(real) | {fakes[d] for d in range(1, 7)} | {fake_uploads} <= planned
        assert fakes[400] not in planned
    finally:
        for key in keys(env):
            client.delete_object(Bucket=env.s3.bucket, Key=key)


# ---------------------------------------------------------------- uploads


@pytest.fixture
def uploads_volume(base):
    """A few files of ours in the uploads volume on web1 (created with the proxy image if no release runs)."""
    tag = secrets.token_hex(3)
    env = base
    with Gateway(env) as gw:
        web1 = env.hosts["web1"]
        image = upload_backup.tar_image(gw, web1)
        if not gw.query(web1, docker.image_id_argv(image), check=False).ok:
            with registry_access(gw, web1):
                gw.run(web1, docker.pull_argv(service_ref(env, env.proxy.image)))
        gw.run(web1, docker.volume_create_argv(upload_backup.volume_name(env)))
        write = shell("docker run --rm --log-driver none --entrypoint sh -v {v}:/data {i} -c {s}",
                      v=upload_backup.volume_name(env), i=image,
                      s=f"mkdir -p /data/ops-bk-{tag}/sub && printf hello > /data/ops-bk-{tag}/a.txt && "
                        f"head -c 70000 /dev/urandom > /data/ops-bk-{tag}/sub/b.bin")
        gw.run(web1, write)
        count = shell("docker run --rm --log-driver none --entrypoint sh -v {v}:/data:ro {i} -c {s}",
                      v=upload_backup.volume_name(env), i=image, s="find /data \\( -path '/data/.restore-*' -o -path '/data/.before-restore-*' \\) -prune "
                        "-o -type f -print | wc -l")
        files = int(gw.query(web1, count).stdout.strip())
        yield tag, files
        gw.run(web1, shell("docker run --rm --log-driver none --entrypoint rm -v {v}:/data {i} -rf {d}",
                           v=upload_backup.volume_name(env), i=image, d=f"/data/ops-bk-{tag}"))


def test_backup_uploads_round_trip_with_file_count_and_verify(env, ctx, gw, uploads_volume):
    tag, files = uploads_volume
    m = upload_backup.backup_uploads(ctx, gw, lock_wait=60)
    assert m.kind == "uploads" and m.object_key.endswith(".tar.gz") and m.file_count == files
    assert m.source_bytes >= 70005
    body = ctx.client.get_object(Bucket=env.s3.bucket, Key=m.object_key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == m.sha256 and len(body) == m.size
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        assert tar.extractfile(f"./ops-bk-{tag}/a.txt").read() == b"hello"
        assert tar.getmember(f"./ops-bk-{tag}/sub/b.bin").size == 70000
    result = verify.verify(ctx, gw, m.id)
    assert result.ok and result.rows == files


# ---------------------------------------------------------------- the CLI and cron wrappers


def test_cron_wrapper_then_list_verify_check_and_prune_dry_run_on_the_cli(base, tmp_path):
    proc = subprocess.run(["bash", "scripts/backup-db.sh", "sandbox", "--lock-wait", "60"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].endswith("backup.db --host sandbox: ok") and lines[-1][:4].isdigit()
    # The result line "... backup db-<id>: <size> ..." (lines carry a timestamp), not a progress line.
    backup_id = re.search(r"\bbackup (db-[^\s:]+): ", proc.stdout).group(1)
    password = load_env_file(base.env_file)["POSTGRES_PASSWORD"]
    assert password not in proc.stdout + proc.stderr

    listed = inv("backup.list", "--host", "sandbox", "--json", check=True)
    # NOTE: with pitr the listing also holds physical backups and the WAL range (rows without a logical id).
    assert backup_id in [row.get("id") for row in json.loads(listed.stdout)["data"]]
    table = inv("backup.list", "--host", "sandbox", "--kind", "db", check=True)
    assert backup_id in table.stdout and "VERIFIED" in table.stdout

    verified = inv("backup.verify", "--host", "sandbox", "--id", backup_id)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"backup {backup_id} verified" in verified.stdout

    prom = tmp_path / "ops_backup.prom"
    fresh = inv("backup.check", "--host", "sandbox", "--max-age", "1h", "--prometheus-file", str(prom))
    assert fresh.returncode == 0 and "sandbox db: ok" in fresh.stdout
    assert 'ops_backup_last_success_timestamp_seconds{env="sandbox",kind="db"}' in prom.read_text()
    time.sleep(1.1)
    stale = inv("backup.check", "--host", "sandbox", "--max-age", "1s")
    assert stale.returncode == 1 and "STALE" in stale.stdout and "ago" in stale.stdout

    dry = inv("backup.prune", "--host", "sandbox", "--dry-run")
    assert dry.returncode == 0 and "nothing deleted" in dry.stdout and backup_id in dry.stdout


def test_cron_wrappers_exit_2_on_usage_and_configuration_errors():
    for script in ("scripts/backup-db.sh", "scripts/backup-uploads.sh"):
        for args in ([], ["no-such-env"]):
            proc = subprocess.run(["bash", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
            assert proc.returncode == 2, (script, args, proc.stdout, proc.stderr)


def test_backup_check_bad_max_age_is_a_usage_error():
    proc = inv("backup.check", "--host", "sandbox", "--max-age", "soon")
    assert proc.returncode == 2 and "e.g. 26h" in proc.stderr


def test_dry_run_prints_the_plan_and_contacts_nothing():
    proc = inv("backup.db", "--host", "sandbox", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "pg_dump --format=custom" in proc.stdout and "nothing was contacted" in proc.stdout
    proc = inv("backup.uploads", "--host", "sandbox", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "-czf - ." in proc.stdout and "<image of the current release>" in proc.stdout

