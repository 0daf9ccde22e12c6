"""The scaffolded Dockerfile builds the repository's Next.js sample app (a copy; the tool's
CA-bundle build path; legacy builder, layers cached across runs), and the image deploys to
the sandbox fleet with zero failed requests while it switches; then the fleet goes back
to what it served before."""

from __future__ import annotations

import shutil
import threading
import urllib.error
import urllib.request

from ops.registry import app_refs
from ops.sandbox.images import BASE_IMAGE, ensure_base
from tests.support import nextjs

from .conftest import ROOT, inv

WEB_PORTS = {"web1": 8101, "web2": 8102}
DEPLOY_TIMEOUT = 900
MAX_REQUESTS = 50_000           # per probe thread: a bound; the deploy ending stops it first


def served() -> dict[str, str]:
    out = {}
    for name, port in WEB_PORTS.items():
        try:
            status, headers, _ = nextjs.local_get(f"http://127.0.0.1:{port}/api/version", timeout=5)
            out[name] = headers.get("X-App-Version", "") if status == 200 else ""
        except (OSError, urllib.error.URLError):
            out[name] = ""
    return out


class Probe:
    """Bounded GET loops on both web hosts while something runs: every answer counted."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed: list[str] = []
        self.versions: set[str] = set()
        self.stop = threading.Event()

    def loop(self, port: int) -> None:
        for _ in range(MAX_REQUESTS):
            if self.stop.is_set():
                return
            try:
                status, headers, _ = nextjs.local_get(f"http://127.0.0.1:{port}/api/version", timeout=10)
            except (OSError, urllib.error.URLError) as exc:
                self.failed.append(f"{port}: {type(exc).__name__}: {exc}")
                continue
            if status == 200:
                self.ok += 1
                self.versions.add(headers.get("X-App-Version", ""))
            else:
                self.failed.append(f"{port}: HTTP {status}")

    def during(self, action) -> None:
        threads = [threading.Thread(target=self.loop, args=(p,), daemon=True) for p in WEB_PORTS.values()]
        for t in threads:
            t.start()
        try:
            action()
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=30)


def test_the_scaffolded_dockerfile_builds_the_nextjs_app_and_deploys_with_zero_failed_requests(sandbox_env, tmp_path):
    ensure_base()
    app = tmp_path / "app"
    shutil.copytree(ROOT / "examples" / "nextjs", app,
                    ignore=shutil.ignore_patterns("node_modules", ".next", nextjs.CA_BUNDLE_NAME))
    out = inv("scaffold", "--path", str(app), "--env", "sandbox", "--force", "--only", "Dockerfile,.dockerignore",
              check=True)
    assert "Dockerfile: overwrite" in out.stdout
    assert "HEALTHCHECK" in (app / "Dockerfile").read_text()
    tag = f"scaffold-{nextjs.source_digest(app)}"
    ref = app_refs(sandbox_env, tag)[0]
    bundle = nextjs.operator_ca_bundle(tmp_path)
    took = nextjs.build_runtime(app, bundle, BASE_IMAGE, ref)
    print(f"scaffolded Dockerfile: runtime image built in {took:.1f}s")
    # Non-root, the health check the scaffold wrote, and no CA bundle in any layer.
    user = nextjs.docker("image", "inspect", "--format", "{{.Config.User}}", ref).stdout.strip()
    assert user == "10001:10001"
    health = nextjs.docker("image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", ref).stdout
    assert "/api/health" in health
    assert nextjs.layers_containing(ref, nextjs.MARKER, stop_at_first=True) == []
    nextjs.docker("push", "--quiet", ref, timeout=900)

    inv("accessory.boot", "--host", "sandbox", "postgres", check=True, timeout=600)
    before = served()
    probe = Probe()
    probe.during(lambda: inv("deploy", "--host", "sandbox", "--version", tag, check=True, timeout=DEPLOY_TIMEOUT))
    try:
        assert served() == {"web1": tag, "web2": tag}
        status, _, body = nextjs.local_get("http://127.0.0.1:8101/api/health")
        assert status == 200, body[:200]
        print(f"deploy under load: {probe.ok} answers, {len(probe.failed)} failed, versions {sorted(probe.versions)}")
        assert probe.ok > 20 and not probe.failed, probe.failed[:10]
        assert tag in probe.versions
    finally:
        # Leave the fleet on what served before (one version, as every deploy leaves it).
        previous = {v for v in before.values() if v}
        if len(previous) == 1 and previous != {tag}:
            inv("deploy", "--host", "sandbox", "--version", previous.pop(), timeout=DEPLOY_TIMEOUT)
