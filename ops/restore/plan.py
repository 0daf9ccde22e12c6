"""Everything before a change: the backup chosen, its object checked, the live state read, the plan
shown; and the typed confirmation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ops import audit, uploads_layout
from ops.backup import second_copy
from ops.backup import uploads as backup_uploads
from ops.backup.catalog import BackupNotFound, Entry, find_at, get, list_backups, restore_point
from ops.backup.context import BackupContext
from ops.backup.manifest import Manifest
from ops.backup.timeparse import format_utc, parse_at
from ops.commands import docker
from ops.errors import ConfigError, OpsError
from ops.inventory import Environment, Host
from ops.postgres import DatabaseURL, PgTarget, pg_target
from ops.remote import Gateway
from ops.restore.database import LiveDatabase, existing_databases, live_database, scratch_names, stamp
from ops.restore.errors import RestoreRefused
from ops.restore.objects import CheckedObject, check_object
from ops.table import human_bytes
from ops.traffic import serving_containers


def human_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"


# -- database restore: plan ------------------------------------------------------------
@dataclass
class DbPlan:
    env: Environment
    at: datetime
    entry: Entry
    target: PgTarget
    live: LiveDatabase | None
    new_db: str
    before_db: str
    role: str | None
    free_bytes: int | None
    web: dict[str, list[str]]
    checked: CheckedObject
    warnings: list[str] = field(default_factory=list)
    how: str = ""  # "--id ..." when chosen by id (``at`` is then now)

    @property
    def manifest(self) -> Manifest:
        return self.entry.manifest

    @property
    def checked_seconds(self) -> float:
        return self.checked.seconds

    def lines(self) -> list[str]:
        m, t, live = self.manifest, self.target, self.live
        rows = sum(m.table_counts.values())
        point = m.restore_point
        lost = (self.at - point).total_seconds()
        target = self.how or f"to {format_utc(self.at)}"
        out = [
            f"restore plan for {self.env.name}, {target}:",
            f"  backup     {m.id}: data as of {format_utc(point)} ({'its snapshot' if m.snapshot_at else 'its start'}"
            f"), finished {format_utc(m.finished_at)}",
            f"  data loss  writes after {format_utc(point)} are not in it" + (
                f": {human_age(lost)} before the target {format_utc(self.at)}" if not self.how else
                " (the live database is kept, with them)"),
            f"  object     s3://{self.checked.bucket or self.env.s3.bucket}/{m.object_key}, {human_bytes(m.size)}"
            f"{', encrypted' if m.encrypted else ''}; sha256 {m.sha256[:16]}... checked just now "
            f"({self.checked_seconds:.1f}s)" + (" — from the SECOND COPY" if self.checked.source == "copy" else ""),
            f"  authentic  {self.checked.authenticity.line}",
            f"  contents   database {m.database or '?'} (PostgreSQL {m.server_version or '?'}), {len(m.table_counts)} "
            f"tables, {rows} rows; migration head {m.newest_migration or '(none)'}; release {m.app_release or '?'}",
        ]
        if live is None:
            out.append(f"  live now   no database {t.dbname} on {t.host.name} ({t.container}): it will be created")
        else:
            out.append(f"  live now   {t.dbname} on {t.host.name} ({t.container}), {human_bytes(live.size)}, "
                       f"{live.sessions} session(s), migration head {live.migration or '(none)'}; "
                       f"free on the data volume: {human_bytes(self.free_bytes)}")
        stops = [f"{h}: {', '.join(c)}" for h, c in self.web.items() if c] or ["(no app container running)"]
        steps = [
            f"safety backup of {t.dbname} (like inv backup.db; its id is printed)" if live is not None
            else "no safety backup (there is no live database)",
            f"lock environment {self.env.name}",
            f"create {self.new_db} on {t.host.name}; pg_restore the object into it, streamed from S3 "
            f"(nothing written to {t.dbname}, which keeps serving)",
            f"check every table's row count{' and checksum' if m.table_checksums else ''} and the migration head "
            "against the manifest (a mismatch drops the copy and stops here)",
            f"stop traffic: maintenance page (503) on {', '.join(self.web) or '(no web host)'}; stop "
            + "; ".join(stops),
            (f"close {t.dbname} to new connections, end its sessions, then in one transaction rename "
             f"{t.dbname} -> {self.before_db} and {self.new_db} -> {t.dbname}") if live is not None
            else f"rename {self.new_db} -> {t.dbname}",
            "start the app containers again, wait for their health check, remove the maintenance page",
            f"keep {self.before_db} (drop it once sure; the command is printed)" if live is not None else "",
        ]
        out += [f"  {i}. {step}" for i, step in enumerate((s for s in steps if s), 1)]
        out += [f"  warning: {w}" for w in self.warnings]
        return out


def choose(ctx: BackupContext, kind: str, *, at_text: str, backup_id: str,
           now: datetime) -> tuple[Entry, datetime, str, list[str]]:
    """(the backup, the target time, how it was chosen, the listing's warnings about it) from ``--at``
    or ``--id`` (exactly one), in ``ctx``'s target."""
    env = ctx.env
    if bool(at_text) == bool(backup_id):
        raise ConfigError(f"say which {kind} backup: --at TIMESTAMP or --id ID (one of them)",
                          hint=f"e.g. --at {format_utc(now.replace(microsecond=0))} or --at now; ids: "
                               f"inv backup.list --host {env.name} --kind {kind}")
    listing = list_backups(env, ctx.client, kind=kind)
    if backup_id:
        entry = get(listing, backup_id)
        if entry.kind != kind:
            raise ConfigError(f"backup {backup_id} is a {entry.kind} backup, not {kind}",
                              hint=f"ids: inv backup.list --host {env.name} --kind {kind}")
        return entry, now, f"backup {backup_id} (--id)", [w for w in listing.warnings if backup_id in w]
    at = parse_at(at_text, now=now)
    entry = find_at(listing, at, kind)
    return entry, at, "", [w for w in listing.warnings if entry.id in w]


def choose_source(ctx: BackupContext, kind: str, *, at_text: str, backup_id: str, now: datetime,
                  source: str = "") -> tuple[BackupContext, Entry, datetime, str, list[str]]:
    """``choose`` in the target to read from: ``source`` (primary or copy) when given; else the primary,
    and the second copy (``s3.copy``) when it holds the backup asked for and the primary does not, or
    holds a newer one for ``--at`` (the primary lost it): said in the warnings."""
    if source:
        src = second_copy.source_context(ctx, source)
        return (src, *choose(src, kind, at_text=at_text, backup_id=backup_id, now=now))
    cc = ctx.copy_context()
    try:
        primary = choose(ctx, kind, at_text=at_text, backup_id=backup_id, now=now)
    except BackupNotFound as exc:
        if cc is None:
            raise
        try:
            found = choose(cc, kind, at_text=at_text, backup_id=backup_id, now=now)
        except OpsError:
            raise exc from None
        return cc, *found[:3], [*found[3], f"{exc.message} in the primary s3://{ctx.bucket}: reading "
                                f"{found[0].id} from the second copy, s3://{cc.bucket}"]
    if cc is None or backup_id:
        return (ctx, *primary)
    try:
        copied = choose(cc, kind, at_text=at_text, backup_id=backup_id, now=now)
    except OpsError:
        return (ctx, *primary)  # NOTE: the copy unreachable or empty: the primary's choice stands
    if restore_point(copied[0]) > restore_point(primary[0]):
        return cc, *copied[:3], [*copied[3], f"the newest {kind} backup before the target, {copied[0].id}, is only in "
                                 f"the second copy s3://{cc.bucket} (the primary has {primary[0].id}): reading it "
                                 "from the copy"]
    return (ctx, *primary)


def prepare_db(ctx: BackupContext, gw: Gateway, at_text: str = "", *, backup_id: str = "",
               trust_unauthenticated: bool = False, now: datetime | None = None, source: str = "") -> DbPlan:
    """Everything before any change: the backup chosen (``source``: see ``choose_source``), its object
    checked, the live state read."""
    env = ctx.env
    now = now or audit.utcnow()
    src, entry, at, how, warnings = choose_source(ctx, "db", at_text=at_text, backup_id=backup_id, now=now,
                                                  source=source)
    m = entry.manifest
    target = pg_target(env, ctx.app_values())
    role = _app_role(ctx)
    live = live_database(gw, target)
    new_db, before_db = scratch_names(target.dbname, stamp(now))
    clash = existing_databases(gw, target, [new_db, before_db])
    if clash:
        raise RestoreRefused(f"database(s) {', '.join(sorted(clash))} already exist on {target.host.name}",
                             hint="another restore ran this very second? wait a second and run again")
    free = _free_bytes(gw, target, env)
    webs = env.with_roles("web")
    serving = gw.map(lambda h: serving_containers(gw, h), webs)
    serving.raise_if_failed("reading the app containers")
    if m.database and m.database != target.dbname:
        warnings.append(f"the backup is of database {m.database}; it will be restored as {target.dbname}")
    if live is not None and (live.migration or None) != (m.newest_migration or None):
        warnings.append(f"the live database is at migration {live.migration or '(none)'}, the backup at "
                        f"{m.newest_migration or '(none)'}: the release running now may expect the other schema "
                        f"(after the restore, roll back to release {m.app_release or '?'} if the app fails)")
    if live is not None and free is not None and free < live.size:
        warnings.append(f"free space on the data volume ({human_bytes(free)}) is less than the live database "
                        f"({human_bytes(live.size)}): both exist side by side during the restore")
    checked = _check(ctx, src, m, trust_unauthenticated=trust_unauthenticated)
    return DbPlan(env, at, entry, target, live, new_db, before_db, role, free,
                  {h.name: serving.ok[h.name] for h in webs}, checked, warnings, how)


def _app_role(ctx: BackupContext) -> str | None:
    url = ctx.app_values().get("DATABASE_URL")
    try:
        return DatabaseURL.parse(url).user if url else None
    except ConfigError:
        return None


def _free_bytes(gw: Gateway, target: PgTarget, env: Environment) -> int | None:
    acc = env.accessories.get("postgres")
    path = acc.data_path if acc else "/var/lib/postgresql/data"
    res = gw.query(target.host, docker.exec_argv(target.container, "df", "-Pk", path), check=False)
    try:
        return int(res.stdout.strip().splitlines()[-1].split()[3]) * 1024
    except (IndexError, ValueError):
        return None


@dataclass
class UploadsPlan:
    env: Environment
    entry: Entry
    hosts: list[Host]
    ts: str
    checked: CheckedObject
    how: str
    warnings: list[str] = field(default_factory=list)

    @property
    def manifest(self) -> Manifest:
        return self.entry.manifest

    @property
    def checked_seconds(self) -> float:
        return self.checked.seconds

    def lines(self) -> list[str]:
        m, vol = self.manifest, backup_uploads.volume_name(self.env)
        return [
            f"uploads restore plan for {self.env.name} ({self.how}):",
            f"  backup     {m.id}, finished {format_utc(m.finished_at)}, {m.file_count} files "
            f"({human_bytes(m.source_bytes)} unpacked)",
            f"  object     s3://{self.checked.bucket or self.env.s3.bucket}/{m.object_key}, {human_bytes(m.size)}"
            f"{', encrypted' if m.encrypted else ''}; sha256 checked just now ({self.checked_seconds:.1f}s)"
            + (" — from the SECOND COPY" if self.checked.source == "copy" else ""),
            f"  authentic  {self.checked.authenticity.line}",
            f"  1. lock environment {self.env.name}",
            f"  2. on {', '.join(h.name for h in self.hosts)}: extract the archive (streamed from S3) into "
            f"volume {vol} under .restore-{self.ts}/ and check its file count (the live files are not touched)"
            + (f"; the uploads are one set on the shared uploads.path {self.env.uploads.path}, which every web "
               "host serves" if self.env.uploads.shared else ""),
            f"  3. move the current files into .before-restore-{self.ts}/ and the restored ones in their place "
            "(renames; the app keeps running)",
            f"  4. keep .before-restore-{self.ts}/ (remove it once sure; the command is printed)",
            *(f"  warning: {w}" for w in self.warnings),
        ]


def _check(ctx: BackupContext, src: BackupContext, m: Manifest, *, trust_unauthenticated: bool) -> CheckedObject:
    """``check_object`` in the chosen target; a refusal in the primary names the way to the copy."""
    try:
        return check_object(src, m, trust_unauthenticated=trust_unauthenticated)
    except RestoreRefused as exc:
        if src is ctx and ctx.copy_context() is not None:
            raise RestoreRefused(exc.message, hint=f"{exc.hint}; or read the second copy of it: --from copy") \
                from None
        raise


def prepare_uploads(ctx: BackupContext, hosts: list[Host], *, at_text: str = "", backup_id: str = "",
                    trust_unauthenticated: bool = False, now: datetime | None = None,
                    source: str = "") -> UploadsPlan:
    env = ctx.env
    now = now or audit.utcnow()
    if bool(at_text) == bool(backup_id):
        raise ConfigError("say which uploads backup: --at TIMESTAMP or --id ID (one of them)",
                          hint=f"ids: inv backup.list --host {env.name}")
    uploads_layout.refuse_object_storage(env)
    webs = [h for h in hosts if "web" in h.roles]
    if not webs:
        raise ConfigError("no web host selected: the uploads volume lives on the web hosts",
                          hint=f"use --host {env.name} or {env.name}:<web host>")
    if env.uploads.shared:
        # NOTE: one set on shared storage: restored once, through one host; every web host then serves it.
        webs = webs[:1]
    src, entry, at, how, warnings = choose_source(ctx, "uploads", at_text=at_text, backup_id=backup_id, now=now,
                                                  source=source)
    how = how or f"newest before {format_utc(at)}"
    checked = _check(ctx, src, entry.manifest, trust_unauthenticated=trust_unauthenticated)
    return UploadsPlan(env, entry, webs, stamp(now), checked, how, warnings)

