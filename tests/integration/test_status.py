"""inv status on the sandbox fleet: the on-call screen, judged item by item.

The sample app is deployed once (tests/support/deployed.py); each test breaks one real
thing (the app container on web1 stopped, a lock left by a dead operator) and puts it back.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from ops.deploy.release import current_release
from ops.layout import Layout
from ops.remote import Gateway
from ops.sandbox import services
from ops.sandbox.fleet import container_name
from tests.support import deployed
from tests.support.deployed import serving_everywhere

from .conftest import inv

deployed_app = deployed.deployed_app  # the shared fixture, under its name


def on_host(host: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container_name(host), *argv], capture_output=True, text=True,
                          timeout=120)


def items(proc) -> dict[tuple[str, str, str], dict]:
    data = json.loads(proc.stdout)["data"]
    return {(i["section"], i["host"], i["check"]): i for i in data["items"]}


@pytest.fixture(scope="module")
def fresh_backups(deployed_app, archiving):
    inv("backup.db", "--host", "sandbox", check=True)
    inv("backup.uploads", "--host", "sandbox", check=True)


@pytest.fixture(scope="module")
def archiving(deployed_app, sandbox_env):
    """WAL archiving works into both repositories: a boot re-creates a stanza whose (in-memory) S3
    repository a fault test emptied, and its check archives one segment (the archiver is then ok)."""
    services.ensure_bucket(sandbox_env)
    inv("accessory.boot", "--host", "sandbox", "postgres", "--lock-wait", "180", check=True, timeout=600)


def test_status_is_all_well_on_a_serving_fleet_with_fresh_backups(deployed_app, fresh_backups, sandbox_env):
    proc = inv("status", "--host", "sandbox", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = items(proc)
    for host in ("web1", "web2"):
        serving = got[("web", host, "serving")]
        assert serving["ok"] and serving["data"]["version"] == deployed_app.version
        assert serving["data"]["status"] == 200 and serving["data"]["recorded"] == deployed_app.version
        assert got[("web", host, "nginx")]["ok"]
        assert got[("web", host, "container")]["data"]["state"] == "running"
    assert got[("database", "db1", "reachable")]["data"]["size_bytes"] > 0
    conns = got[("database", "db1", "connections")]["data"]
    assert 0 < conns["used"] <= conns["max"]
    assert got[("lock", "-", "lock")]["detail"] == "free"
    assert got[("backup", "-", "db")]["data"]["age_seconds"] < 3600
    assert {("host", h, "disk app") for h in ("web1", "web2", "db1")} <= set(got)
    # pitr: (pgBackRest) is configured in the sandbox: the archiver, its lag, each repository.
    archiver = got[("pitr", "db1", "archiver")]
    assert archiver["ok"] and archiver["detail"].startswith("last archived ") and not archiver["data"]["failing"]
    assert got[("pitr", "db1", "archive lag")]["ok"]
    assert got[("pitr", "db1", "archive lag")]["data"]["limit_seconds"] == 3 * sandbox_env.pitr.archive_timeout
    for repo in ("repo1", "repo2"):
        assert got[("pitr", repo, "stanza")]["ok"], got[("pitr", repo, "stanza")]
        newest = got[("pitr", repo, "archive")]
        assert newest["ok"] and newest["data"]["max_wal"] >= archiver["data"]["last_archived_wal"]
        assert got[("pitr", repo, "backups")]["ok"]  # shown, judged only where physical is the default kind


def test_a_host_answering_502_is_shown_not_serving_and_status_exits_1(deployed_app, sandbox_env):
    with Gateway(sandbox_env) as gw:
        release = current_release(gw, sandbox_env.hosts["web1"])
    app = Layout(sandbox_env).web_container(release.id)
    assert on_host("web1", "docker", "stop", "-t", "5", app).returncode == 0
    try:
        proc = inv("status", "--host", "sandbox")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        web1 = next(line for line in proc.stdout.splitlines() if " web1 " in f" {line} " and "serving" in line)
        assert "FAIL" in web1 and "not serving: nginx answers 502" in web1
        web2 = next(line for line in proc.stdout.splitlines() if "web2" in line and "serving" in line)
        assert f"serving {deployed_app.version} (200" in web2
        assert "problem(s): web1 serving, web1 container" in proc.stdout
        assert proc.stderr.startswith("error: status of sandbox:") and "Traceback" not in proc.stderr
    finally:
        on_host("web1", "docker", "start", app)
        deadline = time.monotonic() + 60
        while serving_everywhere(deployed_app.env) is None and time.monotonic() < deadline:
            time.sleep(1)
    assert serving_everywhere(deployed_app.env) == deployed_app.version


def test_a_lock_left_by_a_dead_operator_shows_as_stale_with_the_command_to_release_it(deployed_app, sandbox_env):
    lock = Layout(sandbox_env).lock_dir
    holder = json.dumps({"action": "deploy", "actor": "gone@laptop", "since": "2026-11-29T01:00:00Z",
                         "token": "t0k3n", "machine": "laptop-that-closed", "pid": 4242})
    script = (f"mkdir {lock} && printf '%s' '{holder}' > {lock}/holder.json && "
              f"touch -d '@{int(time.time()) - 600}' {lock}/heartbeat")
    assert on_host("web2", "su", "deploy", "-c", script).returncode == 0
    try:
        proc = inv("status", "--host", "sandbox", "--json")
        assert proc.returncode == 1
        stale = items(proc)[("lock", "web2", "lock")]
        assert stale["ok"] is False and stale["data"]["stale"] is True
        assert "STALE (no heartbeat for" in stale["detail"] and "inv lock.release --host sandbox" in stale["detail"]
    finally:
        on_host("web2", "rm", "-rf", lock)


def test_doctor_checks_the_registry_from_each_host_through_the_tunnel_and_names_it_when_down(sandbox_env):
    from ops.sandbox import services

    proc = inv("doctor", "--host", "sandbox:web1", "--json")
    registry = next(c for c in json.loads(proc.stdout)["data"]["hosts"][0]["checks"] if c["name"] == "registry")
    assert registry["ok"] and registry["detail"] == "127.0.0.1:5000 answers through the SSH tunnel (200)"
    services.stop(services.services(sandbox_env)["registry"])
    try:
        down = inv("doctor", "--host", "sandbox:web1")
    finally:
        inv("sandbox.up", check=True)
    assert down.returncode == 1
    line = next(ln for ln in down.stdout.splitlines() if "registry" in ln)
    assert "FAIL" in line and "127.0.0.1:5000 not reachable through the SSH tunnel" in line
    assert "is the registry running on this machine at 127.0.0.1:5000?" in line
    assert inv("doctor", "--host", "sandbox:web1").returncode == 0


def test_a_repository_that_lost_its_backup_catalog_fails_status_and_doctor_naming_it(archiving, sandbox_env):
    # repo2's backup.info (and its copy) moved aside in the real S3: pgBackRest cannot read the
    # stanza there; repo1 and the archiver are untouched. Put back exactly as it was after.
    repo = sandbox_env.pitr.repos[1]
    client = services.s3_client(sandbox_env)
    base = f"{repo.path.strip('/')}/backup/{sandbox_env.pitr.stanza}/backup.info"
    moved = []
    try:
        for key in (base, base + ".copy"):
            client.copy_object(Bucket=repo.bucket, Key=key + ".aside", CopySource={"Bucket": repo.bucket, "Key": key})
            client.delete_object(Bucket=repo.bucket, Key=key)
            moved.append(key)
        proc = inv("status", "--host", "sandbox", "--json")
        doctor = inv("doctor", "--host", "sandbox:db1")
    finally:
        for key in moved:
            client.copy_object(Bucket=repo.bucket, Key=key, CopySource={"Bucket": repo.bucket, "Key": key + ".aside"})
            client.delete_object(Bucket=repo.bucket, Key=key + ".aside")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    got = items(proc)
    bad = got[("pitr", "repo2", "stanza")]
    assert not bad["ok"] and "s3://ops-sandbox-backups-copy/pgbackrest/athlete-platform" in bad["detail"]
    assert bad["data"]["code"] not in (0, 2)
    assert got[("pitr", "repo1", "stanza")]["ok"] and got[("pitr", "db1", "archiver")]["ok"]
    assert {where for _, where, _ in [k for k, v in got.items() if not v["ok"]]} == {"repo2"}
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    line = next(ln for ln in doctor.stdout.splitlines() if "pitr repo2" in ln)
    assert "FAIL" in line and "ops-sandbox-backups-copy" in line
    assert " ok " in next(ln for ln in doctor.stdout.splitlines() if "pitr repo1" in ln)
    assert "error: doctor found problems on db1" in doctor.stderr
    # Put back: both repositories readable again.
    assert inv("doctor", "--host", "sandbox:db1").returncode == 0
