"""``inv backup.db``: ``pg_dump -Fc`` next to the database, streamed over SSH into S3.

What happens, in order (every step under the environment lock):

1. the release serving on the first web host is read (for the manifest);
2. a psycopg session to the Postgres accessory (through an SSH forward via its
   host) opens a ``REPEATABLE READ READ ONLY`` transaction and exports its
   snapshot; in that snapshot it reads the server version and the newest applied
   Prisma migration;
3. ``docker exec <accessory> pg_dump -Fc --snapshot=<that snapshot>`` runs inside
   the accessory container (local trust auth: no password anywhere in argv); while
   it runs, the same session counts each table's rows (and sums a per-row hash,
   unless ``--no-checksums``) in that same snapshot, so the manifest describes
   exactly the data that was dumped;
4. its stdout is read off the SSH channel straight into ``upload_stream`` (S3
   multipart, SHA-256 while streaming): no temp file on either side, memory bounded
   by the part size;
5. the multipart upload only completes once pg_dump has exited 0 (the reader
   checks the exit status at EOF, *inside* the upload): any failure — pg_dump
   error, SSH cut, S3 error, Ctrl-C — aborts the multipart upload, terminates the
   remote dump, and no manifest is written;
6. the manifest is written last. A backup without a manifest does not exist.

Only the Postgres accessory is supported as the source: an external database
(no ``postgres`` accessory in the inventory) is refused with a clear error.

Helpers shared by the backup tasks (``BackupContext``: env files, S3 client,
passphrase, audit) live here too, next to their first user.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from ops import __version__, accessory, audit, s3
from ops.appenv import load_env_file, secret_values
from ops.backup import crypto, manifest
from ops.backup.stream_upload import upload_stream
from ops.commands import Argv, docker, render
from ops.db import DatabaseURL, connect_via
from ops.deploy.release import current_release_id
from ops.errors import ConfigError, OpsError
from ops.inventory import Environment, Host
from ops.lock import EnvironmentLock, Holder
from ops.masking import Masker
from ops.opsenv import operator_value
from ops.remote import Gateway, RemoteStream
from ops.table import human_bytes

Say = Callable[[str], None]

# Per-table checksum: the sum over rows of hashtextextended(row::text, 0) (64-bit), in
# numeric. Order-independent, so one sequential scan and O(1) memory (an ordered
# string_agg would sort every table and hit the 1 GB value limit). hashtextextended is
# what hash partitioning uses, so PostgreSQL keeps it stable across major versions.
# Measured on 2M pgbench rows: count(*) 0.13 s, row::text 1.7 s, + this hash 2.2 s
# (md5 of the text: 4.6 s). It runs in a thread while pg_dump streams (same snapshot).
CHECKSUM_SCHEME = "hashtext64"
# Row text depends on these settings (timestamptz, floats, bytea): pin them so the
# counts taken at backup time and at verify time render rows identically.
SESSION_SETTINGS = ("SET TimeZone = 'UTC'", "SET DateStyle = 'ISO, YMD'", "SET IntervalStyle = 'postgres'",
                    "SET extra_float_digits = 1", "SET bytea_output = 'hex'")
APPLICATION_PREFIX = "ops-backup-"


class BackupFailed(OpsError):
    """The backup did not complete; nothing was kept (no manifest)."""


def _quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------- context (shared)


@dataclass
class BackupContext:
    """What every backup task needs: the environment, its secrets (masked), the S3 client."""

    env: Environment
    say: Say = _quiet
    masker: Masker = field(default_factory=Masker)
    client: object | None = None
    _app_values: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.env.s3 is None:
            raise ConfigError(f"no s3 section in {self.env.path.name}: backups need a bucket",
                              hint="add s3: {bucket: ..., region: ...} to the inventory")
        if self.client is None:
            self.client = s3.client(self.env)

    @property
    def bucket(self) -> str:
        return self.env.s3.bucket

    def app_values(self) -> dict[str, str]:
        """The app's env file (POSTGRES_*), secrets registered with the masker."""
        if self._app_values is None:
            if self.env.env_file is None:
                raise ConfigError(f"{self.env.path.name} sets no env_file: the database credentials are there",
                                  hint="set env_file: in the inventory")
            self._app_values = load_env_file(self.env.env_file)
            self.masker.add(*secret_values(self._app_values), *accessory.secret_values(self._app_values))
        return self._app_values

    def passphrase(self) -> str | None:
        """The client-side encryption passphrase (None: encryption off): the variable named by
        ``backup.encryption_key_var``, from ``ops_env_file`` or the process environment."""
        var = self.env.backup.encryption_key_var
        if not var:
            return None
        value = operator_value(self.env, var)
        if not value:
            where = str(self.env.ops_env_file) if self.env.ops_env_file else "the environment (no ops_env_file set)"
            raise ConfigError(f"{var} is not set in {where}: backups of {self.env.name} are configured to be "
                              "client-side encrypted with it (backup.encryption_key_var)",
                              hint=f"add {var}=<long random passphrase> to the ops env file (chmod 600), and keep "
                                   "a copy offline: without it no backup can be restored")
        self.masker.add(value)
        return value

    def audit(self, gw: Gateway, action: str, outcome: str, detail: str, hosts: list[Host] | None = None,
              version: str | None = None) -> None:
        event = audit.AuditEvent(env=self.env.name, action=action, outcome=outcome, version=version,
                                 detail=self.masker(detail),
                                 hosts=[h.name for h in (hosts or list(self.env.hosts.values()))])
        for warning in audit.record(gw, event, hosts or list(self.env.hosts.values()),
                                    central=audit.central_copy(self.env)):
            self.say(f"warning: {warning}")

    def put_manifest(self, m: manifest.Manifest, *, new_backup: bool = False) -> None:
        """Write (or rewrite) ``m`` next to its data. For a ``new_backup`` that fails here, the data
        object is removed too: without its manifest it would only be an orphan."""
        extra = {"ServerSideEncryption": self.env.s3.sse} if self.env.s3.sse else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=manifest.manifest_key(m.object_key), Body=m.to_json(),
                                   ContentType="application/json", **extra)
        except (BotoCoreError, ClientError) as exc:
            if new_backup:
                with contextlib.suppress(BotoCoreError, ClientError):
                    self.client.delete_object(Bucket=self.bucket, Key=m.object_key)
            raise self.s3_error(f"writing the manifest of {m.id}" + (" (data removed)" if new_backup else ""),
                                exc) from None

    def s3_error(self, what: str, exc: Exception) -> BackupFailed:
        return BackupFailed(f"{what}: S3 error: {self.masker(str(exc))}",
                            hint=f"check the bucket {self.bucket}, the endpoint and the credentials")


