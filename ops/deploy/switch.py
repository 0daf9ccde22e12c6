"""Per-host steps of a rolling switch behind nginx, without reloading nginx.

On each web host nginx runs as ``<app>-proxy`` on the network ``<app>-net`` and
proxies to the name ``<app>-web``, looked up per request in Docker's DNS (see
``ops.commands.nginx.render_site_conf``). A release's container answers to that
name only while it serves:

1. start the new container off the app network (default bridge: it can reach the
   database, and its port is published on the host's 127.0.0.1 for the health check);
2. wait for its health check;
3. copy its hashed static files out (``ops.deploy.assets``): nginx serves those of
   every retained release, so no page of either release misses a chunk;
4. connect it to the app network under ``<app>-web``: nginx now spreads requests
   over old and new; wait until the site answers with the new version;
5. drain: ``deploy.drain_seconds`` after the site first answered with the new release,
   stop the old container (SIGTERM: the app closes its listener, ends its realtime
   connections cleanly, finishes in-flight requests; SIGKILL after
   ``deploy.stop_timeout``), then take it off the app network so that starting it
   again (rollback) puts it behind the health check first. A refused connect is retried
   on the new container: by nginx itself when the worker's DNS cache lists both, else
   once more with a fresh lookup (the ``@*_retry`` locations of the site config), so the
   old container may stop at once, whatever nginx's DNS cache still holds.

nginx is never reloaded for a switch, so client keep-alive connections survive it.
Old containers stay stopped, the newest ``keep_releases`` of them, for rollback.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ops import registry, uploads_layout
from ops.commands import docker, shell
from ops.commands.nginx import HTTPS_CONTAINER_PORT, nginx_reload_argv, nginx_test_argv, render_site_conf
from ops.deploy import assets
from ops.deploy.release import Release, set_current
from ops.errors import HostError, OpsError
from ops.inventory import Host
from ops.layout import Layout
from ops.remote import Gateway
from ops.tls import hostfiles

HEALTH_POLL = 0.2
# nginx caches the DNS answer for <app>-web this long (resolver valid=...; its clock ticks
# in whole seconds, so an answer can be used for up to twice this).
RESOLVER_VALID = 1
# Requests of each deploy.warmup path before a new container joins (see warm_up).
WARMUP_ROUNDS = 12
WARMUP_PARALLEL = 4
DOCKER_DNS = "127.0.0.11"
# CPU weight of a container from its start until it takes traffic (docker's default is
# 1024): booting a Node/Next.js server and its warm-up are CPU-heavy, and on the host's
# shared cores they would slow the pages the serving container answers meanwhile.
STARTING_CPU_SHARES = 128


class HealthCheckFailed(HostError):
    """The new container never answered its health check."""


@dataclass(frozen=True)
class AppSettings:
    """What the switch needs to know of the app's env (non-secret values only)."""

    upload_dir: str = "/var/app/uploads"
    max_body_bytes: int = 10 * 1024 * 1024


def ensure_network(gw: Gateway, host: Host) -> None:
    net = Layout(gw.env).network
    gw.run(host, shell("docker network inspect {n} >/dev/null 2>&1 || docker network create {n} >/dev/null", n=net))


def container_state(gw: Gateway, host: Host, name: str) -> str | None:
    """``running``, ``exited``, ... or None when there is no such container."""
    res = gw.query(host, docker.inspect_argv(name, fmt="{{.State.Status}}"), check=False)
    return res.stdout.strip() if res.ok else None


def networks_of(gw: Gateway, host: Host, name: str) -> set[str]:
    res = gw.query(host, docker.inspect_argv(name, fmt="{{json .NetworkSettings.Networks}}"), check=False)
    try:
        return set(json.loads(res.stdout or "{}") or {})
    except json.JSONDecodeError:
        return set()


