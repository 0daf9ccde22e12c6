"""``inv backup.*``: dumps and uploads archives to S3, the catalog, rotation, drills, freshness.

Exit status: 0 done; 1 the operation failed (or the check found a stale backup, or a
drill found a difference); 2 a usage or configuration error (nothing was attempted).
"""

from __future__ import annotations

import time

from ops.audit import utcnow
from ops.backup import catalog, dump
from ops.backup import check as checks
from ops.backup import uploads as upload_backup
from ops.backup import verify as drills
from ops.backup.context import BackupContext
from ops.backup.manifest import KINDS
from ops.backup.timeparse import format_utc
from ops.cli import CheckFailed, confirm, number
from ops.errors import ConfigError
from ops.inventory import Environment, resolve_target
from ops.operation import Operation
from ops.remote import Gateway
from ops.table import format_table, human_bytes
from ops.tasks import ops_task, print_json, say, warn

HOST_HELP = "environment (prod); backups always act on the whole environment"


def _env(host: str) -> Environment:
    return resolve_target(host).env


def _context(env: Environment) -> BackupContext:
    return BackupContext(env, say=say)


def _size(n: int | None) -> str:
    return human_bytes(n, missing="-")


def _kind(kind: str, *, allow_all: bool = False) -> str | None:
    if not kind:
        return None
    if kind == "all" and allow_all:
        return None
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r} is not a backup kind",
                          hint=f"use one of: {', '.join(KINDS)}" + (", all" if allow_all else ""))
    return kind


def _print_warnings(listing) -> None:
    for warning in getattr(listing, "warnings", []):
        warn(warning)
    orphans = getattr(listing, "orphans", [])
    if orphans:
        warn(f"{len(orphans)} data object(s) without a manifest (interrupted backups; "
             "backup.prune removes them after a day)")


@ops_task(mutating=True, help={"host": HOST_HELP, "dry_run": "print what it would do; contact nothing",
                "checksums": "also record a per-table checksum (one more hash per row; on by default)",
                "lock_wait": "seconds to wait for another operation to release the environment lock",
                "json": "print the manifest as JSON"})
def db(c, host="", dry_run=False, checksums=True, lock_wait=0.0, json=False):
    """pg_dump -Fc inside the Postgres accessory, streamed over SSH into S3; manifest written last."""
    env = _env(host)
    lock_wait = number(lock_wait, "--lock-wait")
    ctx = _context(env)
    if dry_run:
        for line in dump.plan_db(ctx, checksums=checksums):
            say(f"[dry-run] {line}")
        say("dry-run: nothing was contacted or written")
        return
    t0 = time.monotonic()
    with Gateway(env, masker=ctx.masker, echo=ctx.say) as gw:
        m = dump.backup_db(ctx, gw, checksums=checksums, lock_wait=float(lock_wait))
    print_json(m.to_dict())
    say(f"backup {m.id}: {_size(m.size)} sha256 {m.sha256[:16]} in {time.monotonic() - t0:.1f}s; "
          f"{len(m.table_counts)} tables, {sum(m.table_counts.values())} rows, migration "
          f"{m.newest_migration or '-'}, release {m.app_release or '-'} -> s3://{ctx.bucket}/{m.object_key}")


@ops_task(mutating=True, help={"host": HOST_HELP, "dry_run": "print what it would do; contact nothing",
                "lock_wait": "seconds to wait for another operation to release the environment lock",
                "json": "print the manifest as JSON"})
def uploads(c, host="", dry_run=False, lock_wait=0.0, json=False):
    """The uploads volume of the first web host as a tar.gz streamed into S3; manifest written last."""
    env = _env(host)
    lock_wait = number(lock_wait, "--lock-wait")
    ctx = _context(env)
    if dry_run:
        for line in upload_backup.plan_uploads(ctx):
            say(f"[dry-run] {line}")
        say("dry-run: nothing was contacted or written")
        return
    t0 = time.monotonic()
    with Gateway(env, masker=ctx.masker, echo=ctx.say) as gw:
        m = upload_backup.backup_uploads(ctx, gw, lock_wait=float(lock_wait))
    print_json(m.to_dict())
    say(f"backup {m.id}: {m.file_count} files ({_size(m.source_bytes)}) as {_size(m.size)} sha256 "
          f"{m.sha256[:16]} in {time.monotonic() - t0:.1f}s -> s3://{ctx.bucket}/{m.object_key}")


def _verified(m) -> str:
    v = m.verified
    if not v:
        return "-"
    return f"{'ok' if v.get('ok') else 'FAILED'} {v.get('at', '')[:16]}"


@ops_task(name="list", help={"host": HOST_HELP, "json": "print JSON (manifests)",
                             "kind": "only db or uploads backups"})