# ---------------------------------------------------------------- where Postgres runs


@dataclass(frozen=True)
class PgTarget:
    """The Postgres accessory: where pg_dump runs and how the operator's session reaches it."""

    host: Host
    container: str
    user: str
    dbname: str
    password: str = field(repr=False)  # only for the psycopg session (SCRAM over the SSH forward)
    address: str = "127.0.0.1"         # where the accessory listens, as seen from its host
    port: int = 5432

    def url(self, dbname: str | None = None) -> DatabaseURL:
        return DatabaseURL(self.user, self.password, self.address, self.port, dbname or self.dbname)


def pg_target(env: Environment, values: dict[str, str]) -> PgTarget:
    acc = env.accessories.get("postgres")
    if acc is None:
        raise ConfigError(f"{env.path.name} has no postgres accessory: backup.db only dumps the Postgres "
                          "accessory (pg_dump runs inside its container)",
                          hint="an external database is not supported yet; dump it with pg_dump -Fc from a "
                               "host that reaches it")
    missing = [n for n in ("POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD") if not values.get(n)]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not set in {env.env_file}: backup.db dumps POSTGRES_DB as "
                          "POSTGRES_USER", hint=f"add {' and '.join(m + '=...' for m in missing)}")
    host = env.hosts[acc.host]
    try:
        address = str(ipaddress.ip_address(host.private_address)) if host.private_address else "127.0.0.1"
    except ValueError:
        address = "127.0.0.1"
    return PgTarget(host=host, container=accessory.container_name(env, acc), user=values["POSTGRES_USER"],
                    dbname=values["POSTGRES_DB"], password=values["POSTGRES_PASSWORD"], address=address,
                    port=acc.port)


