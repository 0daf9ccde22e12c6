"""The real Next.js sample app (examples/nextjs) deployed on the sandbox fleet with `inv deploy`.

Two builds of the app whose hashed chunks differ (v2 changes a client component's
source) are built on the local engine through the tool's CA-bundle path (cached layers,
see ``tests.support.nextjs.build_versions``), pushed to the sandbox registry as
``nextjs-v1-<digest>`` / ``nextjs-v2-<digest>`` and deployed with
``inv deploy --host sandbox --version TAG`` (the hosts pull through the tool's tunnel).

The tests run in file order and share the fleet: the module fixture deploys v1; one
deploy v1 -> v2 runs under a browser-like client and a Socket.io long-polling client
(both bounded in count and time, 127.0.0.1 only); a rollback goes back to v1. At
teardown the fleet is put back on what it served before the module.
"""

from __future__ import annotations

import threading
import time

import pytest

from ops.registry import app_refs
from tests.support import nextjs

from .conftest import inv

pytestmark = pytest.mark.skipif(nextjs.docker_problem() is not None,
                                reason=f"needs a local Docker engine: {nextjs.docker_problem()}")

WEB_PORTS = {"web1": 8101, "web2": 8102}
DEPLOY_TIMEOUT = 900  # seconds: a first deploy pulls the image through the SSH tunnel
PRE_ROLL, POST_ROLL = 2.0, 3.0  # load seconds before / after the deploy command
MAX_PAGE_LOADS = 20_000  # per client thread, a bound; time bounds it first
MIN_PAGE_LOADS = 50  # page loads that must fall inside the deploy for the check to mean something
MAX_REALTIME_GAP = 5.0


def served_versions() -> dict[str, str | None]:
    """X-App-Version each host's nginx answers /api/info with (None: no app answered)."""
    out = {}
    for name, port in WEB_PORTS.items():
        try:
            _, headers, _ = nextjs.local_get(f"http://127.0.0.1:{port}/api/info", timeout=5)
            out[name] = headers.get("X-App-Version")
        except OSError:
            out[name] = None
    return out


def deploy(tag: str, *extra: str) -> None:
    start = time.monotonic()
    inv("deploy", "--host", "sandbox", "--version", tag, *extra, check=True, timeout=DEPLOY_TIMEOUT)
    print(f"inv deploy --version {tag} {' '.join(extra)}: {time.monotonic() - start:.1f}s")


def page(port: int) -> dict:
    loader = nextjs.PageLoader(keep_alive=False)
    try:
        return loader.load(port)
    finally:
        loader.close()


class Traffic:
    """Browser-like page loads (alternating web1/web2) and one Socket.io long-polling client
    per host, in threads, while something runs in the caller's thread."""

    def __init__(self, *, browsers: int = 2):
        self.stop = threading.Event()
        self.pages: list[dict] = []
        self.polling = {name: nextjs.EngineIOPolling(port) for name, port in WEB_PORTS.items()}
        self.browsers = browsers
        self.errors: list[str] = []

    def _browse(self, first: int, deadline: float) -> None:
        loader = nextjs.PageLoader(keep_alive=True)
        ports = list(WEB_PORTS.values())
        try:
            for i in range(MAX_PAGE_LOADS):
                if self.stop.is_set() or time.monotonic() >= deadline:
                    return
                self.pages.append(loader.load(ports[(first + i) % len(ports)]))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(f"browser thread: {type(exc).__name__}: {exc}")
        finally:
            loader.close()

    def run_during(self, action) -> tuple[float, float]:
        """Start the clients, PRE_ROLL s, ``action()``, POST_ROLL s, stop; the action's span."""
        deadline = time.monotonic() + DEPLOY_TIMEOUT + 60
        threads = [threading.Thread(target=self._browse, args=(i, deadline), daemon=True)
                   for i in range(self.browsers)]
        threads += [threading.Thread(target=c.run, args=(self.stop,), kwargs={"deadline": deadline}, daemon=True)
                    for c in self.polling.values()]
        for t in threads:
            t.start()
        try:
            time.sleep(PRE_ROLL)
            start = time.monotonic()
            action()
            end = time.monotonic()
            time.sleep(POST_ROLL)
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=30)
        assert not any(t.is_alive() for t in threads), "a client thread did not stop"
        return start, end

    def within(self, start: float, end: float) -> list[dict]:
        return [p for p in self.pages if p["t0"] >= start and p["t1"] <= end]

    def summary(self, start: float, end: float) -> dict:
        during = self.within(start, end)
        return {
            "page_loads_total": len(self.pages),
            "page_loads_during": len(during),
            "asset_requests_during": sum(len(p["assets"]) for p in during),
            "asset_404_total": sum(len(p["asset_404"]) for p in self.pages),
            "pages_with_asset_404": [(p["port"], p["version"], p["asset_404"][:3]) for p in self.pages
                                     if p["asset_404"]][:10],
            "failed_page_loads": [(p["port"], p["version"], p["errors"][:3]) for p in self.pages
                                  if p["errors"]][:10],
            "failed_page_loads_total": sum(1 for p in self.pages if p["errors"] or p["asset_404"]),
            "versions_during": sorted({p["version"] or "?" for p in during}),
        }


