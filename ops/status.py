"""``inv status``: is the site up, what runs where, since when, are backups fresh?

One read-only pass over the environment, one ``Item`` per fact, each judged ok or not:

- per web host: what nginx serves (asked THROUGH nginx on the host: status code, the
  ``X-App-Version`` header, latency) against what the release records say is current,
  the current container's state and health, the proxy container;
- per host: SSH, free disk where Docker and the app keep data;
- the database (the Postgres accessory): reachable, size, connections against
  ``max_connections``;
- the environment lock: free, held (by whom, how long), STALE;
- the newest good backup of each kind and its age against ``backup.max_age_hours``;
- whatever ``EXTRA_SOURCES`` add (see ``extra_items``): the TLS certificate's days left, and with
  ``pitr:`` WAL archiving (failures, archive lag), each repository's stanza and newest archived
  WAL, the newest physical backups.

A host answering 502 is "not serving", whatever its records say. Nothing here raises
for a failed check: an unreachable host, database or bucket is an item that is not ok.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from ops import lock as envlock
from ops.commands import docker
from ops.deploy.release import current_release
from ops.deploy.switch import local_site
from ops.doctor import GIB, df_command, parse_df
from ops.errors import OpsError
from ops.inventory import Environment, Host
from ops.layout import Layout
from ops.remote import Gateway
from ops.traffic import maintenance_container

PROBE_TIMEOUT = 5  # seconds for the request through nginx
# curl's own summary line after the headers: "<status> <seconds>".
_CURL_TAIL = "\n__ops__ %{http_code} %{time_total}\n"


@dataclass
class Item:
    section: str  # web, host, database, lock, backup, or an extra source's name
    host: str     # host name, or "-" for environment-wide facts
    check: str
    ok: bool
    detail: str
    data: dict = field(default_factory=dict)


@dataclass
class StatusReport:
    environment: str
    items: list[Item] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.items) and all(i.ok for i in self.items)

    @property
    def problems(self) -> list[Item]:
        return [i for i in self.items if not i.ok]

    def to_dict(self) -> dict:
        return {"environment": self.environment, "ok": self.ok, "items": [asdict(i) for i in self.items]}


# -- through nginx -----------------------------------------------------------------------
@dataclass
class Probe:
    """One request to the site through the host's nginx."""

    status: int | None      # None: nothing answered
    version: str | None     # X-App-Version, None when absent
    seconds: float | None
    error: str = ""


def probe_argv(url: str, flags: tuple[str, ...] = ()) -> tuple[str, ...]:
    return ("curl", "-sS", *flags, "-o", "/dev/null", "-D", "-", "-m", str(PROBE_TIMEOUT), "-w", _CURL_TAIL, url)


def parse_probe(stdout: str, stderr: str = "") -> Probe:
    """curl's headers (``-D -``) and our ``__ops__ <code> <seconds>`` line -> a ``Probe``."""
    version = None
    status = seconds = None
    for line in stdout.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "x-app-version":
            version = value.strip()
        m = re.match(r"^__ops__ (\d{3}) ([0-9.]+)$", line.strip())
        if m:
            status = int(m[1]) or None  # curl says 000 when nothing answered
            seconds = float(m[2])
    error = "" if status else (stderr.strip().splitlines() or ["no answer"])[-1]
    return Probe(status, version, seconds, error)


def judge_serving(probe: Probe, recorded: str | None) -> tuple[bool, str]:
    """Serving means: 200 through nginx, carrying the version the release records say is current."""
    ms = f", {probe.seconds * 1000:.0f} ms" if probe.seconds is not None else ""
    if probe.status is None:
        return False, f"not serving: nothing answers through nginx ({probe.error})"
    if probe.status != 200:
        return False, f"not serving: nginx answers {probe.status}{ms}"
    if recorded is None:
        return False, f"serves {probe.version or '(no X-App-Version)'} but no release is recorded as current{ms}"
    if probe.version != recorded:
        return False, f"serves {probe.version or '(no X-App-Version)'} but the records say {recorded}{ms}"
    return True, f"serving {recorded} (200{ms})"


def _container_state(gw: Gateway, host: Host, name: str) -> tuple[str, str]:
    """(state, health) of a container; ("missing", "") when there is none."""
    fmt = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
    res = gw.query(host, docker.inspect_argv(name, fmt=fmt), check=False)
    if not res.ok:
        return "missing", ""
    state, _, health = res.stdout.strip().partition(" ")
    return state, health.strip()


