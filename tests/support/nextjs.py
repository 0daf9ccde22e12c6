"""Building and probing the Next.js sample app's image on the local Docker engine.

No sandbox fleet here: one engine, images tagged ``ops-test/nextjs*``, containers named
``ops-test-nextjs-*`` and removed by the caller. The build goes through the tool's own
CA-bundle path (``ca_bundle_in_context`` + the ``OPS_CA_BUNDLE`` build arg) with the same
context and tags every run, so a warm run reuses every layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ops.deploy.image import CA_BUNDLE_ARG, CA_BUNDLE_NAME, ca_bundle_in_context
from ops.inventory import PROJECT_ROOT

APP_DIR = PROJECT_ROOT / "examples" / "nextjs"
IMAGE = "ops-test/nextjs:it"
BUILD_STAGE_IMAGE = "ops-test/nextjs-build:it"  # the `build` stage: has socket.io-client
BUILD_VERSION = "it-build"
BUILD_ENV = {**os.environ, "DOCKER_BUILDKIT": "0"}
# Put at the top of the test's CA bundle (PEM readers skip text outside certificates),
# so the bytes can be looked for in every layer of an image.
MARKER = b"# ops-test-ca-bundle-marker 5f0c2a7e"
CA_ENV_NAMES = ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "npm_config_cafile", "NPM_CONFIG_CAFILE", CA_BUNDLE_ARG)


def docker_problem() -> str | None:
    """Why the Docker engine cannot be used, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        proc = subprocess.run(("docker", "info", "--format", "{{.ServerVersion}}"), capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if proc.returncode != 0:
        return f"no Docker engine answers: {proc.stderr.decode(errors='replace').strip()[-200:]}"
    return None


def docker(*args: str, timeout: float = 120, check: bool = True, env=None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(("docker", *args), capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} ... exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def operator_ca_bundle(directory: Path) -> Path:
    """This machine's CA bundle (what npm needs behind its proxy) with the marker on top.

    Same bytes every run: the deps layer's cache key does not change.
    """
    source = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
    path = directory / "operator-ca.pem"
    path.write_bytes(MARKER + b"\n" + (source.read_bytes() if source.is_file() else b""))
    return path


def build_argv(base_image: str, *, target: str | None = None, tag: str = IMAGE,
              context: Path = APP_DIR) -> tuple[str, ...]:
    argv = ["docker", "build", "--file", str(context / "Dockerfile"), "--tag", tag,
            "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", f"APP_VERSION={BUILD_VERSION}",
            "--build-arg", f"{CA_BUNDLE_ARG}={CA_BUNDLE_NAME}"]
    if target:
        argv += ["--target", target]
    argv.append(str(context))
    return tuple(argv)


def build(bundle: Path, base_image: str) -> dict[str, float]:
    """Build the runtime image and tag the `build` stage; return the seconds each took."""
    times = {}
    with ca_bundle_in_context(bundle, APP_DIR):
        for name, argv in (("runtime", build_argv(base_image)),
                           ("build-stage", build_argv(base_image, target="build", tag=BUILD_STAGE_IMAGE))):
            start = time.monotonic()
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, env=BUILD_ENV)
            times[name] = time.monotonic() - start
            if proc.returncode != 0:
                raise AssertionError(f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return times


# -- two builds of the app whose hashed chunks differ (for deploys on the fleet) --------
V2_MARKER = "realtime-v2-7c1e"


def copy_app(dest: Path) -> Path:
    """A copy of the app's source (no node_modules, .next or CA bundle) at ``dest``."""
    shutil.copytree(APP_DIR, dest, ignore=shutil.ignore_patterns("node_modules", ".next", CA_BUNDLE_NAME))
    return dest


def make_v2(app_dir: Path) -> Path:
    """Change the client component's source so the page's client chunk gets a new hash.

    Deterministic (same bytes every run): the image's tag, derived from the source, is
    stable and a rerun reuses every layer.
    """
    path = app_dir / "app" / "realtime.jsx"
    src = path.read_text()
    old = "Realtime: <code"
    assert old in src, f"{path} changed: {old!r} not found"
    path.write_text(src.replace(old, f'<span data-variant="{V2_MARKER}">Realtime (v2):</span> <code', 1))
    return app_dir


def source_digest(app_dir: Path) -> str:
    """12 hex digits of sha256 over every file's relative path and content."""
    h = hashlib.sha256()
    for path in sorted(p for p in app_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(app_dir).as_posix()
        if rel.startswith(("node_modules/", ".next/")) or rel == CA_BUNDLE_NAME:
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def build_runtime(context: Path, bundle: Path, base_image: str, tag: str) -> float:
    """Build the runtime image of the app copy at ``context`` as ``tag`` (through the tool's
    CA-bundle path, like ``build``); seconds it took. Layers shared with other copies
    (base, deps, prod-deps) come from the cache: the legacy builder keys COPY on content."""
    argv = build_argv(base_image, tag=tag, context=context)
    with ca_bundle_in_context(bundle, context):
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, env=BUILD_ENV)
        took = time.monotonic() - start
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return took


def build_versions(workdir: Path, base_image: str, ref_of) -> dict[str, dict]:
    """Build (cached) and push v1 (the app as is) and v2 (``make_v2``) of the app.

    ``ref_of(tag)`` is the operator-side image ref of a tag (``ops.registry.app_refs``).
    Returns {"v1": {"tag", "ref", "build_s", "push_s"}, "v2": {...}}; tags are
    ``nextjs-<v>-<source digest>``.
    """
    bundle = operator_ca_bundle(workdir)
    out = {}
    for name in ("v1", "v2"):
        app = workdir / name
        if app.exists():
            shutil.rmtree(app)
        copy_app(app)
        if name == "v2":
            make_v2(app)
        tag = f"nextjs-{name}-{source_digest(app)}"
        ref = ref_of(tag)
        build_s = build_runtime(app, bundle, base_image, ref)
        start = time.monotonic()
        docker("push", "--quiet", ref, timeout=900)
        out[name] = {"tag": tag, "ref": ref, "build_s": build_s, "push_s": time.monotonic() - start}
    return out


# Every /_next/static/... URL of a page: <script src>, <link href>, and the chunk paths
# the RSC payload names (inline, JSON-escaped, as "static/chunks/..." without /_next/).
_STATIC_URL_RE = re.compile(r'/_next/static/[^"\'\s\\<>()]+')
_FLIGHT_CHUNK_RE = re.compile(r'\\?"(static/(?:chunks|css|media)/[^"\\\s]+)\\?"')


def page_asset_urls(html: str) -> list[str]:
    """Sorted, unique /_next/static/... paths a browser would fetch for this HTML."""
    urls = set(_STATIC_URL_RE.findall(html))
    urls.update(f"/_next/{m}" for m in _FLIGHT_CHUNK_RE.findall(html))
    return sorted(u for u in urls if not u.endswith("/"))


def published_port(container: str) -> int:
    out = docker("port", container, "3000/tcp").stdout.split()[0]
    return int(out.rsplit(":", 1)[1])


def http_get(url: str, *, method: str = "GET", data: bytes | None = None, timeout: float = 10):
    """(status, headers, body) of a request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def wait_for_http(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            http_get(url, timeout=2)
            return
        except OSError as exc:
            last = exc
            time.sleep(0.25)
    raise AssertionError(f"{url} did not answer within {timeout:g}s ({last})")


def wait_for_log_line(container: str, predicate, timeout: float = 30) -> list[dict]:
    """JSON lines a probe container printed, once one satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    lines: list[dict] = []
    while time.monotonic() < deadline:
        out = docker("logs", container, check=False).stdout
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        if any(predicate(line) for line in lines):
            return lines
        time.sleep(0.2)
    raise AssertionError(f"{container} never printed the expected line; got {lines}")


def layers_containing(image: str, needle: bytes, *, stop_at_first: bool = False) -> list[str]:
    """Paths of files, in any layer of ``image``, whose content holds ``needle``.

    Reads ``docker save`` as a stream: every file of every layer, deleted or not later.
    """
    found: list[str] = []
    proc = subprocess.Popen(("docker", "save", image), stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as outer:
            for member in outer:
                # Docker < 25 names layers <id>/layer.tar; the OCI layout keeps them in blobs/.
                if not (member.isfile() and (member.name.endswith("layer.tar") or member.name.startswith("blobs/"))):
                    continue
                try:
                    layer = tarfile.open(fileobj=outer.extractfile(member), mode="r|")
                except tarfile.ReadError:
                    continue  # a config or manifest blob, not a layer
                with layer:
                    for entry in layer:
                        if entry.isfile() and needle in layer.extractfile(entry).read():
                            found.append(f"{member.name}:{entry.name}")
                            if stop_at_first:
                                return found
    finally:
        proc.kill()
        proc.wait()
    return found


# -- clients that talk to the app the way a browser does (127.0.0.1 only) ---------------
def _no_proxy_opener():
    # The operator's HTTP(S)_PROXY must never see requests to the sandbox.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


_OPENER = _no_proxy_opener()


def local_get(url: str, *, method: str = "GET", data: bytes | None = None, timeout: float = 10):
    """Like ``http_get`` but never through a proxy; only for http://127.0.0.1 URLs."""
    assert url.startswith("http://127.0.0.1:"), url
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


class PageLoader:
    """A browser-like client of one site: GET /, then GET every /_next/static/... URL the
    HTML references. ``keep_alive``: one persistent connection per port (as a browser
    keeps one), reopened after an error; otherwise a new connection per request. Nothing
    is retried: every failure counts."""

    def __init__(self, *, keep_alive: bool = True, timeout: float = 10):
        import http.client

        self._http = http.client
        self.keep_alive = keep_alive
        self.timeout = timeout
        self._conns: dict[int, object] = {}

    def _request(self, port: int, path: str):
        conn = self._conns.get(port) if self.keep_alive else None
        if conn is None:
            conn = self._http.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
        try:
            conn.request("GET", path, headers={"Accept": "*/*", "User-Agent": "ops-test-browser"})
            resp = conn.getresponse()
            body = resp.read()
        except Exception:
            conn.close()
            self._conns.pop(port, None)
            raise
        if self.keep_alive and not resp.will_close:
            self._conns[port] = conn
        else:
            conn.close()
            self._conns.pop(port, None)
        return resp.status, resp.headers, body

    def load(self, port: int) -> dict:
        """One page load: {"t0", "t1", "port", "ok", "version", "status", "assets",
        "asset_404": [urls], "errors": [text], "lat": [(kind, seconds, ok)]}."""
        rec = {"t0": time.monotonic(), "port": port, "ok": False, "version": None, "status": None,
               "assets": [], "asset_404": [], "errors": [], "lat": []}
        start = time.monotonic()
        try:
            status, headers, body = self._request(port, "/")
        except Exception as exc:  # noqa: BLE001 - every failure is a data point
            rec["errors"].append(f"GET /: {type(exc).__name__}: {exc}")
            rec["lat"].append(("page", time.monotonic() - start, False))
            rec["t1"] = time.monotonic()
            return rec
        rec["lat"].append(("page", time.monotonic() - start, status == 200))
        rec["status"], rec["version"] = status, headers.get("X-App-Version")
        if status != 200:
            rec["errors"].append(f"GET /: {status}")
            rec["t1"] = time.monotonic()
            return rec
        rec["assets"] = page_asset_urls(body.decode(errors="replace"))
        for url in rec["assets"]:
            start = time.monotonic()
            try:
                a_status, _, _ = self._request(port, url)
            except Exception as exc:  # noqa: BLE001
                rec["errors"].append(f"GET {url}: {type(exc).__name__}: {exc}")
                rec["lat"].append(("asset", time.monotonic() - start, False))
                continue
            rec["lat"].append(("asset", time.monotonic() - start, a_status == 200))
            if a_status == 404:
                rec["asset_404"].append(url)
            elif a_status != 200:
                rec["errors"].append(f"GET {url}: {a_status}")
        rec["ok"] = not rec["errors"] and not rec["asset_404"] and bool(rec["assets"])
        if not rec["assets"]:
            rec["errors"].append("page references no /_next/static asset")
        rec["t1"] = time.monotonic()
        return rec

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


class EngineIOPolling:
    """A minimal Socket.io client over Engine.IO v4 long-polling (what a browser falls
    back to without WebSocket), with urllib, against one site (nginx port).

    Protocol (text payloads; several packets in one body are separated by \\x1e):
      GET  /socket.io/?EIO=4&transport=polling          -> 0{"sid": ..., "pingInterval": ...}
      POST ...&sid=S  body 40                            (Socket.io CONNECT, default namespace)
      GET  ...&sid=S                                     -> 40{"sid": ...}  (connected)
      POST ...&sid=S  body 42<id>["version"]             (EVENT with an ack id)
      GET  ...&sid=S                                     -> 43<id>[{"version": ...}]  (the ack)
    Engine.IO ping ``2`` is answered with pong ``3``; ``1`` (close), ``41`` (namespace
    disconnect), an HTTP error (400 "Session ID unknown": the request reached another
    container) or a connection error end the session, and the client connects again.

    ``run`` does rounds of "emit version, wait for its ack" until ``stop`` is set, the
    deadline passes or ``max_rounds`` rounds were made; ``acks`` holds (monotonic time,
    version) of each ack received, ``events`` (time, what) of every failure/reconnect.
    """

    def __init__(self, port: int, *, timeout: float = 10, interval: float = 0.1):
        self.base = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
        self.timeout = timeout
        self.interval = interval
        self.sid: str | None = None
        self.acks: list[tuple[float, str]] = []
        self.events: list[tuple[float, str]] = []
        self.sessions = 0
        self._ack_id = 0

    class Gone(Exception):
        """The session is over (closed, unknown to the server, connection failed)."""

    def _get(self, url: str) -> list[str]:
        try:
            status, _, body = local_get(url, timeout=self.timeout)
        except OSError as exc:
            raise self.Gone(f"GET: {type(exc).__name__}: {exc}") from None
        if status != 200:
            raise self.Gone(f"GET {status}: {body[:80]!r}")
        return body.decode(errors="replace").split("\x1e")

    def _post(self, data: str) -> None:
        try:
            status, _, body = local_get(f"{self.base}&sid={self.sid}", method="POST", data=data.encode(),
                                        timeout=self.timeout)
        except OSError as exc:
            raise self.Gone(f"POST: {type(exc).__name__}: {exc}") from None
        if status != 200:
            raise self.Gone(f"POST {status}: {body[:80]!r}")

    def _poll(self, want, deadline: float):
        """Poll until a packet satisfies ``want`` (returns it), or raise Gone."""
        while time.monotonic() < deadline:
            for packet in self._get(f"{self.base}&sid={self.sid}"):
                if packet == "2":
                    self._post("3")
                elif packet == "1" or packet.startswith("41"):
                    raise self.Gone(f"server closed the session ({packet[:2]})")
                elif packet.startswith("42"):
                    self.events.append((time.monotonic(), f"event {packet[2:80]}"))
                elif want(packet):
                    return packet
        raise self.Gone("no answer in time")

    def connect(self) -> None:
        self.sid = None
        packets = self._get(self.base)
        if not packets[0].startswith("0"):
            raise self.Gone(f"bad handshake {packets[0][:80]!r}")
        self.sid = json.loads(packets[0][1:])["sid"]
        self._post("40")
        self._poll(lambda p: p.startswith("40"), time.monotonic() + self.timeout)
        self.sessions += 1

    def ask_version(self) -> str:
        self._ack_id += 1
        prefix = f"43{self._ack_id}["
        self._post(f'42{self._ack_id}["version"]')
        packet = self._poll(lambda p: p.startswith(prefix), time.monotonic() + self.timeout)
        return json.loads(packet[len(prefix) - 1:])[0]["version"]

    def run(self, stop, *, deadline: float, max_rounds: int = 100_000) -> None:
        for _ in range(max_rounds):
            if stop.is_set() or time.monotonic() >= deadline:
                return
            try:
                if self.sid is None:
                    self.connect()
                version = self.ask_version()
                self.acks.append((time.monotonic(), version))
            except (self.Gone, ValueError, KeyError, IndexError) as exc:
                self.events.append((time.monotonic(), f"session lost: {exc}"))
                self.sid = None
            time.sleep(self.interval)

    def gap(self, start: float, end: float) -> float:
        """Longest time without an ack, over the span [start, end] (its edges count)."""
        times = [t for t, _ in self.acks]
        before = [t for t in times if t <= start]
        inside = [t for t in times if start < t < end]
        after = [t for t in times if t >= end]
        points = [before[-1] if before else start, *inside, after[0] if after else end]
        return max((b - a for a, b in zip(points, points[1:], strict=False)), default=end - start)
