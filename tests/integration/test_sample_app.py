"""The sample app (examples/app), its variants, its migrate stand-in and the sandbox
PostgreSQL image, exercised in real containers.

Images are built once per session from temp git checkouts (tests/support/app_repo.py)
with the sandbox's Debian base. Containers and the private network are named
``ops-test-*`` and removed in fixture teardown; ports are published on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import secrets
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.app_repo import ROOT, apply_variant, git, head_sha, make_app_repo
from tests.support.websocket import ws_frame

BASE_IMAGE = "ops-sandbox/debian:bookworm"
POSTGRES_CONTEXT = ROOT / "ops" / "sandbox" / "docker" / "postgres"
APP_REPO = "ops-test/sample-app"
POSTGRES_IMAGE = "ops-test/postgres:15"
LABEL = "ops.test=sample-app"
BUILD_ENV = {**os.environ, "DOCKER_BUILDKIT": "0"}   # the legacy builder works here without buildx
MIGRATION_NAMES_V1 = ["20240105093000_init", "20240212141500_add_uploads"]
MIGRATION_V2 = "20240320101500_add_message_read_at"
MIGRATION_FAILING = "20240415120000_add_reactions"
APP_VARIABLES = [
    "DATABASE_URL", "NEXTAUTH_URL", "NEXTAUTH_SECRET", "NEXT_PUBLIC_SOCKET_URL", "NEXT_PUBLIC_SOCKET_NAMESPACE",
    "FILE_UPLOAD_DIR", "MAX_FILE_SIZE", "SMTP_HOST", "SMTP_PORT", "SMTP_USER", "SMTP_PASSWORD", "SENTRY_DSN",
    "SENTRY_ENVIRONMENT",
]
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_FILE_SIZE = 4096


# -- helpers ----------------------------------------------------------------------------
def docker(*args: str, timeout: float = 120, check: bool = True, env: dict | None = None,
           input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(("docker", *args), capture_output=True, text=True, timeout=timeout, env=env,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} ... failed ({proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def image_id(ref: str) -> str | None:
    proc = docker("image", "inspect", "--format", "{{.Id}}", ref, check=False, timeout=30)
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def build(tag: str, context: Path, *build_args: str) -> None:
    """``docker build``; the image the tag pointed to before is removed (no dangling pile-up)."""
    previous = image_id(tag)
    argv = ["build", "--pull=false", "--label", LABEL, "-t", tag]
    for arg in build_args:
        argv += ["--build-arg", arg]
    docker(*argv, str(context), timeout=600, env=BUILD_ENV)
    if previous and previous != image_id(tag):
        docker("image", "rm", previous, check=False, timeout=60)   # fails harmlessly if still in use


def wait_for(what: str, probe: Callable[[], object], timeout: float = 30.0, interval: float = 0.25):
    """Call ``probe`` until it returns something truthy; bounded by time AND attempts."""
    deadline = time.monotonic() + timeout
    last: object = None
    for _ in range(int(timeout / interval) + 1):
        try:
            last = probe()
            if last:
                return last
        except Exception as exc:  # report the last error on timeout
            last = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(env: dict[str, str]) -> str:
    names = sorted(name for name in APP_VARIABLES if name in env)
    return hashlib.sha256("".join(f"{n}={env[n]}\n" for n in names).encode()).hexdigest()[:16]


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def request(port: int, method: str, path: str, body=None, headers: dict | None = None,
            timeout: float = 10, **kw) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {}, **kw)
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


class Docker:
    """Starts ``ops-test-*`` containers and removes every one it started (and its network)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.names: list[str] = []
        self.network = f"ops-test-net-{secrets.token_hex(4)}"
        docker("network", "create", "--label", LABEL, self.network, timeout=30)

    def name(self, role: str) -> str:
        name = f"ops-test-{role}-{secrets.token_hex(4)}"
        self.names.append(name)   # registered before it exists: teardown removes it whatever happens
        return name

    def env_file(self, env: dict[str, str]) -> Path:
        path = self.tmp / f"{secrets.token_hex(6)}.env"
        path.touch(mode=0o600)
        path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        return path

    def run(self, role: str, image: str, env: dict[str, str], port: int | None = None,
            args: tuple[str, ...] = ()) -> Container:
        name = self.name(role)
        argv = ["run", "-d", "--name", name, "--label", LABEL, "--network", self.network,
                "--env-file", str(self.env_file(env))]
        if port:
            argv += ["-p", f"127.0.0.1::{port}"]
        docker(*argv, image, *args, timeout=60)
        return Container(name, port)

    def one_off(self, image: str, env: dict[str, str], *command: str, timeout: float = 90) -> subprocess.CompletedProcess:
        name = self.name("oneoff")
        try:
            return docker("run", "--rm", "--name", name, "--label", LABEL, "--network", self.network,
                          "--env-file", str(self.env_file(env)), image, *command, timeout=timeout, check=False)
        finally:
            docker("rm", "-f", "-v", name, timeout=30, check=False)

    def remove(self, *names: str) -> None:
        for name in names:
            docker("rm", "-f", "-v", name, timeout=60, check=False)

    def close(self) -> None:
        self.remove(*self.names)
        docker("network", "rm", self.network, timeout=30, check=False)


