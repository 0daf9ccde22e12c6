"""The database side of a restore: names, SQL, pg_restore, and the steps on the Postgres accessory
(a new database next to the live one, restored and checked, then swapped in by renames)."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from datetime import datetime

import psycopg

from ops.backup.context import BackupContext
from ops.backup.manifest import Manifest
from ops.backup.timeparse import as_utc
from ops.commands import docker
from ops.errors import ConfigError, HostError, OpsError
from ops.inventory import Host
from ops.postgres import PgTarget, migration_head, session, table_stats
from ops.remote import Gateway, pipe_into
from ops.restore.objects import CheckedObject, check_streamed, object_stream
from ops.restore.role import RESTORE_ROLE, ensure_restore_role, hand_over

# Postgres truncates identifiers to 63 bytes (NAMEDATALEN - 1): longer names would collide.
MAX_IDENT = 63
# Milliseconds each remaining session of the live database gets to end after pg_terminate_backend.
TERMINATE_WAIT_MS = 10_000

# The swap runs while the site shows the maintenance page: a statement stuck behind a lock fails
# it (rolled back, the live database reopened) rather than stretching the downtime.
SWAP_TIMEOUTS = {"lock_timeout": 5.0, "statement_timeout": 30.0}


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


def pg_restore_argv(container: str, role: str, dbname: str) -> tuple[str, ...]:
    """pg_restore inside the accessory (local socket, trust) as ``role``, reading the archive on stdin.

    ``role`` is the restore role (``ops.restore.role``), never a superuser: the archive is SQL
    pg_restore runs. ``--exit-on-error``: stop at the first failed statement (by default
    pg_restore carries on and only reports at the end); ``--no-owner``: objects belong to the
    restore role, handed to the app's role afterwards.
    """
    cmd = ["pg_restore", "--no-password", f"--username={role}", f"--dbname={dbname}", "--no-owner",
           "--exit-on-error"]
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
        head = migration_head(conn)
    return LiveDatabase(target.dbname, row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), head)


def existing_databases(gw: Gateway, target: PgTarget, names: list[str]) -> set[str]:
    wanted = ", ".join(literal(n) for n in names)
    with session(gw, target, "postgres") as conn:
        rows = _sql(conn, f"SELECT datname FROM pg_database WHERE datname IN ({wanted})", "listing databases",
                    target.host).fetchall()
    return {r[0] for r in rows}


def create_database(gw: Gateway, target: PgTarget, new: str, live: LiveDatabase | None) -> None:
    """The new database, owned by the restore role until ``hand_over`` (encoding/locale of the live one)."""
    owner = ensure_restore_role(gw, target)
    statement = (create_database_sql(new, dataclasses.replace(live, owner=owner)) if live is not None
                 else f"CREATE DATABASE {ident(new)} WITH TEMPLATE template0 OWNER {ident(owner)}")
    with session(gw, target, "postgres") as conn:
        _sql(conn, statement, f"creating database {new}", target.host)


def drop_database(gw: Gateway, target: PgTarget, name: str) -> str | None:
    """Drop ``name``; None when done, else why not (never raises: it runs while cleaning up)."""
    try:
        # NOTE: the files of a large database take a while to remove: the long timeout.
        with session(gw, target, "postgres", statement_timeout=gw.env.ssh.command_timeout) as conn:
            _sql(conn, drop_database_sql(name), f"dropping {name}", target.host)
        return None
    except OpsError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the real error
        return f"{type(exc).__name__}: {exc}"


def restore_into(ctx: BackupContext, gw: Gateway, target: PgTarget, m: Manifest, dbname: str,
                 role: str | None, checked: CheckedObject, *, db_owner: str | None = None) -> None:
    """pg_restore ``m`` into ``dbname`` as the restore role, the object (exactly the one checked)
    streamed S3 -> here -> SSH -> docker exec -i; then its objects handed to ``role`` (the app's
    database user, else POSTGRES_USER) and the database to ``db_owner``."""
    with object_stream(ctx, m, checked) as (hashed, plain):
        pipe_into(gw, target.host, pg_restore_argv(target.container, RESTORE_ROLE, dbname), plain)
    check_streamed(m, hashed)
    hand_over(gw, target, dbname, owner=role or target.user, db_owner=db_owner or role or target.user)


def verify_restored(gw: Gateway, target: PgTarget, dbname: str, m: Manifest) -> list[str]:
    """Row counts (and checksums when recorded) per table and the migration head, against the manifest."""
    # NOTE: one statement scans a whole table: the long timeout (the backup's counts get the same).
    with session(gw, target, dbname, statement_timeout=gw.env.ssh.command_timeout) as conn:
        counts, sums = table_stats(conn, checksums=bool(m.table_checksums))
        head = migration_head(conn)
    problems = compare_counts(m.table_counts, counts) + compare_checksums(m.table_checksums, sums)
    if (m.newest_migration or None) != (head or None):
        problems.append(f"migration head is {head or '(none)'}, the manifest says {m.newest_migration or '(none)'}")
    return problems


def swap_databases(gw: Gateway, target: PgTarget, db: str, new: str, before: str, *, live: bool) -> None:
    """``db`` -> ``before`` and ``new`` -> ``db`` in one transaction, after closing ``db`` to new
    connections and ending its sessions. On failure ``db`` is reopened, unchanged."""
    host = target.host
    try:
        with session(gw, target, "postgres", **SWAP_TIMEOUTS) as conn:
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
            with session(gw, target, "postgres", **SWAP_TIMEOUTS) as conn:
                if live and before in names and new not in names:
                    _sql(conn, allow_connections_sql(before, True), f"reopening {before}", host)
                    return
                if live and db in names:
                    _sql(conn, allow_connections_sql(db, True), f"reopening {db}", host)
        raise