def list_(c, host="", json=False, kind=""):
    """Backups in the bucket, newest first: id, kind, finished, size, sha256, verified."""
    env = _env(host)
    ctx = _context(env)
    listing = catalog.list_backups(env, ctx.client, kind=_kind(kind))
    print_json([{**e.manifest.to_dict(), "data_key": e.data_key} for e in listing])
    if json:
        _print_warnings(listing)
        return
    rows = []
    for e in listing:
        m = e.manifest
        what = (f"{len(m.table_counts)} tables, migration {m.newest_migration or '-'}" if m.kind == "db"
                else f"{m.file_count} files, {_size(m.source_bytes)}")
        rows.append([m.id, m.kind, format_utc(m.finished_at)[:19] + "Z", _size(m.size), m.sha256[:12],
                     _verified(m), "yes" if m.encrypted else "no", what])
    if rows:
        say(format_table(["ID", "KIND", "FINISHED (UTC)", "SIZE", "SHA256", "VERIFIED", "ENCRYPTED", "CONTENT"],
                         rows))
    else:
        say(f"no backups of {env.name} in s3://{ctx.bucket}/")
    _print_warnings(listing)


@ops_task(mutating=True, help={"host": HOST_HELP, "dry_run": "show what would be deleted and why; delete nothing",
                               "yes": "do not ask for confirmation (cron)",
                               "lock_wait": "seconds to wait for another operation to release the environment lock",
                               "json": "print the plan and what was deleted as JSON"})
def prune(c, host="", dry_run=False, yes=False, lock_wait=0.0, json=False):
    """Apply the retention policy (last N + daily/weekly/monthly); never deletes the newest good backup."""
    env = _env(host)
    lock_wait = number(lock_wait, "--lock-wait")
    ctx = _context(env)
    plan = checks.plan_prune(env, ctx.client, now=utcnow())
    for line in plan.lines():
        say(line)
    for warning in plan.warnings:
        warn(warning)
    doomed = [d.label for d in plan.doomed]
    print_json({"plan": plan.lines(), "delete": doomed, "deleted": []})
    if dry_run:
        say(f"dry-run: would {plan.summary()}; nothing deleted")
        return
    if not plan.doomed and not plan.stale_uploads:
        say("nothing to delete")
        return
    confirm(env.name, f"Delete {len(plan.doomed)} backup(s)/object(s) of {env.name} as listed above?", yes=yes,
            nothing="nothing deleted")
    with Gateway(env, masker=ctx.masker, echo=say) as gw, \
            Operation(gw, "backup.prune", list(env.hosts.values()), say=say, lock_wait=lock_wait,
                      detail=plan.summary()) as op:
        # NOTE: exactly the plan shown (apply_prune re-checks each object and skips what changed since).
        report = checks.apply_prune(env, ctx.client, plan)
        op.outcome = f"deleted {len(report.deleted)}: {' '.join(report.deleted)[:400]}" + (
            f"; skipped {len(report.skipped)} changed since the plan" if report.skipped else "")
    for warning in report.warnings + op.warnings:
        warn(warning)
    print_json({"plan": plan.lines(), "delete": doomed, "deleted": report.deleted, "skipped": report.skipped})
    extra = f"; aborted {len(report.stale_uploads)} stale multipart upload(s)" if report.stale_uploads else ""
    say(f"deleted {len(report.deleted)} backup(s){extra}"
        + (f"; {len(report.skipped)} left alone (changed since the plan)" if report.skipped else ""))


@ops_task(help={"host": HOST_HELP, "id": "backup id to verify (default: the newest db backup)",
                "json": "print the outcome as JSON"})
def verify(c, host="", id="", json=False):
    """Restore drill: stream into a scratch database, compare counts/checksums/migration, drop it."""
    env = _env(host)
    ctx = _context(env)
    with Gateway(env, masker=ctx.masker, echo=ctx.say) as gw:
        result = drills.verify(ctx, gw, id or None)
    print_json({"id": result.entry.id, "ok": True, "detail": result.detail, "seconds": round(result.seconds, 1)})
    say(f"backup {result.entry.id} verified in {result.seconds:.1f}s: {result.detail}")


@ops_task(help={"host": HOST_HELP,
                "max_age": "fail when the newest good backup is older (26h, 90m, 2d; default backup.max_age_hours)",
                "prometheus_file": "also write metrics for node_exporter's textfile collector (atomically)",
                "kind": "db (default), uploads or all: which kinds must be fresh for exit 0",
                "json": "print JSON"})
def check(c, host="", max_age="", prometheus_file="", kind="db", json=False):
    """Exit 1 when the newest good backup is older than --max-age; print its age."""
    env = _env(host)
    limit = checks.parse_max_age(max_age or env.backup.max_age_hours)
    wanted = _kind(kind or "db", allow_all=True)
    ctx = _context(env)
    now = utcnow()
    listing = catalog.list_backups(env, ctx.client)
    results = checks.check(listing, now=now, max_age=limit)
    if prometheus_file:
        checks.write_textfile(prometheus_file, checks.prometheus_text(env.name, results, now=now))
    judged = [r for r in results if wanted is None or r.kind == wanted]
    print_json([{"kind": r.kind, "ok": r.ok, "newest": r.newest.id if r.newest else None,
                 "age_seconds": r.age.total_seconds() if r.age is not None else None,
                 "max_age_seconds": r.max_age.total_seconds(), "count": r.count} for r in judged])
    if not json:
        for r in judged:
            say(r.line(env.name))
    _print_warnings(listing)
    stale = [r for r in judged if not r.ok]
    if stale:
        raise CheckFailed(f"{', '.join(r.kind for r in stale)} backup of {env.name} is stale or missing")
