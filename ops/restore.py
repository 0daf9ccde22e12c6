"""Restore the database (``inv restore``) and the uploads (``inv restore.uploads``) from S3.

Database, in this order, and what a failure at each step leaves behind:

1. ``--at`` parsed strictly; the newest db backup finished at or before it is chosen
                                                                  -> nothing touched
2. its object is streamed from S3 and its SHA-256 and size checked against the
   manifest; the plan is shown                                    -> nothing touched
   (``--dry-run`` stops here: it reads S3, it changes nothing)
3. confirmation (type the environment name) unless ``--yes``
4. a safety backup of the live database (``backup.db``, which takes and releases the
   environment lock itself), then the environment lock for the rest -> nothing touched
5. a NEW database ``<db>_restore_<ts>`` is created next to the live one and
   ``pg_restore`` (inside the Postgres accessory) is fed the object streamed
   S3 -> here -> SSH channel -> ``docker exec -i``; the bytes are hashed again on
   the way; the row count of every table and the migration head are compared with
   the manifest                                 -> failure: the new database is dropped;
                                                   the live one never stopped serving
6. traffic stops: on every web host a maintenance container joins the app network
   under the name nginx proxies to (it answers 503 + Retry-After), then the app
   containers are stopped (SIGTERM: in-flight requests finish) and taken off it
7. the live database is closed to new connections, the remaining sessions are
   terminated, and in ONE transaction ``<db>`` becomes ``<db>_before_<ts>`` and
   ``<db>_restore_<ts>`` becomes ``<db>``     -> failure: the transaction rolls back,
                                                 the live database is reopened
8. whatever happened in 6-7: the app containers are started, health-checked and put
   back behind nginx, the maintenance container removed
9. an audit line on every host and in S3

Why this way: the live database is never written to. Until the rename, every failure
(pg_restore error, count mismatch, SSH cut, Ctrl-C) leaves it exactly as it was and
serving; the rename is one transaction; and ``<db>_before_<ts>`` (kept, not dropped)
holds everything up to the moment traffic stopped, including writes made after the
safety backup. Downtime is the swap only (seconds), not the length of the restore.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from ops import audit
from ops.backup import dump, uploads
from ops.backup.catalog import Entry, find_at, get, list_backups
from ops.backup.dump import BackupContext, PgTarget, session
from ops.backup.manifest import Manifest
from ops.backup.stream_upload import download_stream
from ops.backup.timeparse import as_utc, format_utc, parse_at
from ops.commands import docker
from ops.db import DatabaseURL
from ops.deploy import switch
from ops.errors import ConfigError, HostError, OpsError
from ops.inventory import Environment, Host
from ops.layout import Layout
from ops.lock import EnvironmentLock, Holder
from ops.operation import shielded_from_ctrl_c
from ops.registry import service_ref
from ops.remote import Gateway, pipe_into
from ops.table import human_bytes

Say = Callable[[str], None]

CHUNK = 1024 * 1024
# Postgres truncates identifiers to 63 bytes (NAMEDATALEN - 1): longer names would collide.
MAX_IDENT = 63
# Milliseconds each remaining session of the live database gets to end after pg_terminate_backend.
TERMINATE_WAIT_MS = 10_000
MAINTENANCE_WAIT = 15.0
SITE_WAIT = 30.0
RETRY_AFTER = 60
SAFETY_REASON = "pre-restore safety backup"


class RestoreFailed(OpsError):
    """The restore stopped; the message says in which state it left the environment."""


class RestoreRefused(OpsError):
    """The restore was refused before anything was changed (damaged object, clash...)."""


def _quiet(_: str) -> None:
    pass


# -- names and SQL (pure) ---------------------------------------------------------------
def stamp(when: datetime) -> str:
    """``20261124_030000``: digits and '_' only, so the names need no quoting in psql -d / dropdb."""
    return as_utc(when).strftime("%Y%m%d_%H%M%S")


def scratch_names(db: str, ts: str) -> tuple[str, str]:
    """(``<db>_restore_<ts>``, ``<db>_before_<ts>``), each within Postgres' 63-byte limit."""
    out = []
    for word in ("restore", "before"):
        suffix = f"_{word}_{ts}"
        base = db.encode()[: MAX_IDENT - len(suffix)].decode(errors="ignore")
        out.append(base + suffix)
    return out[0], out[1]


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise ConfigError(f"invalid SQL identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A quoted SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    if "\0" in value:
        raise ConfigError(f"invalid SQL string {value!r}")
    return "'" + value.replace("'", "''") + "'"


def pg_restore_argv(container: str, user: str, dbname: str, *, role: str | None = None) -> tuple[str, ...]:
    """pg_restore inside the accessory (local socket, trust), reading the archive on stdin.

    ``--exit-on-error``: stop at the first failed statement (by default pg_restore
    carries on and only reports at the end); ``--no-owner``: objects belong to
    ``role`` (the app's database user) or the connecting user, not to whoever owned
    them where the dump was made.
    """
    cmd = ["pg_restore", "--no-password", f"--username={user}", f"--dbname={dbname}", "--no-owner",
           "--exit-on-error"]
    if role and role != user:
        cmd.append(f"--role={role}")
    return docker.exec_argv(container, *cmd, interactive=True)


def database_info_sql(db: str) -> str:
    return ("SELECT pg_encoding_to_char(encoding), datcollate, datctype, pg_get_userbyid(datdba),"
            f" pg_database_size(oid), (SELECT count(*) FROM pg_stat_activity WHERE datname = {literal(db)})"
            f" FROM pg_database WHERE datname = {literal(db)}")


def create_database_sql(new: str, info: LiveDatabase) -> str:
    """The new database like the live one: owner, encoding, locale (template0: nothing inherited)."""
    return (f"CREATE DATABASE {ident(new)} WITH TEMPLATE template0 OWNER {ident(info.owner)}"
            f" ENCODING {literal(info.encoding)} LC_COLLATE {literal(info.collate)} LC_CTYPE {literal(info.ctype)}")


def drop_database_sql(name: str) -> str:
    # WITH (FORCE) (PostgreSQL 13+): a pg_restore still connected to it is terminated.
    return f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)"


