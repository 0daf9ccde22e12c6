"""``inv restore --at T`` to the second, from pgBackRest (physical backup + archived WAL).

What happens, in order, and what each failure leaves:

1. Plan (nothing changes): the newest physical backup consistent before T, the archive's
   range (earliest second: that of the oldest backup; latest: now, when the live server
   archives, since step 2 makes it so), the web containers to stop. T before the range:
   not this path (the caller falls back to a logical backup and says what is lost); T after
   the latest restorable second: refused, naming that second.
2. Under the environment lock: a tiny committed transaction and a WAL switch on the live
   server, then a wait until that segment is archived (recovery to a time stops at the first
   commit after it: one must exist in the archive).
3. ``pgbackrest restore --type=time --target=T --target-action=promote --archive-mode=off``
   into a NEW volume (one-off container), then a scratch server on it (no port published,
   archiving off) replays WAL up to T and promotes; it is checked: promoted, the database is
   there, the last replayed commit is at or before T; tables and rows are counted. The live
   server serves throughout. Any failure or Ctrl-C here removes the scratch container and
   the new volume: nothing else was touched.
4. Traffic off (maintenance page, app stopped), the old Postgres container stopped (it
   drains its archive first) and renamed ``<name>-before-<ts>`` (kept, restart policy off,
   its volume untouched), the new one started under the accessory's name, port and alias
   on the new volume with archiving on (the new timeline's history file is queued for the
   archive), ``pgbackrest check`` passes, traffic back. This step runs shielded from Ctrl-C;
   a failure in it puts the old container back under its name and starts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ops import accessory, audit
from ops.backup import physical
from ops.backup.context import BackupContext
from ops.backup.timeparse import format_utc
from ops.commands import docker
from ops.commands import pgbackrest as pgbr
from ops.errors import OpsError
from ops.interrupts import shielded_from_ctrl_c
from ops.inventory import Environment, Host
from ops.layout import Layout
from ops.operation import Operation
from ops.postgres import PgTarget, pg_target, psql_argv
from ops.progress import NO_PROGRESS, Progress
from ops.registry import service_ref
from ops.remote import Gateway
from ops.restore.database import stamp
from ops.restore.errors import RestoreFailed, RestoreRefused
from ops.table import human_bytes
from ops.traffic import WebHost, enter_maintenance, leave_maintenance, serving_containers

Say = Callable[[str], None]

SEGMENT_BYTES = 16 * 1024 * 1024
RECOVERY_POLL = 1.0
FATAL_TARGET = "recovery ended before configured recovery target was reached"


def _quiet(_: str) -> None:
    pass


@dataclass
class PitrPlan:
    env: Environment
    at: datetime
    backup: physical.PhysicalBackup
    catalog: physical.PhysicalCatalog
    target: PgTarget
    archiver: physical.ArchiverState | None
    latest: datetime | None
    web: dict[str, list[str]]
    ts: str
    old_volume: str
    new_volume: str
    scratch: str
    kept: str
    warnings: list[str] = field(default_factory=list)

    @property
    def repo(self) -> int:
        return self.backup.repo

    def wal_bytes(self) -> int | None:
        """WAL to replay: from the backup's last segment to the newest archived one (an upper bound)."""
        newest = self.catalog.archive.get(self.repo, ("", ""))[1]
        if not newest or not self.backup.wal_stop:
            return None
        segs = _segno(newest) - _segno(self.backup.wal_stop)
        return max(0, segs) * SEGMENT_BYTES

    def lines(self) -> list[str]:
        b, t, env = self.backup, self.target, self.env
        wal = self.wal_bytes()
        latest = (f"{format_utc(self.latest)} (the live server archives: the restore archives everything up "
                  "to its start first)" if self.latest and self.archiver and not self.archiver.failing
                  else format_utc(self.latest) if self.latest else "unknown (the live server does not answer): "
                  "recovery stops at the end of the archive")
        stops = [f"{h}: {', '.join(c)}" for h, c in self.web.items() if c] or ["(no app container running)"]
        out = [
            f"point-in-time restore plan for {env.name}, to {format_utc(self.at)} (physical, pgBackRest):",
            f"  backup     {b.label} ({b.type}, repo{b.repo}), consistent at {format_utc(b.stopped)}; "
            f"database {human_bytes(b.size)}, {human_bytes(b.repo_size)} in the repository",
            f"  WAL        replayed from {b.wal_stop} up to {format_utc(self.at)}"
            + (f" (at most {human_bytes(wal)} archived after the backup)" if wal is not None else ""),
            f"  range      earliest {format_utc(self.catalog.earliest(self.repo))}, latest {latest}",
            "  data lost  none: every transaction committed at or before the target second is restored; "
            "those after it are not (they stay in the kept old container)",
            "  downtime   expected seconds: Postgres stop + start on the restored data + the app's health check",
            f"  1. lock environment {env.name}; mark and archive the live WAL (a WAL switch)",
            f"  2. pgbackrest restore --set={b.label} --type=time --target='{pgbr.target_text(self.at)}' "
            f"--target-action=promote --archive-mode=off into new volume {self.new_volume} on {t.host.name}",
            f"  3. replay in scratch container {self.scratch} (no port, archiving off); check it is promoted, "
            f"{t.dbname} exists and its last commit is at or before the target; count rows "
            f"({t.container} keeps serving)",
            f"  4. stop traffic on {', '.join(self.web) or '(no web host)'}: maintenance page (503); stop "
            + "; ".join(stops),
            f"  5. stop {t.container} and keep it as {self.kept} (volume {self.old_volume}); start {t.container} "
            f"on {self.new_volume} with archiving on (new timeline); pgbackrest check",
            "  6. start the app again behind its health check; remove the maintenance page",
        ]
        out += [f"  warning: {w}" for w in self.warnings]
        return out


