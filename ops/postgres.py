"""Talking to PostgreSQL from the operator's machine, through a host: connections, the Postgres
accessory as a target, and the queries the backups record (table stats, migration head, snapshots).

The database usually listens on a private address only; we reach it through an
SSH local forward via a host that can (a web host, or the db host itself).

Every connection is bounded so that nothing waits forever on a dead link or a stuck
statement: a connect timeout, TCP keepalives, and a ``statement_timeout`` (60 s unless
the caller asks for another, e.g. a long one for a full-table scan, a short one plus a
``lock_timeout`` for the restore's swap), passed as connection options.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

from ops import accessory
from ops.commands import Argv, docker
from ops.errors import ConfigError, HostError
from ops.inventory import Environment, Host
from ops.remote import Gateway

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
CONNECT_TIMEOUT = 10  # seconds (libpq's connect_timeout is whole seconds)
# A link that dies silently (host gone, NAT dropped) is noticed within 15 + 5 * 3 s.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 15, "keepalives_interval": 5, "keepalives_count": 3}
STATEMENT_TIMEOUT = 60.0  # seconds, unless the caller passes another


@dataclass(frozen=True)
class DatabaseURL:
    user: str
    password: str
    host: str
    port: int
    dbname: str

    @classmethod
    def parse(cls, url: str) -> DatabaseURL:
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname or not parts.path.strip("/"):
            raise ConfigError("DATABASE_URL is not a postgresql://user:password@host:port/db URL",
                              hint="fix DATABASE_URL in the env file")
        return cls(unquote(parts.username or ""), unquote(parts.password or ""), parts.hostname,
                   parts.port or 5432, unquote(parts.path.strip("/")))


def _ms(seconds: float, what: str) -> int:
    ms = int(round(float(seconds) * 1000))
    if ms <= 0:
        raise ConfigError(f"{what} must be a positive number of seconds, not {seconds!r}")
    return ms


def connect_kwargs(port: int, url: DatabaseURL, *, dbname: str | None = None,
                   statement_timeout: float = STATEMENT_TIMEOUT, lock_timeout: float | None = None) -> dict:
    """psycopg.connect's arguments for ``url`` reached on local ``port``: autocommit, a connect timeout,
    TCP keepalives, and the statement (and lock) timeout as server options for the whole session."""
    options = f"-c statement_timeout={_ms(statement_timeout, 'statement_timeout')}"
    if lock_timeout is not None:
        options += f" -c lock_timeout={_ms(lock_timeout, 'lock_timeout')}"
    return dict(host="127.0.0.1", port=port, user=url.user, password=url.password, dbname=dbname or url.dbname,
                connect_timeout=CONNECT_TIMEOUT, **KEEPALIVES, options=options, autocommit=True)


@contextlib.contextmanager
def connect_via(gw: Gateway, host: Host, url: DatabaseURL, *, dbname: str | None = None,
                statement_timeout: float = STATEMENT_TIMEOUT, lock_timeout: float | None = None):
    """A psycopg connection to the app's database, tunnelled through ``host``."""
    with gw.forward_local(host, remote_host=url.host, remote_port=url.port) as port:
        try:
            conn = psycopg.connect(**connect_kwargs(port, url, dbname=dbname, statement_timeout=statement_timeout,
                                                    lock_timeout=lock_timeout))
        except psycopg.OperationalError as exc:
            raise HostError(f"cannot connect to the database {url.host}:{url.port}/{url.dbname} "
                            f"via {host.name}: {gw.mask(str(exc)).strip().splitlines()[-1]}",
                            host=host.name, hint="is the database up? inv accessory.status") from None
        with conn:
            yield conn


def applied_migrations(conn) -> list[dict]:
    """Rows of Prisma's ``_prisma_migrations`` (empty when Prisma never ran)."""
    exists = conn.execute("SELECT to_regclass('public._prisma_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return []
    cur = conn.execute(
        "SELECT migration_name, checksum, started_at, finished_at, rolled_back_at, applied_steps_count "
        "FROM _prisma_migrations ORDER BY started_at, migration_name")
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


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
def session(gw: Gateway, target: PgTarget, dbname: str | None = None, *,
            statement_timeout: float = STATEMENT_TIMEOUT, lock_timeout: float | None = None):
    """A psycopg connection (autocommit) to the accessory through its host, settings pinned."""
    with connect_via(gw, target.host, target.url(dbname), statement_timeout=statement_timeout,
                     lock_timeout=lock_timeout) as conn:
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