def allow_connections_sql(db: str, allow: bool) -> str:
    return f"ALTER DATABASE {ident(db)} WITH ALLOW_CONNECTIONS {'true' if allow else 'false'}"


def terminate_sql(db: str, wait_ms: int = TERMINATE_WAIT_MS) -> str:
    """End every other session on ``db``, waiting up to ``wait_ms`` for each (PostgreSQL 14+)."""
    return (f"SELECT count(*) FROM (SELECT pg_terminate_backend(pid, {int(wait_ms)}) FROM pg_stat_activity"
            f" WHERE datname = {literal(db)} AND pid <> pg_backend_pid()) t")


def rename_sql(old: str, new: str) -> str:
    return f"ALTER DATABASE {ident(old)} RENAME TO {ident(new)}"


def compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """One line per table whose row count differs, or that exists on one side only."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        if want is None:
            problems.append(f"{table}: not in the backup's manifest ({got} rows restored)")
        elif got is None:
            problems.append(f"{table}: missing after the restore (manifest: {want} rows)")
        elif int(want) != int(got):
            problems.append(f"{table}: {got} rows restored, the manifest says {want}")
    return problems


def compare_checksums(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    return [f"{table}: content checksum differs from the manifest's" for table in sorted(expected)
            if table in actual and actual[table] != expected[table]]


def maintenance_conf(port: int, retry_after: int = RETRY_AFTER) -> str:
    """The maintenance container's site: 503 + Retry-After for every request, the health path included."""
    return "\n".join([
        "# Rendered by ops (ops/restore.py) while a restore swaps the database; removed right after.",
        "server {",
        f"    listen {int(port)} default_server;",
        "    default_type text/plain;",
        f'    add_header Retry-After "{int(retry_after)}" always;',
        '    add_header Cache-Control "no-store" always;',
        "    location / {",
        '        return 503 "Down for maintenance (database restore). Back in a minute.\\n";',
        "    }",
        "}",
        "",
    ])


def maintenance_container(env: Environment) -> str:
    return f"{env.app}-maintenance"


def human_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"


# -- the backup object ----------------------------------------------------------------
class HashingReader:
    """Passes reads through, counting and hashing the bytes (the bytes stored in S3)."""

    def __init__(self, raw):
        self.raw = raw
        self.size = 0
        self._sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.size += len(data)
        self._sha.update(data)
        return data

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def _s3_read_error(m: Manifest, exc: Exception) -> OpsError:
    return OpsError(f"reading backup {m.id} from S3 failed: {exc}", hint="check the S3 endpoint and re-run")


