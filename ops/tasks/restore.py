"""``inv restore`` (the database, to a point in time) and ``inv restore.uploads``."""

from __future__ import annotations

from ops import restore as core
from ops.backup.context import BackupContext
from ops.cli import confirm, number
from ops.errors import ConfigError
from ops.inventory import resolve_target
from ops.remote import Gateway
from ops.tasks import ops_task, say, warn

AT_HELP = ("ISO 8601 time with an offset, e.g. 2026-11-24T03:00:00Z or 2026-11-24T04:00:00+01:00: "
           "the newest backup finished at or before it is used")


def _show_and_confirm(plan, env_name: str, warning: str, *, dry_run: bool, yes: bool) -> bool:
    """Print the plan; False on --dry-run; else ask for the environment name unless --yes."""
    for line in plan.lines():
        say(line)
    if dry_run:
        say("dry-run: nothing was changed (S3 was read to check the backup's checksum)")
        return False
    confirm(env_name, warning, yes=yes)
    return True


@ops_task(default=True, mutating=True, help={
    "host": "environment to restore (prod); the whole environment",
    "at": AT_HELP,
    "yes": "do not ask for the environment name (scripts, CI)",
    "dry_run": "print the plan and change nothing (S3 is still read: the backup's checksum is checked)",
    "lock_wait": "seconds to wait for another operation holding the environment (default: refuse at once)",
    "health_timeout": "seconds the app gets to pass its health check after the swap (default: health.timeout)",
})
def db(c, host="", at="", yes=False, dry_run=False, lock_wait=0.0, health_timeout=0.0):
    """Restore the database to a point in time: into a new database, checked, then swapped in."""
    target = resolve_target(host)
    env = target.env
    if len(target.hosts) != len(env.hosts):
        raise ConfigError(f"--host {host!r} names one host: a restore takes the whole environment",
                          hint=f"use --host {env.name}")
    if not at:
        raise ConfigError("--at TIMESTAMP is required", hint="e.g. --at 2026-11-24T03:00:00Z (see inv backup.list)")
    lock_wait = number(lock_wait, "--lock-wait")
    health_timeout = number(health_timeout, "--health-timeout")
    ctx = BackupContext(env, say=say)
    with Gateway(env, masker=ctx.masker, echo=say) as gw:
        plan = core.prepare_db(ctx, gw, at)
        if not _show_and_confirm(plan, env.name, f"This replaces database {plan.target.dbname} of {env.name}.",
                                 dry_run=dry_run, yes=yes):
            return
        result = core.restore_db(ctx, gw, plan, say=say, lock_wait=float(lock_wait),
                                 health_timeout=float(health_timeout) or None)
    for warning in result.warnings:
        warn(warning)
    say(f"restored {result.database} from {result.backup} in {result.total_seconds:.1f}s "
        f"(pg_restore {result.restore_seconds:.1f}s, traffic stopped {result.downtime_seconds:.1f}s)"
        + (f"; safety backup {result.safety_backup}" if result.safety_backup else ""))
    if result.before_db:
        say(f"the previous database is kept as {result.before_db}; drop it once sure: {result.drop_hint}")


@ops_task(mutating=True, help={
    "host": "environment (prod), or env:host for one web host",
    "at": AT_HELP,
    "id": "restore this uploads backup (an id from inv backup.list)",
    "yes": "do not ask for the environment name",
    "dry_run": "print the plan and change nothing (S3 is still read: the backup's checksum is checked)",
    "lock_wait": "seconds to wait for another operation holding the environment",
})
def uploads(c, host="", at="", id="", yes=False, dry_run=False, lock_wait=0.0):
    """Restore the uploads volume from a backup: extracted beside the live files, then swapped in."""
    target = resolve_target(host)
    env = target.env
    lock_wait = number(lock_wait, "--lock-wait")
    ctx = BackupContext(env, say=say)
    plan = core.prepare_uploads(ctx, list(target.hosts), at_text=at, backup_id=id)
    if not _show_and_confirm(plan, env.name, f"This replaces the uploads on {', '.join(h.name for h in plan.hosts)}.",
                             dry_run=dry_run, yes=yes):
        return
    with Gateway(env, masker=ctx.masker, echo=say) as gw:
        result = core.restore_uploads(ctx, gw, plan, say=say, lock_wait=float(lock_wait))
    say(f"restored {result.files} files from {result.backup} on {', '.join(result.hosts)} in "
        f"{result.seconds:.1f}s; the previous files are kept in {result.kept} inside the volume; remove them "
        f"once sure: {result.cleanup_hint}")