def web_items(gw: Gateway, host: Host) -> list[Item]:
    env, layout = gw.env, Layout(gw.env)
    items: list[Item] = []
    release = current_release(gw, host)
    recorded = release.version if release else None
    # https once the proxy serves TLS (plain http only redirects then)
    res = gw.query(host, probe_argv(*local_site(gw, host, env.health.path)), check=False,
                   timeout=PROBE_TIMEOUT + 10)
    probe = parse_probe(res.stdout, res.stderr)
    ok, detail = judge_serving(probe, recorded)
    items.append(Item("web", host.name, "serving", ok, detail,
                      {"status": probe.status, "version": probe.version, "seconds": probe.seconds,
                       "recorded": recorded, "release": release.id if release else None,
                       "since": release.time if release else None}))
    if release is None:
        items.append(Item("web", host.name, "container", False, "no release is current on this host",
                          {"container": None}))
    else:
        name = layout.web_container(release.id)
        state, health = _container_state(gw, host, name)
        # "starting": Docker's own HEALTHCHECK has not run yet (just deployed); what counts is that
        # it serves (the "serving" item) and is not reported unhealthy.
        ok = state == "running" and health != "unhealthy"
        items.append(Item("web", host.name, "container", ok,
                          f"{name} {state}" + (f" ({health})" if health else "") + f", since {release.time}",
                          {"container": name, "state": state, "health": health or None}))
    state, _ = _container_state(gw, host, layout.proxy_container)
    items.append(Item("web", host.name, "nginx", state == "running", f"{layout.proxy_container} {state}",
                      {"container": layout.proxy_container, "state": state}))
    maintenance = maintenance_container(env)
    state, _ = _container_state(gw, host, maintenance)
    if state != "missing":
        items.append(Item("web", host.name, "maintenance", False,
                          f"maintenance page ON ({maintenance} {state}): the site answers 503 — "
                          f"inv maintenance.off --host {env.name}", {"container": maintenance, "state": state}))
    return items


# -- every host ----------------------------------------------------------------------------
def disk_items(gw: Gateway, host: Host) -> list[Item]:
    minimum = gw.env.doctor.min_free_gb
    root = gw.query(host, ("docker", "info", "--format", "{{.DockerRootDir}}"), check=False).stdout.strip()
    items = []
    for label, path in (("disk docker", root or "/var/lib/docker"), ("disk app", gw.env.app_dir)):
        res = gw.query(host, df_command(path), check=False)
        try:
            free, mount = parse_df(res.stdout)
        except (ValueError, IndexError):
            items.append(Item("host", host.name, label, False, f"cannot read free space of {path}"))
            continue
        ok = free >= minimum * GIB
        items.append(Item("host", host.name, label, ok,
                          f"{free / GIB:.1f} GiB free on {mount}" + ("" if ok else f" (below {minimum:g} GiB: "
                                                                       f"inv prune --host {gw.env.name})"),
                          {"free_bytes": free, "mount": mount, "path": path}))
    return items


def host_items(gw: Gateway, host: Host) -> list[Item]:
    t0 = time.monotonic()
    gw.query(host, ("true",))
    items = [Item("host", host.name, "ssh", True, f"rtt {(time.monotonic() - t0) * 1000:.0f} ms")]
    if "web" in host.roles:
        items = web_items(gw, host) + items
    return items + disk_items(gw, host)


# -- environment-wide ---------------------------------------------------------------------
def database_items(gw: Gateway) -> list[Item]:
    from ops import postgres  # NOTE: psycopg only when there is a database to ask
    from ops.appenv import load_env_file

    env = gw.env
    if "postgres" not in env.accessories:
        return []
    try:
        values = load_env_file(env.env_file) if env.env_file else {}
        target = postgres.pg_target(env, values)
        gw.mask.add(target.password)
        with postgres.session(gw, target, statement_timeout=10) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            used, limit = conn.execute(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
                "current_setting('max_connections')::int").fetchone()
    except OpsError as exc:
        return [Item("database", "-", "reachable", False, exc.message)]
    except Exception as exc:  # noqa: BLE001 - a database error is a finding, not a crash
        return [Item("database", "-", "reachable", False, gw.mask(str(exc)).strip().splitlines()[-1])]
    share = used / limit if limit else 1.0
    return [Item("database", target.host.name, "reachable", True, f"{target.dbname}, {size / 1024**2:.1f} MiB",
                 {"database": target.dbname, "size_bytes": int(size)}),
            Item("database", target.host.name, "connections", share < 0.9, f"{used} of max {limit}"
                 + ("" if share < 0.9 else " (90% or more: the app may soon be refused)"),
                 {"used": int(used), "max": int(limit)})]


def lock_items(gw: Gateway, hosts: list[Host]) -> list[Item]:
    results = envlock.survey(gw, hosts)
    items = []
    for name, state in results.ok.items():
        if state is None:
            continue
        age = f", heartbeat {state.age:.0f}s ago" if state.age is not None else ""
        detail = state.describe() + age
        if state.stale:
            detail += f" — release it: inv lock.release --host {gw.env.name}"
        items.append(Item("lock", name, "lock", not state.stale, detail,
                          {"holder": asdict(state.holder), "age_seconds": state.age, "stale": state.stale}))
    if not items and results.ok:
        items.append(Item("lock", "-", "lock", True, "free"))
    return items


