"""``inv lock.status`` and ``inv lock.release``: the environment lock on the hosts."""

from __future__ import annotations

from ops import audit, lock
from ops.errors import ConfigError
from ops.inventory import resolve_target
from ops.remote import Gateway
from ops.table import format_table
from ops.tasks import ops_task


@ops_task(help={"host": "environment (prod)"})
def status(c, host=""):
    """Who holds the environment lock, since when, for what."""
    target = resolve_target(host)
    with Gateway(target.env) as gw:
        holders = lock.status(gw, list(target.hosts))
    print(format_table(["HOST", "LOCK"], [[h, holder.describe() if holder else "free"] for h, holder in holders.items()]))


@ops_task(help={"host": "environment (prod)", "yes": "do not ask for confirmation"})
def release(c, host="", yes=False):
    """Force-release a stuck lock (only after checking its holder is really gone)."""
    target = resolve_target(host)
    hosts = list(target.hosts)
    with Gateway(target.env) as gw:
        holders = {h: x for h, x in lock.status(gw, hosts).items() if x}
        if not holders:
            print("lock is free: nothing to release")
            return
        for name, holder in holders.items():
            print(f"{name}: held by {holder.describe()}")
        if not yes:
            try:
                answer = input(f"Release the lock of {target.env.name}? Type the environment name: ")
            except EOFError:
                answer = ""
            if answer.strip() != target.env.name:
                raise ConfigError("not confirmed; lock kept", hint="type the environment name, or pass --yes")
        lock.force_release(gw, hosts)
        first = next(iter(holders.values()))
        for warning in audit.record(gw, audit.AuditEvent(env=target.env.name, action="lock.force-release",
                                                         outcome="ok", version=first.version,
                                                         detail=f"was held by {first.describe()}",
                                                         hosts=[h.name for h in hosts]), hosts):
            print(f"warning: {warning}")
    print(f"lock of {target.env.name} released")
