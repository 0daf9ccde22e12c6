"""``inv backup.*``: dumps and uploads archives to S3, the catalog, rotation, drills, freshness.

Exit status: 0 done; 1 the operation failed (or the check found a stale backup, or a
drill found a difference); 2 a usage or configuration error (nothing was attempted).
"""

from __future__ import annotations

import time

from ops.audit import utcnow
from ops.backup import authenticity, catalog, dump, physical, second_copy
from ops.backup import check as checks
from ops.backup import physical as physical_backups
from ops.backup import uploads as upload_backup
from ops.backup import verify as drills
from ops.backup.context import BackupContext
from ops.backup.manifest import KINDS
from ops.backup.timeparse import format_utc
from ops.cli import CheckFailed, confirm, number
from ops.commands import pgbackrest as pgbr
from ops.errors import ConfigError, OpsError
from ops.inventory import Environment, resolve_target
from ops.notify import alert_on_failure, backup_stale
from ops.operation import Operation
from ops.postgres import pg_target
from ops.remote import Gateway
from ops.render import showing_progress
from ops.restore import pitr
from ops.table import format_table, human_bytes
from ops.tasks import ops_task, print_json, say, warn

HOST_HELP = "environment (prod); backups always act on the whole environment"
LOCK_WAIT_HELP = "seconds to wait for another operation to release the environment lock"


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


def _copy_state(ctx: BackupContext) -> str | None:
    """For the JSON result: None (no s3.copy), "ok" or "failed"."""
    if ctx.env.s3.copy is None:
        return None
    return "failed" if any("second copy" in w for w in ctx.warnings) else "ok"


def _copy_note(ctx: BackupContext) -> str:
    state = _copy_state(ctx)
    if state is None:
        return ""
    # NOTE: a failed copy does not fail the backup (exit 0: the backup is good and restorable); the
    # warning says so now, and backup.check exits 1 until `inv backup.copy` puts the copy in step.
    if state == "ok" and ctx.copied:
        return "; " + ctx.copied[-1].line().split(" ", 1)[1]
    return (f"; copied to s3://{ctx.env.s3.copy.bucket}" if state == "ok"
            else "; the backup is GOOD but its SECOND COPY FAILED (see the warning)")


def _print_ctx_warnings(ctx: BackupContext) -> None:
    for line in ctx.warnings:
        warn(line)


def _print_warnings(listing) -> None:
    for warning in getattr(listing, "warnings", []):
        warn(warning)
    orphans = getattr(listing, "orphans", [])
    if orphans:
        warn(f"{len(orphans)} data object(s) without a manifest (interrupted backups; "
             "backup.prune removes them after a day)")


@ops_task(mutating=True, help={"host": HOST_HELP, "dry_run": "print what it would do; contact nothing",
                "checksums": "also record a per-table checksum (one more hash per row; on by default)",
                "lock_wait": LOCK_WAIT_HELP,
                "json": "print the manifest as JSON",
                "logical": "pg_dump -Fc (portable, single tables) even with pitr configured",
                "physical": "a pgBackRest backup even where pitr.default_kind is logical",
                "type": "physical backup type: full, diff or incr (default: full when the newest full is older "
                        "than pitr.full_every_days, else incr)"})
