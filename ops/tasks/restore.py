"""``inv restore`` (the database, to a point in time) and ``inv restore.uploads``."""

from __future__ import annotations

from ops import restore as core
from ops.audit import utcnow
from ops.backup.context import BackupContext
from ops.backup.timeparse import format_utc, parse_at
from ops.cli import confirm, number
from ops.errors import ConfigError
from ops.inventory import resolve_target
from ops.remote import Gateway
from ops.render import showing_progress
from ops.restore import kept as kept_dbs
from ops.restore import pitr
from ops.table import format_table, human_bytes
from ops.tasks import ops_task, print_json, say, warn

AT_HELP = ("ISO 8601 time with an offset, e.g. 2026-11-24T03:00:00Z or 2026-11-24T04:00:00+01:00, or 'now': "
           "the newest backup whose data is from at or before it is used (backup.list shows each one's time)")
ID_HELP = "restore exactly this backup (an id from inv backup.list) instead of --at"
FROM_HELP = ("read the backup from 'primary' or 'copy' (s3.copy); default: the primary, the copy when only it "
             "holds the backup asked for")
TRUST_HELP = ("accept a backup whose manifest is not authenticated (taken before manifests were, or with "
              "encryption off); only after checking it")


def _check_from(source: str) -> None:
    if source and source not in ("primary", "copy"):
        raise ConfigError(f"--from {source!r} is not a backup target", hint="use primary or copy")


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
    "id": ID_HELP,
    "trust_unauthenticated": TRUST_HELP,
    "logical": "with pitr configured: restore a logical (pg_dump) backup even when --at lies in the WAL archive",
    "physical": "to the second from pgBackRest where pitr.default_kind is logical (the default otherwise)",
    "json": "print the outcome as JSON (the physical path: target, backup, kept server, timings)",
    "from_": FROM_HELP,
})
def db(c, host="", at="", yes=False, dry_run=False, lock_wait=0.0, health_timeout=0.0, id="",
       trust_unauthenticated=False, logical=False, json=False, physical=False, from_=""):
    """Restore the database to a point in time: into a new database, checked, then swapped in."""
    target = resolve_target(host)
    env = target.env
    if len(target.hosts) != len(env.hosts):
        raise ConfigError(f"--host {host!r} names one host: a restore takes the whole environment",
                          hint=f"use --host {env.name}")
    if bool(at) == bool(id):
        raise ConfigError("say which backup: --at TIMESTAMP or --id ID (one of them)",
                          hint="e.g. --at 2026-11-24T03:00:00Z, --at now, or --id db-20261124T030000Z-a1b2c3 "
                               "(see inv backup.list)")
    lock_wait = number(lock_wait, "--lock-wait")
    health_timeout = number(health_timeout, "--health-timeout")
    _check_from(from_)
    ctx = BackupContext(env, say=say)
    with Gateway(env, masker=ctx.masker, echo=say) as gw:
        if logical and physical:
            raise ConfigError("--logical and --physical exclude each other", hint="pass one of them")
        prefer = physical or (env.pitr is not None and env.pitr.default_kind == "physical")
        if at and env.pitr is not None and prefer and not logical and not from_ and _physical(ctx, gw, at, yes=yes, dry_run=dry_run,
                                                                     lock_wait=float(lock_wait),
                                                                     health_timeout=float(health_timeout) or None,
                                                                     json=json):
            return
        # NOTE: two displays, not one: none may be live while the confirmation asks.
        with showing_progress(json=json) as ctx.progress:
            plan = core.prepare_db(ctx, gw, at, backup_id=id, trust_unauthenticated=bool(trust_unauthenticated),
                                   source=from_)
        if not _show_and_confirm(plan, env.name, f"This replaces database {plan.target.dbname} of {env.name}.",
                                 dry_run=dry_run, yes=yes):
            return
        with showing_progress(json=json) as ctx.progress:
            result = core.restore_db(ctx, gw, plan, say=say, lock_wait=float(lock_wait),
                                     health_timeout=float(health_timeout) or None)
    for warning in result.warnings + ctx.warnings:
        warn(warning)
    say(f"restored {result.database} from {result.backup} in {result.total_seconds:.1f}s "
        f"(pg_restore {result.restore_seconds:.1f}s, traffic stopped {result.downtime_seconds:.1f}s)"
        + (f"; safety backup {result.safety_backup}" if result.safety_backup else ""))
    if result.before_db:
        say(f"the previous database is kept as {result.before_db}; drop it once sure: {result.drop_hint}")


