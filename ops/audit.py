"""Audit trail: one JSON line per deploy, rollback and lock action.

Written to ``{app_dir}/audit.log`` on every host involved and, when the environment
has S3 settings, as one object per event under ``<prefix>audit/<env>/`` so the trail
survives the loss of a host. A failing central copy warns; it never hides the
outcome of the operation being recorded.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from ops.commands import shell
from ops.inventory import Host
from ops.layout import Layout
from ops.remote import Gateway


def actor() -> str:
    """Who is acting: ``OPS_ACTOR`` (CI jobs set it) or user@machine."""
    return os.environ.get("OPS_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class AuditEvent:
    env: str
    action: str  # deploy, rollback, lock.acquire, lock.release, lock.force-release, ...
    outcome: str  # started, ok, failed, refused
    version: str | None = None
    detail: str = ""
    hosts: list[str] = field(default_factory=list)
    actor: str = field(default_factory=actor)
    time: str = field(default_factory=lambda: iso(utcnow()))
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


def append_line_command(path: str, line: str):
    # printf with the line as an argument (quoted): no shell interpretation of its content.
    return shell("mkdir -p \"$(dirname {p})\" && printf '%s\\n' {line} >> {p}", p=path, line=line)


def record(gw: Gateway, event: AuditEvent, hosts: list[Host], *, central=None) -> list[str]:
    """Append ``event`` on each host (and centrally); returns warnings, never raises for them."""
    event.line()  # fail early on anything not serialisable
    layout = Layout(gw.env)
    warnings = []
    line = gw.mask(event.line())
    results = gw.map(lambda h: gw.run(h, append_line_command(layout.audit_log, line)), hosts)
    for name, err in results.failed.items():
        warnings.append(f"audit line not written on {name}: {err}")
    if central is not None and not gw.dry_run:
        try:
            central(event)
        except Exception as exc:  # noqa: BLE001 - a failed copy must not mask the real outcome
            warnings.append(f"central audit copy failed: {type(exc).__name__}: {gw.mask(str(exc))}")
    return warnings


def central_copy(env):
    """A writer of audit events to S3 (``<prefix>audit/<env>/<day>/``), None without S3 settings."""
    if env.s3 is None:
        return None
    from ops import s3  # NOTE: boto3 is imported only by tasks that need S3

    def put(event: AuditEvent) -> None:
        day = event.time[:10].replace("-", "/")
        s3.put_json(env, s3.key(env, "audit", env.name, day, f"{event.time}-{event.action}-{event.id}.json"),
                    vars(event))

    return put


def read_jsonl(gw: Gateway, host: Host, path: str, *, last: int | None = None) -> list[dict]:
    """JSON lines of a remote file (a missing file is empty; unreadable lines skipped)."""
    cmd = shell("tail -n {n} {p} 2>/dev/null || true", n=last, p=path) if last else \
        shell("cat {p} 2>/dev/null || true", p=path)
    entries = []
    for raw in gw.query(host, cmd).stdout.splitlines():
        try:
            entries.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return entries


def read_log(gw: Gateway, host: Host, *, last: int = 50) -> list[dict]:
    return read_jsonl(gw, host, Layout(gw.env).audit_log, last=last)