def conninfo_value(value: str) -> str:
    """A libpq connection-string value: bare when plain, else quoted (names may hold spaces, quotes)."""
    if re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pg_dump_argv(target: PgTarget, *, snapshot: str | None, application_name: str) -> Argv:
    """``pg_dump -Fc`` inside the accessory container, as POSTGRES_USER over the local socket.

    ``application_name`` tags the session so a failed backup can terminate it by name.
    """
    conninfo = f"dbname={conninfo_value(target.dbname)} application_name={conninfo_value(application_name)}"
    return docker.exec_argv(target.container, "pg_dump", "--format=custom", "--no-password",
                            f"--username={target.user}", *((f"--snapshot={snapshot}",) if snapshot else ()),
                            f"--dbname={conninfo}")


def psql_argv(target: PgTarget, query: str, *, dbname: str = "postgres") -> Argv:
    """One SQL statement through psql in the accessory container (local trust, no password)."""
    return docker.exec_argv(target.container, "psql", "--no-password", "-X", "-q", "-A", "-t",
                            "-v", "ON_ERROR_STOP=1", f"--username={target.user}", f"--dbname={dbname}",
                            "-c", query)


def terminate_argv(target: PgTarget, application_name: str) -> Argv:
    """End the server sessions of a backup we gave up on: pg_dump's (it may otherwise sit blocked,
    holding locks) and the one counting rows in its snapshot."""
    name = application_name.replace("'", "''")
    return psql_argv(target, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             f"WHERE application_name = '{name}' AND pid <> pg_backend_pid()")


@contextlib.contextmanager
def session(gw: Gateway, target: PgTarget, dbname: str | None = None):
    """A psycopg connection (autocommit) to the accessory through its host, settings pinned."""
    with connect_via(gw, target.host, target.url(dbname)) as conn:
        for statement in SESSION_SETTINGS:
            conn.execute(statement)
        try:
            yield conn
        except BaseException:
            # NOTE: closed here, psycopg skips its rollback on exit, which on a link that died
            # with the SSH connection only logs a confusing second error.
            conn.close()
            raise


# ---------------------------------------------------------------- what the manifest records


def list_tables(conn) -> list[tuple[str, str]]:
    """Ordinary tables (partitions included, partitioned parents not: no double counting), outside
    system schemas; extension member tables are left out (pg_dump does not dump their rows)."""
    return [tuple(row) for row in conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
        "AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1, 2").fetchall()]


def table_stats(conn, *, checksums: bool) -> tuple[dict[str, int], dict[str, str]]:
    """Per ``schema.table``: row count, and a ``hashtext64:<n>`` checksum when asked (one scan per table)."""
    counts: dict[str, int] = {}
    sums: dict[str, str] = {}
    for schema, name in list_tables(conn):
        key = f"{schema}.{name}"
        table = sql.Identifier(schema, name)
        if checksums:
            n, total = conn.execute(sql.SQL(
                "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)::numeric), 0) FROM {} AS t"
            ).format(table)).fetchone()
            sums[key] = f"{CHECKSUM_SCHEME}:{total}"
        else:
            n = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]
        counts[key] = int(n)
    return counts, sums


def migration_head(conn) -> str | None:
    """The newest applied (finished, not rolled back) Prisma migration; None without Prisma."""
    if not conn.execute("SELECT to_regclass('_prisma_migrations') IS NOT NULL").fetchone()[0]:
        return None
    row = conn.execute("SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL "
                       "AND rolled_back_at IS NULL ORDER BY migration_name DESC LIMIT 1").fetchone()
    return row[0] if row else None


@dataclass
class Snapshot:
    """What was read in the exported snapshot the dump then uses."""

    id: str
    server_version: str
    migration: str | None
    database_bytes: int


def open_snapshot(conn) -> Snapshot:
    """Open the transaction whose snapshot pg_dump will share, and read the quick facts in it.

    The caller keeps ``conn`` (and so the transaction) open until pg_dump has finished;
    row counts are read in the same transaction (``table_stats``) while pg_dump runs.
    """
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    snap = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
    version = conn.execute("SHOW server_version").fetchone()[0]
    size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return Snapshot(snap, version, migration_head(conn), int(size))


