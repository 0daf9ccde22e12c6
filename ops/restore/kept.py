"""What restores keep: the databases a logical restore set aside (``<db>_before_<ts>``) and the
Postgres servers a point-in-time restore stopped (``<accessory>-before-<ts>`` with its data
volume). List them, drop them after confirmation, or put a kept database back in place of the
live one.

Putting one back is the restore's own swap in reverse, with the same care: the maintenance
page first and the app stopped (so no app connection holds the live database), the live
database closed to new connections and its remaining sessions ended, then in one
transaction ``<db>`` becomes ``<db>_failed_<ts>`` and ``<db>_before_<ts>`` becomes ``<db>``;
the app comes back behind its health check. Every SQL error fails the task (no psql whose
exit status hides one), and a failure before the rename leaves everything as it was.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from ops import accessory
from ops.audit import utcnow
from ops.backup.context import BackupContext
from ops.commands import docker
from ops.errors import ConfigError
from ops.interrupts import shielded_from_ctrl_c
from ops.operation import Operation
from ops.postgres import PgTarget, pg_target, session
from ops.registry import service_ref
from ops.remote import Gateway
from ops.restore.database import _sql, drop_database, existing_databases, literal, stamp, swap_databases
from ops.restore.errors import RestoreFailed, RestoreRefused
from ops.traffic import WebHost, enter_maintenance, leave_maintenance, serving_containers

Say = Callable[[str], None]
_STAMP = r"\d{8}_\d{6}"


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class KeptDatabase:
    name: str
    size: int
    sessions: int


def kept_pattern(db: str) -> re.Pattern:
    return re.compile(re.escape(db) + r"_before_" + _STAMP)


def list_kept(gw: Gateway, target: PgTarget) -> list[KeptDatabase]:
    """The ``<db>_before_<ts>`` databases on the accessory, oldest first."""
    like = target.dbname.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "\\_before\\_%"
    with session(gw, target, "postgres") as conn:
        rows = _sql(conn, "SELECT datname, pg_database_size(oid), (SELECT count(*) FROM pg_stat_activity a "
                          f"WHERE a.datname = d.datname) FROM pg_database d WHERE datname LIKE {literal(like)} "
                          "ORDER BY datname", "listing the kept databases", target.host).fetchall()
    pattern = kept_pattern(target.dbname)
    return [KeptDatabase(r[0], int(r[1]), int(r[2])) for r in rows if pattern.fullmatch(r[0])]


def target_of(ctx: BackupContext) -> PgTarget:
    return pg_target(ctx.env, ctx.app_values())


def choose(kept: list[KeptDatabase], target: PgTarget, name: str) -> KeptDatabase:
    """``name`` among the kept databases; a clear refusal naming what exists otherwise."""
    if not kept_pattern(target.dbname).fullmatch(name or ""):
        raise ConfigError(f"{name!r} is not a database a restore kept (they are named {target.dbname}_before_"
                          "<YYYYMMDD_HHMMSS>)", hint=f"list them: inv restore.kept --host {target.host.name}")
    for k in kept:
        if k.name == name:
            return k
    raise RestoreRefused(f"no database {name} on {target.host.name}" + (
        f" (kept: {', '.join(k.name for k in kept)})" if kept else " (no kept databases)"))


def drop_kept(ctx: BackupContext, gw: Gateway, names: list[str], *, say: Say = _quiet,
              lock_wait: float = 0.0) -> list[str]:
    """Drop the named kept databases (the caller confirmed); the names dropped."""
    target = target_of(ctx)
    kept = list_kept(gw, target)
    doomed = [choose(kept, target, n).name for n in names]
    dropped: list[str] = []
    with Operation(gw, "restore.drop-kept", list(ctx.env.hosts.values()), say=say, lock_wait=lock_wait,
                   detail=", ".join(doomed)) as op:
        for name in doomed:
            say(f"dropping {name} on {target.host.name}")
            problem = drop_database(gw, target, name)
            if problem is not None:
                raise RestoreFailed(f"dropping {name} failed: {problem}" + (
                    f" (dropped before it: {', '.join(dropped)})" if dropped else ""))
            dropped.append(name)
        op.outcome = "dropped " + ", ".join(dropped)
    return dropped


@dataclass(frozen=True)
class KeptServer:
    """A Postgres server a point-in-time restore replaced: its container, stopped, and its data volume."""

    name: str
    volume: str
    state: str
    created: str


def kept_server_pattern(base: str) -> re.Pattern:
    return re.compile(re.escape(base) + r"-before-\d{14}")


def list_kept_servers(gw: Gateway, env) -> list[KeptServer]:
    """The ``<accessory>-before-<ts>`` containers on the database host, oldest first."""
    acc = env.accessories.get("postgres")
    if acc is None:
        return []
    host, base = env.hosts[acc.host], accessory.container_name(env, acc)
    res = gw.query(host, docker.ps_argv(filters=[("name", f"^{base}-before-")], fmt="{{.Names}}"))
    names = sorted(n for n in res.stdout.split() if kept_server_pattern(base).fullmatch(n))
    found = []
    for name in names:
        info = json.loads(gw.query(host, docker.inspect_argv(name)).stdout or "[{}]")[0]
        volume = next((m.get("Name", "") for m in info.get("Mounts") or []
                       if m.get("Type") == "volume" and m.get("Destination") == acc.data_path), "")
        found.append(KeptServer(name, volume, (info.get("State") or {}).get("Status", "?"),
                                str(info.get("Created", ""))[:19].replace("T", " ")))
    return found


def drop_kept_servers(ctx: BackupContext, gw: Gateway, names: list[str], *, say: Say = _quiet,
                      lock_wait: float = 0.0) -> list[str]:
    """Remove the named kept servers and their data volumes (the caller confirmed); the names removed.

    Refused for one that runs (someone started it to look at it) and for a volume the live
    server uses: what serves is never touched."""
    env = ctx.env
    acc = env.accessories["postgres"]
    host = env.hosts[acc.host]
    kept = {k.name: k for k in list_kept_servers(gw, env)}
    unknown = [n for n in names if n not in kept]
    if unknown:
        raise ConfigError(f"{unknown[0]!r} is not a server a restore kept on {host.name}" + (
            f" (kept: {', '.join(kept)})" if kept else " (none kept)"),
            hint=f"list them: inv restore.kept --host {env.name}")
    live = accessory.current_volume(gw, env, acc)
    for name in names:
        k = kept[name]
        if k.state == "running":
            raise RestoreRefused(f"{name} is running: stop it first (docker stop {name} on {host.name})")
        if k.volume and k.volume == live:
            raise RestoreRefused(f"{name} uses {k.volume}, the live server's volume: not removed")
    removed: list[str] = []
    with Operation(gw, "restore.drop-kept", list(env.hosts.values()), say=say, lock_wait=lock_wait,
                   detail=", ".join(names)) as op:
        for name in names:
            say(f"removing {name} and its volume {kept[name].volume or '(none)'} on {host.name}")
            gw.run(host, docker.rm_argv(name))
            if kept[name].volume:
                gw.run(host, docker.volume_rm_argv(kept[name].volume))
            removed.append(name)
        op.outcome = "removed " + ", ".join(removed)
    return removed


@dataclass
class PutBackResult:
    database: str
    restored_from: str
    failed_kept_as: str
    downtime_seconds: float
    hosts: list[str]


def put_back_plan(ctx: BackupContext, gw: Gateway, name: str) -> list[str]:
    target = target_of(ctx)
    kept = choose(list_kept(gw, target), target, name)
    failed = f"{target.dbname}_failed_{stamp(utcnow())}"
    webs = [h.name for h in ctx.env.with_roles("web")]
    return [
        f"put {kept.name} back as {target.dbname} on {target.host.name}:",
        f"  1. lock environment {ctx.env.name} (nothing else runs meanwhile, backups included)",
        f"  2. stop traffic: maintenance page (503) on {', '.join(webs) or '(no web host)'}, the app stopped",
        f"  3. close {target.dbname} to new connections, end its remaining sessions, then in one transaction "
        f"rename {target.dbname} -> {failed} and {kept.name} -> {target.dbname}",
        "  4. start the app again behind its health check, remove the maintenance page",
        f"  5. keep {failed} (the database being replaced; drop it by hand once sure)",
    ]


def put_back(ctx: BackupContext, gw: Gateway, name: str, *, say: Say = _quiet, lock_wait: float = 0.0,
             health_timeout: float | None = None) -> PutBackResult:
    """Swap the kept database ``name`` back in place of the live one (see the module doc)."""
    env = ctx.env
    target = target_of(ctx)
    db = target.dbname
    failed = f"{db}_failed_{stamp(utcnow())}"
    hosts = list(env.hosts.values())
    with Operation(gw, "restore.put-back", hosts, say=say, version=name, lock_wait=lock_wait, scope="exclusive",
                   detail=f"{name} -> {db}; {db} kept as {failed}") as op:
        kept = choose(list_kept(gw, target), target, name)  # again, under the lock
        if existing_databases(gw, target, [failed]):
            raise RestoreRefused(f"database {failed} already exists", hint="wait a second and run again")
        webs = [WebHost(h, serving_containers(gw, h)) for h in env.with_roles("web")]
        webs = [w for w in webs if w.serving]
        image = service_ref(env, env.proxy.image)
        error: BaseException | None = None
        t = time.monotonic()
        try:
            if webs:
                say(f"stopping traffic on {', '.join(w.host.name for w in webs)} (maintenance page, app stopped)")
                gw.map(lambda h: enter_maintenance(gw, _web(webs, h), image),
                       [w.host for w in webs]).raise_if_failed("stopping traffic")
            say(f"swapping: {db} -> {failed}, {kept.name} -> {db}")
            swap_databases(gw, target, db, kept.name, failed, live=bool(existing_databases(gw, target, [db])))
        except BaseException as exc:
            error = exc
        with shielded_from_ctrl_c(say):
            if webs:
                say(f"bringing the app back on {', '.join(w.host.name for w in webs)}")
            back = gw.map(lambda h: leave_maintenance(gw, _web(webs, h), health_timeout or env.health.timeout),
                          [w.host for w in webs])
        downtime = time.monotonic() - t
        if error is not None:
            if isinstance(error, KeyboardInterrupt):
                raise error
            raise RestoreFailed(f"putting {name} back failed: {error} — {db} was not replaced"
                                + ("" if not back.failed else "; the app did not come back: "
                                   + "; ".join(str(e) for e in back.failed.values()))) from None
        if back.failed:
            raise RestoreFailed(f"{name} is {db} again (the replaced one is kept as {failed}) but the app did not "
                                "come back healthy: " + "; ".join(str(e) for e in back.failed.values()),
                                hint=f"if the code must match the older schema: inv rollback --host {env.name}")
        op.outcome = f"{name} -> {db}; previous kept as {failed}; downtime {downtime:.1f}s"
    return PutBackResult(db, name, failed, downtime, [w.host.name for w in webs])


def _web(webs: list[WebHost], host) -> WebHost:
    return next(w for w in webs if w.host.name == host.name)


__all__ = ["KeptDatabase", "PutBackResult", "drop_kept", "list_kept", "put_back", "put_back_plan"]
