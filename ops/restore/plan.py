"""Everything before a change: the backup chosen, its object checked, the live state read, the plan
shown; and the typed confirmation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ops import audit
from ops.backup import uploads as backup_uploads
from ops.backup.catalog import Entry, find_at, get, list_backups
from ops.backup.context import BackupContext
from ops.backup.manifest import Manifest
from ops.backup.timeparse import format_utc, parse_at
from ops.commands import docker
from ops.errors import ConfigError
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
            f"  object     s3://{self.env.s3.bucket}/{m.object_key}, {human_bytes(m.size)}"
            f"{', encrypted' if m.encrypted else ''}; sha256 {m.sha256[:16]}... checked just now "
            f"({self.checked_seconds:.1f}s)",
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
    or ``--id`` (exactly one)."""
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


def prepare_db(ctx: BackupContext, gw: Gateway, at_text: str = "", *, backup_id: str = "",
               trust_unauthenticated: bool = False, now: datetime | None = None) -> DbPlan:
    """Everything before any change: the backup chosen, its object checked, the live state read."""
    env = ctx.env
    now = now or audit.utcnow()
    entry, at, how, warnings = choose(ctx, "db", at_text=at_text, backup_id=backup_id, now=now)
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
    checked = check_object(ctx, m, trust_unauthenticated=trust_unauthenticated)
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
            f"  object     s3://{self.env.s3.bucket}/{m.object_key}, {human_bytes(m.size)}"
            f"{', encrypted' if m.encrypted else ''}; sha256 checked just now ({self.checked_seconds:.1f}s)",
            f"  authentic  {self.checked.authenticity.line}",
            f"  1. lock environment {self.env.name}",
            f"  2. on {', '.join(h.name for h in self.hosts)}: extract the archive (streamed from S3) into "
            f"volume {vol} under .restore-{self.ts}/ and check its file count (the live files are not touched)",
            f"  3. move the current files into .before-restore-{self.ts}/ and the restored ones in their place "
            "(renames; the app keeps running)",
            f"  4. keep .before-restore-{self.ts}/ (remove it once sure; the command is printed)",
        ]


def prepare_uploads(ctx: BackupContext, hosts: list[Host], *, at_text: str = "", backup_id: str = "",
                    trust_unauthenticated: bool = False, now: datetime | None = None) -> UploadsPlan:
    env = ctx.env
    now = now or audit.utcnow()
    if bool(at_text) == bool(backup_id):
        raise ConfigError("say which uploads backup: --at TIMESTAMP or --id ID (one of them)",
                          hint=f"ids: inv backup.list --host {env.name}")
    webs = [h for h in hosts if "web" in h.roles]
    if not webs:
        raise ConfigError("no web host selected: the uploads volume lives on the web hosts",
                          hint=f"use --host {env.name} or {env.name}:<web host>")
    entry, at, how, _ = choose(ctx, "uploads", at_text=at_text, backup_id=backup_id, now=now)
    how = how or f"newest before {format_utc(at)}"
    checked = check_object(ctx, entry.manifest, trust_unauthenticated=trust_unauthenticated)
    return UploadsPlan(env, entry, webs, stamp(now), checked, how)

