"""``inv doctor``: per-host health of SSH, host key, Docker, disk, registry, clock; the pgBackRest stanza."""

from __future__ import annotations

from ops.cli import CheckFailed
from ops.doctor import run_doctor
from ops.inventory import resolve_target
from ops.remote import Gateway
from ops.table import format_table
from ops.tasks import ops_task, print_json, say


@ops_task(help={"host": "environment (prod) or env:host (prod:web1)",
                "json": "print JSON instead of a table"})
def doctor(c, host="", json=False):
    """Check every host: SSH + round trip, host key, Docker, free disk, registry, clock skew; the pgBackRest stanza."""
    target = resolve_target(host)
    with Gateway(target.env) as gw:
        reports = run_doctor(gw, list(target.hosts))
    print_json({"environment": target.env.name, "ok": all(r.ok for r in reports),
                "hosts": [r.to_dict() for r in reports]})
    if not json:
        rows = []
        for r in reports:
            for i, check in enumerate(r.checks):
                rows.append([r.host if i == 0 else "", check.name, "ok" if check.ok else "FAIL", check.detail])
        say(format_table(["HOST", "CHECK", "STATUS", "DETAIL"], rows))
        healthy = sum(r.ok for r in reports)
        say(f"\n{healthy} of {len(reports)} host(s) healthy")
    failed = [r.host for r in reports if not r.ok]
    if failed:
        raise CheckFailed(f"doctor found problems on {', '.join(failed)}")