def db(c, host="", dry_run=False, checksums=True, lock_wait=0.0, json=False, logical=False, physical=False,
       type=""):
    """With pitr: a pgBackRest backup into every repository; else (or --logical) pg_dump -Fc streamed to S3."""
    env = _env(host)
    lock_wait = number(lock_wait, "--lock-wait")
    if logical and (physical or type):
        raise ConfigError("--logical takes a pg_dump: it has no --physical or --type",
                          hint="pass --logical alone, or --type full|diff|incr alone")
    if not logical and env.pitr is not None and (physical or type or env.pitr.default_kind == "physical"):
        _physical_backup(env, type or None, dry_run=dry_run, lock_wait=float(lock_wait), json=json)
        return
    if physical or type:
        raise ConfigError(f"{env.path.name} has no pitr: section: no physical backups",
                          hint="add pitr: (inventory/prod.yml documents it), or drop --physical/--type")
    ctx = _context(env)
    if dry_run:
        for line in dump.plan_db(ctx, checksums=checksums):
            say(f"[dry-run] {line}")
        say("dry-run: nothing was contacted or written")
        return
    t0 = time.monotonic()
    with alert_on_failure(env, "db", warn, ctx.masker), Gateway(env, masker=ctx.masker, echo=ctx.say) as gw, \
            showing_progress(json=json) as ctx.progress:
        m = dump.backup_db(ctx, gw, checksums=checksums, lock_wait=float(lock_wait))
    print_json({**m.to_dict(), "copy": _copy_state(ctx),
                "copy_seconds": round(ctx.copied[-1].seconds, 2) if ctx.copied else None})
    say(f"backup {m.id}: {_size(m.size)} sha256 {m.sha256[:16]} in {time.monotonic() - t0:.1f}s; "
          f"{len(m.table_counts)} tables, {sum(m.table_counts.values())} rows, migration "
          f"{m.newest_migration or '-'}, release {m.app_release or '-'} -> s3://{ctx.bucket}/{m.object_key}"
        + _copy_note(ctx))
    _print_ctx_warnings(ctx)


def _physical_backup(env: Environment, kind: str | None, *, dry_run: bool, lock_wait: float,
                     json: bool = False) -> None:
    if kind is not None and kind not in pgbr.BACKUP_TYPES:
        raise ConfigError(f"--type {kind!r} is not a backup type", hint="use full, diff or incr")
    if dry_run:
        for line in physical.plan_backup(env, kind):
            say(f"[dry-run] {line}")
        say("dry-run: nothing was contacted or written")
        return
    ctx = _context(env)
    with alert_on_failure(env, "db", warn, ctx.masker), Gateway(env, masker=ctx.masker, echo=ctx.say) as gw, \
            showing_progress(json=json) as progress:
        r = physical.take_backup(gw, env, requested=kind, say=say, lock_wait=lock_wait, progress=progress)
    for warning in r.warnings:
        warn(warning)
    print_json({"kind": "physical", "type": r.type, "seconds": round(r.seconds, 1),
                "backups": [b.to_dict() for b in r.backups]})
    say(f"physical {r.type} backup in {r.seconds:.1f}s: " + "; ".join(
        f"{b.label} in repo{b.repo} ({_size(b.size)} database, {_size(b.repo_size)} stored)" for b in r.backups))


@ops_task(mutating=True, help={"host": HOST_HELP, "dry_run": "print what it would do; contact nothing",
                "lock_wait": LOCK_WAIT_HELP,
                "json": "print the manifest as JSON"})
def uploads(c, host="", dry_run=False, lock_wait=0.0, json=False):
    """The uploads (the shared set, through the first web host) as a tar.gz streamed into S3; manifest last."""
    env = _env(host)
    lock_wait = number(lock_wait, "--lock-wait")
    ctx = _context(env)
    if dry_run:
        for line in upload_backup.plan_uploads(ctx):
            say(f"[dry-run] {line}")
        say("dry-run: nothing was contacted or written")
        return
    t0 = time.monotonic()
    with alert_on_failure(env, "uploads", warn, ctx.masker), Gateway(env, masker=ctx.masker, echo=ctx.say) as gw, \
            showing_progress(json=json) as ctx.progress:
        m = upload_backup.backup_uploads(ctx, gw, lock_wait=float(lock_wait))
    print_json({**m.to_dict(), "copy": _copy_state(ctx),
                "copy_seconds": round(ctx.copied[-1].seconds, 2) if ctx.copied else None})
    say(f"backup {m.id}: {m.file_count} files ({_size(m.source_bytes)}) as {_size(m.size)} sha256 "
          f"{m.sha256[:16]} in {time.monotonic() - t0:.1f}s -> s3://{ctx.bucket}/{m.object_key}" + _copy_note(ctx))
    _print_ctx_warnings(ctx)


