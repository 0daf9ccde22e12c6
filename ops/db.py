"""Talking to the app's PostgreSQL from the operator's machine, through a host.

The database usually listens on a private address only; we reach it through an
SSH local forward via a host that can (a web host, or the db host itself).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import psycopg

from ops.errors import ConfigError, HostError
from ops.inventory import Host
from ops.remote import Gateway


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


@contextlib.contextmanager
def connect_via(gw: Gateway, host: Host, url: DatabaseURL, *, dbname: str | None = None):
    """A psycopg connection to the app's database, tunnelled through ``host``."""
    with gw.forward_local(host, remote_host=url.host, remote_port=url.port) as port:
        try:
            conn = psycopg.connect(host="127.0.0.1", port=port, user=url.user, password=url.password,
                                   dbname=dbname or url.dbname, connect_timeout=10, autocommit=True)
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