def _physical(ctx: BackupContext, gw: Gateway, at_text: str, *, yes: bool, dry_run: bool, lock_wait: float,
              health_timeout: float | None, json: bool = False) -> bool:
    """``--at`` inside the WAL archive: the second-accurate physical restore (True: done here).
    Before the archive: False, after saying so (the logical path then shows what is lost)."""
    env = ctx.env
    # NOTE: to the second (floored): what a person pastes, and what recovery_target_time compares.
    at = parse_at(at_text, now=utcnow()).replace(microsecond=0)
    routed = pitr.route(ctx, gw, at)
    if routed.plan is None:
        warn(f"{routed.why}: falling back to the newest logical backup taken before it; what was committed "
             "between that backup's snapshot and the target is lost (the plan shows how long that is)")
        return False
    if not _show_and_confirm(routed.plan, env.name, f"This replaces the database server of {env.name} with its "
                             f"state at {format_utc(at)}.", dry_run=dry_run, yes=yes):
        return True
    with showing_progress(json=json) as ctx.progress:
        r = pitr.restore(ctx, gw, routed.plan, say=say, lock_wait=lock_wait, health_timeout=health_timeout)
    for warning in r.warnings:
        warn(warning)
    print_json({"kind": "physical", "at": r.at.isoformat(), "backup": r.backup,
                "latest_commit": r.latest_commit.isoformat() if r.latest_commit else None, "tables": r.tables,
                "migration": r.migration, "kept_container": r.kept_container, "kept_volume": r.kept_volume,
                "volume": r.new_volume, "restore_seconds": round(r.restore_seconds, 1),
                "downtime_seconds": round(r.downtime_seconds, 1), "total_seconds": round(r.total_seconds, 1),
                "remove_kept": r.remove_hint})
    say(f"restored to {format_utc(r.at)} from {r.backup} + WAL in {r.total_seconds:.1f}s (restore and replay "
        f"{r.restore_seconds:.1f}s, traffic stopped {r.downtime_seconds:.1f}s); {len(r.tables)} tables, "
        f"{sum(r.tables.values())} rows")
    say(f"the previous server is kept stopped as {r.kept_container} on volume {r.kept_volume}; remove both once "
        f"sure: {r.remove_hint}")
    return True


@ops_task(mutating=True, help={
    "host": "environment (prod), or env:host for one web host",
    "at": AT_HELP,
    "id": "restore this uploads backup (an id from inv backup.list)",
    "yes": "do not ask for the environment name",
    "dry_run": "print the plan and change nothing (S3 is still read: the backup's checksum is checked)",
    "lock_wait": "seconds to wait for another operation holding the environment",
    "trust_unauthenticated": TRUST_HELP,
    "from_": FROM_HELP,
})
def uploads(c, host="", at="", id="", yes=False, dry_run=False, lock_wait=0.0, trust_unauthenticated=False,
            from_=""):
    """Restore the uploads volume from a backup: extracted beside the live files, then swapped in."""
    target = resolve_target(host)
    env = target.env
    lock_wait = number(lock_wait, "--lock-wait")
    _check_from(from_)
    ctx = BackupContext(env, say=say)
    plan = core.prepare_uploads(ctx, list(target.hosts), at_text=at, backup_id=id,
                                trust_unauthenticated=bool(trust_unauthenticated), source=from_)
    if not _show_and_confirm(plan, env.name, f"This replaces the uploads on {', '.join(h.name for h in plan.hosts)}.",
                             dry_run=dry_run, yes=yes):
        return
    with Gateway(env, masker=ctx.masker, echo=say) as gw:
        result = core.restore_uploads(ctx, gw, plan, say=say, lock_wait=float(lock_wait))
    say(f"restored {result.files} files from {result.backup} on {', '.join(result.hosts)} in "
        f"{result.seconds:.1f}s; the previous files are kept in {result.kept} inside the volume; remove them "
        f"once sure: {result.cleanup_hint}")


@ops_task(help={"host": "environment (prod)", "json": "print JSON"})
def kept(c, host="", json=False):
    """What restores kept: databases (<db>_before_<ts>) and, after a point-in-time restore, the
    previous Postgres server (<accessory>-before-<ts>, stopped) with its data volume."""
    env = resolve_target(host).env
    ctx = BackupContext(env, say=say)
    with Gateway(env, masker=ctx.masker, echo=say) as gw:
        found = kept_dbs.list_kept(gw, kept_dbs.target_of(ctx))
        servers = kept_dbs.list_kept_servers(gw, env)
    print_json([*({"kind": "database", "name": k.name, "bytes": k.size, "sessions": k.sessions} for k in found),
                *({"kind": "server", "name": s.name, "volume": s.volume, "state": s.state, "created": s.created}
                  for s in servers)])
    if json:
        return
    if not found and not servers:
        say(f"nothing kept on {env.name}: no kept databases or servers")
        return
    if found:
        say(format_table(["DATABASE", "SIZE", "SESSIONS"],
                         [[k.name, human_bytes(k.size), k.sessions] for k in found]))
    if servers:
        say(format_table(["SERVER", "DATA VOLUME", "STATE", "CREATED"],
                         [[s.name, s.volume or "-", s.state, s.created] for s in servers]))
    say(f"drop them once sure: inv restore.drop-kept --host {env.name} [--name NAME]"
        + (f"; put a database back: inv restore.put-back --host {env.name} --name NAME" if found else ""))


