"""WAL archiving and the pgBackRest stanza, judged for ``inv status`` and ``inv doctor``.

Read-only: one ``pgbackrest info`` (every repository, a short ``--io-timeout`` so an
unreachable repository answers in seconds, not after a minute of retries) and one query of
``pg_stat_archiver`` on the live server. The rules are backup.check's (``ops.backup.physical``):
archive lag = how long *completed* WAL has waited for the archive, a problem above
``ARCHIVE_LAG_FACTOR`` x ``archive_timeout``. An idle database archives nothing for hours,
so the age of the newest archived segment alone is shown, never judged.

Each finding names where it applies: the database host for the archiver, ``repoN`` for a
repository, so the on-call person sees which repository fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ops.backup import physical
from ops.commands import docker
from ops.commands import pgbackrest as pgbr
from ops.errors import HostError
from ops.inventory import Environment
from ops.postgres import PgTarget, psql_argv
from ops.remote import Gateway

# pgBackRest's per-repository status codes that mean "the stanza is there and readable".
STANZA_USABLE = {0: "ok", 2: "no valid backups yet"}

ARCHIVER_SQL = ("SELECT now(), last_archived_wal, last_archived_time, last_failed_wal, last_failed_time, "
                "pg_walfile_name(pg_current_wal_lsn()), archived_count, failed_count FROM pg_stat_archiver")


@dataclass(frozen=True)
class RepoState:
    repo: int
    code: int | None       # pgBackRest's status code for this repository (None: not in its answer)
    message: str

    @property
    def usable(self) -> bool:
        return self.code in STANZA_USABLE


@dataclass(frozen=True)
class Finding:
    where: str             # the database host, or repo1, repo2...
    check: str
    ok: bool
    detail: str
    data: dict = field(default_factory=dict)


def parse_repo_states(text: str, stanza: str, repos: int) -> dict[int, RepoState]:
    """``pgbackrest --output=json info`` -> the status of each of ``repos`` repositories."""
    try:
        data = json.loads(text or "[]")
    except ValueError:
        data = []
    states = {n: RepoState(n, None, "not in pgbackrest info's answer") for n in range(1, repos + 1)}
    for st in data if isinstance(data, list) else []:
        if not isinstance(st, dict) or st.get("name") != stanza:
            continue
        for r in st.get("repo") or []:
            n = int(r.get("key", 1))
            status = r.get("status") or {}
            code = status.get("code")
            states[n] = RepoState(n, int(code) if code is not None else None, str(status.get("message") or "?"))
    return states


def read_info(gw: Gateway, env: Environment) -> str:
    """The raw JSON of ``pgbackrest info`` in the Postgres accessory (HostError when it cannot run)."""
    host = physical.db_host(env)
    res = gw.query(host, pgbr.info_argv(physical.container(env), io_timeout=env.pitr.check_io_timeout), check=False,
                   timeout=env.pitr.check_io_timeout * 6 + 30)
    if not res.ok:
        raise HostError(f"pgbackrest info failed in {physical.container(env)}: {physical.detail(res)}", host=host.name,
                        hint=f"is the accessory up? inv accessory.boot --host {env.name} postgres")
    return res.stdout


@dataclass(frozen=True)
class Archiver:
    state: physical.ArchiverState
    archived_count: int
    failed_count: int


def read_archiver(gw: Gateway, target: PgTarget) -> Archiver | None:
    """None when the live server does not answer."""
    res = gw.query(target.host, psql_argv(target, ARCHIVER_SQL, dbname="postgres"), check=False, timeout=30)
    if not res.ok or "|" not in res.stdout:
        return None
    return parse_archiver(res.stdout.strip().splitlines()[-1])


def parse_archiver(line: str) -> Archiver:
    now, a_wal, a_at, f_wal, f_at, cur, archived, failed = (line.split("|") + [""] * 8)[:8]
    state = physical.ArchiverState(physical.parse_time(now), a_wal or None, physical.parse_time(a_at),
                                   f_wal or None, physical.parse_time(f_at), cur)
    return Archiver(state, int(archived or 0), int(failed or 0))


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def stanza_findings(env: Environment, repos: dict[int, RepoState]) -> list[Finding]:
    """Per repository: is the stanza there and readable (doctor's check; status shows it too)."""
    out = []
    for n, st in sorted(repos.items()):
        repo = env.pitr.repos[n - 1] if n <= len(env.pitr.repos) else None
        where = f"s3://{repo.bucket}{repo.path}" if repo else ""
        if st.usable:
            out.append(Finding(f"repo{n}", "stanza", True, f"{env.pitr.stanza} {STANZA_USABLE[st.code]} ({where})",
                               {"code": st.code, "message": st.message}))
        else:
            out.append(Finding(f"repo{n}", "stanza", False,
                               f"{env.pitr.stanza} in {where}: {st.message} (pgBackRest status {st.code}) — "
                               f"RUNBOOK.md 'archive lag'; once the repository answers: "
                               f"inv accessory.boot --host {env.name} postgres",
                               {"code": st.code, "message": st.message}))
    return out


def archiver_findings(env: Environment, host: str, archiver: Archiver | None,
                      lag: float) -> list[Finding]:
    if archiver is None:
        return [Finding(host, "archiver", False, "the live server does not answer: WAL archiving cannot be checked")]
    a = archiver.state
    data = {"last_archived_wal": a.last_archived_wal,
            "last_archived_at": a.last_archived_at.isoformat() if a.last_archived_at else None,
            "age_seconds": round(a.lag(), 1) if a.lag() is not None else None,
            "archived_count": archiver.archived_count, "failed_count": archiver.failed_count,
            "last_failed_wal": a.last_failed_wal,
            "last_failed_at": a.last_failed_at.isoformat() if a.last_failed_at else None, "failing": a.failing}
    newest = (f"last archived {a.last_archived_wal} {_ago(a.lag())} ago" if a.last_archived_wal
              else "nothing archived yet")
    failures = f"{archiver.failed_count} failed" + (
        f" (last {a.last_failed_wal} at {a.last_failed_at:%Y-%m-%dT%H:%M:%SZ})" if a.last_failed_at else "")
    if a.failing:
        detail = (f"archiving FAILS since {a.last_failed_at:%Y-%m-%dT%H:%M:%SZ} (segment {a.last_failed_wal}); "
                  f"{newest}; {failures} — RUNBOOK.md 'archive lag'")
    else:
        detail = f"{newest}; {failures}"
    limit = physical.ARCHIVE_LAG_FACTOR * env.pitr.archive_timeout
    lag_ok = lag <= limit
    lag_detail = (f"{lag:.0f} s of completed WAL waiting (limit {limit} s = {physical.ARCHIVE_LAG_FACTOR}x "
                  f"archive_timeout)")
    if not lag_ok:
        lag_detail += " — point-in-time recovery loses more than promised: RUNBOOK.md 'archive lag'"
    return [Finding(host, "archiver", not a.failing, detail, data),
            Finding(host, "archive lag", lag_ok, lag_detail, {"lag_seconds": round(lag, 1), "limit_seconds": limit})]


def repo_archive_findings(env: Environment, catalog: physical.PhysicalCatalog,
                          archiver: Archiver | None) -> list[Finding]:
    """Per repository: its newest archived WAL, against what the server last archived."""
    out = []
    server = archiver.state.last_archived_wal if archiver else None
    for n in range(1, len(env.pitr.repos) + 1):
        lo, hi = catalog.archive.get(n, (None, None))
        if hi is None:
            out.append(Finding(f"repo{n}", "archive", False, "holds no WAL: archiving into it does not work",
                               {"min_wal": None, "max_wal": None}))
            continue
        data = {"min_wal": lo, "max_wal": hi, "server_last_archived": server}
        # NOTE: names sort in WAL order within a timeline; the tail compares segments across them.
        behind = server is not None and hi[8:] < server[8:]
        if behind:
            out.append(Finding(f"repo{n}", "archive", False,
                               f"newest {hi}, behind the server's last archived {server}: this repository "
                               "misses WAL", data))
            continue
        age = archiver.state.lag() if archiver and archiver.state.lag() is not None and hi == server else None
        data["age_seconds"] = round(age, 1) if age is not None else None
        out.append(Finding(f"repo{n}", "archive", True,
                           f"newest {hi}" + (f", archived {_ago(age)} ago" if age is not None else ""), data))
    return out


def backup_findings(env: Environment, catalog: physical.PhysicalCatalog, now: datetime) -> list[Finding]:
    """Per repository: the newest full, diff and incr backup and their ages. Judged as backup.check
    judges them only where physical backups are the default kind (else shown, not judged)."""
    judged = env.pitr.default_kind == "physical"
    max_age = timedelta(hours=env.backup.max_age_hours)
    out = []
    for n in range(1, len(env.pitr.repos) + 1):
        backups = catalog.in_repo(n)
        newest = {kind: [b for b in backups if b.type == kind][-1:] for kind in ("full", "diff", "incr")}
        ages = {kind: (now - b[0].stopped).total_seconds() for kind, b in newest.items() if b}
        text = ", ".join(f"{kind} {_ago(age)} ago" for kind, age in ages.items()) or "no physical backup"
        problems = []
        if not backups:
            problems.append("no physical backup")
        else:
            if now - backups[-1].stopped > max_age:
                problems.append(f"newest older than backup.max_age_hours ({env.backup.max_age_hours:g}h)")
            full = catalog.newest_full(n)
            if full is None or now - full.stopped > timedelta(days=env.pitr.full_every_days) + max_age:
                problems.append(f"newest full older than pitr.full_every_days ({env.pitr.full_every_days:g}d)")
        data = {"newest": {k: b[0].label for k, b in newest.items() if b},
                "age_seconds": {k: round(v, 1) for k, v in ages.items()}, "judged": judged}
        if problems and judged:
            out.append(Finding(f"repo{n}", "backups", False, f"{text}: {'; '.join(problems)} — "
                                                             f"inv backup.db --host {env.name} --physical", data))
        else:
            note = f" (not judged: pitr.default_kind is {env.pitr.default_kind})" if problems else ""
            out.append(Finding(f"repo{n}", "backups", True, text + note, data))
    return out


def status_findings(gw: Gateway, env: Environment, target: PgTarget) -> list[Finding]:
    """Everything ``inv status`` shows about archiving, the stanza and physical backups."""
    host = physical.db_host(env).name
    archiver = read_archiver(gw, target)
    try:
        text = read_info(gw, env)
    except HostError as exc:
        return [Finding(host, "pgbackrest", False, exc.message + (f" — {exc.hint}" if exc.hint else ""))] + \
            archiver_findings(env, host, archiver, _lag(archiver))
    repos = parse_repo_states(text, env.pitr.stanza, len(env.pitr.repos))
    catalog = physical.parse_info(text, env.pitr.stanza)
    now = archiver.state.now if archiver else datetime.now(UTC)
    return (archiver_findings(env, host, archiver, _lag(archiver)) + stanza_findings(env, repos)
            + repo_archive_findings(env, catalog, archiver) + backup_findings(env, catalog, now))


def _lag(archiver: Archiver | None) -> float:
    """backup.check's archive lag (``PhysicalStatus.archive_lag``: a timeline history file as the
    newest archived file, right after a promotion, counts as nothing waiting)."""
    if archiver is None:
        return 0.0
    state = archiver.state
    return physical.PhysicalStatus(physical.PhysicalCatalog(""), state, state.now).archive_lag()


def doctor_findings(gw: Gateway, env: Environment) -> list[Finding]:
    """Doctor's check on the database host: the stanza readable in every repository."""
    host = physical.db_host(env)
    name = physical.container(env)
    running = gw.query(host, docker.inspect_argv(name, fmt="{{.State.Running}}"), check=False)
    if not running.ok or running.stdout.strip() != "true":
        return [Finding("pitr", "pitr", True, f"not checked: {name} is not running "
                                               f"(inv accessory.boot --host {env.name} postgres)")]
    try:
        text = read_info(gw, env)
    except HostError as exc:
        return [Finding("pitr", "pitr", False, exc.message)]
    return stanza_findings(env, parse_repo_states(text, env.pitr.stanza, len(env.pitr.repos)))


__all__ = ["Finding", "RepoState", "doctor_findings", "parse_archiver", "parse_repo_states", "status_findings"]
