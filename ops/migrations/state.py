"""What the database says about migrations, and Prisma's failure states.

- **P3009**: a row of ``_prisma_migrations`` with ``finished_at`` and ``rolled_back_at``
  both NULL is a migration that failed (or is still running). ``prisma migrate deploy``
  refuses to apply anything while one exists; the deploy stops at preflight with the
  recovery steps instead of failing later inside the migrate container.
- **P1002**: Prisma's migrator holds ``pg_advisory_lock(72707369)`` for its whole run;
  another migrator waits for it and gives up after 10 s with P1002. A session holding
  it while no migrate container of ours runs is an orphan (a killed operator, a lost
  SSH session, a migration started by hand): it is named (pid, client, since when).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ops.errors import OpsError

PRISMA_ADVISORY_LOCK = 72707369
# ``pg_advisory_lock(bigint)`` shows in pg_locks as classid = high 32 bits, objid = low 32 bits, objsubid = 1.
_LOCK_HOLDERS = """
SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'),
       a.backend_start, coalesce(a.state, ''), left(coalesce(a.query, ''), 120)
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = %s AND l.objsubid = 1
   AND a.pid <> pg_backend_pid()
"""
_ROWS = """
SELECT migration_name, checksum, started_at, finished_at, rolled_back_at, applied_steps_count, logs
  FROM _prisma_migrations ORDER BY started_at, migration_name
"""
_TABLE_ROWS = """
SELECT c.relname, greatest(c.reltuples::bigint, coalesce(s.n_live_tup, 0))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()
"""


class FailedMigration(OpsError):
    """``_prisma_migrations`` holds a failed migration (Prisma P3009): nothing can migrate until it is resolved."""


class MigratorRunning(OpsError):
    """Another session holds Prisma's migration lock (a migrate would time out with P1002)."""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    application: str
    client: str
    since: str
    state: str
    query: str

    def __str__(self) -> str:
        app = f" {self.application!r}" if self.application else ""
        return f"pid {self.pid}{app} from {self.client}, connected since {self.since}, {self.state or 'idle'}"


@dataclass
class DbState:
    rows: list[dict] = field(default_factory=list)          # _prisma_migrations, oldest first
    table_rows: dict[str, int] = field(default_factory=dict)
    lock_holders: list[LockHolder] = field(default_factory=list)

    @property
    def applied(self) -> set[str]:
        return {r["migration_name"] for r in self.rows if r["finished_at"] is not None and r["rolled_back_at"] is None}

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["finished_at"] is None and r["rolled_back_at"] is None]


def read_state(conn) -> DbState:
    """The state behind a deploy's plan (``_prisma_migrations`` is empty when Prisma never ran)."""
    rows: list[dict] = []
    if conn.execute("SELECT to_regclass('_prisma_migrations') IS NOT NULL").fetchone()[0]:
        cur = conn.execute(_ROWS)
        cols = [c.name for c in cur.description]
        rows = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    holders = [LockHolder(int(pid), app, client, str(since)[:19], state, query)
               for pid, app, client, since, state, query in conn.execute(_LOCK_HOLDERS, (PRISMA_ADVISORY_LOCK,))]
    sizes = {name: int(n) for name, n in conn.execute(_TABLE_ROWS)}
    return DbState(rows=rows, table_rows=sizes, lock_holders=holders)


def resolve_commands(env_name: str, name: str) -> list[str]:
    """How to mark ``name`` resolved, run in the release serving now (``inv app.exec``)."""
    run = f"inv app.exec --host {env_name} -- npx prisma migrate resolve"
    return [f"{run} --rolled-back {name}", f"{run} --applied {name}"]


def refuse_failed(state: DbState, env_name: str, *, under_lock: bool = True) -> list[str]:
    """Stop with the recovery steps when a migration failed earlier (P3009) or a migrator still runs (P1002).

    Before the environment lock (``under_lock=False``) a holder of Prisma's lock may be
    another deploy migrating right now, and its unfinished row is no failure yet: that
    is returned as a note, and checked again under the lock, where no deploy of ours
    can be migrating and a holder is an orphan.
    """
    if state.lock_holders and not under_lock:
        return [f"a session holds Prisma's migration lock now ({'; '.join(str(h) for h in state.lock_holders)}): "
                "another deploy migrating? checked again once the environment lock is held"]
    if state.lock_holders:
        shown = "; ".join(str(h) for h in state.lock_holders)
        pids = ", ".join(str(h.pid) for h in state.lock_holders)
        raise MigratorRunning(
            f"another migrator holds Prisma's migration lock (pg_advisory_lock({PRISMA_ADVISORY_LOCK})): {shown}; "
            "a migrate now would wait 10 s and fail with P1002 (advisory lock timeout); nothing was changed",
            hint=f"if no deploy is migrating (inv lock.status --host {env_name}), it is an orphaned migrator: end it "
                 f"in the database with SELECT pg_terminate_backend(pid) for pid {pids}, then check "
                 "_prisma_migrations for a failed row before deploying again (RUNBOOK: a migration went wrong)")
    if not state.failed:
        return []
    names = [r["migration_name"] for r in state.failed]
    detail = []
    for r in state.failed:
        logs = (r.get("logs") or "").strip().splitlines()
        why = next((line for line in logs if line.startswith("ERROR")), logs[0] if logs else "no error recorded")
        detail.append(f"{r['migration_name']} (started {str(r['started_at'])[:19]}: {why})")
    rolled_back, applied = resolve_commands(env_name, names[0])
    raise FailedMigration(
        f"_prisma_migrations holds a failed migration: {'; '.join(detail)}. Prisma applies nothing more until it is "
        "resolved (P3009); nothing was changed. Recover:\n"
        f"  1. see what it did: its logs above; it ran in a transaction unless it says otherwise\n"
        f"  2a. if it left no change (rolled back): fix the migration in the app, commit, then\n"
        f"        {rolled_back}\n"
        f"  2b. if you completed its changes by hand instead:\n"
        f"        {applied}\n"
        f"  3. deploy again",
        hint="without Prisma's CLI in the image: UPDATE _prisma_migrations SET rolled_back_at = now() "
             f"WHERE migration_name = '{names[0]}' AND finished_at IS NULL (RUNBOOK: a migration went wrong)")
