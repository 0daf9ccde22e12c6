"""inv deploy / rollback on the sandbox fleet, with the sample app built from a git checkout.

The tests run in file order and share the fleet: v1 then v2 are deployed once; the
failure cases then start from "both web hosts serve v2".
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from ops import s3
from ops.appenv import load_env_file
from ops.deploy.pipeline import DeployFailed, DeployRequest, deploy, rollback
from ops.deploy.release import current_release_id
from ops.lock import EnvironmentLock, Holder, LockHeld
from ops.lock import status as lock_status
from ops.remote import FleetError, Gateway
from ops.sandbox.fleet import container_name
from tests.support.app_repo import apply_variant, make_app_repo

from .conftest import ROOT, inv

WEB_PORTS = {"web1": 8101, "web2": 8102}
DB_PORT = 15432


def get(port: int, path: str = "/api/info") -> tuple[int, dict, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=5) as resp:
            body = resp.read()
            return resp.status, dict(resp.headers), json.loads(body) if body.startswith(b"{") else {}
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), {}


def served_versions() -> dict[str, str]:
    return {name: get(port)[1].get("X-App-Version", "?") for name, port in WEB_PORTS.items()}


def db_conn(env_values):
    from ops.postgres import DatabaseURL

    url = DatabaseURL.parse(env_values["DATABASE_URL"])
    return psycopg.connect(host="127.0.0.1", port=DB_PORT, user=url.user, password=url.password,
                           dbname=url.dbname, autocommit=True, connect_timeout=5)


class Fleet:
    """The sandbox env pointed at a temp app checkout and a temp env file."""

    def __init__(self, base_env, tmp: Path):
        self.repo = make_app_repo(tmp / "app")
        self.env_file = tmp / "app.env"
        self.env_file.write_bytes(base_env.env_file.read_bytes())
        os.chmod(self.env_file, 0o600)
        self.env = dataclasses.replace(base_env, env_file=self.env_file,
                                       build=dataclasses.replace(base_env.build, source=self.repo))
        self.values = load_env_file(self.env_file)
        self.lines: list[str] = []

    def set_env(self, name: str, value: str) -> None:
        lines = [ln for ln in self.env_file.read_text().splitlines() if not ln.startswith(f"{name}=")]
        self.env_file.write_text("\n".join([*lines, f"{name}={value}"]) + "\n")

    def deploy(self, **kw):
        return deploy(self.env, DeployRequest(**kw), self.lines.append)

    def rollback(self, to=None, **kw):
        return rollback(self.env, DeployRequest(**kw), to, self.lines.append)


@pytest.fixture(scope="module")
def fleet(sandbox_env, tmp_path_factory):
    inv("accessory.boot", "--host", "sandbox", "postgres", check=True)
    f = Fleet(sandbox_env, tmp_path_factory.mktemp("deploy"))
    # The sandbox database outlives test runs (a named volume): start from an empty one
    # so "the v2 migration is applied by the v2 deploy" means something.
    with db_conn(f.values) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    f.set_env("SENTRY_ENVIRONMENT", "sandbox-v1")
    f.v1 = f.deploy()
    f.v1_info = get(8101)[2]
    apply_variant(f.repo, "v2")
    f.set_env("SENTRY_ENVIRONMENT", "sandbox-v2")
    f.v2 = f.deploy()
    return f


def test_v1_then_v2_both_hosts_serve_v2_and_the_new_migration_is_recorded_once(fleet):
    assert served_versions() == {"web1": fleet.v2.release.version, "web2": fleet.v2.release.version}
    assert len(fleet.v2.migrations.applied) == 1
    with db_conn(fleet.values) as conn:
        rows = conn.execute("SELECT migration_name, count(*) FROM _prisma_migrations "
                            "WHERE finished_at IS NOT NULL GROUP BY 1 ORDER BY 1").fetchall()
    assert [r[1] for r in rows] == [1, 1, 1]
    assert rows[-1][0] == fleet.v2.migrations.applied[0]


def test_site_carries_security_headers_and_upgrades_websockets(fleet):
    status, headers, _ = get(8101, "/")
    assert status == 200
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    # Plain http: no HSTS (it is sent over TLS only, see tests/integration/test_tls.py).
    assert "Strict-Transport-Security" not in headers
    import socket
    with socket.create_connection(("127.0.0.1", 8102), timeout=5) as sock:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 101")
    assert "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in answer


def test_release_history_audit_and_env_file_are_recorded_on_each_host(fleet, sandbox_env):
    with Gateway(sandbox_env) as gw:
        for name in WEB_PORTS:
            host = sandbox_env.hosts[name]
            assert current_release_id(gw, host) == fleet.v2.release.id
            mode = gw.query(host, ("stat", "-c", "%a", f"{sandbox_env.app_dir}/releases/{fleet.v2.release.id}/app.env"))
            assert mode.stdout.strip() == "600"
    proc = inv("releases", "--host", "sandbox", "--json", check=True)
    data = json.loads(proc.stdout)["data"]
    assert data["web1"]["current"] == fleet.v2.release.id
    assert data["web1"]["releases"][0]["env_sha256"] == fleet.v2.release.env_sha256
    assert data["web1"]["releases"][0]["digest"].startswith("sha256:")
    audit = inv("audit", "--host", "sandbox", check=True).stdout
    assert "deploy" in audit and fleet.v2.release.version in audit
    # The central copy survives the loss of a host: release record and audit events in S3.
    client = s3.client(sandbox_env)
    record = json.loads(client.get_object(Bucket=sandbox_env.s3.bucket, Key=s3.key(
        sandbox_env, "releases", "sandbox", f"{fleet.v2.release.id}.json"))["Body"].read())
    assert record["version"] == fleet.v2.release.version and record["outcome"] == "current"
    events = client.list_objects_v2(Bucket=sandbox_env.s3.bucket, Prefix=s3.key(sandbox_env, "audit", "sandbox"))
    assert any(fleet.v2.release.version in obj["Key"] or "deploy" in obj["Key"] for obj in events.get("Contents", []))


def test_broken_health_check_fails_and_every_host_still_serves_v2(fleet, sandbox_env):
    apply_variant(fleet.repo, "broken-health")
    with pytest.raises(DeployFailed) as err:
        fleet.deploy(health_timeout=8)
    assert "failed its health check" in str(err.value)
    assert served_versions() == {"web1": fleet.v2.release.version, "web2": fleet.v2.release.version}
    with Gateway(sandbox_env) as gw:
        assert all(h is None for h in lock_status(gw, list(sandbox_env.hosts.values())).values())
    audit = inv("audit", "--host", "sandbox", "--json", check=True)
    last = json.loads(audit.stdout)["data"]["web1"][-1]
    assert last["action"] == "deploy" and last["outcome"] == "failed"
    subprocess.run(["git", "-C", str(fleet.repo), "revert", "--no-edit", "HEAD"], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


def test_failing_migration_stops_before_any_switch(fleet):
    apply_variant(fleet.repo, "failing-migration")
    with pytest.raises(Exception) as err:
        fleet.deploy()
    assert "migration failed" in str(err.value)
    assert "nothing was switched" in str(err.value)
    assert served_versions() == {"web1": fleet.v2.release.version, "web2": fleet.v2.release.version}
    # What an operator does next (RUNBOOK): mark the failed migration rolled back.
    with db_conn(fleet.values) as conn:
        failed = conn.execute("SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NULL").fetchall()
        assert len(failed) == 1
        conn.execute("UPDATE _prisma_migrations SET rolled_back_at = now() WHERE finished_at IS NULL")
    subprocess.run(["git", "-C", str(fleet.repo), "revert", "--no-edit", "HEAD"], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


def test_second_deploy_is_refused_naming_the_holder(fleet, sandbox_env):
    with Gateway(sandbox_env) as gw:
        with EnvironmentLock(gw, list(sandbox_env.hosts.values()), Holder("deploy", "other", actor="alice@laptop")):
            with pytest.raises(LockHeld) as err:
                fleet.deploy(version=fleet.v2.release.version)
    assert "locked by alice@laptop" in str(err.value)
    assert "(deploy other," in str(err.value)


def test_host_down_at_preflight_changes_nothing_anywhere(fleet, sandbox_env):
    subprocess.run(["docker", "stop", "-t", "2", container_name("web2")], check=True, capture_output=True, timeout=60)
    try:
        with pytest.raises(FleetError) as err:
            fleet.deploy(version=fleet.v1.release.version)
        assert "preflight" in str(err.value) and "web2" in str(err.value)
        assert get(8101)[1]["X-App-Version"] == fleet.v2.release.version
        with Gateway(sandbox_env) as gw:
            assert current_release_id(gw, sandbox_env.hosts["web1"]) == fleet.v2.release.id
            assert lock_status(gw, [sandbox_env.hosts["web1"], sandbox_env.hosts["db1"]]) == {"web1": None, "db1": None}
    finally:
        inv("sandbox.up", check=True)
    for _ in range(60):  # the proxy container restarts with its host (restart policy)
        if get(8102)[0] == 200:
            break
        time.sleep(1)
    assert served_versions()["web2"] == fleet.v2.release.version


def test_rollback_serves_v1_again_with_v1s_env(fleet):
    result = fleet.rollback()
    assert result.release.id == fleet.v1.release.id
    assert served_versions() == {"web1": fleet.v1.release.version, "web2": fleet.v1.release.version}
    info = get(8101)[2]
    assert info["env_fingerprint"] == fleet.v1_info["env_fingerprint"]
    assert result.migrations.after == fleet.v2.migrations.applied  # listed, not reversed


def test_sigint_during_a_deploy_releases_the_lock_and_leaves_one_version(fleet, sandbox_env):
    target = fleet.v2.release.version
    inventory = fleet.env  # the CLI reads inventory/sandbox.yml: deploy a pushed tag with --version
    proc = subprocess.Popen([str(Path(sys.executable).parent / "inv"), "deploy", "--host", "sandbox",
                             "--version", target], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, stdin=subprocess.DEVNULL)
    seen = []
    deadline = time.monotonic() + 240
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("switching"):
            proc.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(seen)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode != 0, "".join(seen) + out
    versions = served_versions()
    assert len(set(versions.values())) == 1, versions
    with Gateway(inventory) as gw:
        assert all(h is None for h in lock_status(gw, list(inventory.hosts.values())).values())


def test_app_exec_runs_in_the_current_release_with_its_env_and_passes_the_exit_code(fleet):
    proc = inv("app.exec", "--host", "sandbox", "--", "node", "-e",
               "console.log(process.env.APP_VERSION + ' ' + process.env.SENTRY_ENVIRONMENT); process.exit(4)")
    assert proc.returncode == 4
    version, sentry_env = proc.stdout.split()
    assert version == served_versions()["web1"]
    assert sentry_env.startswith("sandbox")  # the env file that went with that release


def test_app_logs_prefix_each_line_with_its_host(fleet):
    proc = inv("app.logs", "--host", "sandbox", "--lines", "5", check=True)
    hosts = {line.split(" | ", 1)[0] for line in proc.stdout.splitlines() if " | " in line}
    assert hosts == {"web1", "web2"}


def test_lock_wait_queues_behind_another_operation_then_deploys(fleet, sandbox_env):
    import threading

    gw = Gateway(sandbox_env)
    other = EnvironmentLock(gw, list(sandbox_env.hosts.values()), Holder("backup.db", actor="cron@ops"))
    other.acquire()
    releaser = threading.Timer(3.0, other.release)
    releaser.start()
    try:
        result = fleet.deploy(version=fleet.v2.release.version, lock_wait=60)
    finally:
        releaser.join()
        gw.close()
    assert result.release.version == fleet.v2.release.version
    assert served_versions() == {"web1": fleet.v2.release.version, "web2": fleet.v2.release.version}