def _verified(m) -> str:
    v = m.verified
    if not v:
        return "-"
    return f"{'ok' if v.get('ok') else 'FAILED'} {v.get('at', '')[:16]}"


@ops_task(name="list", help={"host": HOST_HELP, "json": "print JSON (manifests)",
                             "kind": "only db or uploads backups"})
def list_(c, host="", json=False, kind=""):
    """Backups in the bucket, newest first: id, kind, the time to pass to restore --at, size, sha256, verified."""
    env = _env(host)
    ctx = _context(env)
    listing, copy_listing, copy_warnings = second_copy.listings(ctx, kind=_kind(kind))
    key = ctx.manifest_key()
    # NOTE: with s3.copy, a backup the primary lost but the copy holds is listed too (restore reads it
    # from there); WHERE says which target holds each one.
    located = second_copy.locate(listing, copy_listing, key) if env.s3.copy is not None else [
        second_copy.Located(e.id, e, None) for e in listing]
    auth = {loc.id: authenticity.status(loc.entry.manifest, key) for loc in located}
    where = {loc.id: (loc.where if copy_listing is not None else "primary (copy not listed)")
             for loc in located} if env.s3.copy is not None else {}
    entries = [{**loc.entry.manifest.to_dict(), "data_key": loc.entry.data_key,
                "restore_at": catalog.paste_time(loc.entry), "authenticated": auth[loc.id],
                **({"where": where[loc.id]} if where else {})} for loc in located]
    if json:
        # NOTE: with pitr the physical backups follow, then one "wal-archive" entry (the restorable range).
        print_json(entries + (_list_physical(ctx, json=True) if env.pitr is not None and kind in ("", "db")
                              else []))
        _print_listing_warnings(listing, copy_listing, copy_warnings)
        return
    print_json(entries)
    rows = []
    for loc in located:
        e, m = loc.entry, loc.entry.manifest
        what = (f"{len(m.table_counts)} tables, migration {m.newest_migration or '-'}" if m.kind == "db"
                else f"{m.file_count} files, {_size(m.source_bytes)}")
        rows.append([m.id, m.kind, catalog.paste_time(e), _size(m.size), m.sha256[:12],
                     _verified(m), "yes" if m.encrypted else "no", auth[loc.id], *([where[loc.id]] if where else []),
                     what])
    if rows:
        say(format_table(["ID", "KIND", "RESTORE --at", "SIZE", "SHA256", "VERIFIED", "ENCRYPTED", "AUTH",
                          *(["WHERE"] if where else []), "CONTENT"], rows))
    else:
        say(f"no backups of {env.name} in s3://{ctx.bucket}/")
    _print_listing_warnings(listing, copy_listing, copy_warnings)
    if env.pitr is not None and kind in ("", "db"):
        _list_physical(ctx, json=False)


def _print_listing_warnings(listing, copy_listing, copy_warnings: list[str]) -> None:
    _print_warnings(listing)
    if copy_listing is not None:
        for warning in copy_listing.warnings:
            warn(f"copy: {warning}")
    for warning in copy_warnings:
        warn(warning)


def _physical_status(ctx: BackupContext):
    """pgBackRest's catalog and the live archiver (None, after a warning, when db1 cannot tell)."""
    env = ctx.env
    try:
        with Gateway(env, masker=ctx.masker, echo=ctx.say) as gw:
            return physical.read_status(gw, env, pg_target(env, ctx.app_values()))
    except OpsError as exc:
        warn(f"physical backups (pgBackRest) not listed: {exc}")
        return None


def _list_physical(ctx: BackupContext, *, json: bool) -> list[dict]:
    st = _physical_status(ctx)
    if st is None:
        return []
    rows = [[b.id, f"physical {b.type}", f"repo{b.repo}", format_utc(b.stopped)[:19] + "Z", _size(b.size),
             _size(b.repo_size), f"{b.wal_start[8:]}..{b.wal_stop[8:]}"] for b in reversed(st.catalog.backups)]
    if not json:
        if rows:
            say(format_table(["ID", "KIND", "REPO", "CONSISTENT AT (UTC)", "SIZE", "STORED", "WAL"], rows))
        d = st.to_dict()
        say(f"WAL archive ({st.catalog.stanza}): restore --at reaches from {d['earliest_restorable'] or '-'} to "
            f"{d['latest_restorable'] or 'unknown'}; archive lag {d['archive_lag_seconds']}s"
            + ("; THE ARCHIVER FAILS" if d["archiver_failing"] else ""))
    return [b.to_dict() for b in reversed(st.catalog.backups)] + [st.to_dict()]