def check_object(ctx: BackupContext, m: Manifest) -> float:
    """Stream the whole object and hash it: refuse unless its size and SHA-256 are the manifest's.

    Returns the seconds it took. Runs before anything is changed (and in --dry-run).
    """
    t0 = time.monotonic()
    body, size = download_stream(ctx.client, ctx.bucket, m.object_key)
    reader = HashingReader(body)
    try:
        if size == m.size:
            while reader.read(CHUNK):
                pass
    except (BotoCoreError, ClientError, OSError) as exc:
        raise _s3_read_error(m, exc) from None
    finally:
        body.close()
    if size != m.size:
        raise RestoreRefused(f"backup {m.id}: the object is {size} bytes, its manifest says {m.size}: damaged or "
                             "replaced; refusing to restore it (nothing was changed)",
                             hint="pick another backup: inv backup.list --host " + ctx.env.name)
    if reader.sha256 != m.sha256:
        raise RestoreRefused(f"backup {m.id}: the object's SHA-256 is {reader.sha256[:16]}..., its manifest says "
                             f"{m.sha256[:16]}...: damaged or replaced; refusing to restore it (nothing was changed)",
                             hint="pick another backup: inv backup.list --host " + ctx.env.name)
    return time.monotonic() - t0


def plain_reader(ctx: BackupContext, m: Manifest, stored):
    """The backup's bytes as written by pg_dump / tar: decrypted when the manifest says so."""
    if not m.encrypted:
        return stored
    from ops.backup import crypto

    passphrase = ctx.passphrase()
    if not passphrase:
        raise ConfigError(f"backup {m.id} is encrypted ({m.encryption.get('scheme')}) and no passphrase is "
                          "configured", hint="set backup.encryption_key_var and put the passphrase in the ops env file")
    return crypto.decrypt_stream(stored, passphrase)


@contextlib.contextmanager
def object_stream(ctx: BackupContext, m: Manifest):
    """(hashing reader of the stored bytes, reader of the plain bytes); the S3 body closed after."""
    body, _ = download_stream(ctx.client, ctx.bucket, m.object_key)
    hashed = HashingReader(body)
    try:
        yield hashed, plain_reader(ctx, m, hashed)
    except (BotoCoreError, ClientError) as exc:
        raise _s3_read_error(m, exc) from None
    finally:
        body.close()


def check_streamed(m: Manifest, hashed: HashingReader) -> None:
    if hashed.size != m.size or hashed.sha256 != m.sha256:
        raise RestoreFailed(f"the bytes streamed from S3 ({hashed.size} bytes, sha256 {hashed.sha256[:16]}...) are not "
                            f"backup {m.id}'s ({m.size} bytes, {m.sha256[:16]}...): the object changed during the restore")


# -- the database -----------------------------------------------------------------------
@dataclass(frozen=True)
class LiveDatabase:
    name: str
    encoding: str
    collate: str
    ctype: str
    owner: str
    size: int
    sessions: int
    migration: str | None


def _sql(conn, statement: str, what: str, host: Host):
    try:
        return conn.execute(statement)
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HostError(f"{what} failed: {text}", host=host.name) from None


def live_database(gw: Gateway, target: PgTarget) -> LiveDatabase | None:
    """The database the app uses now (None when it does not exist)."""
    with session(gw, target, "postgres") as conn:
        row = _sql(conn, database_info_sql(target.dbname), "reading the live database", target.host).fetchone()
    if row is None:
        return None
    with session(gw, target) as conn:
        head = dump.migration_head(conn)
    return LiveDatabase(target.dbname, row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), head)


def existing_databases(gw: Gateway, target: PgTarget, names: list[str]) -> set[str]:
    wanted = ", ".join(literal(n) for n in names)
    with session(gw, target, "postgres") as conn:
        rows = _sql(conn, f"SELECT datname FROM pg_database WHERE datname IN ({wanted})", "listing databases",
                    target.host).fetchall()
    return {r[0] for r in rows}


def create_database(gw: Gateway, target: PgTarget, new: str, live: LiveDatabase | None) -> None:
    statement = (create_database_sql(new, live) if live is not None
                 else f"CREATE DATABASE {ident(new)} WITH TEMPLATE template0 OWNER {ident(target.user)}")
    with session(gw, target, "postgres") as conn:
        _sql(conn, statement, f"creating database {new}", target.host)


def drop_database(gw: Gateway, target: PgTarget, name: str) -> str | None:
    """Drop ``name``; None when done, else why not (never raises: it runs while cleaning up)."""
    try:
        with session(gw, target, "postgres") as conn:
            _sql(conn, drop_database_sql(name), f"dropping {name}", target.host)
        return None
    except OpsError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the real error
        return f"{type(exc).__name__}: {exc}"


def restore_into(ctx: BackupContext, gw: Gateway, target: PgTarget, m: Manifest, dbname: str,
                 role: str | None) -> None:
    """pg_restore ``m`` into ``dbname``, the object streamed S3 -> here -> SSH -> docker exec -i."""
    with object_stream(ctx, m) as (hashed, plain):
        pipe_into(gw, target.host, pg_restore_argv(target.container, target.user, dbname, role=role), plain)
    check_streamed(m, hashed)


