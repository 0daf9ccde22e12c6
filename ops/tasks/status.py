"""``inv status``: the on-call screen (site, releases, containers, database, lock, backups, disk)."""

from __future__ import annotations

from ops import status as site_status
from ops.cli import CheckFailed
from ops.inventory import resolve_target
from ops.remote import Gateway
from ops.table import format_table
from ops.tasks import ops_task, print_json, say


@ops_task(help={"host": "environment (prod) or env:host (prod:web1)", "json": "print JSON instead of a table"})
def status(c, host="", json=False):
    """Is the site up, what runs where since when, are backups fresh? Exit 0 only when all is well."""
    target = resolve_target(host)
    with Gateway(target.env) as gw:
        report = site_status.collect(gw, list(target.hosts))
    print_json(report.to_dict())
    if not json:
        rows, last = [], None
        for item in report.items:
            rows.append([item.section if item.section != last else "", item.host, item.check,
                         "ok" if item.ok else "FAIL", item.detail])
            last = item.section
        say(format_table(["WHAT", "HOST", "CHECK", "STATUS", "DETAIL"], rows))
        say("")
        say(site_status.summary(report))
    if not report.ok:
        raise CheckFailed(f"status of {target.env.name}: {len(report.problems)} problem(s)",
                          hint="see the FAIL lines above; RUNBOOK.md 'site down'")
