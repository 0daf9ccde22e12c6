"""``inv backup.*``: dumps and uploads archives to S3, the catalog, rotation, drills, freshness.

Exit status: 0 done; 1 the operation failed (or the check found a stale backup, or a
drill found a difference); 2 a usage or configuration error (nothing was attempted).
"""

from __future__ import annotations

import functools
import sys
import time

from invoke.exceptions import Exit

from ops.audit import utcnow
from ops.backup import catalog, dump
from ops.backup import check as checks
from ops.backup import uploads as upload_backup
from ops.backup import verify as drills
from ops.backup.manifest import KINDS
from ops.backup.timeparse import format_utc
from ops.errors import ConfigError
from ops.inventory import Environment, resolve_target
from ops.remote import Gateway
from ops.table import format_table, human_bytes
from ops.tasks import ops_task, print_json

HOST_HELP = "environment (prod); backups always act on the whole environment"


def _say(line: str) -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def config_exit(fn):
    """A ConfigError (bad flag, inventory, env file) exits 2, so cron wrappers and monitoring can
    tell "misconfigured" (nothing attempted) from "the backup failed" (exit 1)."""

    @functools.wraps(fn)
    def wrapper(c, *a, **kw):
        try:
            return fn(c, *a, **kw)
        except ConfigError as exc:
            raise Exit(f"error: {exc}", code=2) from None

    return wrapper


def _env(host: str) -> Environment:
    return resolve_target(host).env


def _context(env: Environment, say=_say) -> dump.BackupContext:
    return dump.BackupContext(env, say=say)


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
        _err(f"warning: {warning}")
    orphans = getattr(listing, "orphans", [])
    if orphans:
        _err(f"note: {len(orphans)} data object(s) without a manifest (interrupted backups; "
             "backup.prune removes them after a day)")


@ops_task(help={"host": HOST_HELP, "dry_run": "print what it would do; contact nothing",
                "checksums": "also record a per-table checksum (one more hash per row; on by default)",
                "lock_wait": "seconds to wait for another operation to release the environment lock",
                "json": "print the manifest as JSON"})
@config_exit
def db(c, host="", dry_run=False, checksums=True, lock_wait=0.0, json=False):
    """pg_dump -Fc inside the Postgres accessory, streamed over SSH into S3; manifest written last."""
    env = _env(host)
    ctx = _context(env, say=_err if json else _say)
    if dry_run:
        for line in dump.plan_db(ctx, checksums=checksums):
            print(f"[dry-run] {line}")
        print("dry-run: nothing was contacted or written")
        return
    t0 = time.monotonic()
    with Gateway(env, masker=ctx.masker, echo=ctx.say) as gw:
        m = dump.backup_db(ctx, gw, checksums=checksums, lock_wait=float(lock_wait))
    if json:
        print_json(m.to_dict())
        return
    print(f"backup {m.id}: {_size(m.size)} sha256 {m.sha256[:16]} in {time.monotonic() - t0:.1f}s; "
          f"{len(m.table_counts)} tables, {sum(m.table_counts.values())} rows, migration "
          f"{m.newest_migration or '-'}, release {m.app_release or '-'} -> s3://{ctx.bucket}/{m.object_key}")


@ops_task(help={"host": HOST_HELP, "dry_run": "print what it would do; contact nothing",
                "lock_wait": "seconds to wait for another operation to release the environment lock",
                "json": "print the manifest as JSON"})
@config_exit
def uploads(c, host="", dry_run=False, lock_wait=0.0, json=False):
    """The uploads volume of the first web host as a tar.gz streamed into S3; manifest written last."""
    env = _env(host)
    ctx = _context(env, say=_err if json else _say)
    if dry_run:
        for line in upload_backup.plan_uploads(ctx):
            print(f"[dry-run] {line}")
        print("dry-run: nothing was contacted or written")
        return
    t0 = time.monotonic()
    with Gateway(env, masker=ctx.masker, echo=ctx.say) as gw:
        m = upload_backup.backup_uploads(ctx, gw, lock_wait=float(lock_wait))
    if json:
        print_json(m.to_dict())
        return
    print(f"backup {m.id}: {m.file_count} files ({_size(m.source_bytes)}) as {_size(m.size)} sha256 "
          f"{m.sha256[:16]} in {time.monotonic() - t0:.1f}s -> s3://{ctx.bucket}/{m.object_key}")


def _verified(m) -> str:
    v = m.verified
    if not v:
        return "-"
    return f"{'ok' if v.get('ok') else 'FAILED'} {v.get('at', '')[:16]}"


@ops_task(name="list", help={"host": HOST_HELP, "json": "print JSON (manifests)",
                             "kind": "only db or uploads backups"})
