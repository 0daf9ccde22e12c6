"""``inv smoke``: the site meets the seed's success criteria (speed, realtime, headers, TLS)."""

from __future__ import annotations

from ops import smoke as checks
from ops.cli import CheckFailed
from ops.inventory import resolve_target
from ops.remote import Gateway
from ops.table import format_table
from ops.tasks import ops_task, print_json, say, warn


@ops_task(help={"host": "environment (prod) or env:host (prod:web1)",
                "url": "the site's base URL (default: smoke.url, else each web host's nginx through SSH)",
                "json": "print JSON"})
def smoke(c, host="", url="", json=False):
    """Pages < smoke.page_max_seconds, Socket.io + WebSocket < websocket_max_seconds, security headers, TLS."""
    target = resolve_target(host)
    with Gateway(target.env) as gw:
        report = checks.run(target.env, url=url or None, gw=gw, hosts=list(target.hosts))
    for warning in report.warnings:
        warn(warning)
    print_json(report.to_dict())
    if not json:
        say(format_table(["WHERE", "CHECK", "STATUS", "DETAIL"],
                         [[c.target, c.name, "ok" if c.ok else "FAIL", c.detail] for c in report.checks]))
        say("")
        say(report.summary())
    if not report.ok:
        raise CheckFailed(f"smoke check of {target.env.name} failed: {len(report.failed)} check(s)",
                          hint="see the FAIL lines; thresholds are in the inventory's smoke: section")