@pytest.fixture(scope="module")
def images(sandbox_env, tmp_path_factory):
    from ops.sandbox.images import BASE_IMAGE, ensure_base  # local debootstrap base

    ensure_base()
    built = nextjs.build_versions(tmp_path_factory.mktemp("nextjs-versions"), BASE_IMAGE,
                                  lambda tag: app_refs(sandbox_env, tag)[0])
    for name, b in built.items():
        print(f"{name}: {b['tag']} build {b['build_s']:.1f}s push {b['push_s']:.1f}s")
    return {name: b["tag"] for name, b in built.items()}


@pytest.fixture(scope="module")
def on_v1(sandbox_env, images):
    """v1 serves on both hosts; at teardown, whatever served before the module serves again."""
    before = served_versions()
    print(f"served before the module: {before}")
    inv("accessory.boot", "--host", "sandbox", "postgres", check=True, timeout=600)
    deploy(images["v1"])
    state = {"v1": images["v1"], "v2": images["v2"], "v1_page": page(8101), "v1_page_web2": page(8102)}
    yield state
    restore = {h: v for h, v in before.items() if v}
    if not restore:
        print("nothing served before the module: the fleet is left on what the tests ended with")
        return
    if len(set(restore.values())) == 1:
        deploy(next(iter(restore.values())))
    else:
        for host, version in restore.items():
            deploy(version, "--exclude", ",".join(h for h in WEB_PORTS if h != host))
    now = served_versions()
    assert {h: now[h] for h in restore} == restore, f"fleet not restored: {now} != {before}"


@pytest.fixture(scope="module")
def v1_to_v2(on_v1):
    """One deploy v1 -> v2 under browser-like and Socket.io long-polling traffic."""
    traffic = Traffic()
    start, end = traffic.run_during(lambda: deploy(on_v1["v2"]))
    summary = traffic.summary(start, end)
    print(f"v1 -> v2 deploy {end - start:.1f}s under load: {summary}")
    for name, client in traffic.polling.items():
        print(f"socket.io polling {name}: {len(client.acks)} acks, {client.sessions} sessions, "
              f"gap {client.gap(start, end):.2f}s, events {client.events[:8]}")
    return {"traffic": traffic, "start": start, "end": end, "summary": summary,
            "v2_page": page(8101), "v2_page_web2": page(8102)}


def chunks(page_rec: dict) -> set[str]:
    return {u for u in page_rec["assets"] if u.startswith("/_next/static/chunks/") and u.endswith(".js")}


def test_the_nextjs_app_deploys_and_serves_through_nginx_on_both_hosts(on_v1):
    for name, port in WEB_PORTS.items():
        status, headers, body = nextjs.local_get(f"http://127.0.0.1:{port}/api/info")
        assert status == 200 and headers["X-App-Version"] == on_v1["v1"], (name, status, body[:200])
        assert b'"app":"nextjs"' in body, body[:200]
        status, headers, body = nextjs.local_get(f"http://127.0.0.1:{port}/api/health")
        assert status == 200 and headers["X-App-Version"] == on_v1["v1"], (name, status, body[:200])
        rec = page(port)
        assert rec["status"] == 200 and rec["version"] == on_v1["v1"], (name, rec["errors"])
        assert chunks(rec), f"{name}: the page references no /_next/static/chunks/*.js"
        assert rec["ok"], f"{name}: {rec['errors']} 404: {rec['asset_404']}"
        print(f"{name}: page of {on_v1['v1']} with {len(rec['assets'])} assets, all 200")


