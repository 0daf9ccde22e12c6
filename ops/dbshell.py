"""``inv db.psql``: psql in the Postgres accessory's container, through the gateway.

Read-only unless asked: the session starts with ``default_transaction_read_only=on``
(PGOPTIONS), so a stray UPDATE on production fails instead of committing. It is a guard
against accidents, not a permission: ``--write`` lifts it, and a ``--write`` session runs
in the Operation envelope (the environment lock: never beside a restore or a migration;
an audit line says who opened it). psql authenticates inside its container (local trust),
so no password crosses the network or any argv.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ops import postgres
from ops.appenv import load_env_file
from ops.errors import ConfigError
from ops.operation import Operation
from ops.remote import Gateway, RunResult

Say = Callable[[str], None]
READ_ONLY = "-c default_transaction_read_only=on"
DBNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}\Z")


def check_dbname(name: str) -> str:
    if not DBNAME_RE.match(name):
        raise ConfigError(f"--database {name!r} is not a database name", hint="letters, digits, '_' and '-'")
    return name


def target(gw: Gateway) -> postgres.PgTarget:
    env = gw.env
    if env.env_file is None:
        raise ConfigError(f"{env.path.name} sets no env_file: the database credentials are there",
                          hint="set env_file: in the inventory")
    tgt = postgres.pg_target(env, load_env_file(env.env_file))
    gw.mask.add(tgt.password)
    return tgt


def psql_argv(tgt: postgres.PgTarget, *, write: bool, sql: str | None = None, dbname: str | None = None,
              tty: bool = False) -> tuple[str, ...]:
    argv = ["docker", "exec", "-i"] + (["-t"] if tty else [])
    if not write:
        argv += ["-e", f"PGOPTIONS={READ_ONLY}"]
    argv += [tgt.container, "psql", "--no-password", "-X", "-v", "ON_ERROR_STOP=1", f"--username={tgt.user}",
             f"--dbname={check_dbname(dbname or tgt.dbname)}"]
    if sql is not None:
        argv += ["-c", sql]
    return tuple(argv)


def run_sql(gw: Gateway, sql: str, *, write: bool = False, dbname: str | None = None,
            say: Say = lambda _: None) -> RunResult:
    """One statement (or several, ``;``-separated), non-interactive; psql's output and exit code."""
    tgt = target(gw)
    argv = psql_argv(tgt, write=write, sql=sql, dbname=dbname)
    if not write:
        return gw.query(tgt.host, argv, check=False)
    with Operation(gw, "db.psql --write", [tgt.host], say=say, detail=sql[:200]):
        return gw.run(tgt.host, argv, check=False)


def session(gw: Gateway, *, write: bool = False, dbname: str | None = None, say: Say = lambda _: None) -> int:
    """An interactive psql on this terminal; its exit status."""
    from ops.terminal import interactive

    tgt = target(gw)
    argv = psql_argv(tgt, write=write, dbname=dbname, tty=True)
    if not write:
        return interactive(gw, tgt.host, argv)
    with Operation(gw, "db.psql --write", [tgt.host], say=say, detail="interactive session"):
        return interactive(gw, tgt.host, argv)


__all__ = ["READ_ONLY", "psql_argv", "run_sql", "session", "target"]