@config_exit
def list_(c, host="", json=False, kind=""):
    """Backups in the bucket, newest first: id, kind, finished, size, sha256, verified."""
    env = _env(host)
    ctx = _context(env)
    listing = catalog.list_backups(env, ctx.client, kind=_kind(kind))
    if json:
        print_json([{**e.manifest.to_dict(), "data_key": e.data_key} for e in listing])
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
        print(format_table(["ID", "KIND", "FINISHED (UTC)", "SIZE", "SHA256", "VERIFIED", "ENCRYPTED", "CONTENT"],
                           rows))
    else:
        print(f"no backups of {env.name} in s3://{ctx.bucket}/")
    _print_warnings(listing)


@ops_task(help={"host": HOST_HELP, "dry_run": "show what would be deleted and why; delete nothing",
                "yes": "do not ask for confirmation (cron)"})
@config_exit
def prune(c, host="", dry_run=False, yes=False):
    """Apply the retention policy (last N + daily/weekly/monthly); never deletes the newest good backup."""
    env = _env(host)
    ctx = _context(env)
    now = utcnow()
    report = checks.prune(env, ctx.client, now=now, dry_run=True)
    rows = [[d.entry.id, d.entry.kind, format_utc(d.entry.finished_at)[:19] + "Z", _size(d.entry.manifest.size),
             "keep" if d.keep else "DELETE", ", ".join(d.reasons)] for d in report.decisions]
    rows += [[o.id, o.kind or "-", "(no manifest)", _size(o.size), "DELETE", "orphan older than a day"]
             for o in report.orphans]
    if rows:
        print(format_table(["ID", "KIND", "FINISHED (UTC)", "SIZE", "ACTION", "WHY"], rows))
    for warning in report.warnings:
        _err(f"warning: {warning}")
    doomed = sum(1 for d in report.decisions if not d.keep) + len(report.orphans)
    policy = f"policy: last {env.backup.keep_last}, daily {env.backup.daily}, weekly {env.backup.weekly}, " \
             f"monthly {env.backup.monthly}"
    if dry_run:
        print(f"dry-run: would delete {doomed} of {len(rows)} backup(s) ({policy}); nothing deleted")
        return
    if not doomed:
        print(f"nothing to delete ({policy})")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"would delete {doomed} backup(s) but stdin is not a terminal to confirm",
                              hint="pass --yes (cron), or --dry-run to look first")
        try:
            answer = input(f"Delete {doomed} backup(s) of {env.name}? Type the environment name: ")
        except EOFError:
            answer = ""
        if answer.strip() != env.name:
            raise ConfigError("not confirmed; nothing deleted", hint="type the environment name, or pass --yes")
    report = checks.prune(env, ctx.client, now=now, dry_run=False)
    with Gateway(env, masker=ctx.masker) as gw:
        ctx.audit(gw, "backup.prune", "ok", f"deleted {len(report.deleted)}: {' '.join(report.deleted)[:400]}")
    extra = f"; aborted {len(report.stale_uploads)} stale multipart upload(s)" if report.stale_uploads else ""
    print(f"deleted {len(report.deleted)} backup(s){extra}")


@ops_task(help={"host": HOST_HELP, "id": "backup id to verify (default: the newest db backup)",
                "json": "print the outcome as JSON"})
@config_exit
def verify(c, host="", id="", json=False):
    """Restore drill: stream into a scratch database, compare counts/checksums/migration, drop it."""
    env = _env(host)
    ctx = _context(env, say=_err if json else _say)
    with Gateway(env, masker=ctx.masker, echo=ctx.say) as gw:
        try:
            result = drills.verify(ctx, gw, id or None)
        except drills.VerifyFailed:
            if json:
                print_json({"ok": False})
            raise
    if json:
        print_json({"id": result.entry.id, "ok": True, "detail": result.detail, "seconds": round(result.seconds, 1)})
        return
    print(f"backup {result.entry.id} verified in {result.seconds:.1f}s: {result.detail}")


@ops_task(help={"host": HOST_HELP,
                "max_age": "fail when the newest good backup is older (26h, 90m, 2d; default backup.max_age_hours)",
                "prometheus_file": "also write metrics for node_exporter's textfile collector (atomically)",
                "kind": "db (default), uploads or all: which kinds must be fresh for exit 0",
                "json": "print JSON"})
@config_exit
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
    if json:
        print_json([{"kind": r.kind, "ok": r.ok, "newest": r.newest.id if r.newest else None,
                     "age_seconds": r.age.total_seconds() if r.age is not None else None,
                     "max_age_seconds": r.max_age.total_seconds(), "count": r.count} for r in judged])
    else:
        for r in judged:
            print(r.line(env.name))
    stale = [r for r in judged if not r.ok]
    if stale:
        raise Exit(f"error: {', '.join(r.kind for r in stale)} backup of {env.name} is stale or missing", code=1)
