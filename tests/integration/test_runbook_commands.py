"""The commands RUNBOOK.md tells on-call people to type, run as they would type them."""

from __future__ import annotations

import json
import subprocess

from ops.sandbox.fleet import container_name

from .conftest import inv


def test_doctor_shows_three_healthy_hosts(sandbox_env):
    proc = inv("doctor", "--host", "sandbox")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 of 3 host(s) healthy" in proc.stdout
    for host in ("web1", "web2", "db1"):
        assert f"\n{host} " in proc.stdout


def test_doctor_json_for_one_host(sandbox_env):
    proc = inv("doctor", "--host", "sandbox:db1", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["data"]
    assert data["ok"] is True
    assert [h["host"] for h in data["hosts"]] == ["db1"]
    assert {c["name"] for c in data["hosts"][0]["checks"]} >= {"ssh", "host key", "docker", "clock"}


def test_stopped_host_is_named_while_the_others_report(sandbox_env):
    name = container_name("web2")
    subprocess.run(["docker", "stop", "-t", "2", name], check=True, capture_output=True, timeout=60)
    try:
        proc = inv("doctor", "--host", "sandbox")
        assert proc.returncode == 1
        assert "error: doctor found problems on web2" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert "2 of 3 host(s) healthy" in proc.stdout
        web2 = proc.stdout.split("\nweb2 ")[1].split("\ndb1 ")[0]
        assert "FAIL" in web2 and "cannot reach deploy@127.0.0.1:22102" in web2
    finally:
        inv("sandbox.up", check=True)
    assert inv("doctor", "--host", "sandbox:web2").returncode == 0


def test_hosts_trust_shows_fingerprints_and_keeps_trusted_keys(sandbox_env):
    before = sandbox_env.ssh.known_hosts.read_text()
    proc = inv("hosts.trust", "--host", "sandbox:web1")
    assert proc.returncode == 0, proc.stderr
    assert "web1 ([127.0.0.1]:22101): trusted" in proc.stdout
    assert "ssh-ed25519 SHA256:" in proc.stdout
    assert "nothing to do" in proc.stdout
    assert sandbox_env.ssh.known_hosts.read_text() == before


def test_unknown_environment_is_one_line_listing_what_exists():
    proc = inv("doctor", "--host", "prdo")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: unknown environment 'prdo' in --host 'prdo' — known environments: "
                                   "prod, sandbox, staging (files in inventory/)")


def test_sandbox_status_reports_everything_running(sandbox_env):
    proc = inv("sandbox.status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("web1", "web2", "db1", "registry", "s3"):
        assert any(line.startswith(name) and "running" in line for line in proc.stdout.splitlines()), name