def backup_items(env: Environment, client=None) -> list[Item]:
    from ops import s3
    from ops.audit import utcnow
    from ops.backup import catalog
    from ops.backup import check as checks
    from ops.backup.manifest import KINDS

    if env.s3 is None:
        return [Item("backup", "-", "backups", False, f"no s3 section in {env.path.name}: no backups are kept")]
    try:
        listing = catalog.list_backups(env, client or s3.client(env))
    except OpsError as exc:
        return [Item("backup", "-", "backups", False, exc.message)]
    now = utcnow()
    limit = timedelta(hours=env.backup.max_age_hours)
    items = []
    for kind in KINDS:
        f = checks.freshness(listing, kind, now=now, max_age=limit)
        data = {"newest": f.newest.id if f.newest else None,
                "age_seconds": f.age.total_seconds() if f.age is not None else None,
                "max_age_seconds": limit.total_seconds()}
        items.append(Item("backup", "-", kind, f.ok, f.line(env.name).split(": ", 1)[1], data))
    return items


# -- the spot where more state plugs in ---------------------------------------------------
# Each source: (gateway, hosts) -> items. Meant for state configured elsewhere: WAL
# archiving / point-in-time recovery (pgBackRest: last archived segment, its age) and the
# TLS certificate's days left per web host (``tls_items``). Register with
# ``EXTRA_SOURCES.append(fn)`` from the module that owns that state; a source that fails
# becomes one failed item.
ExtraSource = Callable[[Gateway, list[Host]], list[Item]]


def tls_items(gw: Gateway, hosts: list[Host]) -> list[Item]:
    """Per web host: the certificate its https port serves, and its days left (``proxy.tls`` only).
    FAIL below ``smoke.cert_min_days``: renewal (``inv tls.renew``) should have happened long before."""
    if gw.env.proxy.tls is None:
        return []
    from ops.tls.status import certificate_status  # NOTE: the TLS stack only when TLS is configured

    items = []
    minimum = gw.env.smoke.cert_min_days
    for host in [h for h in hosts if "web" in h.roles]:
        st = certificate_status(gw, host)
        days = st.days_left()
        if not st.tls_on or days is None:
            items.append(Item("tls", host.name, "certificate", False, st.detail or "no certificate served"))
            continue
        ok = days >= minimum and not st.detail
        detail = f"{days:.0f} days left (until {st.not_after:%Y-%m-%d})" + (f"; {st.detail}" if st.detail else "")
        if days < minimum:
            detail += f" — below smoke.cert_min_days={minimum}: inv tls.renew --host {gw.env.name}"
        items.append(Item("tls", host.name, "certificate", ok, detail, {"days_left": round(days, 2)}))
    return items


def pitr_items(gw: Gateway, hosts: list[Host]) -> list[Item]:
    """With ``pitr:``: the archiver (failures, lag), each repository's stanza and newest archived WAL,
    the newest full/diff/incr backup per repository (``ops.pitr_health``: backup.check's rules)."""
    env = gw.env
    if env.pitr is None or "postgres" not in env.accessories:
        return []
    from ops import pitr_health, postgres  # NOTE: pgBackRest only when it is configured
    from ops.appenv import load_env_file

    target = postgres.pg_target(env, load_env_file(env.env_file) if env.env_file else {})
    return [Item("pitr", f.where, f.check, f.ok, f.detail, f.data)
            for f in pitr_health.status_findings(gw, env, target)]


EXTRA_SOURCES: list[ExtraSource] = [tls_items, pitr_items]


def extra_items(gw: Gateway, hosts: list[Host]) -> list[Item]:
    items: list[Item] = []
    for source in EXTRA_SOURCES:
        name = getattr(source, "__name__", "extra")
        try:
            items += source(gw, hosts)
        except Exception as exc:  # noqa: BLE001 - one broken source must not hide the rest
            items.append(Item(name, "-", name, False, f"could not be read: {gw.mask(str(exc))}"))
    return items


def collect(gw: Gateway, hosts: list[Host], *, backups_client=None) -> StatusReport:
    report = StatusReport(gw.env.name)
    results = gw.map(lambda h: host_items(gw, h), hosts)
    reachable = []
    for host in hosts:
        if host.name in results.ok:
            report.items += results.ok[host.name]
            reachable.append(host)
        else:
            err = results.failed[host.name]
            report.items.append(Item("host", host.name, "ssh", False, err.message + (f" — {err.hint}" if err.hint else "")))
            if "web" in host.roles:
                report.items.append(Item("web", host.name, "serving", False, "unknown: host unreachable"))
    report.items += database_items(gw)
    report.items += lock_items(gw, reachable)
    report.items += backup_items(gw.env, backups_client)
    report.items += extra_items(gw, reachable)
    order = {"web": 0, "host": 1, "database": 2, "pitr": 3, "lock": 4, "backup": 5}
    report.items.sort(key=lambda i: (order.get(i.section, 6), i.section))
    return report


def summary(report: StatusReport) -> str:
    if report.ok:
        return f"{report.environment}: all is well ({len(report.items)} checks)"
    bad = report.problems
    return f"{report.environment}: {len(bad)} problem(s): " + ", ".join(
        f"{i.host + ' ' if i.host != '-' else ''}{i.section if i.section == 'backup' else ''} {i.check}".replace("  ", " ")
        for i in bad)


__all__ = ["EXTRA_SOURCES", "Item", "Probe", "StatusReport", "collect", "extra_items", "judge_serving",
           "parse_probe", "probe_argv", "summary"]
