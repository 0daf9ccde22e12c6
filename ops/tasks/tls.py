"""``inv tls.*``: HTTPS at the proxy. status reads what is served; issue and renew change it.

Exit status: 0 done (or nothing due); 1 the order or install failed, or status found a
host not serving a current certificate; 2 a usage or configuration error (nothing was done).
"""

from __future__ import annotations

from ops.cli import CheckFailed
from ops.inventory import resolve_target
from ops.remote import Gateway
from ops.table import format_table
from ops.tasks import ops_task, print_json, say, warn
from ops.tls import run as tls_run

HOST_HELP = "environment (prod) or env:host (prod:web1); only web hosts are acted on"


def _plan_and_apply(host: str, *, renew: bool, force: bool, dry_run: bool, json: bool) -> None:
    target = resolve_target(host)
    with Gateway(target.env, dry_run=dry_run) as gw:
        tp = tls_run.plan(gw, list(target.hosts), renew=renew, force=force)
        for warning in tp.plan.warnings:
            warn(warning)
        if dry_run or not tp.needed or not json:
            for line in tp.plan.render():
                say(line)
        if dry_run:
            print_json({"plan": tp.plan.to_dict(), "dry_run": True})
            say("dry run: nothing was changed")
            return
        changed = tls_run.apply(gw, tp, say=say)
    print_json({"plan": tp.plan.to_dict(), "changed": changed})


@ops_task(mutating=True, help={"host": HOST_HELP, "dry_run": "print the plan, change nothing",
                               "json": "print JSON"})
def issue(c, host="", dry_run=False, json=False):
    """Get a certificate now (proxy.tls: files or ACME) and serve it on the web hosts."""
    _plan_and_apply(host, renew=False, force=False, dry_run=dry_run, json=json)


@ops_task(mutating=True, help={"host": HOST_HELP, "force": "renew even if every certificate is current",
                               "dry_run": "print the plan, change nothing", "json": "print JSON"})
def renew(c, host="", force=False, dry_run=False, json=False):
    """Renew when a served certificate expires within proxy.tls.renew_before_days (for a timer)."""
    _plan_and_apply(host, renew=True, force=force, dry_run=dry_run, json=json)


@ops_task(help={"host": HOST_HELP, "json": "print JSON"})
def status(c, host="", json=False):
    """Per web host: TLS on?, the served certificate's names, notAfter and days left."""
    target = resolve_target(host)
    with Gateway(target.env) as gw:
        tls = tls_run.settings(gw)
        hosts = tls_run.web_hosts(gw, list(target.hosts))
        found = tls_run.statuses(gw, hosts)
    print_json({"hosts": [s.to_dict() for s in found.values()]})
    rows, bad = [], []
    for name, st in found.items():
        why = tls_run.due_reason(st, tls)
        if why:
            bad.append(f"{name}: {why}")
        rows.append([name, "on" if st.tls_on else "off", ", ".join(st.cert.names) if st.cert else "-",
                     f"{st.not_after:%Y-%m-%d %H:%M}Z" if st.not_after else "-",
                     f"{st.days_left():.1f}" if st.cert else "-", why or "ok"])
    if not json:
        say(format_table(["HOST", "TLS", "NAMES", "NOT AFTER", "DAYS LEFT", "STATUS"], rows))
    if bad:
        raise CheckFailed(f"{len(bad)} web host(s) need a certificate: " + "; ".join(bad),
                          hint=f"inv tls.renew --host {target.env.name}")