class Container:
    def __init__(self, name: str, port: int | None):
        self.name = name
        self.private_port = port

    @property
    def port(self) -> int:
        out = docker("port", self.name, f"{self.private_port}/tcp", timeout=30).stdout
        for line in out.splitlines():
            if line.startswith("127.0.0.1:"):
                return int(line.rsplit(":", 1)[1])
        raise AssertionError(f"{self.name}: no 127.0.0.1 port in {out!r}")

    def logs(self) -> str:
        proc = docker("logs", self.name, timeout=30, check=False)
        return proc.stdout + proc.stderr

    def exec(self, *argv: str) -> str:
        return docker("exec", self.name, *argv, timeout=30).stdout


class Postgres:
    def __init__(self, container: Container, user: str, password: str, db: str):
        self.container, self.user, self.password, self.db = container, user, password, db

    @property
    def host(self) -> str:
        """The name the app containers reach it by on the private network."""
        return self.container.name

    def url(self, db: str | None = None) -> str:
        pw = urllib.parse.quote(self.password, safe="")
        return f"postgresql://{self.user}:{pw}@{self.host}:5432/{db or self.db}"

    def connect(self, db: str | None = None, **kw) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.container.port, user=self.user,
                               password=self.password, dbname=db or self.db, connect_timeout=5, **kw)

    def wait_ready(self, timeout: float = 60) -> None:
        def probe():
            with self.connect() as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        wait_for(f"{self.container.name} to accept connections", probe, timeout=timeout, interval=0.5)

    def create_database(self) -> str:
        name = f"m_{secrets.token_hex(4)}"
        with self.connect(autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        return name


def start_postgres(d: Docker, password: str, user: str = "app", db: str = "app") -> Postgres:
    container = d.run("pg", POSTGRES_IMAGE,
                      {"POSTGRES_USER": user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": db}, port=5432)
    pg = Postgres(container, user, password, db)
    pg.wait_ready()
    return pg


def app_env(pg: Postgres, **overrides: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": pg.url(),
        "NEXTAUTH_URL": "http://127.0.0.1:3000",
        "NEXTAUTH_SECRET": secrets.token_hex(16),
        "NEXT_PUBLIC_SOCKET_URL": "http://127.0.0.1:3000",
        "NEXT_PUBLIC_SOCKET_NAMESPACE": "/socket.io",
        "MAX_FILE_SIZE": str(MAX_FILE_SIZE),
        "SMTP_HOST": "smtp.example.invalid",
        "SMTP_PORT": "587",
        "SMTP_USER": "notify@example.invalid",
        "SMTP_PASSWORD": f"smtp-{secrets.token_hex(8)}",
        "SENTRY_ENVIRONMENT": "test",
    }
    env.update(overrides)
    return env


def start_app(d: Docker, image: str, env: dict[str, str], role: str = "app") -> Container:
    app = d.run(role, image, env, port=3000)
    port = app.port
    wait_for(f"{app.name} to answer", lambda: request(port, "GET", "/api/version", timeout=2).status == 200,
             timeout=30)
    return app


def migrate(d: Docker, image: str, database_url: str) -> subprocess.CompletedProcess:
    return d.one_off(image, {"DATABASE_URL": database_url}, "node", "scripts/migrate.js")


def migration_rows(pg: Postgres, db: str) -> list[dict]:
    with pg.connect(db) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute('SELECT * FROM "_prisma_migrations" ORDER BY started_at, migration_name')
        return cur.fetchall()


# -- WebSocket client pieces (RFC 6455, client side) ----------------------------------
class Reader:
    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""

    def until(self, marker: bytes, limit: int = 65536) -> bytes:
        while marker not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk or len(self.buf) > limit:
                raise AssertionError(f"connection closed before {marker!r}: {self.buf[:300]!r}")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(max(4096, n - len(self.buf)))
            if not chunk:
                raise AssertionError(f"connection closed after {len(self.buf)} of {n} bytes")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self, limit: int = 1 << 20) -> bytes:
        while len(self.buf) < limit:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        out, self.buf = self.buf, b""
        return out


def ws_read(reader: Reader) -> tuple[int, bool, bytes]:
    b0, b1 = reader.exact(2)
    assert not b1 & 0x80, "server frames must not be masked"
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", reader.exact(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", reader.exact(8))
    return b0 & 0x0F, bool(b0 & 0x80), reader.exact(n)


def ws_connect(port: int, path: str = "/socket.io/?EIO=4&transport=websocket") -> tuple[socket.socket, Reader, dict]:
    key = base64.b64encode(os.urandom(16)).decode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  "Origin: http://127.0.0.1\r\n\r\n").encode())
    reader = Reader(sock)
    status, *lines = reader.until(b"\r\n\r\n").decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    headers[":status"] = status
    expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    headers[":expected-accept"] = expected
    return sock, reader, headers


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict:
    """Build the postgres image and the app at v1, v2, v2+failing-migration and broken-health."""
    if not image_id(BASE_IMAGE):
        from ops.sandbox import images as sandbox_images  # makes the Debian base (debootstrap)
        sandbox_images.ensure_base()
    build(POSTGRES_IMAGE, POSTGRES_CONTEXT, f"BASE_IMAGE={BASE_IMAGE}")

    base = tmp_path_factory.mktemp("app-repos")
    repos = {"v1": make_app_repo(base / "v1")}
    repos["v2"] = make_app_repo(base / "v2")
    apply_variant(repos["v2"], "v2")
    repos["failing-migration"] = make_app_repo(base / "failing")
    apply_variant(repos["failing-migration"], "v2")
    apply_variant(repos["failing-migration"], "failing-migration")
    repos["broken-health"] = make_app_repo(base / "broken")
    apply_variant(repos["broken-health"], "broken-health")

    out: dict = {"repos": repos, "postgres": POSTGRES_IMAGE}
    for variant, repo in repos.items():
        sha = head_sha(repo)
        tag = f"{APP_REPO}:{variant}"
        build(tag, repo, f"BASE_IMAGE={BASE_IMAGE}", f"APP_VERSION={sha[:12]}")
        out[variant] = tag
        out[f"{variant}-version"] = sha[:12]
    return out