@ops_task(mutating=True, help={"host": HOST_HELP, "dry_run": "show what would be deleted and why; delete nothing",
                               "yes": "do not ask for confirmation (cron)",
                               "lock_wait": LOCK_WAIT_HELP,
                               "json": "print the plan and what was deleted as JSON"})
def prune(c, host="", dry_run=False, yes=False, lock_wait=0.0, json=False):
    """Apply the retention policy (last N + daily/weekly/monthly); never deletes the newest good backup."""
    env = _env(host)
    lock_wait = number(lock_wait, "--lock-wait")
    ctx = _context(env)
    now = utcnow()
    # NOTE: retention applies to each target on its own listing, with the same policy: both hold the
    # same backups, so the same ones go; a backup only one of them holds is judged where it is.
    targets = [("", ctx)] + ([("copy: ", ctx.copy_context())] if env.s3.copy is not None else [])
    plans = [(label, c, checks.plan_prune(c.env, c.client, now=now)) for label, c in targets]
    lines = [f"{label}{line}" for label, _, plan in plans for line in plan.lines()]
    for line in lines:
        say(line)
    for label, _, plan in plans:
        for warning in plan.warnings:
            warn(f"{label}{warning}")
    doomed = [f"{label}{d.label}" for label, _, plan in plans for d in plan.doomed]
    summary = "; ".join(f"{label}{plan.summary()}" for label, _, plan in plans)
    print_json({"plan": lines, "delete": doomed, "deleted": []})
    if dry_run:
        say(f"dry-run: would {summary}; nothing deleted")
        return
    if not any(plan.doomed or plan.stale_uploads for _, _, plan in plans):
        say("nothing to delete")
        return
    confirm(env.name, f"Delete {len(doomed)} backup(s)/object(s) of {env.name} as listed above?", yes=yes,
            nothing="nothing deleted")
    reports = []
    with Gateway(env, masker=ctx.masker, echo=say) as gw, \
            Operation(gw, "backup.prune", list(env.hosts.values()), say=say, lock_wait=lock_wait,
                      detail=summary, scope="backup") as op:
        # NOTE: exactly the plans shown (apply_prune re-checks each object and skips what changed since).
        for label, c, plan in plans:
            reports.append((label, checks.apply_prune(c.env, c.client, plan)))
        deleted = [f"{label}{d}" for label, r in reports for d in r.deleted]
        skipped = [f"{label}{d}" for label, r in reports for d in r.skipped]
        op.outcome = f"deleted {len(deleted)}: {' '.join(deleted)[:400]}" + (
            f"; skipped {len(skipped)} changed since the plan" if skipped else "")
    for label, r in reports:
        for warning in r.warnings:
            warn(f"{label}{warning}")
    for warning in op.warnings:
        warn(warning)
    print_json({"plan": lines, "delete": doomed, "deleted": deleted, "skipped": skipped})
    aborted = sum(len(r.stale_uploads) for _, r in reports)
    extra = f"; aborted {aborted} stale multipart upload(s)" if aborted else ""
    say(f"deleted {len(deleted)} backup(s){extra}"
        + (f"; {len(skipped)} left alone (changed since the plan)" if skipped else ""))


@ops_task(name="copy", mutating=True, help={"host": HOST_HELP,
                                             "dry_run": "list what the copy lacks; copy nothing",
                                             "lock_wait": "seconds to wait for another backup operation",
                                             "json": "print what was copied as JSON"})
