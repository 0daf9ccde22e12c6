"""maintenance.on failing on one host: the site is brought back everywhere, the lock is free,
the operator sees one error naming the host."""

from __future__ import annotations

import subprocess

from ops.layout import Layout
from ops.sandbox.fleet import container_name
from tests.faults.helpers import assert_lock_free
from tests.support import deployed
from tests.support.deployed import serving_everywhere
from tests.support.fleet import inv

deployed_app = deployed.deployed_app  # the shared fixture, under its name


def on_host(host: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container_name(host), *argv], capture_output=True, text=True,
                          timeout=60)


def test_maintenance_on_failing_on_web2_brings_every_host_back_and_frees_the_lock(deployed_app, sandbox_env):
    # A file where web2's maintenance config directory must go: its `mkdir -p` fails there.
    blocker = Layout(sandbox_env).path("maintenance")
    on_host("web2", "rm", "-rf", blocker)
    assert on_host("web2", "su", "deploy", "-c", f"touch {blocker}").returncode == 0
    try:
        proc = inv("maintenance.on", "--host", "sandbox", "--yes")
    finally:
        on_host("web2", "rm", "-f", blocker)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    error = proc.stderr.strip().splitlines()
    assert error[0].startswith("error: maintenance.on failed; the site was brought back:") and "web2" in error[0]
    assert "Traceback" not in proc.stderr
    assert serving_everywhere(deployed_app.env) == deployed_app.version
    assert_lock_free()
    for host in ("web1", "web2"):
        ps = on_host(host, "docker", "ps", "-a", "--format", "{{.Names}}").stdout.split()
        assert f"{sandbox_env.app}-maintenance" not in ps
    assert "maintenance.on" in inv("audit", "--host", "sandbox:web1", "--lines", "2").stdout
