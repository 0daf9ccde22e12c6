"""Hands on the fleet: app.logs -f, app.exec -it, ssh, db.psql, as an on-call person types them."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

from ops.sshshell import ssh_argv
from tests.support import deployed
from tests.support.fleet import INV, ROOT

from .conftest import inv

deployed_app = deployed.deployed_app  # the shared fixture, under its name


def hit(port: int, path: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(f"http://127.0.0.1:{port}{path}", timeout=5).read()
    except OSError:
        pass


def test_logs_follow_interleaves_every_hosts_app_and_nginx_lines_until_ctrl_c(deployed_app):
    marker = f"/api/info?follow={uuid.uuid4().hex[:10]}"
    proc = subprocess.Popen([INV, "app.logs", "--host", "sandbox", "-f", "--nginx", "--lines", "1"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        seen: set[str] = set()
        while time.monotonic() < deadline and seen != {"web1", "web2"}:
            hit(8101, marker)
            hit(8102, marker)
            time.sleep(0.5)
            seen = {ln.split()[0] for ln in list(lines) if marker in ln and " nginx " in ln}
        assert seen == {"web1", "web2"}, lines[-20:]
        assert any(ln.startswith("web1 app ") for ln in lines) and any(ln.startswith("web2 app ") for ln in lines)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 130
    assert "Traceback" not in proc.stderr.read()


def test_logs_with_a_bad_since_is_one_line_and_exit_2(deployed_app):
    proc = inv("app.logs", "--host", "sandbox", "--since", "yesterday-ish")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: --since 'yesterday-ish' is neither a duration nor a timestamp — "
                                   "e.g. --since 10m, 1h30m or 2026-11-24T03:00:00Z")


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script for a terminal")
def test_exec_it_gives_the_command_a_terminal_and_its_exit_status(deployed_app):
    cmd = f"{INV} app.exec --host sandbox:web1 -it -- sh -c 'tty; echo on-$APP_VERSION; exit 3'"
    proc = subprocess.run(["script", "-qec", cmd, "/dev/null"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "/dev/pts/" in proc.stdout and f"on-{deployed_app.version}" in proc.stdout


def test_ssh_runs_on_the_named_host_and_refuses_a_host_key_not_in_known_hosts(deployed_app, sandbox_env, tmp_path):
    proc = inv("ssh", "--host", "sandbox:web2", "--", "cat", "/etc/hostname")
    assert proc.returncode == 0 and proc.stdout.strip() == "web2", proc.stderr
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    env = dataclasses.replace(sandbox_env, ssh=dataclasses.replace(sandbox_env.ssh, known_hosts=empty))
    refused = subprocess.run(ssh_argv(env, env.hosts["web1"], ["hostname"]), capture_output=True, text=True,
                             timeout=30, stdin=subprocess.DEVNULL)
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr
    assert empty.read_text() == ""  # nothing was added


def test_psql_is_read_only_unless_write_and_a_write_session_is_audited(deployed_app):
    table = f"zz_psql_{uuid.uuid4().hex[:8]}"
    ro = inv("db.psql", "--host", "sandbox", "-c", f"CREATE TABLE {table} (i int)")
    assert ro.returncode == 1 and "cannot execute CREATE TABLE in a read-only transaction" in ro.stderr
    rw = inv("db.psql", "--host", "sandbox", "--write", "-c", f"CREATE TABLE {table} (i int); DROP TABLE {table}")
    assert rw.returncode == 0 and "CREATE TABLE\nDROP TABLE" in rw.stdout, rw.stderr
    audit = inv("audit", "--host", "sandbox:db1", "--lines", "4").stdout
    assert "db.psql --write" in audit
    one = inv("db.psql", "--host", "sandbox", "-c", "SELECT 40 + 2 AS answer")
    assert one.returncode == 0 and "42" in one.stdout