def copy_(c, host="", dry_run=False, lock_wait=0.0, json=False):
    """Put the second copy (s3.copy) in step: copy every backup it lacks (or holds differently) from the primary."""
    env = _env(host)
    lock_wait = number(lock_wait, "--lock-wait")
    ctx = _context(env)
    plan = second_copy.plan_sync(ctx)
    for line in plan.lines(ctx):
        say(line)
    for warning in plan.warnings:
        warn(warning)
    if dry_run or not plan.to_copy:
        print_json({"copy": [e.id for e in plan.to_copy], "copied": [],
                    "copy_only": [loc.id for loc in plan.copy_only]})
        say("dry-run: nothing was copied" if dry_run else "the copy holds every backup of the primary: nothing to do")
        return
    copied = []
    with Gateway(env, masker=ctx.masker, echo=say) as gw, \
            Operation(gw, "backup.copy", list(env.hosts.values()), say=say, lock_wait=float(lock_wait),
                      detail=f"{len(plan.to_copy)} backup(s) to s3://{env.s3.copy.bucket}", scope="backup") as op, \
            showing_progress(json=json) as ctx.progress:
        try:
            copied = second_copy.sync(ctx, plan, say=say)
        finally:
            op.outcome = f"copied {len(copied)} of {len(plan.to_copy)}: {' '.join(c.backup for c in copied)[:400]}"
    print_json({"copy": [e.id for e in plan.to_copy], "copied": [c.backup for c in copied],
                "copy_only": [loc.id for loc in plan.copy_only]})
    say(f"copied {len(copied)} backup(s) to s3://{env.s3.copy.bucket}")


@ops_task(help={"host": HOST_HELP, "id": "backup id to verify (default: the newest db backup)",
                "json": "print the outcome as JSON",
                "trust_unauthenticated": "drill a backup whose manifest is not authenticated (taken before "
                                         "manifests were); only after checking it",
                "physical": "drill the physical kind: restore to the latest second (WAL archived up to now) into "
                            "a scratch server, check it, remove it (default with pitr.default_kind physical)",
                "from_": "read the backup from 'primary' or 'copy' (s3.copy); default: the primary, the copy "
                         "when the primary does not hold it"})
def verify(c, host="", id="", json=False, trust_unauthenticated=False, physical=False, from_=""):
    """Restore drill: stream into a scratch database, compare counts/checksums/migration, drop it."""
    env = _env(host)
    if from_ and from_ not in second_copy.SOURCES:
        raise ConfigError(f"--from {from_!r} is not a backup target", hint="use primary or copy")
    ctx = _context(env)
    if physical or (env.pitr is not None and env.pitr.default_kind == "physical" and not id):
        _drill_physical(ctx, json=json)
        return
    with Gateway(env, masker=ctx.masker, echo=ctx.say) as gw:
        result = drills.verify(ctx, gw, id or None, trust_unauthenticated=bool(trust_unauthenticated),
                               source=from_)
    print_json({"id": result.entry.id, "ok": True, "detail": result.detail, "seconds": round(result.seconds, 1)})
    say(f"backup {result.entry.id} verified in {result.seconds:.1f}s: {result.detail}")


def _drill_physical(ctx: BackupContext, *, json: bool = False) -> None:
    env = ctx.env
    physical_backups.require_pitr(env)
    with Gateway(env, masker=ctx.masker, echo=ctx.say) as gw, showing_progress(json=json) as ctx.progress:
        r = pitr.drill(ctx, gw, say=say)
    print_json({"kind": "physical", "ok": True, "backup": r.backup, "at": r.at.isoformat(),
                "latest_commit": r.latest_commit.isoformat() if r.latest_commit else None, "tables": r.tables,
                "migration": r.migration, "seconds": round(r.seconds, 1)})
    say(f"physical backup {r.backup} + WAL restored to {format_utc(r.at)} in a scratch server and checked in "
        f"{r.seconds:.1f}s: {len(r.tables)} tables, {sum(r.tables.values())} rows, migration {r.migration or '-'}; "
        "scratch removed")