def _segno(name: str) -> int:
    return (int(name[8:16], 16) << 32 | int(name[16:24], 16) << 0) if len(name) >= 24 else 0


@dataclass
class Route:
    """Where ``restore --at`` goes: ``plan`` (physical), or None with ``why`` (use the logical path)."""

    plan: PitrPlan | None
    why: str = ""


def route(ctx: BackupContext, gw: Gateway, at: datetime, *, now: datetime | None = None) -> Route:
    """Physical when ``at`` lies in the archived range; refuse a second after the latest restorable
    one; None (with the reason) before the range, so the caller falls back to a logical backup."""
    env = ctx.env
    physical.require_pitr(env)
    now = now or audit.utcnow()
    catalog = physical.read_catalog(gw, env)
    target = pg_target(env, ctx.app_values())
    archiver = physical.archiver_state(gw, target)
    latest = check_target(at, archiver, env.name)
    backup = catalog.base_in_any(at, len(env.pitr.repos))
    if backup is None:
        earliest = catalog.earliest_any()
        return Route(None, f"{format_utc(at)} is before the archived range (earliest restorable second "
                           f"{format_utc(earliest) if earliest else 'none: no physical backup yet'})")
    acc = env.accessories["postgres"]
    ts = stamp(now)
    base = accessory.container_name(env, acc)
    webs = env.with_roles("web")
    serving = gw.map(lambda h: serving_containers(gw, h), webs)
    serving.raise_if_failed("reading the app containers")
    plan = PitrPlan(env=env, at=at, backup=backup, catalog=catalog, target=target, archiver=archiver, latest=latest,
                    web={h.name: serving.ok[h.name] for h in webs}, ts=ts,
                    old_volume=accessory.current_volume(gw, env, acc),
                    new_volume=f"{accessory.volume_name(env, acc)}-{ts.replace('_', '')}",
                    scratch=f"{base}-pitr-{ts.replace('_', '')}", kept=f"{base}-before-{ts.replace('_', '')}")
    if archiver is None:
        plan.warnings.append(f"the live server {target.container} does not answer: the restore replays the archive "
                             "as it is")
    if backup.repo != 1:
        plan.warnings.append(f"repo1 has no backup from before the target: restoring from repo{backup.repo}")
    return Route(plan)


def latest_restorable(archiver: physical.ArchiverState | None) -> datetime | None:
    """The latest second a restore reaches: now when the live server archives (the restore archives up
    to its start first); the last archived segment's time when the archiver fails; None (unknown) when
    the live server does not answer."""
    if archiver is None:
        return None
    if archiver.failing:
        return archiver.last_archived_at.replace(microsecond=0) if archiver.last_archived_at else None
    return archiver.now.replace(microsecond=0)


