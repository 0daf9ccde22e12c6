"""Point-in-time recovery with pgBackRest on the sandbox fleet: the Postgres accessory on db1
archives its WAL (async, encrypted) through the sandbox's TLS front into two S3 buckets;
``inv backup.db --physical`` and ``inv restore --at T`` through the real CLI.

Rows are written at known seconds around T; after ``restore --at T`` exactly those committed
by T exist, the previous server is kept (stopped) and the accessory runs the restored data
under its name with archiving on (a later boot finds nothing to change).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from ops import accessory
from ops.backup import physical
from ops.backup.context import BackupContext
from ops.backup.timeparse import format_utc
from ops.commands import docker
from ops.commands import pgbackrest as pgbr
from ops.opsenv import operator_value
from ops.postgres import PgTarget, pg_target, psql_argv
from ops.remote import Gateway
from ops.sandbox import services
from tests.integration.conftest import inv

pytestmark = pytest.mark.integration

LOCK_WAIT = "180"  # another suite may hold the environment: queue behind it


@pytest.fixture(scope="module")
def pitr_env(sandbox_env):
    # NOTE: the sandbox S3 keeps objects in memory and fault tests restart it: the buckets come
    # back here, and a boot re-creates the stanza of an emptied repository.
    services.ensure_bucket(sandbox_env)
    with Gateway(sandbox_env) as gw:
        accessory.boot(gw, "postgres", lock_wait=180)
    return sandbox_env


def ensure_physical_backup(gw: Gateway, env) -> None:
    if not physical.read_catalog(gw, env).in_repo(1):
        inv("backup.db", "--host", "sandbox", "--physical", "--lock-wait", LOCK_WAIT, check=True, timeout=600)


@pytest.fixture
def target(pitr_env) -> PgTarget:
    return pg_target(pitr_env, BackupContext(pitr_env).app_values())


def sql(gw: Gateway, t: PgTarget, query: str) -> str:
    return gw.run(t.host, psql_argv(t, query, dbname=t.dbname)).stdout.strip()


def server_now(gw: Gateway, t: PgTarget) -> datetime:
    return datetime.fromisoformat(sql(gw, t, "SELECT clock_timestamp()")).astimezone(UTC)


def wait_server_clock_past(gw: Gateway, t: PgTarget, moment: datetime, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while server_now(gw, t) <= moment:
        assert time.monotonic() < deadline, f"the server's clock did not pass {moment} within {limit}s"
        time.sleep(0.2)


def test_accessory_archives_wal_into_both_repositories(pitr_env, gw):
    acc = pitr_env.accessories["postgres"]
    host = pitr_env.hosts[acc.host]
    name = accessory.container_name(pitr_env, acc)
    # `check` forces a WAL switch and waits until every repository has that segment.
    res = gw.run(host, ("docker", "exec", "-u", "postgres", name, "pgbackrest", "--io-timeout=10", "check"),
                 check=False, timeout=180)
    assert res.ok, res.stderr
    archive = physical.read_catalog(gw, pitr_env).archive
    assert set(archive) == {1, 2} and archive[1][1] == archive[2][1], archive
    inspect = gw.run(host, docker.inspect_argv(name)).stdout
    assert "archive_mode=on" in inspect and "archive_timeout=30" in inspect
    passphrase = operator_value(pitr_env, pitr_env.pitr.encryption_key_var)
    # NOTE: not in any process's argv (docker inspect shows the env file's values to root on the host,
    # as for every --env-file; see ops/accessory.py). A bool, so a failure does not print it.
    leaked = passphrase in gw.run(host, ("ps", "-eo", "args")).stdout
    assert passphrase and not leaked


def test_restore_at_a_second_brings_back_exactly_the_rows_committed_by_then(pitr_env, gw, target):
    sql(gw, target, "CREATE TABLE IF NOT EXISTS pitr_probe (batch text NOT NULL, "
                    "at timestamptz NOT NULL DEFAULT clock_timestamp())")
    sql(gw, target, "TRUNCATE pitr_probe")
    out = inv("backup.db", "--host", "sandbox", "--physical", "--lock-wait", LOCK_WAIT, "--json", check=True,
              timeout=600)
    backups = json.loads(out.stdout)["data"]["backups"]
    assert {b["repo"] for b in backups} == {1, 2}, backups

    sql(gw, target, "INSERT INTO pitr_probe (batch) VALUES ('before-1'), ('before-2')")
    written = datetime.fromisoformat(sql(gw, target, "SELECT max(at) FROM pitr_probe")).astimezone(UTC)
    # T: two whole seconds after the first batch's statement (its commit lands a few ms later),
    # and the second batch only once the server's clock is a second past T.
    at = written.replace(microsecond=0) + timedelta(seconds=2)
    wait_server_clock_past(gw, target, at + timedelta(seconds=1))
    sql(gw, target, "INSERT INTO pitr_probe (batch) VALUES ('after')")

    acc = pitr_env.accessories["postgres"]
    host = pitr_env.hosts[acc.host]
    volume_before = accessory.current_volume(gw, pitr_env, acc)
    proc = inv("restore", "--host", "sandbox", "--at", format_utc(at), "--physical", "--yes", "--lock-wait", LOCK_WAIT,
               "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["data"]
    assert data["kind"] == "physical" and data["at"] == at.isoformat()
    assert data["latest_commit"] is None or datetime.fromisoformat(data["latest_commit"]) <= at

    assert sql(gw, target, "SELECT string_agg(batch, ',' ORDER BY batch) FROM pitr_probe") == "before-1,before-2"
    # The previous server is kept, stopped, with its volume; the accessory runs on the new one.
    kept = accessory.inspect(gw, host, data["kept_container"])
    assert kept.state == "exited"
    assert data["kept_volume"] == volume_before
    assert accessory.current_volume(gw, pitr_env, acc) == data["volume"] != volume_before
    assert accessory.boot(gw, "postgres", lock_wait=180).action == "unchanged"
    # Archiving runs again, on the new timeline.
    state = physical.archiver_state(gw, target)
    assert state is not None and not state.failing

    # The tool lists what it kept and removes it (never the live volume).
    listed = inv("restore.kept", "--host", "sandbox", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {"kind": "server", "name": data["kept_container"], "volume": data["kept_volume"], "state": "exited"}.items() \
        <= next(k for k in json.loads(listed.stdout)["data"] if k["name"] == data["kept_container"]).items()
    assert data["remove_kept"] == f"inv restore.drop-kept --host sandbox --name {data['kept_container']}"
    removed = inv("restore.drop-kept", "--host", "sandbox", "--name", data["kept_container"], "--yes", "--json")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert json.loads(removed.stdout)["data"]["removed"] == [data["kept_container"]]
    assert accessory.inspect(gw, host, data["kept_container"]).state == "absent"
    assert not gw.query(host, docker.volume_inspect_argv(data["kept_volume"]), check=False).ok
    assert gw.query(host, docker.volume_inspect_argv(data["volume"]), check=False).ok  # the live one stays


def test_restore_before_the_archive_falls_back_to_logical_and_says_so(pitr_env, gw):
    ensure_physical_backup(gw, pitr_env)
    earliest = physical.read_catalog(gw, pitr_env).earliest_any()
    assert earliest is not None
    proc = inv("restore", "--host", "sandbox", "--at", format_utc(earliest - timedelta(seconds=1)), "--physical",
               "--dry-run", timeout=300)
    assert "is before the archived range" in proc.stderr and "falling back to the newest logical backup" in proc.stderr
    assert "point-in-time restore plan" not in proc.stdout + proc.stderr


def wait_archiver(gw: Gateway, t: PgTarget, *, failing: bool, limit: float = 60.0) -> physical.ArchiverState:
    deadline = time.monotonic() + limit
    while True:
        state = physical.archiver_state(gw, t)
        if state is not None and state.failing == failing:
            return state
        assert time.monotonic() < deadline, f"the archiver did not {'fail' if failing else 'recover'}: {state}"
        time.sleep(0.5)


def test_restore_after_the_last_archived_wal_is_refused_with_the_latest_restorable_second(pitr_env, gw, target):
    acc = pitr_env.accessories["postgres"]
    host = pitr_env.hosts[acc.host]
    name = accessory.container_name(pitr_env, acc)
    ensure_physical_backup(gw, pitr_env)
    started = accessory.inspect(gw, host, name).started_at
    volume = accessory.current_volume(gw, pitr_env, acc)
    # Archiving breaks: the spool directory archive-push works in is closed to postgres, so WAL
    # written from now on never reaches the archive.
    gw.run(host, ("docker", "exec", "-u", "root", name, "chmod", "000", pgbr.SPOOL_PATH))
    try:
        sql(gw, target, "CREATE TABLE IF NOT EXISTS pitr_probe (batch text NOT NULL, "
                        "at timestamptz NOT NULL DEFAULT clock_timestamp())")
        sql(gw, target, "INSERT INTO pitr_probe (batch) VALUES ('not archived')")
        sql(gw, target, "SELECT pg_switch_wal()")
        state = wait_archiver(gw, target, failing=True)
        latest = state.last_archived_at.replace(microsecond=0)
        wait_server_clock_past(gw, target, latest + timedelta(seconds=1))
        proc = inv("restore", "--host", "sandbox", "--at", "now", "--physical", "--yes", "--lock-wait", LOCK_WAIT,
                   timeout=300)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"is after the latest restorable second, {format_utc(latest)}" in proc.stderr
        assert "the archiver fails since" in proc.stderr and "Traceback" not in proc.stderr
        assert f"restore to {format_utc(latest)} or earlier" in proc.stderr
    finally:
        gw.run(host, ("docker", "exec", "-u", "root", name, "chmod", "0750", pgbr.SPOOL_PATH))
    # Nothing changed: the same server on the same volume, no scratch server; archiving catches up.
    assert accessory.inspect(gw, host, name).started_at == started
    assert accessory.current_volume(gw, pitr_env, acc) == volume
    assert "-pitr-" not in gw.run(host, ("docker", "ps", "-a", "--format", "{{.Names}}")).stdout
    physical.mark_and_switch(gw, target, timeout=120)
    wait_archiver(gw, target, failing=False)


def test_backup_with_a_bad_type_is_refused_before_anything_runs(pitr_env):
    proc = inv("backup.db", "--host", "sandbox", "--type", "weekly")
    assert proc.returncode == 2
    assert "--type 'weekly' is not a backup type" in proc.stderr


def test_physical_drill_restores_the_latest_second_into_a_scratch_server_and_removes_it(pitr_env, gw, target):
    sql(gw, target, "CREATE TABLE IF NOT EXISTS pitr_probe (batch text NOT NULL, "
                    "at timestamptz NOT NULL DEFAULT clock_timestamp())")
    sql(gw, target, "INSERT INTO pitr_probe (batch) VALUES ('drill')")
    rows = int(sql(gw, target, "SELECT count(*) FROM pitr_probe"))
    ensure_physical_backup(gw, pitr_env)
    proc = inv("backup.verify", "--host", "sandbox", "--physical", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["data"]
    assert data["ok"] and data["tables"]["public.pitr_probe"] == rows
    host = pitr_env.hosts[pitr_env.accessories["postgres"].host]
    names = gw.run(host, ("docker", "ps", "-a", "--format", "{{.Names}}")).stdout
    assert "-pitr-" not in names


def test_check_physical_reports_freshness_and_writes_the_archive_lag_metric(pitr_env, gw, tmp_path):
    ensure_physical_backup(gw, pitr_env)
    prom = tmp_path / "pitr.prom"
    proc = inv("backup.check", "--host", "sandbox", "--kind", "physical", "--prometheus-file", str(prom))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sandbox physical: ok" in proc.stdout
    text = prom.read_text()
    assert 'ops_pitr_archive_lag_seconds{env="sandbox"}' in text and 'ops_pitr_archiver_failing{env="sandbox"} 0' in text
    assert 'ops_pitr_newest_backup_timestamp_seconds{env="sandbox",repo="2"' in text


def test_the_second_repository_restores_after_the_first_is_deleted(pitr_env, gw, target):
    acc = pitr_env.accessories["postgres"]
    host = pitr_env.hosts[acc.host]
    name = accessory.container_name(pitr_env, acc)
    ensure_physical_backup(gw, pitr_env)
    sql(gw, target, "CREATE TABLE IF NOT EXISTS pitr_probe (batch text NOT NULL, "
                    "at timestamptz NOT NULL DEFAULT clock_timestamp())")
    sql(gw, target, "TRUNCATE pitr_probe")
    sql(gw, target, "INSERT INTO pitr_probe (batch) VALUES ('kept')")
    written = datetime.fromisoformat(sql(gw, target, "SELECT max(at) FROM pitr_probe")).astimezone(UTC)
    at = written.replace(microsecond=0) + timedelta(seconds=2)
    wait_server_clock_past(gw, target, at + timedelta(seconds=1))
    sql(gw, target, "INSERT INTO pitr_probe (batch) VALUES ('later')")
    gw.run(host, ("docker", "exec", "-u", "postgres", name, "pgbackrest", "--io-timeout=10", "check"), timeout=180)

    repo1 = pitr_env.pitr.repos[0]
    client = services.s3_client(pitr_env)
    prefix = repo1.path.strip("/") + "/"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=repo1.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=repo1.bucket, Key=obj["Key"])

    proc = inv("restore", "--host", "sandbox", "--at", format_utc(at), "--physical", "--yes", "--lock-wait", LOCK_WAIT,
               "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "restoring from repo2" in proc.stderr
    assert sql(gw, target, "SELECT string_agg(batch, ',') FROM pitr_probe") == "kept"
    # The restored server re-created repo1's stanza and archives into both again.
    archive = physical.read_catalog(gw, pitr_env).archive
    assert set(archive) == {1, 2}
    data = json.loads(proc.stdout)["data"]
    gw.run(host, docker.rm_argv(data["kept_container"]))
    gw.run(host, ("docker", "volume", "rm", data["kept_volume"]))