class Background:
    """``fn(*args)`` in a daemon thread: a stuck call can never keep the process from exiting."""

    def __init__(self, fn, *args, **kwargs):
        self._value = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to result()
                self._error = exc

        self._thread = threading.Thread(target=run, daemon=True, name="ops-background")
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def result(self, timeout: float | None = None):
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"still running after {timeout:g}s")
        if self._error is not None:
            raise self._error
        return self._value


# ---------------------------------------------------------------- the stream


class ExitCheckedStream(io.RawIOBase):
    """A remote command's stdout that, at EOF, waits for its exit status and raises if non-zero.

    Read by ``upload_stream``: a failed pg_dump raises *inside* the upload, which then
    aborts instead of completing a truncated object.
    """

    def __init__(self, stream: RemoteStream):
        super().__init__()
        self.stream = stream
        self.finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.stream.readinto(buffer)
        if n == 0 and not self.finished:
            self.finished = True
            self.stream.finish()
        return n


def failure_message(what: str, exc: BaseException, stderr: str, masker: Masker) -> str:
    """One line (or two): what failed, why, and the command's last stderr line if not already said."""
    reason = masker(str(exc)) if isinstance(exc, OpsError) else masker(f"{type(exc).__name__}: {exc}")
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if last and last not in reason:
        reason = f"{reason}; stderr: {last}"
    return f"{what} failed: {reason}"


def stream_to_s3(ctx: BackupContext, gw: Gateway, host: Host, command, key: str, *, what: str,
                 expected_size: int | None = None, part_size: int | None = None,
                 encryptor=None, on_failure: Callable[[], None] | None = None):
    """Run ``command`` on ``host`` and upload its stdout to ``key``; complete only on exit 0.

    Returns (UploadResult, stderr). On any failure the multipart upload is aborted (by
    ``upload_stream``), ``on_failure`` runs (best effort), and ``BackupFailed`` is raised
    with the command's stderr.
    """
    stream = gw.stream(host, command)
    try:
        result = upload_stream(ctx.client, ctx.bucket, key, ExitCheckedStream(stream), part_size=part_size,
                               expected_size=expected_size, sse=ctx.env.s3.sse, encryptor=encryptor)
    except BaseException as exc:
        stream.channel.close()
        if on_failure is not None:
            with contextlib.suppress(Exception):
                on_failure()
        stream._drain.join(timeout=2)  # noqa: SLF001 - the stderr tail, for the message
        if isinstance(exc, KeyboardInterrupt):
            raise
        if isinstance(exc, OpsError | BotoCoreError | ClientError | OSError):
            prefix = "S3 upload" if isinstance(exc, BotoCoreError | ClientError) else what
            raise BackupFailed(failure_message(prefix, exc, stream.stderr, ctx.masker),
                               host=None if isinstance(exc, OpsError) else host.name,
                               hint="the multipart upload was aborted and no manifest written: "
                                    "nothing of this attempt is kept") from None
        raise
    return result, stream.stderr


# ---------------------------------------------------------------- backup.db


def plan_db(ctx: BackupContext, *, checksums: bool) -> list[str]:
    """What ``backup.db`` would do (``--dry-run``): nothing is contacted."""
    env = ctx.env
    target = pg_target(env, ctx.app_values())
    started = audit.utcnow()
    backup_id = manifest.new_backup_id("db", started)
    encrypted = bool(ctx.passphrase())
    key = manifest.data_key(env, "db", backup_id, started, manifest.extension("db", encrypted=encrypted))
    dump = render(pg_dump_argv(target, snapshot="<exported snapshot>",
                               application_name=APPLICATION_PREFIX + backup_id))
    return [
        f"lock environment {env.name} on {', '.join(env.hosts)} (backup.db)",
        f"{target.host.name}: read the release on {env.with_roles('web')[0].name if env.with_roles('web') else '-'}",
        f"{target.host.name}: open a REPEATABLE READ snapshot of {target.dbname} (via an SSH forward); read the "
        f"server version, the newest Prisma migration, row counts{' and checksums' if checksums else ''} per table",
        f"{target.host.name}$ {ctx.masker(dump)}",
        f"  stdout -> s3://{ctx.bucket}/{key} (multipart, sha256 while streaming"
        f"{', client-side encrypted' if encrypted else ''})",
        f"  then s3://{ctx.bucket}/{manifest.manifest_key(key)} (written last)",
        f"audit line on {', '.join(env.hosts)}",
    ]