@pytest.fixture(scope="module")
def dk(images, tmp_path_factory) -> Iterator[Docker]:
    d = Docker(tmp_path_factory.mktemp("docker-env"))
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def scratch(images, tmp_path) -> Iterator[Docker]:
    """A private network + containers for one test, removed when it ends."""
    d = Docker(tmp_path)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture(scope="module")
def pg(dk) -> Postgres:
    # Quotes and a dollar in the password: the entrypoint must pass it through intact.
    return start_postgres(dk, password=f"p'w\"${secrets.token_hex(6)}")


@pytest.fixture(scope="module")
def app(dk, pg, images) -> dict:
    env = app_env(pg)
    container = start_app(dk, images["v1"], env)
    return {"container": container, "port": container.port, "env": env, "version": images["v1-version"]}


# -- the support module -------------------------------------------------------------------
def test_app_repo_helpers_commit_variants(tmp_path):
    repo = make_app_repo(tmp_path / "repo")
    first = head_sha(repo)
    assert re.fullmatch(r"[0-9a-f]{40}", first)
    assert (repo / "server.js").is_file() and not (repo / "VARIANT").exists()
    sha = apply_variant(repo, "broken-health", message="Break the health check")
    assert sha == head_sha(repo) != first
    assert (repo / "VARIANT").read_text().strip() == "broken-health"
    assert git(repo, "log", "-1", "--format=%s").strip() == "Break the health check"
    assert git(repo, "status", "--porcelain") == ""
    with pytest.raises(ValueError):
        apply_variant(repo, "no-such-variant")


