"""The role pg_restore runs as: never a superuser.

A backup archive is SQL that pg_restore executes. Run as the Postgres superuser, a crafted
archive can do anything the server's OS user can (``COPY ... FROM PROGRAM``, untrusted
languages, ``ALTER SYSTEM``), and it could ``RESET ROLE`` out of any ``--role``. So restores
and drills connect as ``ops_restore``: LOGIN, NOSUPERUSER, no CREATEDB/CREATEROLE/REPLICATION,
member of nothing; it owns the new (empty) database it restores into, which is all it needs
for what an application's dump contains (tables, sequences, indexes, trusted extensions).
Afterwards, as the superuser, everything it owns in that database is handed to the app's role
(``REASSIGN OWNED``) and the database to the live database's owner.

The accessory's local socket trusts every role (the official image's default and ours), so
no password is involved.
"""

from __future__ import annotations

import psycopg

from ops.errors import HostError
from ops.postgres import PgTarget, session
from ops.remote import Gateway

RESTORE_ROLE = "ops_restore"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_role_sql(role: str = RESTORE_ROLE) -> str:
    # NOTE: not NOINHERIT: the owner of a database reaches its public schema through the implicit
    # pg_database_owner membership, which NOINHERIT would cut.
    return f"CREATE ROLE {_ident(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"


def harden_role_sql(role: str = RESTORE_ROLE) -> str:
    # NOTE: whoever made it a superuser since, it is not one while a restore runs.
    return f"ALTER ROLE {_ident(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"


def hand_over_sql(role: str, owner: str) -> str:
    """In the restored database: every object of the restore role to ``owner`` (the app's role)."""
    return f"REASSIGN OWNED BY {_ident(role)} TO {_ident(owner)}"


def ensure_restore_role(gw: Gateway, target: PgTarget, role: str = RESTORE_ROLE) -> str:
    """Create (or re-harden) the restore role; its name."""
    host = target.host
    try:
        with session(gw, target, "postgres") as conn:
            row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if row is None:
                try:
                    conn.execute(create_role_sql(role))
                except psycopg.errors.DuplicateObject:
                    pass  # a drill created it at the same moment
            conn.execute(harden_role_sql(role))
            # A member of another role could SET ROLE to it: it must be a member of nothing.
            members = conn.execute("SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                                   "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s", (role,)).fetchall()
            for (granted,) in members:
                conn.execute(f"REVOKE {_ident(granted)} FROM {_ident(role)}")
    except psycopg.Error as exc:
        raise HostError(f"preparing the restore role {role} failed: {str(exc).strip().splitlines()[0]}",
                        host=host.name) from None
    return role


def hand_over(gw: Gateway, target: PgTarget, dbname: str, *, owner: str, db_owner: str,
              role: str = RESTORE_ROLE) -> None:
    """After pg_restore: the objects to ``owner``, the database to ``db_owner`` (as the superuser)."""
    try:
        with session(gw, target, dbname, statement_timeout=gw.env.ssh.command_timeout) as conn:
            if owner != role:
                conn.execute(hand_over_sql(role, owner))
            conn.execute(f"ALTER DATABASE {_ident(dbname)} OWNER TO {_ident(db_owner)}")
    except psycopg.Error as exc:
        raise HostError(f"handing {dbname} over to {owner} failed: {str(exc).strip().splitlines()[0]}",
                        host=target.host.name) from None
