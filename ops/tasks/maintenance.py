"""``inv maintenance.on`` / ``maintenance.off``: 503 + Retry-After for the whole site, by hand."""

from __future__ import annotations

from ops import maintenance
from ops.cli import confirm, number
from ops.inventory import resolve_target
from ops.remote import Gateway
from ops.tasks import ops_task, print_json, say

HOST_HELP = "environment (prod) or one web host (prod:web1)"


def _show(p, dry_run: bool) -> bool:
    for line in p.render():
        say(line)
    print_json({"plan": p.to_dict(), "done": not dry_run})
    if dry_run:
        say("dry-run: nothing was changed")
    return dry_run


@ops_task(mutating=True, help={"host": HOST_HELP, "message": "text of the 503 page",
                               "dry_run": "print the plan and change nothing", "yes": "do not ask",
                               "lock_wait": "seconds to wait for another operation", "json": "print JSON"})
def on(c, host="", message="", dry_run=False, yes=False, lock_wait=0.0, json=False):
    """Take the site off: every request answers 503 + Retry-After; the app is stopped."""
    target = resolve_target(host)
    text = maintenance.check_message(message)
    wait = float(number(lock_wait, "--lock-wait"))
    with Gateway(target.env) as gw:
        p, states = maintenance.plan(gw, list(target.hosts), on=True, message=text)
        if _show(p, dry_run):
            return
        confirm(target.env.name, "The site will answer 503 until `inv maintenance.off`.", yes=yes)
        maintenance.turn_on(gw, states, message=text, say=say, lock_wait=wait)
    say(f"maintenance ON for {', '.join(s.host.name for s in states)}: 503 \"{text}\"; "
        f"back with: inv maintenance.off --host {host}")


@ops_task(mutating=True, help={"host": HOST_HELP, "dry_run": "print the plan and change nothing",
                               "lock_wait": "seconds to wait for another operation", "json": "print JSON"})
def off(c, host="", dry_run=False, lock_wait=0.0, json=False):
    """Bring the site back: the current release starts behind its health check, the 503 page goes."""
    target = resolve_target(host)
    wait = float(number(lock_wait, "--lock-wait"))
    with Gateway(target.env) as gw:
        p, states = maintenance.plan(gw, list(target.hosts), on=False)
        if _show(p, dry_run):
            return
        maintenance.turn_off(gw, states, say=say, lock_wait=wait)
    say(f"maintenance OFF: {', '.join(s.host.name for s in states)} serve the app again")