# -- the postgres image -------------------------------------------------------------------
def test_postgres_image_initialises_like_the_official_one(pg, dk):
    with pg.connect() as conn:
        user, db, owner, scram = conn.execute(
            "SELECT current_user, current_database(), "
            "(SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()), "
            "(SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = current_user)").fetchone()
    assert (user, db, owner, scram) == ("app", "app", "app", True)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=pg.container.port, user="app", password="wrong",
                        dbname="app", connect_timeout=5)
    # The server is PID 1 (docker stop signals it directly), running as postgres.
    status = pg.container.exec("cat", "/proc/1/status")
    assert re.search(r"^Name:\s+postgres$", status, re.M)
    assert re.search(r"^Uid:\s+(\d+)", status, re.M).group(1) != "0"
    assert pg.container.exec("cat", "/proc/1/cmdline").split("\0")[0] == "postgres"

    no_password = docker("run", "--rm", "--label", LABEL, POSTGRES_IMAGE, timeout=60, check=False)
    assert no_password.returncode != 0
    assert "POSTGRES_PASSWORD" in no_password.stderr


# -- the app ------------------------------------------------------------------------------
def test_pages_and_version_header(app):
    port, version = app["port"], app["version"]
    home = request(port, "GET", "/")
    assert home.status == 200 and home.headers["content-type"].startswith("text/html")
    assert version.encode() in home.body and b"Athlete Platform" in home.body
    v = request(port, "GET", "/api/version")
    assert v.status == 200 and v.json() == {"version": version, "release": None}
    for path in ("/", "/api/version", "/api/health", "/api/info", "/api/uploads", "/nope"):
        assert request(port, "GET", path).headers.get("x-app-version") == version, path
    assert request(port, "GET", "/nope").status == 404


def test_health_ok_when_database_reachable(app):
    resp = request(app["port"], "GET", "/api/health")
    assert resp.status == 200, resp.body
    assert resp.json() == {"status": "ok", "version": app["version"]}


def test_websocket_handshake_and_echo(app):
    sock, reader, headers = ws_connect(app["port"])
    with sock:
        assert headers[":status"].startswith("HTTP/1.1 101"), headers
        assert headers["upgrade"].lower() == "websocket"
        assert headers["sec-websocket-accept"] == headers[":expected-accept"]
        assert headers["x-app-version"] == app["version"]

        for text in ("hello", "héllo wörld ✓", "x" * 300):   # 300 bytes: 16-bit length form
            sock.sendall(ws_frame(0x1, text.encode()))
            assert ws_read(reader) == (0x1, True, text.encode())
        sock.sendall(ws_frame(0x2, bytes(range(256))))
        assert ws_read(reader) == (0x2, True, bytes(range(256)))
        # A fragmented message is echoed whole.
        sock.sendall(ws_frame(0x1, b"frag", fin=False) + ws_frame(0x0, b"mented"))
        assert ws_read(reader) == (0x1, True, b"fragmented")
        sock.sendall(ws_frame(0x9, b"ping!"))
        assert ws_read(reader) == (0xA, True, b"ping!")
        sock.sendall(ws_frame(0x8, struct.pack("!H", 1000)))
        opcode, _, payload = ws_read(reader)
        assert (opcode, payload) == (0x8, struct.pack("!H", 1000))
        assert reader.rest() == b""   # then the server closes the TCP connection


def test_socket_io_path_without_upgrade_is_400(app):
    resp = request(app["port"], "GET", "/socket.io/?EIO=4&transport=polling")
    assert resp.status == 400
    sock, reader, headers = ws_connect(app["port"], path="/elsewhere")
    with sock:
        assert not headers[":status"].startswith("HTTP/1.1 101")


