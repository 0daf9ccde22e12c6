"""The Next.js sample app's image on the local Docker engine (not the sandbox fleet).

Built through the tool's CA-bundle path with the same context and tags each run, so a
warm run reuses every layer. Checks what a deploy relies on: the DB-gated health route,
X-App-Version on every answer, hashed static assets, uploads, a clean SIGTERM with a
Socket.io client connected, and that the operator's CA bundle leaves no trace in the
final image.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.support import nextjs
from tests.support.nextjs import docker

pytestmark = pytest.mark.skipif(nextjs.docker_problem() is not None,
                                reason=f"needs a local Docker engine: {nextjs.docker_problem()}")

# Inside the container: nothing listens on port 9, so `SELECT 1` fails at once.
NOWHERE_DB = "postgresql://app:unused@127.0.0.1:9/app?schema=public"
RUN_VERSION = "it-run-3f2a"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from ops.sandbox.images import BASE_IMAGE, ensure_base  # local debootstrap base, no fleet

    ensure_base()
    bundle = nextjs.operator_ca_bundle(tmp_path_factory.mktemp("ca"))
    times = nextjs.build(bundle, BASE_IMAGE)
    print(f"nextjs image build: {', '.join(f'{k} {v:.1f}s' for k, v in times.items())}")
    assert not (nextjs.APP_DIR / nextjs.CA_BUNDLE_NAME).exists(), "the CA bundle was left in the build context"
    return times


@pytest.fixture
def app(built):
    """A running container of the image (DATABASE_URL pointing at nothing); its URL."""
    name = f"ops-test-nextjs-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "-p", "127.0.0.1::3000",
           "-e", f"DATABASE_URL={NOWHERE_DB}", "-e", f"APP_VERSION={RUN_VERSION}", "-e", "MAX_FILE_SIZE=1000",
           nextjs.IMAGE)
    try:
        url = f"http://127.0.0.1:{nextjs.published_port(name)}"
        nextjs.wait_for_http(f"{url}/api/info")
        yield name, url
    finally:
        docker("rm", "-f", name, check=False)


def test_health_is_503_without_a_database_and_every_answer_carries_the_version(app):
    _, url = app
    status, headers, body = nextjs.http_get(f"{url}/api/health")
    assert status == 503 and headers["X-App-Version"] == RUN_VERSION
    assert json.loads(body)["reason"] == "database unreachable"

    status, headers, body = nextjs.http_get(f"{url}/api/info")
    info = json.loads(body)
    assert status == 200 and headers["X-App-Version"] == RUN_VERSION
    assert info["version"] == RUN_VERSION and info["next"].startswith("15.")
    assert "DATABASE_URL" in info["env_present"] and NOWHERE_DB not in body.decode()

    status, headers, _ = nextjs.http_get(f"{url}/no-such-page")
    assert status == 404 and headers["X-App-Version"] == RUN_VERSION


def test_docker_healthcheck_fails_while_the_database_is_unreachable(app):
    name, _ = app
    assert docker("exec", name, "node", "scripts/healthcheck.js", check=False).returncode == 1


def test_home_page_references_hashed_static_chunks_that_are_served(app):
    _, url = app
    status, headers, body = nextjs.http_get(f"{url}/")
    assert status == 200 and headers["X-App-Version"] == RUN_VERSION
    html = body.decode()
    assert f'id="server-version">{RUN_VERSION}<' in html
    chunks = sorted(set(re.findall(r'/_next/static/chunks/[^"]+-[0-9a-f]{8,}\.js', html)))
    assert chunks, html[:500]
    for chunk in chunks:
        status, headers, _ = nextjs.http_get(url + chunk)
        assert status == 200, chunk
        assert "immutable" in headers["Cache-Control"] and headers["X-App-Version"] == RUN_VERSION


def test_uploads_are_stored_served_and_capped_by_max_file_size(app):
    _, url = app
    status, _, body = nextjs.http_get(f"{url}/api/upload?name=report.txt", method="POST", data=b"hello uploads")
    assert status == 201 and json.loads(body) == {"name": "report.txt", "size": 13, "url": "/uploads/report.txt"}
    assert nextjs.http_get(f"{url}/uploads/report.txt")[2] == b"hello uploads"
    status, _, body = nextjs.http_get(f"{url}/api/upload?name=big.bin", method="POST", data=b"x" * 1001)
    assert status == 413 and json.loads(body)["max_file_size"] == 1000
    assert nextjs.http_get(f"{url}/uploads/big.bin")[0] == 404
    assert nextjs.http_get(f"{url}/api/upload?name=../etc/passwd", method="POST", data=b"x")[0] == 400


def test_sigterm_closes_socketio_clients_cleanly_and_exits_0_within_5_seconds(app):
    name, url = app
    probes = {}
    try:
        for transport in ("websocket", "polling"):
            probe = f"{name}-{transport}"
            docker("run", "-d", "--name", probe, "--network", "host", nextjs.BUILD_STAGE_IMAGE,
                   "node", "tools/socket-probe.js", url, transport)
            probes[transport] = probe
        for transport, probe in probes.items():
            lines = nextjs.wait_for_log_line(probe, lambda line: line["event"] == "connected")
            assert lines[0] == {"event": "connected", "transport": transport, "version": RUN_VERSION}

        docker("kill", "--signal", "TERM", name)
        exit_code = docker("wait", name, timeout=30).stdout.strip()
        assert exit_code == "0", docker("logs", name, check=False).stderr
        logs = docker("logs", name).stdout
        # drained by itself, not cut off by its own drain timeout
        assert "shutdown complete (drained)" in logs and "drain timeout" not in logs, logs

        for transport, probe in probes.items():
            events = nextjs.wait_for_log_line(probe, lambda line: line["event"] == "disconnect")
            disconnect = events[-1]
            # Told first, then the transport closed: the client reconnects by itself
            # (an "io server disconnect" would keep it away).
            assert {"event": "server:shutdown", "version": RUN_VERSION} in events, (transport, events)
            assert disconnect["will_reconnect"] is True, (transport, events)
            expected = {"transport close"} if transport == "websocket" else {"transport close", "transport error"}
            assert disconnect["reason"] in expected, (transport, events)
    finally:
        for probe in probes.values():
            docker("rm", "-f", probe, check=False)


def test_image_runs_as_uid_10001_with_a_healthcheck_on_the_health_route(built):
    config = json.loads(docker("image", "inspect", nextjs.IMAGE).stdout)[0]["Config"]
    assert config["User"] == "app"
    assert "scripts/healthcheck.js" in config["Healthcheck"]["Test"]
    assert docker("run", "--rm", nextjs.IMAGE, "id", "-u").stdout.strip() == "10001"


def test_the_operator_ca_bundle_leaves_no_trace_in_the_final_image(built):
    # Control: the bundle really went into the build (the throwaway stages hold it)...
    assert nextjs.layers_containing(nextjs.BUILD_STAGE_IMAGE, nextjs.MARKER, stop_at_first=True)
    # ...and no layer of the final image holds its bytes, even a file deleted later.
    assert nextjs.layers_containing(nextjs.IMAGE, nextjs.MARKER) == []

    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", nextjs.IMAGE).stdout
    assert nextjs.CA_BUNDLE_NAME not in history
    for name in nextjs.CA_ENV_NAMES:
        assert name not in history

    inspect = docker("image", "inspect", nextjs.IMAGE).stdout
    assert nextjs.CA_BUNDLE_NAME not in inspect and "ops-ca" not in inspect
    env = json.loads(inspect)[0]["Config"]["Env"]
    assert not [e for e in env if e.split("=", 1)[0] in nextjs.CA_ENV_NAMES], env

    listing = docker("run", "--rm", "--entrypoint", "sh", nextjs.IMAGE, "-c",
                     "find / -xdev -name '*ops-ca*' 2>/dev/null; env").stdout
    assert "ops-ca" not in listing
    assert not [line for line in listing.splitlines() if line.split("=", 1)[0] in nextjs.CA_ENV_NAMES]
