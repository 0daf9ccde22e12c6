"""Traffic on the web hosts: what serves now, site probes through nginx, and the maintenance page that
takes the app off while the database is swapped (``inv restore``)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from ops.commands import docker
from ops.deploy import switch
from ops.errors import HostError, OpsError
from ops.inventory import Environment, Host
from ops.layout import Layout
from ops.remote import Gateway

MAINTENANCE_WAIT = 15.0
SITE_WAIT = 30.0
RETRY_AFTER = 60


DEFAULT_MESSAGE = "Down for maintenance (database restore). Back in a minute."
# What a maintenance message may hold: it lands in an nginx string ('"', '\\', '$', ';', '{' would not).
MESSAGE_RE = re.compile(r"^[A-Za-z0-9 .,:!?()'/@%+&_-]{1,200}\Z")


def maintenance_conf(port: int, retry_after: int = RETRY_AFTER, message: str = DEFAULT_MESSAGE) -> str:
    """The maintenance container's site: 503 + Retry-After for every request, the health path included."""
    if not MESSAGE_RE.match(message):
        raise ValueError(f"maintenance message {message!r} holds characters other than letters, digits, spaces "
                         "and .,:!?()'/@%+&_-")
    return "\n".join([
        "# Rendered by ops (ops/traffic.py) while a restore swaps the database, or by inv maintenance.on.",
        "server {",
        f"    listen {int(port)} default_server;",
        "    default_type text/plain;",
        f'    add_header Retry-After "{int(retry_after)}" always;',
        '    add_header Cache-Control "no-store" always;',
        "    location / {",
        f'        return 503 "{message}\\n";',
        "    }",
        "}",
        "",
    ])


def maintenance_container(env: Environment) -> str:
    return f"{env.app}-maintenance"


@dataclass
class WebHost:
    """One web host during the swap: what was serving, what was stopped, maintenance on or off."""

    host: Host
    serving: list[str]
    stopped: list[str] = field(default_factory=list)
    maintenance: bool = False


def serving_containers(gw: Gateway, host: Host) -> list[str]:
    return [name for name, _rid, state in switch.web_containers(gw, host) if state == "running"]


def site_status(gw: Gateway, host: Host) -> str:
    url, flags = switch.local_site(gw, host, gw.env.health.path)
    res = gw.query(host, ("curl", "-sS", *flags, "-o", "/dev/null", "-w", "%{http_code}", "-m", "3", url),
                   check=False)
    return res.stdout.strip() or res.stderr.strip()[-80:]


def wait_site(gw: Gateway, host: Host, want: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = site_status(gw, host)
        if got == want:
            return
        if time.monotonic() >= deadline:
            raise HostError(f"the site through nginx answers {got or 'nothing'}, not {want}, after {timeout:g}s",
                            host=host.name)
        time.sleep(switch.HEALTH_POLL)


def enter_maintenance(gw: Gateway, web: WebHost, image: str, *, message: str = DEFAULT_MESSAGE,
                      retry_after: int = RETRY_AFTER) -> None:
    """Maintenance container under the app's service name first (it answers 503 + Retry-After),
    then the app containers stopped (SIGTERM: in-flight requests finish; nginx retries refused
    ones on the maintenance container) and taken off the network, so that starting them again
    puts nothing behind nginx before their health check passed."""
    env, host = gw.env, web.host
    layout = Layout(env)
    conf_dir = layout.path("maintenance", "conf.d")
    name = maintenance_container(env)
    gw.run(host, ("mkdir", "-p", conf_dir))
    gw.put(host, maintenance_conf(env.health.port, retry_after, message).encode(), f"{conf_dir}/maintenance.conf",
           mode=0o644)
    gw.run(host, docker.rm_argv(name, force=True), check=False)  # a leftover of an interrupted restore
    web.maintenance = True
    gw.run(host, docker.run_argv(name, image, network=layout.network, network_aliases=(layout.web_service,),
                                 volumes=[(conf_dir, "/etc/nginx/conf.d", "ro")],
                                 labels={"ops.app": env.app, "ops.role": "maintenance"}, restart=None))
    wait_site(gw, host, "503", MAINTENANCE_WAIT)
    # Every nginx worker now knows the maintenance container too: a request to a stopped
    # app's address falls back on it.
    switch.await_dns_caches(gw)
    for container in web.serving:
        web.stopped.append(container)
        switch.take_out_of_service(gw, host, container)


def leave_maintenance(gw: Gateway, web: WebHost, health_timeout: float) -> None:
    """Start what was stopped, health-check it, put it back behind nginx; remove the maintenance
    container whatever happens (a deploy must never find it still answering under the app's name)."""
    host = web.host
    failures: list[OpsError] = []
    try:
        for container in web.stopped:
            gw.run(host, docker.start_argv(container))
            try:
                switch.wait_healthy(gw, host, container, health_timeout)
            except OpsError as exc:
                failures.append(exc)
            # Joined even when unhealthy: the fleet is then as a deploy expects to find it.
            switch.join_service(gw, host, container)
        if web.stopped and not failures:
            wait_site(gw, host, "200", SITE_WAIT)
            # Every worker's DNS cache lists the app before its other peer goes away.
            switch.await_dns_caches(gw)
    finally:
        if web.maintenance:
            gw.run(host, docker.rm_argv(maintenance_container(gw.env), force=True))
            web.maintenance = False
    if failures:
        raise failures[0]
    if web.stopped:
        wait_site(gw, host, "200", SITE_WAIT)