def start_container(gw: Gateway, host: Host, release: Release, app: AppSettings) -> str:
    """Start (or restart a retained) container for ``release``, off the app network."""
    layout = Layout(gw.env)
    name = layout.web_container(release.id)
    state = container_state(gw, host, name)
    if state == "running":
        return name
    if state is not None:
        gw.run(host, docker.cpu_shares_argv(name, STARTING_CPU_SHARES))
        gw.run(host, docker.start_argv(name))
        return name
    # The uploads volume as the inventory's uploads: layout says (on shared storage: a bind of
    # it), before docker would make a per-host volume of that name by itself.
    uploads_layout.ensure_volume(gw, host)
    gw.run(host, docker.run_argv(
        name, release.image, env_file=layout.release_env(release.id),
        # Non-secret identity of the release, so the app can show it.
        env={"APP_VERSION": release.version, "APP_RELEASE": release.id, "PORT": str(gw.env.health.port)},
        # Published on the host's loopback only (any free port), for the health check from the host.
        publish=[("127.0.0.1", 0, gw.env.health.port)],
        volumes=[(f"{gw.env.app}-uploads", app.upload_dir, "")],
        labels={"ops.app": gw.env.app, "ops.role": "web", "ops.release": release.id,
                "ops.version": release.version}, cpu_shares=STARTING_CPU_SHARES))
    return name


def published_base(gw: Gateway, host: Host, name: str) -> str:
    """``http://127.0.0.1:PORT`` of the container's app port on the host ("" before it is published)."""
    port_line = gw.query(host, ("docker", "port", name, f"{gw.env.health.port}/tcp"), check=False).stdout
    return f"http://{port_line.split()[0]}" if port_line.strip() else ""