def test_a_browser_sees_zero_asset_404s_and_zero_failed_page_loads_during_a_v1_to_v2_deploy(on_v1, v1_to_v2):
    v1_chunks, v2_chunks = chunks(on_v1["v1_page"]), chunks(v1_to_v2["v2_page"])
    assert v1_to_v2["v2_page"]["version"] == on_v1["v2"], v1_to_v2["v2_page"]
    assert v1_chunks - v2_chunks and v2_chunks - v1_chunks, \
        f"v1 and v2 pages reference the same chunks: {sorted(v1_chunks)}"
    s = v1_to_v2["summary"]
    assert not v1_to_v2["traffic"].errors, v1_to_v2["traffic"].errors
    assert s["page_loads_during"] >= MIN_PAGE_LOADS, s
    assert s["asset_404_total"] == 0, s
    assert s["failed_page_loads_total"] == 0, s
    assert served_versions() == {"web1": on_v1["v2"], "web2": on_v1["v2"]}


def test_after_the_deploy_v1_chunks_are_still_served_bridged_and_immutable(on_v1, v1_to_v2):
    v1_only = sorted(chunks(on_v1["v1_page"]) - chunks(v1_to_v2["v2_page"]))
    assert v1_only, "no chunk is specific to v1: nothing to check"
    for port in WEB_PORTS.values():
        for url in sorted(set(on_v1["v1_page"]["assets"])):
            status, headers, _ = nextjs.local_get(f"http://127.0.0.1:{port}{url}")
            assert status == 200, (port, url, status)
            if url in v1_only:
                assert "immutable" in (headers.get("Cache-Control") or ""), (port, url, dict(headers))
    print(f"v1-only chunks still served on both hosts: {v1_only}")


def test_socketio_long_polling_keeps_working_across_the_deploy_with_a_gap_of_at_most_5s(on_v1, v1_to_v2):
    start, end = v1_to_v2["start"], v1_to_v2["end"]
    for name, client in v1_to_v2["traffic"].polling.items():
        versions = [v for _, v in client.acks]
        assert on_v1["v1"] in versions and versions[-1] == on_v1["v2"], (name, sorted(set(versions)))
        assert any(t >= end for t, _ in client.acks), f"{name}: no ack after the deploy"
        gap = client.gap(start, end)
        print(f"{name}: longest realtime gap over the deploy {gap:.2f}s ({client.sessions} sessions)")
        assert gap <= MAX_REALTIME_GAP, (name, gap, client.events[:20])


def test_rollback_after_the_deploy_goes_back_to_v1(on_v1, v1_to_v2):
    traffic = Traffic(browsers=1)

    def rollback():
        t = time.monotonic()
        inv("rollback", "--host", "sandbox", check=True, timeout=DEPLOY_TIMEOUT)
        print(f"inv rollback: {time.monotonic() - t:.1f}s")

    start, end = traffic.run_during(rollback)
    summary = traffic.summary(start, end)
    print(f"rollback v2 -> v1 under load: {summary}")
    assert served_versions() == {"web1": on_v1["v1"], "web2": on_v1["v1"]}
    for port in WEB_PORTS.values():
        rec = page(port)
        # A different image: the build with v1's chunks, not v2's with another version label.
        assert rec["version"] == on_v1["v1"] and chunks(rec) == chunks(on_v1["v1_page"]), rec
        assert rec["ok"], rec["errors"]
    assert summary["asset_404_total"] == 0 and summary["failed_page_loads_total"] == 0, summary


def test_rollback_after_deploy_rollback_deploy_of_the_same_version_goes_to_the_other_image(on_v1, v1_to_v2):
    # What served, in order: v1, v2, v1 (the rollback above), now v2 again (a new release
    # of the same image). The release before the current one is v1's; the newest other
    # entry in the list is the v2 release rolled back from, which runs this very image.
    assert served_versions() == {"web1": on_v1["v1"], "web2": on_v1["v1"]}, "runs after the rollback test"
    deploy(on_v1["v2"])
    assert served_versions() == {"web1": on_v1["v2"], "web2": on_v1["v2"]}
    out = inv("rollback", "--host", "sandbox", check=True, timeout=DEPLOY_TIMEOUT)
    print(out.stdout[-600:])
    assert served_versions() == {"web1": on_v1["v1"], "web2": on_v1["v1"]}
    for port in WEB_PORTS.values():
        rec = page(port)
        assert rec["version"] == on_v1["v1"] and chunks(rec) == chunks(on_v1["v1_page"]), rec