def verify_restored(gw: Gateway, target: PgTarget, dbname: str, m: Manifest) -> list[str]:
    """Row counts (and checksums when recorded) per table and the migration head, against the manifest."""
    with session(gw, target, dbname) as conn:
        counts, sums = dump.table_stats(conn, checksums=bool(m.table_checksums))
        head = dump.migration_head(conn)
    problems = compare_counts(m.table_counts, counts) + compare_checksums(m.table_checksums, sums)
    if (m.newest_migration or None) != (head or None):
        problems.append(f"migration head is {head or '(none)'}, the manifest says {m.newest_migration or '(none)'}")
    return problems


def swap_databases(gw: Gateway, target: PgTarget, db: str, new: str, before: str, *, live: bool) -> None:
    """``db`` -> ``before`` and ``new`` -> ``db`` in one transaction, after closing ``db`` to new
    connections and ending its sessions. On failure ``db`` is reopened, unchanged."""
    host = target.host
    try:
        with session(gw, target, "postgres") as conn:
            if not live:
                _sql(conn, rename_sql(new, db), f"renaming {new} to {db}", host)
                return
            _sql(conn, allow_connections_sql(db, False), f"closing {db} to new connections", host)
            _sql(conn, terminate_sql(db), f"ending the sessions on {db}", host)
            with conn.transaction():
                _sql(conn, rename_sql(db, before), f"renaming {db} to {before}", host)
                _sql(conn, rename_sql(new, db), f"renaming {new} to {db}", host)
            _sql(conn, allow_connections_sql(before, True), f"reopening {before}", host)
        return
    except BaseException:
        # NOTE: a session lost right after COMMIT looks like a failure: look at what is there.
        with contextlib.suppress(Exception):
            names = existing_databases(gw, target, [db, new, before])
            with session(gw, target, "postgres") as conn:
                if live and before in names and new not in names:
                    _sql(conn, allow_connections_sql(before, True), f"reopening {before}", host)
                    return
                if live and db in names:
                    _sql(conn, allow_connections_sql(db, True), f"reopening {db}", host)
        raise


# -- traffic on the web hosts -----------------------------------------------------------
@dataclass
class WebHost:
    """One web host during the swap: what was serving, what was stopped, maintenance on or off."""

    host: Host
    serving: list[str]
    stopped: list[str] = field(default_factory=list)
    maintenance: bool = False


def serving_containers(gw: Gateway, host: Host) -> list[str]:
    return [name for name, _rid, state in switch.web_containers(gw, host) if state == "running"]


def site_status(gw: Gateway, host: Host) -> str:
    url = f"http://127.0.0.1:{gw.env.proxy.port}{gw.env.health.path}"
    res = gw.query(host, ("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-m", "3", url), check=False)
    return res.stdout.strip() or res.stderr.strip()[-80:]


