"""``inv prune``: old containers, release directories (old secrets) and images off the hosts."""

from __future__ import annotations

from ops import prune as pruning
from ops.cli import confirm, number
from ops.inventory import resolve_target
from ops.remote import Gateway
from ops.table import human_bytes
from ops.tasks import ops_task, print_json, say, warn


@ops_task(mutating=True, help={"host": "environment (prod) or env:host (prod:web1)",
                               "dry_run": "print the plan and change nothing", "yes": "do not ask",
                               "lock_wait": "seconds to wait for another operation", "json": "print JSON"})
def prune(c, host="", dry_run=False, yes=False, lock_wait=0.0, json=False):
    """Remove what no retained release needs: stopped containers, release dirs (old env files), images."""
    target = resolve_target(host)
    wait = float(number(lock_wait, "--lock-wait"))
    with Gateway(target.env) as gw:
        plan, surveys = pruning.plan(gw, list(target.hosts))
        for line in plan.render():
            say(line)
        print_json({"plan": plan.to_dict(), "done": {}})
        if dry_run:
            say("dry-run: nothing was changed")
            return
        confirm(target.env.name, "Remove what is listed above?", yes=yes)
        done = pruning.apply(gw, surveys, say=say, lock_wait=wait)
    print_json({"plan": plan.to_dict(), "done": done})
    for name, result in done.items():
        freed = result["freed_bytes"]
        say(f"{name}: removed {len(result['removed'])}"
            + (f", freed {human_bytes(freed)}" if freed and freed > 0 else ""))
        for item in result["left"]:
            warn(f"{name}: {item} was left (in use, or changed since the plan)")
