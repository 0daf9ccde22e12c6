"""Physical backups with pgBackRest (the inventory's ``pitr:``): take one, read the catalog, the
WAL archive's range and the archiver's health.

Every pgBackRest command runs inside the Postgres accessory (``docker exec -u postgres``),
whose env file carries the repositories and their secrets (see ``ops/commands/pgbackrest.py``).
A backup goes to every repository in turn (repo1 first: the one restores read by default),
then pgBackRest's ``expire`` applies ``pitr.retention_full`` per repository: WAL older than
the oldest kept backup goes with it, so the archive and the backups stay consistent.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ops import accessory
from ops.backup.pgbackrest_progress import BackupBytes
from ops.commands import pgbackrest as pgbr
from ops.errors import ConfigError, HostError, OpsError, RemoteCommandFailed
from ops.inventory import Environment
from ops.operation import Operation
from ops.postgres import PgTarget, psql_argv
from ops.progress import NO_PROGRESS, Progress, count_stream
from ops.remote import Gateway

Say = Callable[[str], None]

KIND = "physical"


def _quiet(_: str) -> None:
    pass


def require_pitr(env: Environment) -> None:
    if env.pitr is None:
        raise ConfigError(f"{env.path.name} has no pitr: section: physical backups and point-in-time restores "
                          "need pgBackRest configured", hint="add pitr: (see inventory/prod.yml), then "
                                                             f"inv accessory.reboot --host {env.name} postgres")
    acc = env.accessories.get("postgres")
    if acc is None or not accessory.archives(env, acc):
        raise ConfigError(f"{env.path.name} has no postgres accessory: pgBackRest runs inside it",
                          hint="add accessories.postgres")


def container(env: Environment) -> str:
    return accessory.container_name(env, env.accessories["postgres"])


def db_host(env: Environment):
    return env.hosts[env.accessories["postgres"].host]


# -- the catalog (pgbackrest info) ------------------------------------------------------------
@dataclass(frozen=True)
class PhysicalBackup:
    label: str                 # 20261129-220945F, 20261129-220945F_20261129-230000I
    type: str                  # full | diff | incr
    repo: int
    started: datetime
    stopped: datetime          # the backup is consistent from here: the earliest second it restores to
    size: int                  # the database's size
    repo_size: int             # what the repository holds for it (compressed, encrypted)
    wal_start: str
    wal_stop: str
    prior: str | None = None

    @property
    def id(self) -> str:
        return f"pgbr-{self.label}"

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": KIND, "label": self.label, "type": self.type, "repo": self.repo,
                "started_at": self.started.isoformat(), "finished_at": self.stopped.isoformat(),
                "size": self.size, "repo_size": self.repo_size, "wal_start": self.wal_start,
                "wal_stop": self.wal_stop, "prior": self.prior}


@dataclass
class PhysicalCatalog:
    stanza: str
    backups: list[PhysicalBackup] = field(default_factory=list)     # oldest first
    archive: dict[int, tuple[str, str]] = field(default_factory=dict)   # repo -> (min WAL, max WAL)
    repo_status: dict[int, str] = field(default_factory=dict)

    def in_repo(self, repo: int) -> list[PhysicalBackup]:
        return [b for b in self.backups if b.repo == repo]

    def earliest(self, repo: int = 1) -> datetime | None:
        """The earliest second a restore reaches: the end of the oldest backup (rounded up)."""
        backups = self.in_repo(repo)
        return _ceil_second(backups[0].stopped) if backups else None

    def earliest_any(self) -> datetime | None:
        """The earliest second any repository restores to."""
        return _ceil_second(min(b.stopped for b in self.backups)) if self.backups else None

    def base_for(self, at: datetime, repo: int = 1) -> PhysicalBackup | None:
        """The newest backup consistent strictly before ``at`` (recovery then replays WAL up to ``at``)."""
        fit = [b for b in self.in_repo(repo) if b.stopped < at]
        return fit[-1] if fit else None

    def base_in_any(self, at: datetime, repos: int) -> PhysicalBackup | None:
        """``base_for`` in the first repository that has one (repo1 lost or emptied: repo2...)."""
        for n in range(1, repos + 1):
            if self.in_repo(n) and (base := self.base_for(at, n)) is not None:
                return base
        return None

    def newest_full(self, repo: int = 1) -> PhysicalBackup | None:
        fulls = [b for b in self.in_repo(repo) if b.type == "full"]
        return fulls[-1] if fulls else None


def _ts(epoch: int) -> datetime:
    return datetime.fromtimestamp(int(epoch), tz=UTC)


def _ceil_second(t: datetime) -> datetime:
    return t if t.microsecond == 0 else t.replace(microsecond=0) + timedelta(seconds=1)


def parse_info(text: str, stanza: str) -> PhysicalCatalog:
    """``pgbackrest --output=json info`` -> the catalog of ``stanza`` (empty when it has none)."""
    try:
        data = json.loads(text or "[]")
    except ValueError as exc:
        raise OpsError(f"pgbackrest info printed something that is not JSON: {exc}") from None
    cat = PhysicalCatalog(stanza)
    for st in data if isinstance(data, list) else []:
        if st.get("name") != stanza:
            continue
        for a in st.get("archive") or []:
            repo = int((a.get("database") or {}).get("repo-key", 1))
            if a.get("min") and a.get("max"):
                lo, hi = cat.archive.get(repo, (a["min"], a["max"]))
                cat.archive[repo] = (min(lo, a["min"]), max(hi, a["max"]))
        for r in st.get("repo") or []:
            cat.repo_status[int(r.get("key", 1))] = (r.get("status") or {}).get("message", "?")
        for b in st.get("backup") or []:
            if b.get("error"):
                continue
            info = b.get("info") or {}
            cat.backups.append(PhysicalBackup(
                label=b["label"], type=b.get("type", "?"), repo=int((b.get("database") or {}).get("repo-key", 1)),
                started=_ts(b["timestamp"]["start"]), stopped=_ts(b["timestamp"]["stop"]),
                size=int(info.get("size") or 0), repo_size=int((info.get("repository") or {}).get("delta") or 0),
                wal_start=(b.get("archive") or {}).get("start") or "", wal_stop=(b.get("archive") or {}).get("stop") or "",
                prior=b.get("prior")))
    cat.backups.sort(key=lambda b: (b.stopped, b.repo))
    return cat


def read_catalog(gw: Gateway, env: Environment) -> PhysicalCatalog:
    require_pitr(env)
    res = gw.query(db_host(env), pgbr.info_argv(container(env)), check=False, timeout=120)
    if not res.ok:
        raise HostError(f"pgbackrest info failed in {container(env)}: {detail(res)}", host=db_host(env).name,
                        hint=f"is the accessory up with archiving? inv accessory.boot --host {env.name} postgres")
    return parse_info(res.stdout, env.pitr.stanza)


def detail(res) -> str:
    lines = [line.strip() for line in (res.stderr + "\n" + res.stdout).splitlines() if line.strip()]
    return " | ".join(lines[-3:])[-400:] or f"exit {res.exit_code}"


# -- the archiver (pg_stat_archiver of the live server) ----------------------------------------
@dataclass(frozen=True)
class ArchiverState:
    now: datetime
    last_archived_wal: str | None
    last_archived_at: datetime | None
    last_failed_wal: str | None
    last_failed_at: datetime | None
    current_wal: str

    @property
    def failing(self) -> bool:
        return self.last_failed_at is not None and (self.last_archived_at is None
                                                    or self.last_failed_at > self.last_archived_at)

    def lag(self) -> float | None:
        return (self.now - self.last_archived_at).total_seconds() if self.last_archived_at else None


ARCHIVER_SQL = ("SELECT now(), last_archived_wal, last_archived_time, last_failed_wal, last_failed_time, "
                "pg_walfile_name(pg_current_wal_lsn()) FROM pg_stat_archiver")


def parse_time(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    return datetime.fromisoformat(text.replace(" ", "T", 1)).astimezone(UTC)


def archiver_state(gw: Gateway, target: PgTarget) -> ArchiverState | None:
    """None when the live server does not answer (it may be the thing being recovered from)."""
    res = gw.query(target.host, psql_argv(target, ARCHIVER_SQL, dbname="postgres"), check=False, timeout=30)
    if not res.ok or "|" not in res.stdout:
        return None
    now, a_wal, a_at, f_wal, f_at, cur = (res.stdout.strip().splitlines()[-1].split("|") + [""] * 6)[:6]
    return ArchiverState(parse_time(now), a_wal or None, parse_time(a_at), f_wal or None, parse_time(f_at), cur)




def mark_and_switch(gw: Gateway, target: PgTarget, *, timeout: float, say: Say = _quiet,
                    env: Environment | None = None, repo: int | None = None) -> datetime:
    """Make everything committed until now restorable: a tiny committed transaction (recovery to a
    time stops at the first commit after it, so one must exist in the archive), a WAL switch, and a
    wait until the archiver has that segment, or (``env``, ``repo``) until that repository holds it:
    with repo1 lost the server's archiver fails while repo2 still receives every segment."""
    # NOTE: three psql runs, not one: statements sent together share one transaction, and the
    # switch would then come before the commit it must carry.
    def one(sql: str) -> str:
        return gw.run(target.host, psql_argv(target, sql, dbname="postgres"), timeout=60).stdout.strip()

    before = parse_time(one("SELECT clock_timestamp()"))
    one("SELECT txid_current()")
    segment = one("SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + timeout
    while True:
        state = archiver_state(gw, target)
        if state is not None and state.last_archived_wal and state.last_archived_wal[8:] >= segment[8:] \
                and state.last_archived_wal[:8] == segment[:8]:
            break
        if env is not None and repo is not None and state is not None and state.failing:
            newest = read_catalog(gw, env).archive.get(repo, ("", ""))[1]
            if newest[:8] == segment[:8] and newest[8:] >= segment[8:]:
                break
        if time.monotonic() >= deadline:
            why = (f"the archiver is failing (last failure {state.last_failed_wal} at {state.last_failed_at})"
                   if state is not None and state.failing else "it is too slow")
            raise OpsError(f"WAL segment {segment} was not archived within {timeout:g}s: {why}",
                           hint="check the accessory's archiving: inv backup.check; "
                                "docker logs of the Postgres accessory")
        time.sleep(0.5)
    say(f"  WAL up to {before:%H:%M:%S} archived (segment {segment})")
    return before.replace(microsecond=0)


# -- taking a backup -----------------------------------------------------------------------------
def choose_type(catalog: PhysicalCatalog, now: datetime, full_every_days: float, requested: str | None) -> str:
    if requested:
        if requested not in pgbr.BACKUP_TYPES:
            raise ConfigError(f"--type {requested!r} is not a backup type", hint="use full, diff or incr")
        if requested != "full" and catalog.newest_full() is None:
            return "full"
        return requested
    full = catalog.newest_full()
    if full is None or now - full.stopped >= timedelta(days=full_every_days):
        return "full"
    return "incr"


@dataclass
class BackupResult:
    backups: list[PhysicalBackup]
    type: str
    seconds: float
    warnings: list[str] = field(default_factory=list)


def plan_backup(env: Environment, requested: str | None) -> list[str]:
    require_pitr(env)
    repos = ", ".join(f"repo{n} s3://{r.bucket}{r.path}" for n, r in enumerate(env.pitr.repos, 1))
    kind = requested or f"full if the newest full is older than {env.pitr.full_every_days:g} days, else incr"
    return [f"lock environment {env.name} (backup.db)",
            f"pgbackrest backup --type={kind} in {container(env)} on {db_host(env).name} (stanza {env.pitr.stanza})",
            f"into each repository in turn: {repos}",
            f"pgbackrest expire per repository: keep {env.pitr.retention_full} full backup(s) and the WAL they need"]


def stream_counted(gw: Gateway, host, argv, label: str, progress: Progress) -> str | None:
    """Run a pgBackRest backup or restore printing detail lines, its files' bytes counted into
    a transfer; None, or why it failed (its last error lines)."""
    counts = BackupBytes()
    with progress.transfer(label, host=host.name) as transfer:
        stream = gw.stream(host, argv, idle_timeout=gw.env.ssh.command_timeout)
        try:
            with stream:
                count_stream(stream, counts, transfer)
        except RemoteCommandFailed as exc:
            transfer.finish(ok=False)
            said = [gw.mask(line) for line in counts.last_lines()]
            lines = [line.strip() for line in (exc.stderr or "").splitlines() if line.strip()] or said
            return " | ".join(lines[-3:])[-400:] or f"exit {exc.exit_code}"
    return None


def take_backup(gw: Gateway, env: Environment, *, requested: str | None = None, say: Say = _quiet,
                lock_wait: float = 0.0, lock: bool = True, now: datetime | None = None,
                progress: Progress = NO_PROGRESS) -> BackupResult:
    """One pgBackRest backup per repository, then expire; under the environment lock. With a
    progress sink each repository's backup is a transfer counted from pgBackRest's own lines."""
    require_pitr(env)
    host, name = db_host(env), container(env)
    t0 = time.monotonic()
    with Operation(gw, "backup.db", list(env.hosts.values()), say=say, version="physical", lock_wait=lock_wait,
                   lock=lock, detail=f"pgbackrest stanza {env.pitr.stanza}") as op:
        catalog = read_catalog(gw, env)
        kind = choose_type(catalog, now or datetime.now(UTC), env.pitr.full_every_days, requested)
        for n in range(1, len(env.pitr.repos) + 1):
            repo_kind = kind if catalog.newest_full(n) is not None or kind == "full" else "full"
            say(f"pgbackrest backup --type={repo_kind} into repo{n} ({name} on {host.name})")
            if progress is NO_PROGRESS:
                res = gw.run(host, pgbr.backup_argv(name, repo_kind, repo=n), check=False,
                             timeout=env.ssh.command_timeout)
                failure = None if res.ok else detail(res)
            else:
                failure = stream_counted(gw, host, pgbr.backup_argv(name, repo_kind, repo=n, console="detail"),
                                         f"pgbackrest {repo_kind} -> repo{n}", progress)
            if failure is not None:
                raise HostError(f"pgbackrest backup into repo{n} failed: {failure}", host=host.name,
                                hint="inv backup.check shows the archiver; a lagging archiver needs time "
                                     "after a bulk load")
            res = gw.run(host, pgbr.expire_argv(name, repo=n), check=False, timeout=600)
            if not res.ok:
                op.warnings.append(f"pgbackrest expire in repo{n} failed: {detail(res)}")
        after = read_catalog(gw, env)
        known = {(b.label, b.repo) for b in catalog.backups}
        new = [b for b in after.backups if (b.label, b.repo) not in known]
        labels = [f"{b.label} (repo{b.repo})" for b in new]
        op.outcome = f"physical {kind}: {', '.join(labels) or 'none'}"
    return BackupResult(new, kind, time.monotonic() - t0, op.warnings)


# -- catalog + freshness (backup.list, backup.check) --------------------------------------------
_SEGMENT = re.compile(r"[0-9A-F]{24}")
ARCHIVE_LAG_FACTOR = 3      # alert when completed WAL waits longer than this many archive_timeouts


@dataclass
class PhysicalStatus:
    catalog: PhysicalCatalog
    archiver: ArchiverState | None
    now: datetime

    def latest(self) -> datetime | None:
        """The latest restorable second right now (see ``ops.restore.pitr.latest_restorable``)."""
        a = self.archiver
        if a is None:
            return None
        if a.failing:
            return a.last_archived_at.replace(microsecond=0) if a.last_archived_at else None
        return a.now.replace(microsecond=0)

    def archive_lag(self) -> float:
        """Seconds completed WAL has waited for the archive (0 when nothing completed is waiting)."""
        a = self.archiver
        if a is None or not a.current_wal:
            return 0.0
        last = a.last_archived_wal
        # NOTE: right after a promotion the newest archived file is the timeline's history
        # file (00000002.history), not a segment: nothing to compare it with yet.
        segments = last is not None and _SEGMENT.fullmatch(last) and _SEGMENT.fullmatch(a.current_wal)
        waiting = a.failing or (last is None) or bool(
            segments and last[:8] == a.current_wal[:8] and int(a.current_wal[8:], 16) - int(last[8:], 16) > 1)
        if not waiting:
            return 0.0
        since = a.last_archived_at or a.last_failed_at or a.now
        return max(0.0, (a.now - since).total_seconds())

    def to_dict(self) -> dict:
        earliest, latest = self.catalog.earliest(), self.latest()
        return {"id": f"wal-archive-{self.catalog.stanza}", "kind": "wal-archive", "stanza": self.catalog.stanza,
                "earliest_restorable": earliest.isoformat() if earliest else None,
                "latest_restorable": latest.isoformat() if latest else None,
                "archive_lag_seconds": round(self.archive_lag(), 1),
                "archiver_failing": bool(self.archiver and self.archiver.failing),
                "repos": {str(n): {"min_wal": lo, "max_wal": hi, "status": self.catalog.repo_status.get(n, "?")}
                          for n, (lo, hi) in sorted(self.catalog.archive.items())}}

    def problems(self, *, archive_timeout: int, max_age: timedelta, full_every_days: float,
                 repos: int) -> list[str]:
        out = []
        if self.archiver is None:
            out.append("the live server does not answer: WAL archiving cannot be checked")
        elif self.archiver.failing:
            out.append(f"WAL archiving fails since {self.archiver.last_failed_at:%Y-%m-%dT%H:%M:%SZ} "
                       f"(segment {self.archiver.last_failed_wal})")
        lag = self.archive_lag()
        if lag > ARCHIVE_LAG_FACTOR * archive_timeout:
            out.append(f"archive lag {lag:.0f}s > {ARCHIVE_LAG_FACTOR}x archive_timeout ({archive_timeout}s)")
        for n in range(1, repos + 1):
            backups = self.catalog.in_repo(n)
            if not backups:
                out.append(f"no physical backup in repo{n}")
                continue
            age = self.now - backups[-1].stopped
            if age > max_age:
                out.append(f"newest physical backup in repo{n} ({backups[-1].label}) is {_hours(age)} old "
                           f"(max {_hours(max_age)})")
            full = self.catalog.newest_full(n)
            if full is None or self.now - full.stopped > timedelta(days=full_every_days) + max_age:
                out.append(f"newest full backup in repo{n} is older than pitr.full_every_days ({full_every_days:g}d)")
        maxes = {n: hi for n, (_, hi) in self.catalog.archive.items()}
        if repos > 1 and len(set(maxes.values())) > 1:
            out.append("the repositories diverge: newest archived WAL " +
                       ", ".join(f"repo{n} {w}" for n, w in sorted(maxes.items())))
        return out

    def prometheus(self, env_name: str) -> str:
        lines = ["# HELP ops_pitr_archive_lag_seconds Seconds completed WAL has waited for the archive.",
                 "# TYPE ops_pitr_archive_lag_seconds gauge",
                 f'ops_pitr_archive_lag_seconds{{env="{env_name}"}} {self.archive_lag():.1f}',
                 "# HELP ops_pitr_archiver_failing 1 when the last archive_command failed.",
                 "# TYPE ops_pitr_archiver_failing gauge",
                 f'ops_pitr_archiver_failing{{env="{env_name}"}} {int(bool(self.archiver and self.archiver.failing))}',
                 "# HELP ops_pitr_newest_backup_timestamp_seconds End of the newest physical backup, per repository and type.",
                 "# TYPE ops_pitr_newest_backup_timestamp_seconds gauge"]
        for n in sorted({b.repo for b in self.catalog.backups}):
            for kind in pgbr.BACKUP_TYPES:
                of = [b for b in self.catalog.in_repo(n) if b.type == kind]
                if of:
                    lines.append(f'ops_pitr_newest_backup_timestamp_seconds{{env="{env_name}",repo="{n}",'
                                 f'type="{kind}"}} {int(of[-1].stopped.timestamp())}')
        return "\n".join(lines) + "\n"


def _hours(td: timedelta) -> str:
    return f"{td.total_seconds() / 3600:.1f}h"


def read_status(gw: Gateway, env: Environment, target: PgTarget) -> PhysicalStatus:
    catalog = read_catalog(gw, env)
    archiver = archiver_state(gw, target)
    return PhysicalStatus(catalog, archiver, archiver.now if archiver else datetime.now(UTC))