def wait_site(gw: Gateway, host: Host, want: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = site_status(gw, host)
        if got == want:
            return
        if time.monotonic() >= deadline:
            raise HostError(f"the site through nginx answers {got or 'nothing'}, not {want}, after {timeout:g}s",
                            host=host.name)
        time.sleep(switch.HEALTH_POLL)


def enter_maintenance(gw: Gateway, web: WebHost, image: str) -> None:
    """Maintenance container under the app's service name first (it answers 503 + Retry-After),
    then the app containers stopped (SIGTERM: in-flight requests finish; nginx retries refused
    ones on the maintenance container) and taken off the network, so that starting them again
    puts nothing behind nginx before their health check passed."""
    env, host = gw.env, web.host
    layout = Layout(env)
    conf_dir = layout.path("maintenance", "conf.d")
    name = maintenance_container(env)
    gw.run(host, ("mkdir", "-p", conf_dir))
    gw.put(host, maintenance_conf(env.health.port).encode(), f"{conf_dir}/maintenance.conf", mode=0o644)
    gw.run(host, docker.rm_argv(name, force=True), check=False)  # a leftover of an interrupted restore
    web.maintenance = True
    gw.run(host, docker.run_argv(name, image, network=layout.network, network_aliases=(layout.web_service,),
                                 volumes=[(conf_dir, "/etc/nginx/conf.d", "ro")],
                                 labels={"ops.app": env.app, "ops.role": "maintenance"}, restart=None))
    wait_site(gw, host, "503", MAINTENANCE_WAIT)
    # Every nginx worker now knows the maintenance container too: a request to a stopped
    # app's address falls back on it.
    switch.await_dns_caches(gw)
    for container in web.serving:
        web.stopped.append(container)
        switch.take_out_of_service(gw, host, container)


def leave_maintenance(gw: Gateway, web: WebHost, health_timeout: float) -> None:
    """Start what was stopped, health-check it, put it back behind nginx; remove the maintenance
    container whatever happens (a deploy must never find it still answering under the app's name)."""
    host = web.host
    failures: list[OpsError] = []
    try:
        for container in web.stopped:
            gw.run(host, docker.start_argv(container))
            try:
                switch.wait_healthy(gw, host, container, health_timeout)
            except OpsError as exc:
                failures.append(exc)
            # Joined even when unhealthy: the fleet is then as a deploy expects to find it.
            switch.join_service(gw, host, container)
        if web.stopped and not failures:
            wait_site(gw, host, "200", SITE_WAIT)
            # Every worker's DNS cache lists the app before its other peer goes away.
            switch.await_dns_caches(gw)
    finally:
        if web.maintenance:
            gw.run(host, docker.rm_argv(maintenance_container(gw.env), force=True))
            web.maintenance = False
    if failures:
        raise failures[0]
    if web.stopped:
        wait_site(gw, host, "200", SITE_WAIT)


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
    checked_seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def manifest(self) -> Manifest:
        return self.entry.manifest

    def lines(self) -> list[str]:
        m, t, live = self.manifest, self.target, self.live
        rows = sum(m.table_counts.values())
        before = (self.at - m.finished_at).total_seconds()
        out = [
            f"restore plan for {self.env.name}, to {format_utc(self.at)}:",
            f"  backup     {m.id}, finished {format_utc(m.finished_at)} ({human_age(before)} before the target)",
            f"  object     s3://{self.env.s3.bucket}/{m.object_key}, {human_bytes(m.size)}"
            f"{', encrypted' if m.encrypted else ''}; sha256 {m.sha256[:16]}... checked just now "
            f"({self.checked_seconds:.1f}s)",
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


def prepare_db(ctx: BackupContext, gw: Gateway, at_text: str, *, now: datetime | None = None) -> DbPlan:
    """Everything before any change: the backup chosen, its object checked, the live state read."""
    env = ctx.env
    now = now or audit.utcnow()
    at = parse_at(at_text, now=now)
    listing = list_backups(env, ctx.client, kind="db")
    entry = find_at(listing, at, "db")
    m = entry.manifest
    warnings = [w for w in listing.warnings if m.id in w]
    target = dump.pg_target(env, ctx.app_values())
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
    checked = check_object(ctx, m)
    return DbPlan(env, at, entry, target, live, new_db, before_db, role, free,
                  {h.name: serving.ok[h.name] for h in webs}, checked, warnings)


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


# -- database restore: apply ------------------------------------------------------------
@dataclass
class DbResult:
    backup: str
    database: str
    before_db: str | None
    safety_backup: str | None
    restore_seconds: float
    downtime_seconds: float
    total_seconds: float
    hosts: list[str]
    drop_hint: str = ""
    warnings: list[str] = field(default_factory=list)


def restore_db(ctx: BackupContext, gw: Gateway, plan: DbPlan, *, say: Say = _quiet, lock_wait: float = 0.0,
               health_timeout: float | None = None, safety_backup: bool = True) -> DbResult:
    """Apply ``plan`` (see the module docstring for the order and what each failure leaves)."""
    env, m = ctx.env, plan.manifest
    t0 = time.monotonic()
    safety = None
    hosts = list(env.hosts.values())
    with EnvironmentLock(gw, hosts, Holder("restore", m.id), wait=lock_wait):
        if safety_backup and plan.live is not None:
            # Under our lock: no deploy or other restore can run between it and the swap.
            say(f"safety backup of {plan.target.dbname} ...")
            try:
                safety = dump.backup_db(ctx, gw, lock=False)
            except OpsError as exc:
                raise RestoreFailed(f"the safety backup failed, so nothing was restored or changed: {exc}") from None
            try:
                safety.extra["reason"] = SAFETY_REASON
                safety.extra["restore_of"] = m.id
                ctx.put_manifest(safety)
            except OpsError as exc:
                plan.warnings.append(f"safety backup {safety.id} could not be marked as such: {exc}")
            say(f"  safety backup {safety.id} ({human_bytes(safety.size)})")
        detail = f"{m.id} (finished {format_utc(m.finished_at)}) into {plan.target.dbname}" + (
            f"; safety backup {safety.id}" if safety else "")
        ctx.audit(gw, "restore", "started", detail, version=m.id)
        try:
            result = _restore_locked(ctx, gw, plan, say, health_timeout or env.health.timeout)
        except BaseException as exc:
            with shielded_from_ctrl_c(say):
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                ctx.audit(gw, "restore", "failed", f"{m.id}: {why}", version=m.id)
            raise
        result.safety_backup = safety.id if safety else None
        result.total_seconds = time.monotonic() - t0
        ctx.audit(gw, "restore", "ok", f"{detail}; previous database kept as {result.before_db}; "
                                       f"downtime {result.downtime_seconds:.1f}s", version=m.id)
    result.warnings = plan.warnings
    return result


def _restore_locked(ctx: BackupContext, gw: Gateway, plan: DbPlan, say: Say, health_timeout: float) -> DbResult:
    env, m, target = ctx.env, plan.manifest, plan.target
    db, new, before = target.dbname, plan.new_db, plan.before_db
    # Under the lock, as things are now (a deploy may have run since the plan was made).
    live = live_database(gw, target) is not None
    if live != (plan.live is not None):
        raise RestoreFailed(f"database {db} {'appeared' if live else 'disappeared'} since the plan was made",
                            hint="run the restore again")

    # 1. a new database, restored and checked while the live one keeps serving
    t = time.monotonic()
    say(f"restoring {m.id} into {new} on {target.host.name} (streamed from S3; {db} keeps serving)")
    create_database(gw, target, new, plan.live)
    try:
        restore_into(ctx, gw, target, m, new, plan.role)
        say(f"  pg_restore done in {time.monotonic() - t:.1f}s; checking it against the manifest")
        problems = verify_restored(gw, target, new, m)
        if problems:
            raise RestoreFailed(f"the restored copy does not match backup {m.id}'s manifest: "
                                + "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""),
                                hint="try an older backup; run inv backup.verify on this one")
    except BaseException as exc:
        with shielded_from_ctrl_c(say):
            left = drop_database(gw, target, new)
        fate = f"{new} dropped" if left is None else f"could not drop {new} ({left}): drop it by hand"
        if isinstance(exc, OpsError):
            raise RestoreFailed(f"restore of {m.id} failed before anything was switched: {exc} — {db} was not "
                                f"touched and still serves; {fate}", hint=None) from None
        say(f"interrupted: {db} was not touched and still serves; {fate}")
        raise
    restore_seconds = time.monotonic() - t

    # 2. traffic off, swap, traffic back
    webs = [WebHost(h, serving_containers(gw, h)) for h in env.with_roles("web")]
    webs = [w for w in webs if w.serving]
    image = service_ref(env, env.proxy.image)
    error: BaseException | None = None
    swapped = False
    t = time.monotonic()
    try:
        if webs:
            say(f"stopping traffic on {', '.join(w.host.name for w in webs)} (maintenance page, app stopped)")
            entered = gw.map(lambda h: enter_maintenance(gw, _web(webs, h), image), [w.host for w in webs])
            entered.raise_if_failed("stopping traffic")
        say(f"swapping: {db} -> {before}, {new} -> {db}")
        swap_databases(gw, target, db, new, before, live=live)
        swapped = True
    except BaseException as exc:
        error = exc
    with shielded_from_ctrl_c(say):
        left = None if swapped else drop_database(gw, target, new)
        if webs:
            say(f"bringing the app back on {', '.join(w.host.name for w in webs)}")
        back = gw.map(lambda h: leave_maintenance(gw, _web(webs, h), health_timeout), [w.host for w in webs])
    downtime = time.monotonic() - t
    if error is not None:
        fate = f"{new} dropped" if left is None else f"could not drop {new} ({left}): drop it by hand"
        serving = "and serves again" if not back.failed else (
            "but the app did not come back on " + "; ".join(str(e) for e in back.failed.values()))
        if isinstance(error, KeyboardInterrupt):
            say(f"interrupted: {db} was not replaced {serving}; {fate}")
            raise error
        raise RestoreFailed(f"restore of {m.id} failed while switching: {error} — {db} was not replaced "
                            f"{serving}; {fate}") from None
    if back.failed:
        raise RestoreFailed(
            f"{db} was restored from {m.id} (the previous database is kept as {before}) but the app did not come "
            "back healthy: " + "; ".join(str(e) for e in back.failed.values()),
            hint=(f"if the release needs the newer schema: inv rollback --host {env.name} --to {m.app_release}"
                  if m.app_release else "see inv app logs / RUNBOOK.md 'Restore the database'")
            + f"; to put the previous database back see RUNBOOK.md (it is {before})")
    drop = (f"on {target.host.name}: docker exec {target.container} dropdb --username={target.user} {before}"
            if live else "")
    return DbResult(m.id, db, before if live else None, None, restore_seconds, downtime, 0.0,
                    [w.host.name for w in webs], drop)


def _web(webs: list[WebHost], host: Host) -> WebHost:
    return next(w for w in webs if w.host.name == host.name)


# -- uploads ----------------------------------------------------------------------------
UPLOADS_DATA = "/data"
STATS_RE = re.compile(r"^ops-restore-stats files=(\d+)$", re.MULTILINE)
# Extract into a hidden directory of the volume (the app lists no dot-names); count the files.
# NOTE: `cat` drains what tar leaves unread after its end-of-archive blocks (record padding),
# so the stream is always read to its end and an early exit means a failure.
EXTRACT_SCRIPT = (
    'set -eu; tmp=/data/.restore-"$1"; rm -rf "$tmp"; mkdir "$tmp"; '
    'tar -xzf - -C "$tmp" --numeric-owner; cat >/dev/null; '
    'printf "ops-restore-stats files=%s\\n" "$(find "$tmp" -type f | wc -l)"')
# Move the current entries into .before-restore-<ts>, the restored ones in; renames on one
# filesystem. Half way through a failure puts everything back where it was.
SWAP_SCRIPT = (
    'set -eu; tmp=/data/.restore-"$1"; old=/data/.before-restore-"$1"; test -d "$tmp"; mkdir "$old"; '
    "mvall() { find \"$1\" -mindepth 1 -maxdepth 1 ! -name '.restore-*' ! -name '.before-restore-*' "
    "-exec sh -c 'd=$0; for e; do mv -- \"$e\" \"$d/\" || exit 1; done' \"$2\" {} + ; }; "
    'if mvall /data "$old" && mvall "$tmp" /data; then rm -rf "$tmp"; echo ops-restore-swapped; exit 0; fi; '
    'mvall /data "$tmp" || true; mvall "$old" /data || true; rmdir "$old" || true; exit 1')
CLEANUP_SCRIPT = 'rm -rf /data/.restore-"$1"'


def uploads_argv(env: Environment, image: str, script: str, ts: str, *, stdin: bool = False,
                 name: str | None = None) -> tuple[str, ...]:
    """A one-off root container (owners kept) with the uploads volume at /data, no network."""
    argv = docker.run_argv(name or f"{env.app}-restore-uploads-{ts.replace('_', '-')}", image, network="none",
                           volumes=[(uploads.volume_name(env), UPLOADS_DATA, "")],
                           labels={"ops.app": env.app, "ops.role": "restore"}, restart=None, detach=False,
                           remove=True, entrypoint="sh", user="0", command=["-c", script, "sh", ts],
                           log_driver="none", log_opts=None)
    return (*argv[:2], "-i", *argv[2:]) if stdin else argv


@dataclass
class UploadsPlan:
    env: Environment
    entry: Entry
    hosts: list[Host]
    ts: str
    checked_seconds: float
    how: str

    @property
    def manifest(self) -> Manifest:
        return self.entry.manifest

    def lines(self) -> list[str]:
        m, vol = self.manifest, uploads.volume_name(self.env)
        return [
            f"uploads restore plan for {self.env.name} ({self.how}):",
            f"  backup     {m.id}, finished {format_utc(m.finished_at)}, {m.file_count} files "
            f"({human_bytes(m.source_bytes)} unpacked)",
            f"  object     s3://{self.env.s3.bucket}/{m.object_key}, {human_bytes(m.size)}"
            f"{', encrypted' if m.encrypted else ''}; sha256 checked just now ({self.checked_seconds:.1f}s)",
            f"  1. lock environment {self.env.name}",
            f"  2. on {', '.join(h.name for h in self.hosts)}: extract the archive (streamed from S3) into "
            f"volume {vol} under .restore-{self.ts}/ and check its file count (the live files are not touched)",
            f"  3. move the current files into .before-restore-{self.ts}/ and the restored ones in their place "
            "(renames; the app keeps running)",
            f"  4. keep .before-restore-{self.ts}/ (remove it once sure; the command is printed)",
        ]


def prepare_uploads(ctx: BackupContext, hosts: list[Host], *, at_text: str = "", backup_id: str = "",
                    now: datetime | None = None) -> UploadsPlan:
    env = ctx.env
    now = now or audit.utcnow()
    if bool(at_text) == bool(backup_id):
        raise ConfigError("say which uploads backup: --at TIMESTAMP or --id ID (one of them)",
                          hint=f"ids: inv backup.list --host {env.name}")
    webs = [h for h in hosts if "web" in h.roles]
    if not webs:
        raise ConfigError("no web host selected: the uploads volume lives on the web hosts",
                          hint=f"use --host {env.name} or {env.name}:<web host>")
    listing = list_backups(env, ctx.client, kind="uploads")
    if backup_id:
        entry = get(listing, backup_id)
        how = f"backup {backup_id}"
    else:
        at = parse_at(at_text, now=now)
        entry = find_at(listing, at, "uploads")
        how = f"newest before {format_utc(at)}"
    checked = check_object(ctx, entry.manifest)
    return UploadsPlan(env, entry, webs, stamp(now), checked, how)


@dataclass
class UploadsResult:
    backup: str
    hosts: list[str]
    files: int
    kept: str
    seconds: float
    cleanup_hint: str


def restore_uploads(ctx: BackupContext, gw: Gateway, plan: UploadsPlan, *, say: Say = _quiet,
                    lock_wait: float = 0.0) -> UploadsResult:
    env, m = ctx.env, plan.manifest
    t0 = time.monotonic()
    files, image = 0, ""
    with EnvironmentLock(gw, list(env.hosts.values()), Holder("restore.uploads", m.id), wait=lock_wait):
        ctx.audit(gw, "restore.uploads", "started", f"{m.id} on {', '.join(h.name for h in plan.hosts)}",
                  version=m.id)
        try:
            for host in plan.hosts:
                say(f"{host.name}: extracting {m.id} into {uploads.volume_name(env)}/.restore-{plan.ts}/")
                files, image = _restore_uploads_on(ctx, gw, host, plan)
                say(f"{host.name}: {files} files in place; previous ones in .before-restore-{plan.ts}/")
        except BaseException as exc:
            with shielded_from_ctrl_c(say):
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                ctx.audit(gw, "restore.uploads", "failed", f"{m.id}: {why}", version=m.id)
            raise
        ctx.audit(gw, "restore.uploads", "ok", f"{m.id}: {files} files; previous kept in .before-restore-{plan.ts}",
                  version=m.id)
    hint = (f"on {', '.join(h.name for h in plan.hosts)}: docker run --rm -v {uploads.volume_name(env)}:/data "
            f"--user 0 --entrypoint rm {image} -rf /data/.before-restore-{plan.ts}")
    return UploadsResult(m.id, [h.name for h in plan.hosts], files, f".before-restore-{plan.ts}",
                         time.monotonic() - t0, hint)


def _restore_uploads_on(ctx: BackupContext, gw: Gateway, host: Host, plan: UploadsPlan) -> tuple[int, str]:
    env, m, ts = ctx.env, plan.manifest, plan.ts
    gw.run(host, docker.volume_create_argv(uploads.volume_name(env), labels={"ops.app": env.app}))
    image = uploads.tar_image(gw, host)
    name = f"{env.app}-restore-uploads-{ts.replace('_', '-')}"

    def cleanup() -> None:
        gw.run(host, docker.rm_argv(name, force=True), check=False)
        gw.run(host, uploads_argv(env, image, CLEANUP_SCRIPT, ts, name=name + "-rm"), check=False, timeout=600)

    try:
        with object_stream(ctx, m) as (hashed, plain):
            out = pipe_into(gw, host, uploads_argv(env, image, EXTRACT_SCRIPT, ts, stdin=True, name=name), plain)
        check_streamed(m, hashed)
        found = STATS_RE.findall(out.stdout)
        files = int(found[-1]) if found else None
        if files is None or (m.file_count is not None and files != m.file_count):
            raise RestoreFailed(f"{files if files is not None else 'an unknown number of'} files extracted, the "
                                f"manifest says {m.file_count}", host=host.name)
    except BaseException as exc:
        with shielded_from_ctrl_c(_quiet):
            cleanup()
        if isinstance(exc, OpsError):
            raise RestoreFailed(f"uploads restore of {m.id} failed before anything was switched: {exc} — the "
                                "live files were not touched", host=host.name) from None
        raise
    res = gw.run(host, uploads_argv(env, image, SWAP_SCRIPT, ts, name=name), check=False, timeout=600)
    if not res.ok or "ops-restore-swapped" not in res.stdout:
        with shielded_from_ctrl_c(_quiet):
            cleanup()
        raise RestoreFailed(f"moving the restored files into place failed ({res.stderr.strip()[-200:]}); the "
                            "previous files were put back", host=host.name)
    return files, image


# -- confirmation -----------------------------------------------------------------------
def confirm(env_name: str, question: str, *, ask: Callable[[str], str] = input,
            interactive: Callable[[], bool] | None = None) -> None:
    """Type the environment name, or nothing happens. No terminal: refuse (scripts pass --yes)."""
    import sys

    if not (interactive() if interactive is not None else sys.stdin.isatty()):
        raise ConfigError("not confirmed: no terminal to ask on; nothing was changed",
                          hint="pass --yes to run without asking")
    try:
        answer = ask(f"{question} Type the environment name ({env_name}) to go on: ")
    except EOFError:
        answer = ""
    if answer.strip() != env_name:
        raise ConfigError("not confirmed; nothing was changed", hint=f"type {env_name} exactly, or pass --yes")
