"""``inv doctor``: can we work on these hosts right now?

Per host: SSH reachable (connect time and command round trip), host key matches the
project's known_hosts, Docker server version, free disk where Docker and the app keep
data, the registry reachable from the host (through the SSH tunnel when the inventory
uses one), clock skew against the operator; on the database host with ``pitr:``, pgBackRest's
stanza in every repository (which one fails). Read-only: runs in dry-run mode too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from ops import registry
from ops.commands import shell
from ops.errors import HostKeyError, OpsError
from ops.inventory import Host
from ops.remote import Gateway

GIB = 1024**3


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class HostReport:
    host: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def to_dict(self) -> dict:
        return {"host": self.host, "ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def parse_df(output: str) -> tuple[int, str]:
    """Available bytes and mount point from ``df -Pk`` output (last line)."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        raise ValueError(f"unexpected df output: {output!r}")
    # POSIX format: Filesystem 1024-blocks Used Available Capacity Mounted-on
    # (the mount point may contain spaces: it is everything after the 5th field)
    fields = lines[-1].split(None, 5)
    return int(fields[3]) * 1024, fields[5]


def clock_skew(local_before: float, remote: float, local_after: float) -> tuple[float, float]:
    """(skew, uncertainty) of the remote clock against the midpoint of the round trip."""
    mid = (local_before + local_after) / 2
    return remote - mid, (local_after - local_before) / 2


def df_command(path: str):
    # The app dir may not exist yet on a fresh host: report the filesystem it will land on.
    return shell('d={path}; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; df -Pk "$d"', path=path)


def registry_url_from_host(env) -> str:
    """The registry's API root as the host's docker sees it (through the SSH tunnel: localhost)."""
    ref = registry.host_ref(env, "x")  # host[:port]/x
    where = ref.split("/", 1)[0]
    scheme = "http" if where.startswith("localhost:") else "https"
    return f"{scheme}://{where}/v2/"


def registry_reachable(gw: Gateway, host: Host) -> tuple[bool, str]:
    """Can this host reach the registry it pulls from (opening the reverse tunnel if the inventory uses one)?
    200 or 401 (login needed) both mean the registry answered."""
    url = registry_url_from_host(gw.env)
    via = " through the SSH tunnel" if gw.env.registry.tunnel else ""
    try:
        with registry.registry_access(gw, host):
            res = gw.query(host, ("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", url),
                           check=False)
    except OpsError as exc:
        return False, f"{gw.env.registry.url}{via}: {exc.message}"
    code = res.stdout.strip()
    if code in ("200", "401"):
        return True, f"{gw.env.registry.url} answers{via} ({code}{', login needed' if code == '401' else ''})"
    why = (res.stderr.strip().splitlines() or [f"HTTP {code}"])[-1]
    hint = (f"is the registry running on this machine at {gw.env.registry.url}?" if gw.env.registry.tunnel
            else "DNS, firewall or proxy between the host and the registry?")
    return False, f"{gw.env.registry.url} not reachable{via}: {why} — {hint}"


def examine(gw: Gateway, host: Host) -> HostReport:
    report = HostReport(host.name)
    settings = gw.env.doctor
    started = time.monotonic()
    try:
        gw.connection(host)
    except HostKeyError as exc:
        report.add("host key", False, exc.message)
        return report
    except OpsError as exc:
        report.add("ssh", False, f"{exc.message}" + (f" — {exc.hint}" if exc.hint else ""))
        return report
    connect_ms = (time.monotonic() - started) * 1000
    report.add("host key", True, "matches known_hosts")

    t0 = time.monotonic()
    gw.query(host, ("true",))
    rtt_ms = (time.monotonic() - t0) * 1000
    report.add("ssh", True, f"{host.user}@{host.address}:{host.port} connect {connect_ms:.0f} ms, rtt {rtt_ms:.1f} ms")

    version = gw.query(host, ("docker", "version", "--format", "{{.Server.Version}}"), check=False)
    if version.ok and version.stdout.strip():
        report.add("docker", True, f"server {version.stdout.strip()}")
        root = gw.query(host, ("docker", "info", "--format", "{{.DockerRootDir}}"), check=False).stdout.strip()
    else:
        detail = (version.stderr.strip().splitlines() or ["no output"])[-1]
        report.add("docker", False, f"docker server not usable by {host.user}: {detail}")
        root = ""

    for label, path in (("disk docker", root or "/var/lib/docker"), ("disk app", gw.env.app_dir)):
        res = gw.query(host, df_command(path), check=False)
        try:
            free, mount = parse_df(res.stdout)
        except (ValueError, IndexError):
            report.add(label, False, f"cannot read free space of {path}: {res.stderr.strip() or res.stdout.strip()}")
            continue
        ok = free >= settings.min_free_gb * GIB
        report.add(label, ok, f"{free / GIB:.1f} GiB free on {mount} ({path})"
                   + ("" if ok else f", below doctor.min_free_gb={settings.min_free_gb:g}"))

    if root:
        ok, detail = registry_reachable(gw, host)
        report.add("registry", ok, detail)

    before = time.time()
    res = gw.query(host, ("date", "+%s.%N"), check=False)
    after = time.time()
    try:
        skew, uncertainty = clock_skew(before, float(res.stdout.strip()), after)
    except ValueError:
        report.add("clock", False, f"cannot read the host's clock: {res.stdout.strip() or res.stderr.strip()}")
    else:
        ok = abs(skew) <= settings.max_clock_skew
        report.add("clock", ok, f"skew {skew:+.3f} s (±{uncertainty:.3f})"
                   + ("" if ok else f", above doctor.max_clock_skew={settings.max_clock_skew:g} s: fix NTP on the host"))
    if root and _archives_here(gw.env, host):
        from ops import pitr_health  # NOTE: pgBackRest only when it is configured

        for f in pitr_health.doctor_findings(gw, gw.env):
            report.add(f"pitr {f.where}" if f.where != "pitr" else "pitr", f.ok, f.detail)
    return report


def _archives_here(env, host: Host) -> bool:
    """This host runs the Postgres accessory and the inventory has ``pitr:`` (pgBackRest's stanza)."""
    acc = env.accessories.get("postgres")
    return env.pitr is not None and acc is not None and acc.host == host.name


def run_doctor(gw: Gateway, hosts: list[Host]) -> list[HostReport]:
    results = gw.map(lambda h: examine(gw, h), hosts)
    reports = []
    for host in hosts:
        if host.name in results.ok:
            reports.append(results.ok[host.name])
        else:
            report = HostReport(host.name)
            report.add("doctor", False, str(results.failed[host.name]))
            reports.append(report)
    return reports
