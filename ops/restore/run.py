"""``inv restore``: apply a database restore plan (the order and what each failure leaves: see
``ops/restore/__init__.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ops.backup import dump
from ops.backup.context import BackupContext
from ops.backup.manifest import SAFETY_REASON
from ops.backup.timeparse import format_utc
from ops.errors import OpsError
from ops.interrupts import shielded_from_ctrl_c
from ops.inventory import Host
from ops.operation import Operation
from ops.registry import service_ref
from ops.remote import Gateway
from ops.restore.database import (
    create_database,
    drop_database,
    live_database,
    restore_into,
    swap_databases,
    verify_restored,
)
from ops.restore.errors import RestoreFailed
from ops.restore.plan import DbPlan
from ops.table import human_bytes
from ops.traffic import WebHost, enter_maintenance, leave_maintenance, serving_containers

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


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
    with Operation(gw, "restore", hosts, say=say, version=m.id, lock_wait=lock_wait, scope="exclusive",
                   detail=f"{m.id} (finished {format_utc(m.finished_at)}) into {plan.target.dbname}") as op:
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
        result = _restore_locked(ctx, gw, plan, say, health_timeout or env.health.timeout)
        result.safety_backup = safety.id if safety else None
        result.total_seconds = time.monotonic() - t0
        op.outcome = (f"{op.detail}" + (f"; safety backup {safety.id}" if safety else "")
                      + f"; previous database kept as {result.before_db}; downtime {result.downtime_seconds:.1f}s")
    plan.warnings += op.warnings
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
        restore_into(ctx, gw, target, m, new, plan.role, plan.checked,
                     db_owner=plan.live.owner if plan.live is not None else target.user)
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
