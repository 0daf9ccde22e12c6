"""``inv sandbox.*``: the local fleet (web1, web2, db1 + registry + S3) on this machine."""

from __future__ import annotations

from dataclasses import asdict

from ops import sandbox
from ops.cli import CheckFailed
from ops.inventory import load_environment
from ops.table import format_table
from ops.tasks import ops_task, print_json, say


@ops_task(mutating=True)
def up(c):
    """Build (once) and start the sandbox fleet; idempotent, fast when already up."""
    report = sandbox.up(load_environment("sandbox"), say=say)
    say(f"sandbox up: done in {report.seconds:.1f}s — next: inv doctor --host sandbox")


@ops_task(help={"json": "print JSON instead of a table"})
def status(c, json=False):
    """Show the sandbox hosts, registry and S3 endpoint and whether they answer."""
    rows = sandbox.status(load_environment("sandbox"))
    print_json([asdict(r) for r in rows])
    if not json:
        say(format_table(["NAME", "KIND", "STATE", "PORT", "ANSWERS", "IMAGE/PID"],
                           [[r.name, r.kind, r.state, r.port or "-",
                             {True: "yes", False: "no", None: "-"}[r.answering],
                             r.image or r.pid or "-"] for r in rows]))
    if any(r.state != "running" or r.answering is False for r in rows):
        raise CheckFailed("sandbox is not fully up", hint="inv sandbox.up")


@ops_task(mutating=True, help={"purge": "also remove the cached sandbox images (next up rebuilds them)"})
def down(c, purge=False):
    """Remove every sandbox container, volume and network, stop registry and S3, delete state."""
    report = sandbox.down(load_environment("sandbox"), purge=purge, say=say)
    say(f"sandbox down: done in {report.seconds:.1f}s")
