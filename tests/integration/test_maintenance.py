"""inv maintenance.on / off on the sandbox fleet: 503 + Retry-After by hand, and back."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.support import deployed
from tests.support.deployed import serving_everywhere

from .conftest import inv

PORTS = {"web1": 8101, "web2": 8102}

deployed_app = deployed.deployed_app  # the shared fixture, under its name


def get(port: int, path: str = "/") -> tuple[int, dict, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_dry_run_shows_the_plan_and_changes_nothing(deployed_app):
    proc = inv("maintenance.on", "--host", "sandbox", "--dry-run", "--message", "Upgrading storage")
    assert proc.returncode == 0, proc.stderr
    assert "plan: take the site on web1, web2 off (503 + Retry-After)" in proc.stdout
    assert '503 "Upgrading storage"' in proc.stdout and "dry-run: nothing was changed" in proc.stdout
    assert all(get(port)[0] == 200 for port in PORTS.values())


def test_a_message_with_shell_or_nginx_syntax_is_refused_before_anything_runs(deployed_app):
    proc = inv("maintenance.on", "--host", "sandbox", "--yes", "--message", 'back soon"; return 200 $x;')
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --message") and "cannot carry" in proc.stderr
    assert all(get(port)[0] == 200 for port in PORTS.values())


def test_maintenance_on_answers_503_with_retry_after_everywhere_then_off_brings_the_same_release_back(deployed_app):
    proc = inv("maintenance.on", "--host", "sandbox", "--yes", "--message", "Upgrading storage, back at 14:00")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        for port in PORTS.values():
            status, headers, body = get(port, "/api/info")
            assert status == 503 and headers["Retry-After"] == "60"
            assert body == b"Upgrading storage, back at 14:00\n"
            assert headers["X-Frame-Options"] == "DENY"  # the proxy still adds its headers
        status_proc = inv("status", "--host", "sandbox", "--json")
        assert status_proc.returncode == 1
        found = {(i["host"], i["check"]): i for i in json.loads(status_proc.stdout)["data"]["items"]}
        assert "not serving: nginx answers 503" in found[("web1", "serving")]["detail"]
        assert "inv maintenance.off --host sandbox" in found[("web2", "maintenance")]["detail"]
        audit = inv("audit", "--host", "sandbox:web1", "--lines", "3").stdout
        assert "maintenance.on" in audit
        # A deploy or a rollback now would put the app next to the 503 page: refused, nothing changed.
        for argv in (("deploy", "--version", deployed_app.version), ("rollback",)):
            refused = inv(argv[0], "--host", "sandbox", *argv[1:])
            assert refused.returncode == 2, refused.stdout + refused.stderr
            (error,) = [ln for ln in refused.stderr.splitlines() if ln.startswith("error:")]
            assert error.startswith(f"error: {argv[0]} refused: web1, web2 are in maintenance "
                                    "(athlete-platform-maintenance answers 503); nothing was changed")
            assert "inv maintenance.off --host sandbox" in error and "Traceback" not in refused.stderr
        assert all(get(port, "/api/info")[0] == 503 for port in PORTS.values())
        last = inv("audit", "--host", "sandbox:web1", "--lines", "1").stdout.strip().splitlines()[-1]
        assert " maintenance.on " in f" {last} "  # the refusals were never started (nothing audited)
    finally:
        off = inv("maintenance.off", "--host", "sandbox")
    assert off.returncode == 0, off.stdout + off.stderr
    assert "maintenance OFF: web1, web2 serve the app again" in off.stdout
    assert serving_everywhere(deployed_app.env) == deployed_app.version
    assert inv("lock.status", "--host", "sandbox").returncode == 0


def test_off_when_not_in_maintenance_changes_nothing(deployed_app):
    proc = inv("maintenance.off", "--host", "sandbox:web2")
    assert proc.returncode == 0, proc.stderr
    assert "nothing: not in maintenance" in proc.stdout