def check_target(at: datetime, archiver: physical.ArchiverState | None, env_name: str) -> datetime | None:
    """Refuse ``at`` after the latest restorable second, naming that second; return it."""
    latest = latest_restorable(archiver)
    if latest is not None and at > latest:
        raise RestoreRefused(
            f"{format_utc(at)} is after the latest restorable second, {format_utc(latest)}: WAL after it is not in "
            "the archive" + (f" (the archiver fails since {format_utc(archiver.last_failed_at)}, on "
                             f"{archiver.last_failed_wal})" if archiver and archiver.failing else ""),
            hint=f"restore to {format_utc(latest)} or earlier; fix archiving first (inv backup.check --host {env_name})")
    if latest is None and archiver is not None and archiver.failing:
        raise RestoreRefused("the WAL archive holds nothing the live server archived (its archiver fails since "
                             f"{format_utc(archiver.last_failed_at)})", hint=f"fix archiving: inv backup.check --host {env_name}")
    return latest


# -- apply -------------------------------------------------------------------------------------------
@dataclass
class PitrResult:
    at: datetime
    backup: str
    latest_commit: datetime | None
    tables: dict[str, int]
    migration: str | None
    kept_container: str
    kept_volume: str
    new_volume: str
    restore_seconds: float
    downtime_seconds: float
    total_seconds: float
    remove_hint: str
    warnings: list[str] = field(default_factory=list)


def restore(ctx: BackupContext, gw: Gateway, plan: PitrPlan, *, say: Say = _quiet, lock_wait: float = 0.0,
            health_timeout: float | None = None) -> PitrResult:
    env = ctx.env
    t0 = time.monotonic()
    with Operation(gw, "restore", list(env.hosts.values()), say=say, version=plan.backup.id, lock_wait=lock_wait,
                   detail=f"to {format_utc(plan.at)} from {plan.backup.label} (physical)") as op:
        result = _restore_locked(ctx, gw, plan, say, health_timeout or env.health.timeout)
        result.total_seconds = time.monotonic() - t0
        op.outcome = (f"{op.detail}; previous server kept as {result.kept_container} ({result.kept_volume}); "
                      f"downtime {result.downtime_seconds:.1f}s")
    result.warnings = plan.warnings + op.warnings
    return result


def _restore_locked(ctx: BackupContext, gw: Gateway, plan: PitrPlan, say: Say, health_timeout: float) -> PitrResult:
    env, t = ctx.env, plan.target
    acc = env.accessories["postgres"]
    host = t.host
    # 2. everything up to now in the archive (the live server answers)
    if plan.archiver is not None:
        say("archiving the live WAL up to now (a marked commit and a WAL switch)")
        try:
            latest = physical.mark_and_switch(gw, t, timeout=2.0 * env.pitr.archive_timeout + 60, say=say,
                                              env=env, repo=plan.repo)
        except OpsError as exc:
            raise RestoreFailed(f"nothing was changed: {exc}", hint=exc.hint) from None
        if plan.at > latest:
            raise RestoreRefused(f"{format_utc(plan.at)} is after the latest restorable second, {format_utc(latest)}",
                                 hint=f"restore to {format_utc(latest)} or earlier")

    # 3. restore + replay + check in a scratch container; the live server keeps serving
    image = service_ref(env, acc.image)
    t1 = time.monotonic()
    try:
        latest_commit, tables, migration = _restore_and_check(gw, env, acc, image, plan, say, ctx.progress)
        gw.run(host, docker.stop_argv(plan.scratch, accessory.stop_timeout(acc)),
               timeout=accessory.stop_timeout(acc) + 60)
        gw.run(host, docker.rm_argv(plan.scratch))
        gw.run(host, _oneoff(env, acc, image, plan, entrypoint="bash", command=("-c", QUEUE_TIMELINE_SH)))
    except BaseException as exc:
        with shielded_from_ctrl_c(say):
            left = _drop_scratch(gw, host, plan)
        fate = f"scratch container and volume {plan.new_volume} removed" if not left else \
            f"remove by hand: {'; '.join(left)}"
        if isinstance(exc, OpsError):
            raise RestoreFailed(f"point-in-time restore failed before anything was switched: {exc} — "
                                f"{t.container} was not touched and still serves; {fate}", hint=exc.hint) from None
        say(f"interrupted: {t.container} was not touched and still serves; {fate}")
        raise
    restore_seconds = time.monotonic() - t1

    # 4. traffic off, swap containers, traffic back (shielded: a half-done swap is worse than a finished one)
    # What serves now (a deploy may have run since the plan was shown).
    webs = [WebHost(env.hosts[n], serving_containers(gw, env.hosts[n])) for n in plan.web]
    webs = [w for w in webs if w.serving]
    proxy_image = service_ref(env, env.proxy.image)
    error: BaseException | None = None
    t2 = time.monotonic()
    with shielded_from_ctrl_c(say, "restore is switching servers: letting it finish (or put the old one back)"):
        try:
            if webs:
                say(f"stopping traffic on {', '.join(w.host.name for w in webs)} (maintenance page, app stopped)")
                entered = gw.map(lambda h: enter_maintenance(gw, _web(webs, h), proxy_image), [w.host for w in webs])
                entered.raise_if_failed("stopping traffic")
            _swap(gw, env, acc, plan, say)
        except BaseException as exc:  # noqa: BLE001 - reported below, after the app is back
            error = exc
        if webs:
            say(f"bringing the app back on {', '.join(w.host.name for w in webs)}")
        back = gw.map(lambda h: leave_maintenance(gw, _web(webs, h), health_timeout), [w.host for w in webs])
    downtime = time.monotonic() - t2
    if error is not None:
        with shielded_from_ctrl_c(say):
            left = _drop_scratch(gw, host, plan)
        serving = "and serves again" if not back.failed else (
            "but the app did not come back on " + "; ".join(str(e) for e in back.failed.values()))
        raise RestoreFailed(f"point-in-time restore failed while switching servers: {error} — {t.container} "
                            f"runs on {plan.old_volume} as before {serving}"
                            + (f"; remove by hand: {'; '.join(left)}" if left else ""))
    if back.failed:
        raise RestoreFailed(f"{t.container} now runs the data of {format_utc(plan.at)} (the old server is kept as "
                            f"{plan.kept}) but the app did not come back healthy: "
                            + "; ".join(str(e) for e in back.failed.values()),
                            hint="see RUNBOOK.md 'Restore to a second' to put the old server back")
    hint = f"inv restore.drop-kept --host {env.name} --name {plan.kept}"
    return PitrResult(plan.at, plan.backup.label, latest_commit, tables, migration, plan.kept, plan.old_volume,
                      plan.new_volume, restore_seconds, downtime, 0.0, hint)



