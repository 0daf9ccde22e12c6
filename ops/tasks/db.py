"""``inv db.psql``: a database shell through the gateway, read-only unless --write."""

from __future__ import annotations

import sys

from invoke.exceptions import Exit

from ops import dbshell
from ops.inventory import resolve_target
from ops.remote import Gateway
from ops.tasks import ops_task, say


@ops_task(help={"host": "environment (prod)", "write": "allow writes (default: every transaction is read-only); "
                "takes the environment lock and writes an audit line",
                "command": "run this SQL and exit instead of an interactive session",
                "database": "another database of the same server (default: POSTGRES_DB)"})
def psql(c, host="", write=False, command="", database=""):
    """psql in the Postgres accessory (read-only by default): inv db.psql --host prod [-c SQL] [--write]."""
    target = resolve_target(host)
    with Gateway(target.env) as gw:
        if command:
            res = dbshell.run_sql(gw, command, write=write, dbname=database or None, say=say)
            sys.stdout.write(res.stdout)
            sys.stderr.write(res.stderr)
            status = res.exit_code
        else:
            status = dbshell.session(gw, write=write, dbname=database or None, say=say)
    if status:
        raise Exit(code=status)
