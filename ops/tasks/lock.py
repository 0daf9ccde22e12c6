"""``inv lock.status`` and ``inv lock.release``: the environment lock on the hosts."""

from __future__ import annotations

from ops import lock
from ops.cli import CheckFailed, confirm
from ops.inventory import resolve_target
from ops.operation import Operation
from ops.remote import Gateway
from ops.table import format_table
from ops.tasks import ops_task, print_json, say


def _row(state) -> str:
    return "free" if state is None else state.describe()


def _state_json(s) -> dict | None:
    return None if s is None else {**vars(s.holder), "heartbeat_age": s.age, "stale": s.stale, "why": s.why}


@ops_task(help={"host": "environment (prod) or env:host", "json": "print JSON"})
def status(c, host="", json=False):
    """Who holds the environment lock (and the backup lock), since when, for what; a holder that is gone is
    shown as STALE."""
    target = resolve_target(host)
    with Gateway(target.env) as gw:
        results = lock.survey(gw, list(target.hosts))
        backups = lock.survey(gw, list(target.hosts), "backup")
    states = results.ok
    # JSON: per host the environment lock (as before), and the backup lock under "backup_locks".
    print_json({**{name: _state_json(s) for name, s in states.items()},
                "backup_locks": {name: _state_json(s) for name, s in backups.ok.items()}})
    if not json:
        print(format_table(["HOST", "LOCK", "BACKUP LOCK"],
                           [[h, _row(s), _row(backups.ok.get(h))] for h, s in states.items()]))
    if any(s is not None and s.stale for s in [*states.values(), *backups.ok.values()]):
        say(f"the holder is gone: once nothing of its operation still runs, release it with: "
            f"{lock.release_hint(target.env.name)}")
    results.raise_if_failed("lock status")


@ops_task(mutating=True, help={"host": "environment (prod)", "yes": "do not ask for confirmation"})
def release(c, host="", yes=False):
    """Force-release a stuck lock (the environment lock, and the backup lock): exactly the one shown (a lock
    taken since is left alone)."""
    target = resolve_target(host)
    env = target.env
    hosts = list(target.hosts)
    with Gateway(env) as gw:
        results = lock.survey(gw, hosts)
        backups = lock.survey(gw, hosts, "backup")
        shown = {name: s for name, s in results.ok.items() if s is not None}
        shown_backup = {name: s for name, s in backups.ok.items() if s is not None}
        for name, err in results.failed.items():
            say(f"{name}: cannot read its lock ({err.message}); not released there")
        if not shown and not shown_backup:
            say("lock is free: nothing to release")
            results.raise_if_failed("lock status")
            return
        for name, state in shown.items():
            say(f"{name}: held by {state.describe()}")
        for name, state in shown_backup.items():
            say(f"{name}: backup lock held by {state.describe()}")
        confirm(env.name, f"Release the lock of {env.name}?", yes=yes, nothing="lock kept")
        first = next(iter({**shown_backup, **shown}.values())).holder
        reachable = [h for h in hosts if h.name in results.ok]
        with Operation(gw, "lock.force-release", reachable, version=first.version, lock=False, say=say,
                       detail=f"was held by {first.describe()}") as op:
            changed = []
            for scope, which in (("environment", shown), ("backup", shown_backup)):
                if not which:
                    continue
                outcome = lock.release_shown(gw, reachable, which, scope)
                changed += [name for name, what in outcome.ok.items() if what == "changed"]
                outcome.raise_if_failed("lock release")
            op.outcome = f"released the lock of {first.describe()}" + (
                f"; left a newer lock on {', '.join(changed)}" if changed else "")
    for name in changed:
        say(f"{name}: the lock changed since it was shown (another operation took it): left alone")
    say(f"lock of {env.name} released" + (" except where it changed" if changed else ""))
    results.raise_if_failed("lock status")
    if changed:
        raise CheckFailed(f"a newer lock holds {', '.join(changed)}", hint=f"see: inv lock.status --host {env.name}")