def _restore_and_check(gw: Gateway, env: Environment, acc, image: str, plan: PitrPlan, say: Say,
                       progress: Progress = NO_PROGRESS):
    """Steps 3: restore into the new volume, replay in the scratch server until promoted, check it.
    Leaves the scratch server running (the caller stops or drops it). With a progress sink the
    restore's bytes are counted from pgBackRest's per-file detail lines."""
    t, host = plan.target, plan.target.host
    t1 = time.monotonic()
    say(f"pgbackrest restore of {plan.backup.label} into volume {plan.new_volume} on {host.name} "
        f"(to {format_utc(plan.at)}; {t.container} keeps serving)")
    gw.run(host, docker.volume_create_argv(plan.new_volume, labels={"ops.app": env.app, "ops.accessory": acc.name}))
    args = pgbr.restore_args(plan.at, plan.backup.label, repo=plan.repo)[1:]
    if progress is NO_PROGRESS:
        res = gw.run(host, _oneoff(env, acc, image, plan, entrypoint="pgbackrest", command=args),
                     check=False, timeout=env.ssh.command_timeout)
        failure = None if res.ok else physical.detail(res)
    else:
        command = _oneoff(env, acc, image, plan, entrypoint="pgbackrest",
                          command=("--log-level-console=detail", *args))
        failure = physical.stream_counted(gw, host, command, f"pgbackrest restore <- repo{plan.repo}", progress)
    if failure is not None:
        raise RestoreFailed(f"pgbackrest restore failed: {failure}")
    say(f"  restored in {time.monotonic() - t1:.1f}s; replaying WAL to {format_utc(plan.at)} in {plan.scratch}")
    gw.run(host, docker.run_argv(plan.scratch, image, network=Layout(env).network,
                                 env_file=accessory.env_file_path(env, acc),
                                 volumes=[(plan.new_volume, acc.data_path, ""), *accessory.ca_mounts(env, acc)],
                                 labels={"ops.app": env.app, "ops.role": "pitr-scratch"}, restart=None,
                                 stop_timeout=accessory.stop_timeout(acc),
                                 command=pgbr.server_command(env.pitr, archive=False)))
    scratch = _scratch_target(t, plan.scratch)
    _wait_promoted(gw, scratch, plan, env.ssh.command_timeout)
    latest_commit, tables, migration = _check(gw, scratch, plan)
    say(f"  checked: promoted; last commit {format_utc(latest_commit) if latest_commit else '(none replayed)'} "
        f"<= {format_utc(plan.at)}; {len(tables)} tables, {sum(tables.values())} rows; migration "
        f"{migration or '-'}")
    return latest_commit, tables, migration