def warm_up(gw: Gateway, host: Host, name: str) -> None:
    """Request ``deploy.warmup`` paths of the new container before it takes traffic.

    NOTE: a fresh Node process renders its first pages several times slower (modules
    loaded, code not yet optimised); without this the first visitors after a switch pay
    for it. Best effort: the health check is the gate, an answer here is not checked.
    """
    paths = gw.env.deploy.warmup
    if not paths or gw.dry_run:
        return
    base = published_base(gw, host, name)
    if not base:
        return
    # Some at once, as visitors come: a page rendered for several requests at a time is
    # what the first seconds after the join ask of it (curl >= 7.66 for --parallel).
    fetches = [arg for p in paths for _ in range(WARMUP_ROUNDS) for arg in ("-o", "/dev/null", f"{base}{p}")]
    gw.query(host, ("curl", "-s", "--parallel", "--parallel-max", str(WARMUP_PARALLEL), "-m", "10", *fetches),
             check=False, timeout=10 * len(fetches) // 3 + 10)


def wait_healthy(gw: Gateway, host: Host, name: str, timeout: float) -> None:
    """Poll the container's health path from the host until 200, or fail with its logs."""
    if gw.dry_run:
        gw.echo(f"[dry-run] {host.name}: wait for {name} {gw.env.health.path} to answer 200 (max {timeout:g}s)")
        return
    deadline = time.monotonic() + timeout
    url = ""
    while True:
        if not url:
            # The published port appears once the container has started.
            base = published_base(gw, host, name)
            url = f"{base}{gw.env.health.path}" if base else ""
        res = gw.query(host, ("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-m", "3", url),
                       check=False) if url else None
        if res is not None and res.stdout.strip() == "200":
            return
        last = (res.stdout.strip() or res.stderr.strip()) if res is not None else "no published port yet"
        state = container_state(gw, host, name)
        if state != "running" or time.monotonic() >= deadline:
            logs = gw.query(host, docker.logs_argv(name, 30), check=False)
            tail = (logs.stdout + logs.stderr).strip().splitlines()[-30:]
            why = f"container {state}" if state != "running" else f"no 200 within {timeout:g}s (last: {last})"
            raise HealthCheckFailed(
                f"{name} failed its health check {gw.env.health.path}: {why}\n    "
                + "\n    ".join(tail or ["(no logs)"]),
                host=host.name, hint="fix the app, or raise health.timeout if it only starts slowly")
        time.sleep(HEALTH_POLL)


def ensure_proxy(gw: Gateway, host: Host, app: AppSettings, *, reload: bool = False) -> None:
    """The proxy runs with the current site config; reloaded only when the config changed
    (or ``reload``: the certificate it reads changed, see ``ops.tls.install``).

    TLS is served once ``proxy.tls`` is set AND a certificate is installed on the host;
    until then the site stays plain http (no HSTS) with the ACME challenge path, so a
    first order can succeed through it."""
    layout = Layout(gw.env)
    bridged = bool(gw.env.deploy.asset_path)
    tls = gw.env.proxy.tls
    serve_tls = tls is not None and hostfiles.has_certificate(gw, host)
    conf = render_site_conf(upstream=f"{layout.web_service}:{gw.env.health.port}", listen_port=80,
                            max_body_bytes=app.max_body_bytes, resolver=DOCKER_DNS, resolver_valid=RESOLVER_VALID,
                            assets=(gw.env.deploy.asset_url, assets.PROXY_MOUNT) if bridged else None,
                            challenge=True, tls=serve_tls, https_port=tls.https_port if tls else 443)
    conf_dir = layout.proxy_conf_dir
    site = f"{conf_dir}/{gw.env.app}.conf"
    previous = gw.query(host, shell("cat {p} 2>/dev/null || true", p=site)).stdout
    changed = previous != conf
    if changed:
        gw.run(host, ("mkdir", "-p", conf_dir))
        gw.put(host, conf.encode(), f"{site}.new", mode=0o644)
        gw.run(host, ("mv", f"{site}.new", site))
    proxy = layout.proxy_container
    volumes = [(conf_dir, "/etc/nginx/conf.d", "ro")]
    if bridged:
        # Created by the SSH user before docker mounts it (else dockerd makes it, owned by root).
        gw.run(host, ("mkdir", "-p", assets.files_dir(layout)))
        volumes.append((assets.files_dir(layout), assets.PROXY_MOUNT, "ro"))
    hostfiles.prepare_dirs(gw, host)
    volumes += hostfiles.mounts(layout)
    publish = [("", gw.env.proxy.port, 80)] + ([("", tls.https_port, HTTPS_CONTAINER_PORT)] if tls else [])
    state = container_state(gw, host, proxy)
    if state is not None and not (_has_mounts(gw, host, proxy, [dest for _, dest, _ in volumes])
                                  and _publishes(gw, host, proxy, publish)):
        # NOTE: once, on the first deploy that bridges assets or mounts the TLS and challenge
        # directories, and when https is turned on or off: a container's mounts and ports are fixed.
        gw.run(host, docker.rm_argv(proxy, force=True))
        state = None
    if state is None:
        gw.run(host, docker.run_argv(
            proxy, registry.service_ref(gw.env, gw.env.proxy.image), network=layout.network,
            publish=publish, volumes=volumes,
            labels={"ops.app": gw.env.app, "ops.role": "proxy"}))
        return
    if state != "running":
        gw.run(host, docker.start_argv(proxy))
    if not changed and not reload:
        return
    test = gw.run(host, nginx_test_argv(proxy), check=False)
    if not test.ok:
        # Put the last good config back so a later reload cannot pick up the bad one.
        if previous:
            gw.put(host, previous.encode(), site, mode=0o644)
        raise HostError(f"nginx rejected the new config: {test.stderr.strip().splitlines()[-1:]}",
                        host=host.name, hint="the proxy still serves with its previous config")
    # NOTE: a reload closes idle client keep-alive connections; it only happens when
    # the config itself changed (first deploy of this tool version, MAX_FILE_SIZE...).
    gw.run(host, nginx_reload_argv(proxy))


def _publishes(gw: Gateway, host: Host, container: str, publish: list[tuple[str, int, int]]) -> bool:
    """The container publishes exactly these (host port -> container port) pairs."""
    res = gw.query(host, docker.inspect_argv(container, fmt="{{json .HostConfig.PortBindings}}"), check=False)
    try:
        bindings = json.loads(res.stdout or "{}") or {}
    except json.JSONDecodeError:
        return False
    have = {(int(b.get("HostPort") or 0), int(port.split("/")[0])) for port, bs in bindings.items() for b in bs or []}
    return have == {(hp, cp) for _, hp, cp in publish}


def _has_mounts(gw: Gateway, host: Host, container: str, destinations: list[str]) -> bool:
    res = gw.query(host, docker.inspect_argv(container, fmt="{{range .Mounts}}{{.Destination}} {{end}}"), check=False)
    return set(destinations) <= set(res.stdout.split())


def join_service(gw: Gateway, host: Host, name: str) -> None:
    """Put ``name`` behind nginx: on the app network under the service name."""
    layout = Layout(gw.env)
    if layout.network in networks_of(gw, host, name):
        return
    gw.run(host, ("docker", "network", "connect", "--alias", layout.web_service, layout.network, name))


def local_site(gw: Gateway, host: Host, path: str) -> tuple[str, tuple[str, ...]]:
    """(URL of ``path`` through this host's nginx, from the host itself; extra curl flags)."""
    tls = gw.env.proxy.tls
    if tls is not None and hostfiles.has_certificate(gw, host):
        # Plain http only redirects now. NOTE: -k: this checks which release answers, not the
        # certificate (127.0.0.1 is not a name on it); `inv smoke` and `inv tls.status` check that.
        return f"https://127.0.0.1:{tls.https_port}{path}", ("-k",)
    return f"http://127.0.0.1:{gw.env.proxy.port}{path}", ()


# Polls the site from the host itself until it answers 200 with the version; exit 1 with the
# last status line after the deadline. NOTE: on the host, not through SSH round trips: the
# drain counts from the first answer of the new release, and nginx spreads requests over
# old and new, so a slow poll would see it late (and the old one would answer that longer).
_SERVING_LOOP = """end=$(( $(date +%s) + {seconds} ))
while :; do
  out=$(curl -sS {flags} -D - -o /dev/null -m 3 {url} 2>&1 | tr -d '\\r')
  if printf '%s\\n' "$out" | head -n 1 | grep -q ' 200' && printf '%s\\n' "$out" | grep -qixF {header}; then
    exit 0
  fi
  if [ "$(date +%s)" -ge "$end" ]; then printf '%s\\n' "$out" | head -n 1; exit 1; fi
  sleep 0.02
done"""


def wait_serving(gw: Gateway, host: Host, release: Release, timeout: float = 15.0) -> None:
    """The site (through nginx) answers 200 with the new release."""
    if gw.dry_run:
        return
    url, insecure = local_site(gw, host, gw.env.health.path)
    seconds = max(1, int(timeout + 0.5))
    res = gw.query(host, shell(_SERVING_LOOP.replace("{flags}", " ".join(insecure)), seconds=seconds, url=url,
                               header=f"x-app-version: {release.version}"), check=False, timeout=seconds + 30)
    if not res.ok:
        status = res.stdout.strip() or res.stderr.strip() or f"exit {res.exit_code}"
        raise HostError(f"site does not serve {release.version} through nginx after the switch ({status})",
                        host=host.name)


def await_dns_caches(gw: Gateway) -> None:
    """Let every nginx worker's DNS cache (valid RESOLVER_VALID s) expire, so each knows
    the addresses the service name has now before one of them goes away."""
    if not gw.dry_run:
        time.sleep(RESOLVER_VALID + 0.5)


def take_out_of_service(gw: Gateway, host: Host, name: str, *, running: bool = True) -> None:
    """Stop ``name`` gracefully (SIGTERM: it refuses new connections, nginx retries them on
    the other peers, and finishes the ones it has), then take it off the app network so
    that starting it again puts nothing behind nginx before its health check."""
    layout = Layout(gw.env)
    if running:
        stop = gw.env.deploy.stop_timeout
        gw.run(host, docker.stop_argv(name, stop), timeout=stop + 30)
    if layout.network in networks_of(gw, host, name):
        gw.run(host, ("docker", "network", "disconnect", layout.network, name))


def web_containers(gw: Gateway, host: Host) -> list[tuple[str, str, str]]:
    """(name, release id, state) of this app's web containers, newest release first."""
    res = gw.query(host, docker.ps_argv(filters=[("label", f"ops.app={gw.env.app}"), ("label", "ops.role=web")],
                                        fmt='{{.Names}} {{.Label "ops.release"}} {{.State}}'))
    rows = [tuple(line.split()) for line in res.stdout.splitlines() if len(line.split()) == 3]
    return sorted(rows, key=lambda r: r[1], reverse=True)


def retire_others(gw: Gateway, host: Host, keep_running: str, *, served_at: float | None = None) -> None:
    """Drain, then stop every other web container (graceful), take it off the app network,
    keep the newest N stopped, remove the rest; static files of removed releases go too.

    ``served_at`` (``time.monotonic()`` when the site first served ``keep_running``, see
    ``cut_over``): the drain counts from there, not from now."""
    keep = gw.env.deploy.keep_releases
    kept_ids = []
    others = [row for row in web_containers(gw, host) if row[0] != keep_running]
    if any(state == "running" for _, _, state in others) and not gw.dry_run:
        # NOTE: both versions answer from the join until the SIGTERM: the mixed-version
        # window, kept short (a long-polling client whose session lives on the old
        # container flaps while both answer). No DNS cache time is needed here: a worker
        # that still knows only the old address retries with a fresh lookup (@app_retry).
        start = time.monotonic() if served_at is None else served_at
        time.sleep(max(0.0, start + gw.env.deploy.drain_seconds - time.monotonic()))
    kept = 0
    for name, rid, state in others:
        take_out_of_service(gw, host, name, running=state == "running")
        if kept < keep:
            kept += 1
            kept_ids.append(rid)
        else:
            gw.run(host, docker.rm_argv(name))
    current = next((rid for name, rid, _ in web_containers(gw, host) if name == keep_running), None)
    assets.prune(gw, host, [rid for rid in [current, *kept_ids] if rid])


def prepare_host(gw: Gateway, host: Host, release: Release, app: AppSettings, *, health_timeout: float) -> str:
    """Start ``release`` on ``host`` behind its health check, its static files bridged, the proxy
    ready; nothing serves it yet. Returns the container name (removed again on failure)."""
    ensure_network(gw, host)
    name = start_container(gw, host, release, app)
    try:
        wait_healthy(gw, host, name, health_timeout)
    except OpsError:
        gw.run(host, docker.rm_argv(name, force=True), check=False)
        raise
    warm_up(gw, host, name)
    # Full weight before it serves: from the join on it answers like the old one did.
    gw.run(host, docker.cpu_shares_argv(name, docker.DEFAULT_CPU_SHARES))
    assets.collect(gw, host, name, release.id)
    ensure_proxy(gw, host, app)
    return name


def cut_over(gw: Gateway, host: Host, release: Release, name: str) -> float:
    """The prepared container joins the service name; the site serves it; it is current.
    Returns when the site first answered with it (``time.monotonic()``), for ``retire_others``.

    NOTE: from then, not from the join: Docker's DNS can list a joined container a little
    later under load, and a worker caching an answer from that gap still knows only the
    old address; once nginx has answered with the new release, its address is listed."""
    join_service(gw, host, name)
    wait_serving(gw, host, release)
    served_at = time.monotonic()
    set_current(gw, host, release.id)
    return served_at


def switch_host(gw: Gateway, host: Host, release: Release, app: AppSettings, *, health_timeout: float) -> None:
    """Make ``release`` the one serving on ``host``; on failure the host keeps serving what it served."""
    name = prepare_host(gw, host, release, app, health_timeout=health_timeout)
    served_at = cut_over(gw, host, release, name)
    retire_others(gw, host, name, served_at=served_at)
