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
def fresh_backups(deployed_app):
    inv("backup.db", "--host", "sandbox", check=True)
    inv("backup.uploads", "--host", "sandbox", check=True)


def test_status_is_all_well_on_a_serving_fleet_with_fresh_backups(deployed_app, fresh_backups):
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