@dataclass
class DrillResult:
    at: datetime
    backup: str
    latest_commit: datetime | None
    tables: dict[str, int]
    migration: str | None
    seconds: float


def drill(ctx: BackupContext, gw: Gateway, *, say: Say = _quiet, now: datetime | None = None) -> DrillResult:
    """``backup.verify`` of the physical kind: the live WAL archived up to now, then a restore to that
    second into a scratch volume and server (no port, archiving off), checked, and removed."""
    env = ctx.env
    t0 = time.monotonic()
    routed = route(ctx, gw, (now or audit.utcnow()).replace(microsecond=0), now=now)
    if routed.plan is None:
        raise RestoreRefused(f"no physical backup to drill: {routed.why}",
                             hint=f"take one: inv backup.db --host {env.name} --physical")
    plan = routed.plan
    latest = plan.at
    if plan.archiver is not None:
        latest = physical.mark_and_switch(gw, plan.target, timeout=2.0 * env.pitr.archive_timeout + 60, say=say)
    plan.at = min(plan.at, latest)
    acc = env.accessories["postgres"]
    try:
        latest_commit, tables, migration = _restore_and_check(gw, env, acc, service_ref(env, acc.image), plan, say,
                                                              ctx.progress)
    finally:
        with shielded_from_ctrl_c(say):
            left = _drop_scratch(gw, plan.target.host, plan)
        if left:
            say(f"remove by hand: {'; '.join(left)}")
    return DrillResult(plan.at, plan.backup.label, latest_commit, tables, migration, time.monotonic() - t0)

def _web(webs: list[WebHost], host: Host) -> WebHost:
    return next(w for w in webs if w.host.name == host.name)


# NOTE: the scratch server ran with archiving off, so the new timeline's history file (and any
# segment it completed) has no .ready: queue them for the archiver of the server that takes over.
# Only segments before the checkpoint's REDO segment: the one being written must not be pushed
# half-full (pgBackRest would later refuse the full one as a different file).
QUEUE_TIMELINE_SH = r"""set -eu
cd "$PGDATA/pg_wal"
tl=$(pg_controldata "$PGDATA" | sed -n "s/^Latest checkpoint's TimeLineID: *//p")
redo=$(pg_controldata "$PGDATA" | sed -n "s/^Latest checkpoint's REDO WAL file: *//p")
t=$(printf '%08X' "$tl")
for f in "$t.history" "$t"????????????????; do
  [ -f "$f" ] || continue
  case "$f" in *.history) ;; *) [[ "$f" < "$redo" ]] || continue ;; esac
  [ -e "archive_status/$f.done" ] || [ -e "archive_status/$f.ready" ] || : >"archive_status/$f.ready"
done
"""


def _oneoff(env: Environment, acc, image: str, plan: PitrPlan, *, entrypoint: str, command) -> tuple[str, ...]:
    return docker.run_argv(f"{plan.scratch}-job", image, network=Layout(env).network,
                           env_file=accessory.env_file_path(env, acc),
                           volumes=[(plan.new_volume, acc.data_path, ""), *accessory.ca_mounts(env, acc)],
                           labels={"ops.app": env.app, "ops.role": "pitr-job"}, restart=None, detach=False,
                           remove=True, entrypoint=entrypoint, user="postgres", command=tuple(command))


def _scratch_target(t: PgTarget, name: str) -> PgTarget:
    return PgTarget(host=t.host, container=name, user=t.user, dbname=t.dbname, password=t.password,
                    address=t.address, port=t.port)


def _psql(gw: Gateway, t: PgTarget, sql: str, dbname: str = "postgres", *, check: bool = True):
    return gw.query(t.host, psql_argv(t, sql, dbname=dbname), check=check, timeout=120)


