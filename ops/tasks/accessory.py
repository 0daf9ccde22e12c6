"""``inv accessory.*``: long-lived service containers (Postgres...) named in the inventory."""

from __future__ import annotations

from dataclasses import asdict

from ops import accessory
from ops.cli import number
from ops.errors import ConfigError
from ops.inventory import Environment, resolve_target
from ops.remote import Gateway
from ops.table import format_table
from ops.tasks import ops_task, print_json, say

HOST_HELP = "environment (prod), or env:host naming the accessory's host (prod:db1)"
NAME_HELP = "accessory name (a key of 'accessories' in the inventory)"


def _env(host: str, name: str | None) -> Environment:
    """The environment of ``--host``; with env:host, that host must be the accessory's."""
    target = resolve_target(host)
    env = target.env
    if name is not None:
        if not name:
            raise ConfigError("no accessory name given",
                              hint=f"pass one of: {', '.join(env.accessories) or '(none in ' + env.path.name + ')'}")
        acc = accessory.get_accessory(env, name)
        if ":" in host and acc.host not in {h.name for h in target.hosts}:
            raise ConfigError(f"accessory {name} runs on {acc.host}, not on {host.partition(':')[2]}",
                              hint=f"use --host {env.name} or --host {env.name}:{acc.host}")
    return env


LOCK_WAIT_HELP = "seconds to wait for another operation (a backup, a deploy) to release the environment lock"


@ops_task(positional=["name"], mutating=True, help={"host": HOST_HELP, "name": NAME_HELP,
                                                    "dry_run": "print the commands it would run; change nothing",
                                                    "lock_wait": LOCK_WAIT_HELP})
def boot(c, name=None, host="", dry_run=False, lock_wait=0.0):
    """Start an accessory (pull, env file, container, wait until ready); nothing to do when unchanged."""
    env = _env(host, name)
    lock_wait = number(lock_wait, "--lock-wait")
    with Gateway(env, dry_run=dry_run) as gw:
        say(str(accessory.boot(gw, name, say=say, lock_wait=lock_wait)))


@ops_task(positional=["name"], mutating=True, help={"host": HOST_HELP, "name": NAME_HELP,
                                                    "dry_run": "print the commands it would run; change nothing",
                                                    "lock_wait": LOCK_WAIT_HELP})
def reboot(c, name=None, host="", dry_run=False, lock_wait=0.0):
    """Stop (gracefully), remove and boot an accessory again; its data volume stays. It takes the
    environment lock: a backup or restore in progress makes it wait (--lock-wait) or refuse."""
    env = _env(host, name)
    lock_wait = number(lock_wait, "--lock-wait")
    with Gateway(env, dry_run=dry_run) as gw:
        say(str(accessory.reboot(gw, name, say=say, lock_wait=lock_wait)))


@ops_task(help={"host": HOST_HELP, "name": "only this accessory (default: all)",
                "json": "print JSON instead of a table"})
def status(c, host="", name="", json=False):
    """Show each accessory's container, image, state and health."""
    env = _env(host, None)
    if name:
        accessory.get_accessory(env, name)
    with Gateway(env) as gw:
        rows = accessory.status(gw, [name] if name else None)
    print_json([asdict(r) for r in rows])
    if json:
        return
    say(format_table(["ACCESSORY", "HOST", "CONTAINER", "IMAGE", "STATE", "HEALTH"],
                       [[r.accessory, r.host, r.container, r.image, r.state, r.health] for r in rows]))


@ops_task(positional=["name"], help={"host": HOST_HELP, "name": NAME_HELP,
                                     "lines": "how many of the last lines to show (default 100)"})
def logs(c, name=None, host="", lines=100):
    """Print the last lines of an accessory's container log."""
    env = _env(host, name)
    lines = int(number(lines, "--lines", minimum=1, integer=True))
    with Gateway(env) as gw:
        out = accessory.logs(gw, name, lines=lines)
    print(out, end="" if out.endswith("\n") or not out else "\n")