@ops_task(help={"host": HOST_HELP,
                "max_age": "fail when the newest good backup is older (26h, 90m, 2d; default backup.max_age_hours)",
                "prometheus_file": "also write metrics for node_exporter's textfile collector (atomically)",
                "kind": "db (default), uploads, physical (pgBackRest: backups, archive lag, repositories) or all: "
                        "which kinds must be fresh for exit 0",
                "json": "print JSON"})
def check(c, host="", max_age="", prometheus_file="", kind="db", json=False):
    """Exit 1 when the newest good backup is older than --max-age; print its age."""
    env = _env(host)
    limit = checks.parse_max_age(max_age or env.backup.max_age_hours)
    # NOTE: physical (pgBackRest) freshness and archive lag: with --kind physical or all, and with db
    # where pitr.default_kind is physical.
    judge_physical = env.pitr is not None and (kind in ("physical", "all") or (
        kind in ("", "db") and env.pitr.default_kind == "physical"))
    wanted = _kind("db" if kind == "physical" else kind or "db", allow_all=True)
    ctx = _context(env)
    now = utcnow()
    listing, copy_listing, copy_warnings = second_copy.listings(ctx)
    results = checks.check(listing, now=now, max_age=limit)
    pitr_problems: list[str] = []
    prom = checks.prometheus_text(env.name, results, now=now)
    copy_result = None
    if env.s3.copy is not None and kind != "physical":
        copy_result = checks.copy_check(second_copy.locate(listing, copy_listing, ctx.manifest_key()),
                                        reachable=copy_listing is not None,
                                        unreachable_reason=copy_warnings[0] if copy_warnings else "")
        prom += checks.copy_prometheus_text(env.name, copy_result)
        for problem in copy_result.problems:
            warn(f"copy: {problem}")
        if copy_result.ok and not json:
            say(f"{env.name} copy: ok: s3://{env.s3.copy.bucket} holds the same {len(listing)} backup(s)")
    if judge_physical:
        st = _physical_status(ctx)
        pitr_problems = ["physical backups could not be read"] if st is None else st.problems(
            archive_timeout=env.pitr.archive_timeout, max_age=limit, full_every_days=env.pitr.full_every_days,
            repos=len(env.pitr.repos))
        if st is not None:
            prom += st.prometheus(env.name)
        for problem in pitr_problems:
            warn(f"pitr: {problem}")
        if st is not None and not pitr_problems and not json:
            newest = st.catalog.backups[-1] if st.catalog.backups else None
            say(f"{env.name} physical: ok: newest {newest.label if newest else '-'} (repo{newest.repo if newest else '-'}), "
                f"archive lag {st.archive_lag():.0f}s, {len(env.pitr.repos)} repositories in step")
    if prometheus_file:
        checks.write_textfile(prometheus_file, prom)
    judged = [r for r in results if (wanted is None or r.kind == wanted) and kind != "physical"]
    print_json([{"kind": r.kind, "ok": r.ok, "newest": r.newest.id if r.newest else None,
                 "age_seconds": r.age.total_seconds() if r.age is not None else None,
                 "max_age_seconds": r.max_age.total_seconds(), "count": r.count} for r in judged])
    if not json:
        for r in judged:
            say(r.line(env.name))
    _print_warnings(listing)
    stale = [r for r in judged if not r.ok]
    for warning in backup_stale(env, [(r.kind, r.line(env.name)) for r in stale]):
        warn(warning)
    if stale:
        raise CheckFailed(f"{', '.join(r.kind for r in stale)} backup of {env.name} is stale or missing")
    if pitr_problems:
        raise CheckFailed(f"point-in-time recovery of {env.name}: {pitr_problems[0]}"
                          + (f" (+{len(pitr_problems) - 1} more)" if len(pitr_problems) > 1 else ""))
    if copy_result is not None and not copy_result.ok:
        raise CheckFailed(f"the second copy of {env.name}'s backups is not in step: {copy_result.problems[0]}"
                          + (f" (+{len(copy_result.problems) - 1} more)" if len(copy_result.problems) > 1 else ""),
                          hint=f"inv backup.copy --host {env.name} copies what the copy lacks")