def _wait_promoted(gw: Gateway, scratch: PgTarget, plan: PitrPlan, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = accessory.inspect(gw, scratch.host, scratch.container)
        if info.state in ("exited", "dead", "absent"):
            logs = gw.query(scratch.host, ("docker", "logs", "--tail", "30", scratch.container), check=False)
            text = logs.stdout + logs.stderr
            if FATAL_TARGET in text:
                raise RestoreFailed(f"recovery ended before reaching {format_utc(plan.at)}: the archive ends earlier "
                                    f"({FATAL_TARGET})", hint="restore to an earlier second (inv backup.list shows "
                                                              "the archive's range)")
            tail = " | ".join(line.strip() for line in text.splitlines() if line.strip())[-400:]
            raise RestoreFailed(f"the scratch server {scratch.container} stopped during recovery: {tail}")
        if info.state == "running":
            res = _psql(gw, scratch, "SELECT pg_is_in_recovery()", check=False)
            if res.ok and res.stdout.strip() == "f":
                return
        if time.monotonic() >= deadline:
            raise RestoreFailed(f"recovery in {scratch.container} did not finish within {timeout:g}s")
        time.sleep(RECOVERY_POLL)


COUNT_SQL = ("SELECT n.nspname || '.' || c.relname, (xpath('/row/c/text()', query_to_xml(format("
             "'SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text "
             "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
             "AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1")


def _check(gw: Gateway, scratch: PgTarget, plan: PitrPlan) -> tuple[datetime | None, dict[str, int], str | None]:
    """Promoted (checked by the wait), the database there, the last replayed commit <= T; counts."""
    dbs = _psql(gw, scratch, "SELECT datname FROM pg_database").stdout.split()
    if scratch.dbname not in dbs:
        raise RestoreFailed(f"the restored server has no database {scratch.dbname} (it has {', '.join(dbs)})")
    raw = _psql(gw, scratch, "SELECT pg_last_xact_replay_timestamp()").stdout.strip()
    latest = physical.parse_time(raw) if raw else None
    if latest is not None and latest.replace(microsecond=0) > plan.at:
        raise RestoreFailed(f"the restored server's last commit is at {latest.isoformat()}, after the target "
                            f"{format_utc(plan.at)}")
    tables = {}
    for line in _psql(gw, scratch, COUNT_SQL, scratch.dbname).stdout.splitlines():
        name, _, n = line.partition("|")
        if name:
            tables[name] = int(n or 0)
    migration = None
    if "public._prisma_migrations" in tables:
        migration = _psql(gw, scratch, "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL "
                                       "AND rolled_back_at IS NULL ORDER BY migration_name DESC LIMIT 1",
                          scratch.dbname).stdout.strip() or None
    return latest, tables, migration


def _drop_scratch(gw: Gateway, host: Host, plan: PitrPlan) -> list[str]:
    """Remove what step 3 made; what could not be removed, as commands."""
    left = []
    for name in (plan.scratch, f"{plan.scratch}-job"):
        gw.run(host, docker.rm_argv(name, force=True), check=False)
    res = gw.run(host, ("docker", "volume", "rm", "--force", plan.new_volume), check=False)
    if not res.ok:
        left.append(f"docker volume rm {plan.new_volume}")
    return left


def _swap(gw: Gateway, env: Environment, acc, plan: PitrPlan, say: Say) -> None:
    host = env.hosts[acc.host]
    name = accessory.container_name(env, acc)
    pointer = accessory.volume_pointer_path(env, acc)
    run_new = accessory.launch_argv(gw, acc, volume=plan.new_volume)
    say(f"stopping {name} (it archives its last WAL first); keeping it as {plan.kept}")
    gw.run(host, docker.stop_argv(name, accessory.stop_timeout(acc)), timeout=accessory.stop_timeout(acc) + 60)
    gw.run(host, ("docker", "rename", name, plan.kept))
    gw.run(host, ("docker", "update", "--restart=no", plan.kept))
    try:
        gw.put(host, f"{plan.new_volume}\n".encode(), pointer, mode=0o644)
        say(f"starting {name} on {plan.new_volume} (archiving on, new timeline)")
        gw.run(host, run_new)
        accessory.wait_ready(gw, acc)
        accessory.ensure_stanza(gw, env, acc)
    except BaseException as exc:
        say(f"the restored server did not come up ({exc}); putting {plan.kept} back as {name}")
        gw.run(host, docker.rm_argv(name, force=True), check=False)
        gw.put(host, f"{plan.old_volume}\n".encode(), pointer, mode=0o644)
        gw.run(host, ("docker", "rename", plan.kept, name))
        gw.run(host, ("docker", "update", "--restart=unless-stopped", name))
        gw.run(host, docker.start_argv(name))
        accessory.wait_ready(gw, acc)
        raise