def backup_db(ctx: BackupContext, gw: Gateway, *, checksums: bool = True, part_size: int | None = None,
              lock_wait: float = 0.0, lock: bool = True) -> manifest.Manifest:
    """Dump the Postgres accessory to S3; return the manifest (written last).

    ``lock=False``: the caller already holds the environment lock (a restore's
    safety backup runs under the restore's own lock).
    """
    env = ctx.env
    target = pg_target(env, ctx.app_values())
    passphrase = ctx.passphrase()
    started = audit.utcnow()
    backup_id = manifest.new_backup_id("db", started)
    key = manifest.data_key(env, "db", backup_id, started, manifest.extension("db", encrypted=bool(passphrase)))
    appname = APPLICATION_PREFIX + backup_id
    webs = env.with_roles("web")
    hosts = list(env.hosts.values())
    try:
        with (EnvironmentLock(gw, hosts, Holder("backup.db", backup_id), wait=lock_wait) if lock
              else contextlib.nullcontext()):
            release = current_release_id(gw, webs[0]) if webs else None
            ctx.say(f"{target.host.name}: snapshot of {target.dbname}: reading versions and row counts")
            with session(gw, target) as conn:
                conn.execute(sql.SQL("SET application_name = {}").format(sql.Literal(appname)))
                snap = open_snapshot(conn)
                ctx.say(f"{target.host.name}: pg_dump -Fc {target.dbname} ({human_bytes(snap.database_bytes)} on disk) "
                        f"-> s3://{ctx.bucket}/{key}; row counts{' and checksums' if checksums else ''} meanwhile")
                encryptor = crypto.encryptor(passphrase) if passphrase else None
                # NOTE: counts (and checksums) read the same snapshot as pg_dump, in parallel with it:
                # the backup takes max(dump, counts), not their sum.
                stats = Background(table_stats, conn, checksums=checksums)
                try:
                    result, _ = stream_to_s3(
                        ctx, gw, target.host, pg_dump_argv(target, snapshot=snap.id, application_name=appname),
                        key, what="pg_dump", expected_size=snap.database_bytes, part_size=part_size,
                        encryptor=encryptor,
                        on_failure=lambda: gw.run(target.host, terminate_argv(target, appname), check=False,
                                                  timeout=30))
                except BaseException:
                    # on_failure terminated every session named appname, the counting one included:
                    # it ends at once instead of scanning on for nothing.
                    stats.join(timeout=30)
                    raise
                try:
                    counts, sums = stats.result(timeout=ctx.env.ssh.command_timeout)
                except (psycopg.Error, OSError, TimeoutError) as exc:
                    with contextlib.suppress(BotoCoreError, ClientError):
                        ctx.client.delete_object(Bucket=ctx.bucket, Key=key)
                    reason = ctx.masker(str(exc) or type(exc).__name__).strip().splitlines()[-1]
                    raise BackupFailed(f"reading row counts in the backup's snapshot failed: {reason}",
                                       host=target.host.name,
                                       hint="the dumped object was removed; no manifest written") from None
                conn.execute("COMMIT")
            m = manifest.Manifest(
                id=backup_id, kind="db", env=env.name, object_key=key, size=result.size, sha256=result.sha256,
                started_at=started, finished_at=audit.utcnow(), tool_version=__version__,
                encryption=encryptor.info if encryptor is not None else None,
                database=target.dbname, server_version=snap.server_version, newest_migration=snap.migration,
                app_release=release, table_counts=counts, table_checksums=sums,
            )
            ctx.put_manifest(m, new_backup=True)
    except OpsError as exc:
        ctx.audit(gw, "backup.db", "failed", f"{backup_id}: {exc}")
        raise
    ctx.audit(gw, "backup.db", "ok", f"{backup_id} {m.size} bytes sha256 {m.sha256[:12]} key {key}",
              version=release)
    return m


__all__ = ["BackupContext", "BackupFailed", "CHECKSUM_SCHEME", "PgTarget", "backup_db", "pg_dump_argv",
           "pg_target", "plan_db", "session", "table_stats", "migration_head"]
