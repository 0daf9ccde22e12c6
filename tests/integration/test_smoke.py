"""inv smoke on the sandbox fleet: the seed's success criteria against the running sample app.

Faults are real: a proxy in front of web1's nginx drops one header, or really waits
before one page (tests/support/faulty_proxy.py). Thresholds come from inventory/sandbox.yml
(pages 3 s, WebSocket 1 s).
"""

from __future__ import annotations

import dataclasses
import json

from ops import smoke
from tests.support import deployed
from tests.support.faulty_proxy import faulty_proxy

from .conftest import inv

WEB1 = 8101

deployed_app = deployed.deployed_app  # the shared fixture, under its name


def checks(proc) -> dict[tuple[str, str], dict]:
    data = json.loads(proc.stdout)["data"]
    return {(c["target"], c["name"]): c for c in data["checks"]}


def test_smoke_passes_through_each_web_hosts_nginx(deployed_app):
    proc = inv("smoke", "--host", "sandbox", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = checks(proc)
    for host in ("web1", "web2"):
        for name in ("page /", "page /api/health", "page /api/info", "header X-Frame-Options",
                     "header Content-Security-Policy", "header Referrer-Policy", "websocket upgrade"):
            assert got[(host, name)]["ok"], (host, name, got[(host, name)])
        assert got[(host, "websocket upgrade")]["detail"].startswith("101 in ")
    # Plain HTTP: HSTS is not required there, and sending it is reported, not failed.
    assert not any(name == "header Strict-Transport-Security" for _, name in got)


def test_smoke_fails_on_a_missing_security_header(deployed_app):
    with faulty_proxy(WEB1, drop_header="Content-Security-Policy") as url:
        proc = inv("smoke", "--host", "sandbox", "--url", url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    csp = next(line for line in proc.stdout.splitlines() if "header Content-Security-Policy" in line)
    assert "FAIL" in csp and "missing on the home page" in csp
    frame = next(line for line in proc.stdout.splitlines() if "header X-Frame-Options" in line)
    assert " ok " in frame
    assert "smoke: 1 of " in proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("error: smoke check of sandbox failed: 1 check(s)")


def test_smoke_fails_on_a_page_slower_than_the_threshold(deployed_app):
    # The inventory's 3 s, and a page that really takes 3.5 s through the proxy.
    with faulty_proxy(WEB1, delay={"/api/info": 3.5}) as url:
        proc = inv("smoke", "--host", "sandbox", "--url", url, "--json")
    assert proc.returncode == 1
    got = checks(proc)
    slow = got[("127.0.0.1", "page /api/info")]
    assert slow["ok"] is False and "(slower than 3 s)" in slow["detail"] and slow["detail"].startswith("200 in ")
    assert got[("127.0.0.1", "page /")]["ok"] and got[("127.0.0.1", "websocket upgrade")]["ok"]


def test_a_websocket_endpoint_that_does_not_upgrade_fails(deployed_app):
    env = dataclasses.replace(deployed_app.env, smoke=dataclasses.replace(deployed_app.env.smoke,
                                                                          socketio_path="/not-socket-io/"))
    report = smoke.run(env, url=f"http://127.0.0.1:{WEB1}")
    ws = next(c for c in report.checks if c.name == "websocket upgrade")
    assert not report.ok and not ws.ok and ws.detail.startswith("404 in ") and "(not upgraded)" in ws.detail
