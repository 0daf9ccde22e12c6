"""Building and probing the Next.js sample app's image on the local Docker engine.

No sandbox fleet here: one engine, images tagged ``ops-test/nextjs*``, containers named
``ops-test-nextjs-*`` and removed by the caller. The build goes through the tool's own
CA-bundle path (``ca_bundle_in_context`` + the ``OPS_CA_BUNDLE`` build arg) with the same
context and tags every run, so a warm run reuses every layer.
"""

from __future__ import annotations

import json
import os
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


def build_argv(base_image: str, *, target: str | None = None, tag: str = IMAGE) -> tuple[str, ...]:
    argv = ["docker", "build", "--file", str(APP_DIR / "Dockerfile"), "--tag", tag,
            "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", f"APP_VERSION={BUILD_VERSION}",
            "--build-arg", f"{CA_BUNDLE_ARG}={CA_BUNDLE_NAME}"]
    if target:
        argv += ["--target", target]
    argv.append(str(APP_DIR))
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
