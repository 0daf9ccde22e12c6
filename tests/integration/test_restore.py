"""inv restore / restore.uploads on the sandbox fleet: the app's real database on db1, the app on
web1/web2 behind nginx, backups in the moto S3 endpoint.

Runs after test_backup.py (file order). The round trip goes through the real CLI and the
sandbox inventory's S3 prefix (it leaves two good backups there: the one it restores and the
safety backup). The failure cases plant damaged or fake backups, so they use their own S3
prefix (removed at the end) through the library.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest
from psycopg import sql

from ops import restore
from ops.appenv import load_env_file
from ops.audit import read_log, utcnow
from ops.backup import dump
from ops.backup import manifest as mf
from ops.backup import uploads as upload_backup
from ops.backup.context import BackupContext
from ops.backup.timeparse import format_utc
from ops.commands import docker
from ops.deploy.pipeline import DeployRequest, deploy
from ops.remote import Gateway
from tests.integration.conftest import inv
from tests.support.app_repo import make_app_repo

pytestmark = pytest.mark.integration

PG_PORT = 15432  # db1's Postgres, published on 127.0.0.1 by the sandbox
WEB_PORTS = (8101, 8102)
LOCK_WAIT = "180"  # another suite may hold the environment for a backup: queue behind it


# ---------------------------------------------------------------- helpers


def health(port: int) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/api/health", timeout=3) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def connect(values: dict, dbname: str | None = None):
    return psycopg.connect(host="127.0.0.1", port=PG_PORT, user=values["POSTGRES_USER"],
                           password=values["POSTGRES_PASSWORD"], dbname=dbname or values["POSTGRES_DB"],
                           autocommit=True, connect_timeout=5)


def snapshot(values: dict, dbname: str | None = None) -> dict[str, tuple[int, str]]:
    """Per table: (rows, md5 over its rows in a fixed order) — equal means same content."""
    with connect(values, dbname) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname NOT IN ('information_schema') AND n.nspname NOT LIKE 'pg\\_%' "
            "ORDER BY 1, 2").fetchall()
        return {f"{s}.{t}": tuple(conn.execute(sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) FROM {} x")
            .format(sql.Identifier(s, t))).fetchone()) for s, t in tables}


def databases(values: dict, pattern: str) -> list[str]:
    with connect(values, "postgres") as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1",
                                           (pattern,)).fetchall()]


def drop(values: dict, name: str) -> None:
    with connect(values, "postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def one_line_error(proc, code: int = 2) -> str:
    """One line on stderr, no traceback; exit 2 for bad input or configuration, 1 for a failure."""
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    # Progress of what ran before the error (plain lines without a terminal) may come first.
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    return errors[0]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def app(sandbox_env, tmp_path_factory):
    """The app serving on web1 and web2 (deployed from a temp checkout if it is not)."""
    inv("accessory.boot", "--host", "sandbox", "postgres", check=True)
    if not all(health(p) == 200 for p in WEB_PORTS):
        env = dataclasses.replace(sandbox_env, build=dataclasses.replace(
            sandbox_env.build, source=make_app_repo(tmp_path_factory.mktemp("restore") / "app")))
        deploy(env, DeployRequest(lock_wait=float(LOCK_WAIT)), lambda _line: None)
    assert all(health(p) == 200 for p in WEB_PORTS)
    return sandbox_env


@pytest.fixture(scope="module")
def values(app):
    values = load_env_file(app.env_file)
    yield values
    for name in databases(values, f"{values['POSTGRES_DB']}\\_before\\_%"):
        drop(values, name)


@pytest.fixture(scope="module")
def private(app):
    """The sandbox env under its own S3 prefix, for planted (damaged, fake) backups; removed after."""
    env = dataclasses.replace(app, s3=dataclasses.replace(app.s3, prefix=f"ops-restore-test-{secrets.token_hex(3)}/"))
    ctx = BackupContext(env)
    yield ctx
    # NOTE: and the second copy (s3.copy) of what was backed up under that prefix (safety backups).
    for target in filter(None, (ctx, ctx.copy_context())):
        paginator = target.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=target.bucket, Prefix=env.s3.prefix):
            for obj in page.get("Contents", []):
                target.client.delete_object(Bucket=target.bucket, Key=obj["Key"])


@pytest.fixture
def gw(app):
    with Gateway(app) as gateway:
        yield gateway


def write_known_rows(values: dict) -> None:
    with connect(values) as conn:
        conn.execute("DROP TABLE IF EXISTS restore_probe")
        conn.execute("CREATE TABLE restore_probe (id int PRIMARY KEY, name text NOT NULL, amount numeric, "
                     "at timestamptz NOT NULL DEFAULT now(), tags jsonb)")
        conn.execute("INSERT INTO restore_probe (id, name, amount, tags) SELECT n, 'row ' || n || ' ''q''', "
                     "n * 1.25, jsonb_build_object('n', n) FROM generate_series(1, 300) n")


def change_and_delete_rows(values: dict) -> None:
    with connect(values) as conn:
        conn.execute("UPDATE restore_probe SET name = 'changed', amount = -1 WHERE id % 7 = 0")
        conn.execute("DELETE FROM restore_probe WHERE id > 250")
        conn.execute("INSERT INTO restore_probe (id, name) VALUES (1000, 'after the backup')")


# ---------------------------------------------------------------- the round trip (CLI)


@pytest.fixture(scope="module")
def round_trip(app, values):
    """Known rows, a backup, rows changed and deleted, then `inv restore --at <between> --yes`."""
    write_known_rows(values)
    at_backup = snapshot(values)
    ctx = BackupContext(app)
    with Gateway(app, masker=ctx.masker) as gw:
        backed_up = dump.backup_db(ctx, gw, lock_wait=float(LOCK_WAIT))
    time.sleep(1.1)
    between = format_utc(utcnow())
    time.sleep(1.1)
    change_and_delete_rows(values)
    changed = snapshot(values)
    assert changed != at_backup

    statuses: list[int] = []
    stop = threading.Event()

    def poll() -> None:  # what a client sees during the restore (bounded)
        for _ in range(6000):
            if stop.is_set():
                return
            statuses.append(health(8101))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    started = time.monotonic()
    # NOTE: --logical: this suite is the pg_dump path (with pitr configured, --at goes to the WAL archive).
    proc = inv("restore", "--host", "sandbox", "--logical", "--at", between, "--yes", "--lock-wait", LOCK_WAIT)
    wall = time.monotonic() - started
    stop.set()
    poller.join(timeout=10)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(backup=backed_up, at_backup=at_backup, changed=changed, proc=proc, wall=wall, statuses=statuses,
                between=between)


def test_restore_to_a_time_between_gives_the_database_as_it_was_at_the_backup(round_trip, values):
    assert snapshot(values) == round_trip["at_backup"]
    assert f"restored {values['POSTGRES_DB']} from {round_trip['backup'].id}" in round_trip["proc"].stdout
    m = re.search(r"in ([\d.]+)s \(pg_restore ([\d.]+)s, traffic stopped ([\d.]+)s\)", round_trip["proc"].stdout)
    assert m, round_trip["proc"].stdout
    with open(os.environ.get("OPS_RESTORE_TIMING", "/tmp/ops-restore-timing.json"), "w") as fh:
        json.dump({"total": float(m[1]), "pg_restore": float(m[2]), "traffic_stopped": float(m[3]),
                   "cli_wall": round(round_trip["wall"], 2), "db_bytes": round_trip["backup"].size}, fh)


def test_the_app_is_healthy_after_and_clients_saw_only_200_or_the_maintenance_503(round_trip):
    assert all(health(p) == 200 for p in WEB_PORTS)
    seen = set(round_trip["statuses"])
    assert seen <= {200, 503}, sorted(seen)
    assert 503 in seen


def test_the_previous_database_is_kept_with_the_changes_and_its_drop_command_printed(round_trip, values):
    kept = databases(values, f"{values['POSTGRES_DB']}\\_before\\_%")
    assert kept, "no _before_ database kept"
    assert snapshot(values, kept[-1]) == round_trip["changed"]
    assert f"the previous database is kept as {kept[-1]}" in round_trip["proc"].stdout
    assert f"dropdb --username={values['POSTGRES_USER']} {kept[-1]}" in round_trip["proc"].stdout
    assert not databases(values, f"{values['POSTGRES_DB']}\\_restore\\_%")


def test_the_kept_database_is_listed_put_back_while_the_app_is_connected_and_dropped(round_trip, values):
    kept = databases(values, f"{values['POSTGRES_DB']}\\_before\\_%")[-1]
    listed = inv("restore.kept", "--host", "sandbox", "--json")
    assert listed.returncode == 0, listed.stderr
    assert kept in [k["name"] for k in json.loads(listed.stdout)["data"]]
    restored = snapshot(values)
    assert all(health(p) == 200 for p in WEB_PORTS)  # the app holds connections to the live database
    proc = inv("restore.put-back", "--host", "sandbox", "--name", kept, "--yes", "--lock-wait", LOCK_WAIT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert snapshot(values) == round_trip["changed"]  # the database from before the restore is live again
    failed = databases(values, f"{values['POSTGRES_DB']}\\_failed\\_%")
    assert failed and f"replaced is kept as {failed[-1]}" in proc.stdout
    assert snapshot(values, failed[-1]) == restored
    assert all(health(p) == 200 for p in WEB_PORTS)
    drop(values, failed[-1])
    bad = inv("restore.put-back", "--host", "sandbox", "--name", "postgres", "--yes")
    assert "is not a database a restore kept" in one_line_error(bad, 2)
    inv("restore", "--host", "sandbox", "--logical", "--id", round_trip["backup"].id, "--yes", "--lock-wait",
        LOCK_WAIT, check=True)  # the restored state back for the tests below; it keeps another _before_
    assert databases(values, f"{values['POSTGRES_DB']}\\_before\\_%")
    dropped = inv("restore.drop-kept", "--host", "sandbox", "--yes", "--lock-wait", LOCK_WAIT)
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert not databases(values, f"{values['POSTGRES_DB']}\\_before\\_%")


def test_a_safety_backup_was_taken_first_and_marked_as_such(round_trip, app):
    m = re.search(r"safety backup (db-\S+)", round_trip["proc"].stdout)
    assert m, round_trip["proc"].stdout
    ctx = BackupContext(app)
    from ops.backup.catalog import get, list_backups

    safety = get(list_backups(app, ctx.client, kind="db"), m[1]).manifest
    assert safety.extra["reason"] == restore.SAFETY_REASON
    assert safety.extra["restore_of"] == round_trip["backup"].id
    assert safety.table_counts["public.restore_probe"] == 251


def test_the_restore_is_in_the_audit_log_and_the_lock_is_free(round_trip, gw):
    events = [e for e in read_log(gw, gw.env.hosts["db1"], last=50) if e.get("action") == "restore"]
    assert events[-1]["outcome"] == "ok" and events[-1]["version"] == round_trip["backup"].id
    assert "(restore" not in inv("lock.status", "--host", "sandbox").stdout  # free, or another suite's


def test_dry_run_prints_the_plan_checks_the_object_and_changes_nothing(round_trip, values):
    before = snapshot(values)
    proc = inv("restore", "--host", "sandbox", "--logical", "--at", round_trip["between"], "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert round_trip["backup"].id in proc.stdout and "checked just now" in proc.stdout
    assert "dry-run: nothing was changed" in proc.stdout
    assert snapshot(values) == before
    assert not databases(values, f"{values['POSTGRES_DB']}\\_restore\\_%")


def test_without_a_terminal_and_without_yes_nothing_happens(round_trip, values):
    before = snapshot(values)
    line = one_line_error(inv("restore", "--host", "sandbox", "--logical", "--at", round_trip["between"]))
    assert "no terminal" in line and "--yes" in line
    assert snapshot(values) == before


# ---------------------------------------------------------------- timestamps (CLI)


@pytest.mark.parametrize("at, expected, code", [
    ("2026-11-24T03:00:00", r"no UTC offset .* e\.g\. 2026-11-24T03:00:00Z", 2),
    ("24/11/2026 03:00", r"not ISO 8601 with an offset .* e\.g\. 2026-11-24T03:00:00Z", 2),
    ("2000-01-01T00:00:00Z", r"no db backup holds data from at or before 2000-01-01T00:00:00Z: oldest is db-\S+ .*newest is db-", 1),
    ("2999-01-01T00:00:00Z", r"in the future \(now is ", 2),
])
def test_naive_malformed_too_early_and_future_timestamps_are_one_clear_error(app, at, expected, code):
    assert re.search(expected, one_line_error(inv("restore", "--host", "sandbox", "--logical", "--at", at, "--yes"),
                                              code))


# ---------------------------------------------------------------- refusals and failures (library)


def plant(ctx: BackupContext, data: bytes, *, like=None, **fields) -> mf.Manifest:
    """A db backup in the private prefix: ``data`` as its object, a manifest (copied from ``like``)."""
    started = utcnow()
    backup_id = mf.new_backup_id("db", started)
    key = mf.data_key(ctx.env, "db", backup_id, started, "dump")
    ctx.client.put_object(Bucket=ctx.bucket, Key=key, Body=data)
    base = dataclasses.asdict(like) if like is not None else {}
    base = {k: v for k, v in base.items() if k not in ("extra", "snapshot_at", "auth")}
    base.update(id=backup_id, env=ctx.env.name, object_key=key, size=len(data),
                sha256=hashlib.sha256(data).hexdigest(), started_at=started, finished_at=utcnow(),
                kind="db", verified=None, **fields)
    m = mf.Manifest(**base)
    ctx.put_manifest(m)
    return m


def attempt(ctx: BackupContext, at: str):
    with Gateway(ctx.env, masker=ctx.masker) as gw:
        plan = restore.prepare_db(ctx, gw, at)
        return restore.restore_db(ctx, gw, plan, lock_wait=float(LOCK_WAIT), safety_backup=False)


@pytest.fixture(scope="module")
def real_dump(round_trip, private):
    """The bytes of the round trip's backup (a real pg_dump -Fc of the app's database)."""
    body = private.client.get_object(Bucket=private.bucket, Key=round_trip["backup"].object_key)["Body"]
    return body.read()


def test_a_corrupted_object_is_refused_before_anything_changes(private, real_dump, round_trip, values, gw):
    m = plant(private, real_dump, like=round_trip["backup"])
    at = format_utc(utcnow())
    private.client.put_object(Bucket=private.bucket, Key=m.object_key,
                              Body=real_dump[:-64] + bytes(b ^ 0xFF for b in real_dump[-64:]))
    before = snapshot(values)
    with pytest.raises(restore.RestoreRefused, match=r"SHA-256 .* refusing to restore it \(nothing was changed\)"):
        attempt(private, at)
    assert snapshot(values) == before
    assert not databases(values, f"{values['POSTGRES_DB']}\\_restore\\_%")
    # Not even a "started" line: nothing was attempted.
    assert not [e for e in read_log(gw, gw.env.hosts["db1"], last=200) if e.get("version") == m.id]
    assert all(health(p) == 200 for p in WEB_PORTS)


def test_a_pg_restore_failure_leaves_the_old_database_serving_and_drops_the_copy(private, values):
    plant(private, b"PGDMP" + secrets.token_bytes(4096), database=values["POSTGRES_DB"])
    before = snapshot(values)
    with pytest.raises(restore.RestoreFailed, match=r"failed before anything was switched: .*pg_restore.*"
                                                    r"was not touched and still serves; \S+ dropped"):
        attempt(private, format_utc(utcnow()))
    assert snapshot(values) == before
    assert not databases(values, f"{values['POSTGRES_DB']}\\_restore\\_%")
    assert all(health(p) == 200 for p in WEB_PORTS)


def test_a_count_mismatch_leaves_the_old_database_serving_and_drops_the_copy(private, real_dump, round_trip, values):
    counts = dict(round_trip["backup"].table_counts, **{"public.restore_probe": 299})
    plant(private, real_dump, like=round_trip["backup"], table_counts=counts)
    before = snapshot(values)
    with pytest.raises(restore.RestoreFailed, match=r"public\.restore_probe: 300 rows restored, the manifest says 299"):
        attempt(private, format_utc(utcnow()))
    assert snapshot(values) == before
    assert not databases(values, f"{values['POSTGRES_DB']}\\_restore\\_%")
    assert all(health(p) == 200 for p in WEB_PORTS)


# ---------------------------------------------------------------- backups nobody can forge (library)
#
# A key configured (the passphrase in an ops env file): real encrypted pg_dumps of the app's
# database in the private prefix; someone with write access to the bucket then changes them.
# Each change is refused before pg_restore runs: no scratch database, no audit line, no change.


@pytest.fixture(scope="module")
def keyed_env(app, tmp_path_factory):
    """The sandbox env with a passphrase configured, under its own S3 prefix (removed after)."""
    ops_env = tmp_path_factory.mktemp("keyed") / "ops.env"
    ops_env.write_text("OPS_TEST_BACKUP_PASSPHRASE=forgery-test-" + secrets.token_hex(8) + "\n")
    os.chmod(ops_env, 0o600)
    env = dataclasses.replace(app, ops_env_file=ops_env,
                              s3=dataclasses.replace(app.s3, prefix=f"ops-keyed-test-{secrets.token_hex(3)}/"),
                              backup=dataclasses.replace(app.backup, encryption_key_var="OPS_TEST_BACKUP_PASSPHRASE"))
    yield env
    client = BackupContext(env).client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=env.s3.bucket, Prefix=env.s3.prefix):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=env.s3.bucket, Key=obj["Key"])


@pytest.fixture(scope="module")
def keyed(keyed_env):
    ctx = BackupContext(keyed_env)
    with Gateway(keyed_env, masker=ctx.masker) as gw:
        first = dump.backup_db(ctx, gw, checksums=False, lock_wait=float(LOCK_WAIT))
        second = dump.backup_db(ctx, gw, checksums=False, lock_wait=float(LOCK_WAIT))
    return ctx, first, second


def manifest_json(ctx: BackupContext, m: mf.Manifest) -> dict:
    return json.loads(ctx.client.get_object(Bucket=ctx.bucket, Key=mf.manifest_key(m.object_key))["Body"].read())


def put_manifest_json(ctx: BackupContext, m: mf.Manifest, data: dict) -> None:
    ctx.client.put_object(Bucket=ctx.bucket, Key=mf.manifest_key(m.object_key), Body=json.dumps(data).encode())


def object_bytes(ctx: BackupContext, m: mf.Manifest) -> bytes:
    return ctx.client.get_object(Bucket=ctx.bucket, Key=m.object_key)["Body"].read()


def attempt_id(ctx: BackupContext, backup_id: str, **kwargs):
    with Gateway(ctx.env, masker=ctx.masker) as gw:
        plan = restore.prepare_db(ctx, gw, backup_id=backup_id, **kwargs)
        return restore.restore_db(ctx, gw, plan, lock_wait=float(LOCK_WAIT), safety_backup=False)


def test_keyed_backups_are_encrypted_bound_and_their_manifests_authenticated(keyed):
    ctx, first, _ = keyed
    stored = manifest_json(ctx, first)
    assert stored["auth"]["scheme"] == "hmac-sha256+scrypt/v1"
    assert stored["encryption"]["bound_to"] == first.id and object_bytes(ctx, first)[:8] == b"OPSENC02"
    with Gateway(ctx.env, masker=ctx.masker) as gw:
        plan = restore.prepare_db(ctx, gw, backup_id=first.id)
    assert "authentic  manifest authenticated (HMAC); encrypted object authenticated chunk by chunk, bound to " \
           f"{first.id}" in "\n".join(plan.lines())


def test_a_tampered_manifest_is_refused_before_pg_restore(keyed, values, gw):
    ctx, first, _ = keyed
    data = manifest_json(ctx, first)
    data["table_counts"] = {**data["table_counts"], "public.restore_probe": 1}
    put_manifest_json(ctx, first, data)
    before = snapshot(values)
    with pytest.raises(restore.RestoreRefused, match=f"backup {first.id}: its manifest fails authentication"):
        attempt_id(ctx, first.id)
    assert snapshot(values) == before
    assert not databases(values, f"{values['POSTGRES_DB']}\\_restore\\_%")
    assert not [e for e in read_log(gw, gw.env.hosts["db1"], last=200)
                if e.get("version") == first.id and e.get("action") == "restore"]


def test_a_downgraded_backup_with_encryption_removed_is_refused_before_pg_restore(keyed, real_dump, values, gw):
    ctx, _, second = keyed
    data = manifest_json(ctx, second)
    # The attacker puts a plain pg_dump in place and rewrites the manifest to match, without the key.
    ctx.client.put_object(Bucket=ctx.bucket, Key=second.object_key, Body=real_dump)
    data.update(encryption=None, size=len(real_dump), sha256=hashlib.sha256(real_dump).hexdigest())
    put_manifest_json(ctx, second, data)
    before = snapshot(values)
    with pytest.raises(restore.RestoreRefused, match="its manifest fails authentication"):
        attempt_id(ctx, second.id)
    data.pop("auth")  # and with the MAC removed: it reads as an old backup, refused with the way out
    put_manifest_json(ctx, second, data)
    with pytest.raises(restore.RestoreRefused, match="predates authenticated manifests") as info:
        attempt_id(ctx, second.id)
    assert "--trust-unauthenticated after checking it" in info.value.hint
    assert snapshot(values) == before
    assert not databases(values, f"{values['POSTGRES_DB']}\\_restore\\_%")


def test_a_swapped_object_is_refused_before_pg_restore_even_when_swapped_after_the_check(keyed_env, values, gw):
    ctx = BackupContext(keyed_env)
    with Gateway(keyed_env, masker=ctx.masker) as g:
        a = dump.backup_db(ctx, g, checksums=False, lock_wait=float(LOCK_WAIT))
        b = dump.backup_db(ctx, g, checksums=False, lock_wait=float(LOCK_WAIT))
    original = object_bytes(ctx, a)
    ctx.client.put_object(Bucket=ctx.bucket, Key=a.object_key, Body=object_bytes(ctx, b))  # b's valid object
    before = snapshot(values)
    with pytest.raises(restore.RestoreRefused, match=r"SHA-256 .* refusing to restore it"):
        attempt_id(ctx, a.id)
    # Checked while intact, swapped between the check and the restore: refused before pg_restore reads a byte.
    ctx.client.put_object(Bucket=ctx.bucket, Key=a.object_key, Body=original)
    with Gateway(keyed_env, masker=ctx.masker) as g:
        plan = restore.prepare_db(ctx, g, backup_id=a.id)
        ctx.client.put_object(Bucket=ctx.bucket, Key=a.object_key, Body=object_bytes(ctx, b))
        with pytest.raises(restore.RestoreFailed, match="replaced after it was checked .* still serves; \\S+ dropped"):
            restore.restore_db(ctx, g, plan, lock_wait=float(LOCK_WAIT), safety_backup=False)
    assert snapshot(values) == before
    assert not databases(values, f"{values['POSTGRES_DB']}\\_restore\\_%")
    assert all(health(p) == 200 for p in WEB_PORTS)


# ---------------------------------------------------------------- uploads (CLI)


def volume_files(gw: Gateway, host, image: str) -> dict[str, str]:
    script = "cd /data && find . -type f ! -path './.*' -exec sh -c 'printf \"%s %s\\n\" \"$1\" \"$(md5sum < \"$1\" | cut -c1-32)\"' sh {} \\;"
    argv = docker.run_argv("ops-restore-test-ls", image, network="none", restart=None, detach=False, remove=True,
                           volumes=[(upload_backup.volume_name(gw.env), "/data", "ro")], entrypoint="sh",
                           user="0", command=["-c", script], log_driver="none", log_opts=None)
    out = gw.run(host, argv).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def write_files(gw: Gateway, host, image: str, script: str) -> None:
    gw.run(host, docker.run_argv("ops-restore-test-write", image, network="none", restart=None, detach=False,
                                 remove=True, volumes=[(upload_backup.volume_name(gw.env), "/data", "")],
                                 entrypoint="sh", user="0", command=["-c", script], log_driver="none",
                                 log_opts=None))


def test_uploads_restore_puts_the_backed_up_files_back_and_keeps_the_others_aside(app, gw):
    web1 = app.hosts["web1"]
    image = upload_backup.tar_image(gw, web1)
    write_files(gw, web1, image, "mkdir -p /data/sub && echo one > /data/restore-a.txt && "
                                 "echo two > /data/sub/restore-b.txt && chown -R 1000:1000 /data/sub")
    wanted = volume_files(gw, web1, image)
    ctx = BackupContext(app)
    backup = upload_backup.backup_uploads(ctx, gw, lock_wait=float(LOCK_WAIT))
    write_files(gw, web1, image, "echo changed > /data/restore-a.txt && rm -rf /data/sub && "
                                 "echo new > /data/restore-c.txt")
    assert volume_files(gw, web1, image) != wanted

    proc = inv("restore.uploads", "--host", "sandbox", "--id", backup.id, "--yes", "--lock-wait", LOCK_WAIT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert volume_files(gw, web1, image) == wanted
    assert volume_files(gw, app.hosts["web2"], upload_backup.tar_image(gw, app.hosts["web2"])) == wanted
    m = re.search(r"kept in (\.before-restore-\d{8}_\d{6})", proc.stdout)
    assert m, proc.stdout
    # The file written after the backup is not dropped silently: named, and moved aside on each host.
    assert re.search(r"web1: 1 file\(s\) were only in the live uploads, not in the backup: .*restore-c\.txt",
                     proc.stdout), proc.stdout
    kept = gw.run(web1, docker.run_argv("ops-restore-test-ls2", image, network="none", restart=None, detach=False,
                                        remove=True, volumes=[(upload_backup.volume_name(app), "/data", "ro")],
                                        entrypoint="sh", user="0", command=["-c", f"cat /data/{m[1]}/restore-a.txt; "
                                        f"stat -c %u /data/sub/restore-b.txt"], log_driver="none",
                                        log_opts=None)).stdout.split()
    assert kept == ["changed", "1000"]  # the previous content aside; owners kept on the restored files
    assert all(health(p) == 200 for p in WEB_PORTS)