def test_uploads_store_list_download_and_limits(app):
    port, name = app["port"], f"report-{secrets.token_hex(3)}.bin"
    data = os.urandom(MAX_FILE_SIZE)   # exactly the limit is allowed
    created = request(port, "POST", f"/api/uploads?name={name}", body=data,
                      headers={"Content-Type": "application/octet-stream"})
    assert created.status == 201, created.body
    assert created.json() == {"name": name, "size": len(data)}
    assert name in request(port, "GET", "/api/uploads").json()["files"]
    got = request(port, "GET", f"/api/uploads/{name}")
    assert got.status == 200 and got.body == data

    # Over MAX_FILE_SIZE: 413, from the declared length and from a streamed (chunked) body.
    big = request(port, "POST", "/api/uploads?name=big.bin", body=b"z" * (MAX_FILE_SIZE + 1))
    assert big.status == 413 and big.json()["max_file_size"] == MAX_FILE_SIZE
    streamed = request(port, "POST", "/api/uploads?name=streamed.bin", body=iter([b"s" * 3000] * 3),
                       headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
    assert streamed.status == 413
    listing = request(port, "GET", "/api/uploads").json()["files"]
    assert "big.bin" not in listing and "streamed.bin" not in listing
    leftovers = app["container"].exec("ls", "-A", "/var/app/uploads").split()
    assert not [f for f in leftovers if f.endswith(".part")], leftovers

    for bad in ("../evil", "a%2Fb", "..", ".hidden", ""):
        assert request(port, "POST", f"/api/uploads?name={bad}", body=b"x").status == 400, bad
    assert request(port, "GET", "/api/uploads/..%2Fetc%2Fpasswd").status == 400
    assert request(port, "GET", "/api/uploads/does-not-exist").status == 404


def test_info_fingerprints_the_env_without_exposing_it(app, dk, images):
    env = app["env"]
    info = request(app["port"], "GET", "/api/info").json()
    assert info["env_present"] == sorted(n for n in APP_VARIABLES if n in env)
    assert info["env_fingerprint"] == fingerprint(env)
    body = json.dumps(info)
    logs = app["container"].logs()
    for secret in (env["NEXTAUTH_SECRET"], env["SMTP_PASSWORD"], env["DATABASE_URL"], env["SMTP_HOST"]):
        assert secret not in body and secret not in logs

    changed = {**env, "SMTP_HOST": "smtp2.example.invalid"}
    other = start_app(dk, images["v1"], {**changed, "APP_RELEASE": "rel-2"}, role="app-env2")
    try:
        info2 = request(other.port, "GET", "/api/info").json()
        version = request(other.port, "GET", "/api/version").json()
    finally:
        dk.remove(other.name)
    assert version == {"version": app["version"], "release": "rel-2"}
    assert info2["env_fingerprint"] == fingerprint(changed) != info["env_fingerprint"]
    assert info2["env_present"] == info["env_present"]


def test_health_503_while_database_is_down(scratch, images):
    pg = start_postgres(scratch, password=secrets.token_hex(12))
    app = start_app(scratch, images["v1"], app_env(pg))
    port = app.port
    assert request(port, "GET", "/api/health").status == 200

    docker("stop", pg.container.name, timeout=60)
    # STOPSIGNAL SIGINT: a fast, clean shutdown even with the app's pool connected.
    assert docker("inspect", "-f", "{{.State.ExitCode}}", pg.container.name).stdout.strip() == "0"
    assert "received fast shutdown request" in pg.container.logs()
    down = request(port, "GET", "/api/health")
    assert down.status == 503, down.body
    body = down.json()
    assert body["status"] == "error" and body["reason"]
    assert pg.password not in down.body.decode() and "postgresql://" not in down.body.decode()
    assert request(port, "GET", "/api/version").status == 200   # the rest keeps working

    docker("start", pg.container.name, timeout=60)
    wait_for("health to recover", lambda: request(port, "GET", "/api/health", timeout=5).status == 200,
             timeout=60, interval=0.5)
    assert pg.password not in app.logs()


def test_broken_health_variant_answers_500(scratch, images):
    pg = start_postgres(scratch, password=secrets.token_hex(12))
    app = start_app(scratch, images["broken-health"], app_env(pg))
    port = app.port
    resp = request(port, "GET", "/api/health")
    assert resp.status == 500 and resp.json()["status"] == "error"
    assert resp.headers["x-app-version"] == images["broken-health-version"]
    assert request(port, "GET", "/").status == 200
    assert request(port, "GET", "/api/info").json()["variant"] == "broken-health"


def test_sigterm_drains_an_in_flight_request_then_exits_0(scratch, images):
    # No database needed: the drain is about HTTP. APP_VERSION from the env wins over the build arg.
    app = start_app(scratch, images["v1"], {"DATABASE_URL": "postgresql://u:p@nowhere:5432/db",
                                            "APP_VERSION": "drain-test"})
    port = app.port
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    with sock:
        sock.sendall(b"POST /api/uploads?name=drain.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"a" * 1024 + b"\r\n")
        wait_for("the upload to start", lambda: ".part" in app.exec("ls", "-A", "/var/app/uploads"), timeout=15)

        stopper = threading.Thread(target=docker, args=("stop", "-t", "30", app.name), kwargs={"timeout": 60})
        stopper.start()
        try:
            wait_for("SIGTERM to reach the app", lambda: "SIGTERM received" in app.logs(), timeout=15)
            with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
                request(port, "GET", "/api/version", timeout=5)   # no new connections
            sock.sendall(b"400\r\n" + b"b" * 1024 + b"\r\n0\r\n\r\n")
            raw = Reader(sock).rest()
        finally:
            stopper.join(timeout=60)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201"), raw[:300]
    assert b"x-app-version: drain-test" in head.lower()
    assert json.loads(body) == {"name": "drain.bin", "size": 2048}
    assert docker("inspect", "-f", "{{.State.ExitCode}}", app.name).stdout.strip() == "0"
    assert "shutdown complete (drained)" in app.logs()


# -- the migrate stand-in (Prisma's _prisma_migrations bookkeeping) ---------------------------
def test_migrate_applies_v1_migrations_once(pg, dk, images):
    db = pg.create_database()
    first = migrate(dk, images["v1"], pg.url(db))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 migrations found in prisma/migrations" in first.stdout
    for name in MIGRATION_NAMES_V1:
        assert f"Applying migration `{name}`" in first.stdout
    assert "All migrations have been successfully applied." in first.stdout
    assert pg.password not in first.stdout + first.stderr

    rows = migration_rows(pg, db)
    migrations = images["repos"]["v1"] / "prisma" / "migrations"
    assert [r["migration_name"] for r in rows] == MIGRATION_NAMES_V1
    for row in rows:
        assert row["finished_at"] is not None and row["rolled_back_at"] is None and row["logs"] is None
        assert row["applied_steps_count"] == 1 and row["started_at"] <= row["finished_at"]
        assert row["checksum"] == sha256_file(migrations / row["migration_name"] / "migration.sql")
        assert str(uuid.UUID(row["id"])) == row["id"]

    with pg.connect(db) as conn:
        columns = dict(conn.execute(
            "SELECT column_name, format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null' ELSE '' END "
            "FROM information_schema.columns c JOIN pg_attribute a "
            "ON a.attrelid = '\"_prisma_migrations\"'::regclass AND a.attname = c.column_name "
            "WHERE c.table_name = '_prisma_migrations'").fetchall())
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert columns == {
        "id": "character varying(36) not null", "checksum": "character varying(64) not null",
        "finished_at": "timestamp with time zone", "migration_name": "character varying(255) not null",
        "logs": "text", "rolled_back_at": "timestamp with time zone",
        "started_at": "timestamp with time zone not null", "applied_steps_count": "integer not null",
    }
    assert {"User", "Message", "Upload", "_prisma_migrations"} <= tables

    again = migrate(dk, images["v1"], pg.url(db))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No pending migrations to apply." in again.stdout
    assert "Applying migration" not in again.stdout
    assert migration_rows(pg, db) == rows


def test_migrate_v2_adds_exactly_one_migration(pg, dk, images):
    db = pg.create_database()
    assert migrate(dk, images["v1"], pg.url(db)).returncode == 0
    before = migration_rows(pg, db)
    out = migrate(dk, images["v2"], pg.url(db))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 migrations found" in out.stdout and out.stdout.count("Applying migration") == 1
    rows = migration_rows(pg, db)
    assert rows[:2] == before and len(rows) == 3
    assert rows[2]["migration_name"] == MIGRATION_V2 and rows[2]["finished_at"] is not None
    with pg.connect(db) as conn:
        assert conn.execute("SELECT to_regclass('\"Message_recipientId_readAt_idx\"') IS NOT NULL").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM information_schema.columns "
                            "WHERE table_name = 'Message' AND column_name = 'readAt'").fetchone()[0] == 1


def test_failing_migration_rolls_back_records_and_blocks(pg, dk, images):
    db = pg.create_database()
    assert migrate(dk, images["v1"], pg.url(db)).returncode == 0
    failed = migrate(dk, images["failing-migration"], pg.url(db))
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output
    assert f"Applying migration `{MIGRATION_V2}`" in failed.stdout   # the good one before it still applies
    assert "P3018" in output and f"Migration name: {MIGRATION_FAILING}" in output
    assert 'relation "ChatMessage" does not exist' in output and "42P01" in output

    rows = {r["migration_name"]: r for r in migration_rows(pg, db)}
    assert len(rows) == 4 and rows[MIGRATION_V2]["finished_at"] is not None
    bad = rows[MIGRATION_FAILING]
    assert bad["finished_at"] is None and bad["rolled_back_at"] is None
    assert bad["applied_steps_count"] == 0 and "ChatMessage" in bad["logs"]
    with pg.connect(db) as conn:   # its valid first statement (CREATE TABLE "Reaction") was rolled back
        assert conn.execute("SELECT to_regclass('\"Reaction\"')").fetchone()[0] is None

    again = migrate(dk, images["failing-migration"], pg.url(db))
    assert again.returncode != 0
    assert "P3009" in again.stderr and MIGRATION_FAILING in again.stderr
    assert len(migration_rows(pg, db)) == 4


def test_migrate_warns_about_a_modified_applied_migration(pg, dk, images):
    db = pg.create_database()
    assert migrate(dk, images["v1"], pg.url(db)).returncode == 0
    with pg.connect(db) as conn:
        conn.execute('UPDATE "_prisma_migrations" SET checksum = %s WHERE migration_name = %s',
                     ("0" * 64, MIGRATION_NAMES_V1[0]))
    out = migrate(dk, images["v1"], pg.url(db))
    assert out.returncode == 0
    assert "modified since they were applied" in out.stderr and MIGRATION_NAMES_V1[0] in out.stderr
    assert "No pending migrations to apply." in out.stdout


def test_migrate_holds_prismas_advisory_lock(pg, dk, images):
    db = pg.create_database()
    done: dict = {}
    lock_waiters = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 72707369 "
                    "AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
    with pg.connect(db, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(72707369)")
        runner = threading.Thread(target=lambda: done.update(proc=migrate(dk, images["v1"], pg.url(db))))
        runner.start()
        try:
            wait_for("migrate to queue for the advisory lock",
                     lambda: holder.execute(lock_waiters).fetchone()[0] == 1, timeout=30)
            # Nothing is touched before the lock is held.
            assert holder.execute("SELECT to_regclass('\"_prisma_migrations\"')").fetchone()[0] is None
        finally:
            holder.execute("SELECT pg_advisory_unlock(72707369)")
            runner.join(timeout=90)
    assert done["proc"].returncode == 0, done["proc"].stdout + done["proc"].stderr
    assert len(migration_rows(pg, db)) == 2


def test_migrate_connection_errors_do_not_leak_the_url(pg, dk, images):
    unreachable = migrate(dk, images["v1"], pg.url().replace(f"@{pg.host}:", "@no-such-db-host:"))
    assert unreachable.returncode != 0 and "P1001" in unreachable.stderr
    wrong = migrate(dk, images["v1"], pg.url().replace(urllib.parse.quote(pg.password, safe=""), "wrong-pw"))
    assert wrong.returncode != 0 and "P1000" in wrong.stderr
    for proc in (unreachable, wrong):
        assert pg.password not in proc.stdout + proc.stderr and "wrong-pw" not in proc.stdout + proc.stderr

