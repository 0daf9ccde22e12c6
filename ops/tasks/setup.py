"""``inv setup``: make bare Debian/Ubuntu hosts ready for deploys (ops/setup.py)."""

from __future__ import annotations

from ops.cli import CheckFailed, confirm
from ops.doctor import run_doctor
from ops.inventory import resolve_target
from ops.remote import Gateway
from ops.setup import apply_setup, plan_setup
from ops.tasks import ops_task, print_json, say, warn


@ops_task(mutating=True, help={
    "host": "environment (prod) or one host (prod:web3): the host(s) to set up",
    "dry_run": "look at the hosts and print what would change; change nothing",
    "yes": "apply without asking (scripts, CI)",
    "json": "print the plan and the outcome as JSON",
})
def setup(c, host="", dry_run=False, yes=False, json=False):
    """Bootstrap bare hosts: Docker, the deploy user and its key, app_dir, a firewall; then doctor."""
    target = resolve_target(host)
    env, hosts = target.env, list(target.hosts)
    plans = plan_setup(env, hosts)
    plan = {p.host.name: {"os": p.os, "steps": {s.name: s.change or "ok" for s in p.steps}} for p in plans}
    for p in plans:
        say(f"{p.host.name} ({p.os}), as {env.setup.admin_user}:")
        for line in p.lines():
            say(f"  {line}")
    pending = [p for p in plans if p.needed]
    if dry_run:
        print_json({"environment": env.name, "dry_run": True, "plan": plan, "changed": []})
        say("dry run: nothing was changed" if pending else "nothing to do: every host is set up")
        return
    if pending:
        confirm(env.name, f"Set up {', '.join(p.host.name for p in pending)} as above?", yes=yes)
        for w in apply_setup(env, pending, say=say):
            warn(w)
    else:
        say("nothing to do: every host is set up")
    _doctor(env, hosts, plan, changed=[p.host.name for p in pending])


def _doctor(env, hosts, plan, changed=()) -> None:
    with Gateway(env) as gw:  # as the deploy user, on new connections (its docker group is new)
        reports = run_doctor(gw, hosts)
    print_json({"environment": env.name, "dry_run": False, "plan": plan, "changed": list(changed),
                "doctor": [r.to_dict() for r in reports]})
    for r in reports:
        bad = [f"{ch.name}: {ch.detail}" for ch in r.checks if not ch.ok]
        say(f"{r.host}: doctor {'ok' if r.ok else 'FAILED — ' + '; '.join(bad)}")
    failed = [r.host for r in reports if not r.ok]
    if failed:
        raise CheckFailed(f"set up, but doctor found problems on {', '.join(failed)}")