@ops_task(mutating=True, help={"host": "environment (prod)",
                               "name": "one kept database or server (default: all of them)",
                               "yes": "do not ask for the environment name", "dry_run": "list what would be dropped",
                               "lock_wait": "seconds to wait for another operation holding the environment",
                               "json": "print what was dropped and removed as JSON"})
def drop_kept(c, host="", name="", yes=False, dry_run=False, lock_wait=0.0, json=False):
    """Drop what restores kept (databases <db>_before_<ts>; servers <accessory>-before-<ts> with their
    data volumes), after confirmation."""
    env = resolve_target(host).env
    lock_wait = number(lock_wait, "--lock-wait")
    ctx = BackupContext(env, say=say)
    with Gateway(env, masker=ctx.masker, echo=say) as gw:
        found = kept_dbs.list_kept(gw, kept_dbs.target_of(ctx))
        servers = {s.name: s for s in kept_dbs.list_kept_servers(gw, env)}
        names = [name] if name else [k.name for k in found] + list(servers)
        if not names:
            say(f"nothing kept on {env.name}: nothing to drop")
            return
        databases = [n for n in names if n not in servers]
        kept_servers = [n for n in names if n in servers]
        for k in found:
            if k.name in databases:
                say(f"would drop database {k.name} ({human_bytes(k.size)}, {k.sessions} session(s))")
        for n in kept_servers:
            say(f"would remove server {n} and its data volume {servers[n].volume or '(none)'}")
        if dry_run:
            say("dry-run: nothing was dropped")
            return
        confirm(env.name, f"Drop {len(names)} kept database(s)/server(s) of {env.name} for good?", yes=yes,
                nothing="nothing dropped")
        dropped = kept_dbs.drop_kept(ctx, gw, databases, say=say, lock_wait=float(lock_wait)) if databases else []
        removed = kept_dbs.drop_kept_servers(ctx, gw, kept_servers, say=say,
                                             lock_wait=float(lock_wait)) if kept_servers else []
    print_json({"dropped": dropped, "removed": removed})
    say(f"dropped {', '.join([*dropped, *removed])}")


@ops_task(mutating=True, help={"host": "environment (prod)", "name": "the kept database to put back (<db>_before_<ts>)",
                               "yes": "do not ask for the environment name", "dry_run": "print the plan only",
                               "lock_wait": "seconds to wait for another operation holding the environment",
                               "health_timeout": "seconds the app gets to pass its health check (default: "
                                                 "health.timeout)"})
def put_back(c, host="", name="", yes=False, dry_run=False, lock_wait=0.0, health_timeout=0.0):
    """Put a database a restore kept back in place of the live one (the app stopped meanwhile)."""
    env = resolve_target(host).env
    if not name:
        raise ConfigError("--name is required (a database a restore kept)",
                          hint=f"list them: inv restore.kept --host {env.name}")
    lock_wait = number(lock_wait, "--lock-wait")
    health_timeout = number(health_timeout, "--health-timeout")
    ctx = BackupContext(env, say=say)
    with Gateway(env, masker=ctx.masker, echo=say) as gw:
        for line in kept_dbs.put_back_plan(ctx, gw, name):
            say(line)
        if dry_run:
            say("dry-run: nothing was changed")
            return
        confirm(env.name, f"This replaces the live database of {env.name} with {name}.", yes=yes)
        r = kept_dbs.put_back(ctx, gw, name, say=say, lock_wait=float(lock_wait),
                              health_timeout=float(health_timeout) or None)
    print_json({"database": r.database, "from": r.restored_from, "replaced_kept_as": r.failed_kept_as,
                "downtime_seconds": round(r.downtime_seconds, 1)})
    say(f"{r.restored_from} is {r.database} again (traffic stopped {r.downtime_seconds:.1f}s); the database it "
        f"replaced is kept as {r.failed_kept_as}")
