"""Physical backup and restore to the second of a >= 1 GB database of barely compressible rows on the
sandbox fleet, against plain baselines measured in the same run (issue 11), and the same commands with
and without a terminal attached (issue 12, item 5).

    flock /tmp/fleet.lock .venv/bin/python -m bench.backup_restore [--gib 1.1] [--out BENCHMARKS.md]

In order (see bench/README.md for every figure):

1. ``bench_random`` (id, 976 random bytes from pgcrypto's ``gen_random_bytes``) grown to ``--gib`` in
   the app database; then the archiver is let catch up (a marked commit, a WAL switch, archived).
2. Baselines inside the Postgres accessory on db1: ``pg_dump -Fc | wc -c`` (the dump's size;
   /dev/null with a byte count) and ``pg_basebackup -Ft -X fetch -D - | wc -c``.
3. ``inv backup.db --logical`` (reference: the portable kind), then its object staged into the
   container and restored with plain ``pg_restore`` into a scratch database (the restore baseline).
4. ``inv restore --logical --id ID --dry-run`` (download + SHA-256 of the object, a live progress bar)
   and ``inv backup.db --physical --type full`` (pgBackRest into both repositories), each ``--rounds``
   times without and with a pseudo-terminal, alternating.
5. A steady writer (a row every 0.25 s) for ``--window`` seconds while ``pg_stat_archiver`` is read
   every second: archive lag; T = a whole second in the middle of the window.
6. ``inv restore --at T --physical --yes`` while GET /api/health goes to both web hosts every 0.2 s;
   then the writer's rows counted: those committed before T all there, those begun after T none.
7. Cleanup whatever failed: the kept old Postgres container and volume, the bench tables (and
   pgcrypto when the bench created it), the scratch database, the staged file, the logical backup
   object, the bench's physical backups (a small full taken after the tables are gone, then
   ``pgbackrest expire --set`` of each bench backup); the site's health checked.

Only 127.0.0.1 (nginx :8101/:8102, Postgres :15432, S3) and the sandbox containers (through ops' own
SSH gateway) are contacted. Every remote command and child process has a timeout, every loop a
deadline; ``--max-total-seconds`` skips the optional rounds once spent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from bench.child_process import Child, log, run_child
from bench.http_probe import Probe, health
from bench.report import write_section
from bench.steady_writer import TABLE as RPO_TABLE
from bench.steady_writer import SteadyWriter, archive_lag, count_restored
from ops import postgres, s3, sandbox
from ops.appenv import load_env_file
from ops.backup import physical
from ops.backup.catalog import list_backups
from ops.backup.context import BackupContext
from ops.backup.stream_upload import download_stream
from ops.backup.timeparse import format_utc
from ops.commands import docker
from ops.inventory import Environment, load_environment
from ops.masking import Masker
from ops.remote import Gateway, pipe_into
from ops.restore.database import drop_database_sql
from ops.sandbox import services

INV = str(Path(sys.executable).with_name("inv"))
GiB = 1024 ** 3
MiB = 1024 ** 2
TABLE = "bench_random"
BODY_BYTES = 976          # 8 rows per 8 KiB heap page; below the TOAST threshold (never compressed)
CHUNK_ROWS = 100_000      # rows per INSERT while growing the table (~100 MiB)
MAX_CHUNKS = 200          # bound of the growing loop (~20 GiB)
SCRATCH_DB = "bench_restore_scratch"
STAGED = "/tmp/bench-backup-restore.dump"   # inside the accessory container
SECTION = "backup-bench"
REMOTE_TIMEOUT = 3600.0
DB_PORT = 15432           # db1's Postgres published on 127.0.0.1 (sandbox.publish)


# ---------------------------------------------------------------------------------------------
# the fleet
# ---------------------------------------------------------------------------------------------
class Fleet:
    def __init__(self, env: Environment, gw: Gateway):
        self.env = env
        self.gw = gw
        self.target = postgres.pg_target(env, load_env_file(env.env_file))
        self.client = s3.client(env)
        self.host = self.target.host
        self.made_pgcrypto = False

    @property
    def conninfo(self) -> dict:
        t = self.target
        return {"host": "127.0.0.1", "port": DB_PORT, "user": t.user, "password": t.password, "dbname": t.dbname}

    def run(self, *argv: str, timeout: float = REMOTE_TIMEOUT, user: str | None = None) -> tuple[float, str]:
        """(seconds, stdout) of a command inside the accessory container on db1 (raises on failure)."""
        t0 = time.monotonic()
        res = self.gw.run(self.host, docker.exec_argv(self.target.container, *argv, user=user), timeout=timeout)
        return time.monotonic() - t0, res.stdout

    def sql(self, query: str, dbname: str | None = None, timeout: float = 600) -> str:
        _, out = self.run("psql", "--no-password", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                          f"--username={self.target.user}", f"--dbname={dbname or self.target.dbname}", "-c", query,
                          timeout=timeout)
        return out.strip()

    def sizes(self) -> tuple[int, int]:
        """(database, bench table with its index) bytes on disk."""
        db, tbl = self.sql(f"SELECT pg_database_size(current_database()), "
                           f"coalesce(pg_total_relation_size(to_regclass('{TABLE}')), 0)").split("|")
        return int(db), int(tbl)

    def grow(self, gib: float) -> tuple[int, float]:
        """Grow the bench table to ``gib`` GiB on disk; (rows, seconds)."""
        t0 = time.monotonic()
        if self.sql("SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'") == "0":
            self.sql("CREATE EXTENSION pgcrypto")
            self.made_pgcrypto = True
        # NOTE: autovacuum off on this table: an insert-triggered vacuum would otherwise write and
        # archive the whole table again at a moment of its choosing, in the middle of a timed run.
        self.sql(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, body bytea NOT NULL) "
                 "WITH (autovacuum_enabled = false)")
        rows = 0
        for _ in range(MAX_CHUNKS):
            if self.sizes()[1] >= gib * GiB:
                break
            self.sql(f"INSERT INTO {TABLE} SELECT g, gen_random_bytes({BODY_BYTES}) "
                     f"FROM generate_series({rows + 1}, {rows + CHUNK_ROWS}) g", timeout=1800)
            rows += CHUNK_ROWS
            log(f"  {rows:,} rows, {self.sizes()[1] / GiB:.2f} GiB")
        self.sql(f"ANALYZE {TABLE}")
        return rows, time.monotonic() - t0

    def drop_tables(self) -> None:
        self.sql(f"DROP TABLE IF EXISTS {TABLE}, {RPO_TABLE}")
        if self.made_pgcrypto:
            self.sql("DROP EXTENSION IF EXISTS pgcrypto")

    def drop_db(self, name: str) -> None:
        self.sql(drop_database_sql(name), dbname="postgres")

    def counted(self, what: str, script: str) -> tuple[float, int]:
        """(seconds, bytes) of ``script`` (a pipeline ending in ``wc -c``) in the container, with pipefail."""
        seconds, out = self.run("bash", "-o", "pipefail", "-c", script, what, self.target.user, self.target.dbname)
        return seconds, int(out.strip().splitlines()[-1])

    def pg_dump(self) -> tuple[float, int]:
        return self.counted("pg_dump", 'pg_dump -Fc --no-password --username="$1" --dbname="$2" | wc -c')

    def pg_basebackup(self) -> tuple[float, int]:
        return self.counted("pg_basebackup", 'pg_basebackup --no-password --username="$1" -D - -Ft -X fetch '
                                             '--checkpoint=fast | wc -c')

    def archive_now(self, timeout: float = 900) -> float:
        """Everything committed until now in the archive (the tool's own marked commit + WAL switch)."""
        t0 = time.monotonic()
        physical.mark_and_switch(self.gw, self.target, timeout=timeout)
        return time.monotonic() - t0

    def stage(self, object_key: str) -> float:
        """The logical backup's object into a file in the container (S3 -> here -> SSH -> docker exec -i)."""
        t0 = time.monotonic()
        body, _ = download_stream(self.client, self.env.s3.bucket, object_key)
        try:
            pipe_into(self.gw, self.host, docker.exec_argv(self.target.container, "sh", "-c", 'cat > "$1"', "stage",
                                                           STAGED, interactive=True), body)
        finally:
            body.close()
        return time.monotonic() - t0

    def pg_restore_file(self) -> float:
        self.drop_db(SCRATCH_DB)
        self.run("createdb", "--no-password", f"--username={self.target.user}", "--template=template0", SCRATCH_DB)
        try:
            seconds, _ = self.run("pg_restore", "--no-password", f"--username={self.target.user}",
                                  f"--dbname={SCRATCH_DB}", "--no-owner", "--exit-on-error", STAGED)
        finally:
            self.drop_db(SCRATCH_DB)
        return seconds

    def delete_logical(self, ids: set[str]) -> list[str]:
        """Delete this run's logical backups from the primary and, with ``s3.copy``, from the copy."""
        gone = []
        copy = BackupContext(self.env).copy_context()
        for env, client in [(self.env, self.client), *([(copy.env, copy.client)] if copy else [])]:
            bucket = env.s3.bucket
            for entry in list_backups(env, client, kind="db"):
                if entry.id in ids:
                    for key in (entry.data_key, entry.manifest_key):
                        with contextlib.suppress(BotoCoreError, ClientError):
                            client.delete_object(Bucket=bucket, Key=key)
                    gone.append(entry.id)
        return sorted(set(gone))

    def pgbackrest_full(self, repo: int, *, bundle: bool) -> float:
        """A full pgBackRest backup into one repository straight in the container (no tool around it)."""
        name = physical.container(self.env)
        t0 = time.monotonic()
        self.gw.run(self.host, docker.exec_argv(name, "pgbackrest", f"--repo={repo}", "--type=full",
                                                *([f"--repo{repo}-bundle"] if bundle else []), "backup",
                                                user="postgres"), timeout=REMOTE_TIMEOUT)
        return time.monotonic() - t0

    def last_backup_log(self, limit: int = 24) -> list[str]:
        """pgBackRest's own INFO lines of its most recent backup command (timestamps in the container)."""
        path = f"/var/log/pgbackrest/{self.env.pitr.stanza}-backup.log"
        _, out = self.run("sh", "-c", 'tac "$1" | sed "/backup command begin/q" | tac', "log", path, timeout=60)
        lines = [ln for ln in out.splitlines() if " P00 " in ln and ("INFO" in ln or "WARN" in ln)]
        return [ln[:200] for ln in lines[:limit]]

    def catalog(self) -> physical.PhysicalCatalog:
        return physical.read_catalog(self.gw, self.env)

    def expire(self, sets) -> None:
        """``pgbackrest expire --set`` of each (label, repo) still in the catalog."""
        name = physical.container(self.env)
        have = {(b.label, b.repo) for b in self.catalog().backups}
        for label, repo in sorted(set(sets) & have):
            self.gw.run(self.host, docker.exec_argv(name, "pgbackrest", f"--repo={repo}", f"--set={label}", "expire",
                                                    user="postgres"), timeout=600)


# ---------------------------------------------------------------------------------------------
# the runs
# ---------------------------------------------------------------------------------------------
@dataclass
class PhysicalRun:
    child: Child
    labels: list[tuple[str, int]] = field(default_factory=list)    # (label, repo)
    pgbr_seconds: dict[int, float] = field(default_factory=dict)   # repo -> pgBackRest's own stop - start
    repo_bytes: dict[int, int] = field(default_factory=dict)

    def stage(self, name: str) -> float | None:
        c = self.child
        r1, r2 = c.at("pgbackrest backup --type=full into repo1"), c.at("pgbackrest backup --type=full into repo2")
        return {"start": r1, "repo1": (r2 - r1) if r1 is not None and r2 is not None else None,
                "repo2": (c.wall - r2) if r2 is not None else None}[name]


def physical_backup(fleet: Fleet, tty: bool, n: int) -> PhysicalRun:
    before = {(b.label, b.repo) for b in fleet.catalog().backups}
    c = run_child(f"physical full #{n}", [INV, "backup.db", "--host", "sandbox", "--physical", "--type", "full",
                                          "--lock-wait", "300"], REMOTE_TIMEOUT, tty=tty)
    run = PhysicalRun(c)
    if not c.ok:
        raise RuntimeError(c.failure())
    for b in fleet.catalog().backups:
        if (b.label, b.repo) not in before:
            run.labels.append((b.label, b.repo))
            run.pgbr_seconds[b.repo] = (b.stopped - b.started).total_seconds()
            run.repo_bytes[b.repo] = b.repo_size
    return run


def restore_check(backup_id: str, tty: bool, n: int) -> Child:
    c = run_child(f"restore check #{n}", [INV, "restore", "--host", "sandbox", "--logical", "--id", backup_id,
                                          "--dry-run"], REMOTE_TIMEOUT, tty=tty)
    if not c.ok:
        raise RuntimeError(c.failure())
    return c


def wait_db(conninfo: dict, limit: float = 120) -> None:
    import psycopg

    deadline = time.monotonic() + limit
    while True:
        try:
            with psycopg.connect(**conninfo, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join("-" if c is None else str(c) for c in row) + " |" for row in rows]


def f1(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def ratio(a, b) -> str:
    if a is None or b is None or not b or (isinstance(a, float) and math.isnan(a)):
        return "-"
    return f"{a / b:.2f}x"


def mib(n) -> str:
    return "-" if n is None else f"{n / MiB:,.1f} MiB"


def kib(n) -> str:
    return "-" if n is None else f"{n / 1024:,.1f} KiB"


def med(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs) -> str:
    xs = [x for x in xs if x is not None]
    return f"{med(xs):.1f} s ({min(xs):.1f}–{max(xs):.1f}, n={len(xs)})" if xs else "-"


def machine() -> str:
    mem = cpu = ""
    with contextlib.suppress(OSError):
        mem = next((f"{int(ln.split()[1]) / 1024 / 1024:.1f} GiB" for ln in Path("/proc/meminfo").read_text()
                    .splitlines() if ln.startswith("MemTotal:")), "")
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    dock = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True,
                          timeout=30).stdout.strip()
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem} RAM, kernel {platform.release()}, Python "
            f"{platform.python_version()}, Docker {dock}; the operator process, the three DinD hosts, Postgres, "
            "pgBackRest, the TLS front (stunnel) and the S3 endpoint (moto) all share these CPUs")


def report(ctx: dict) -> str:
    L = ["# Benchmarks: physical backup and restore to the second (sandbox fleet, barely compressible data)", "",
         "Generated by `bench/backup_restore.py` (see `bench/README.md` for what each figure means); this section "
         "is rewritten between its markers on each run.", "",
         f"- date: {ctx['date']} (UTC); total run time {ctx.get('total', 0):.0f} s",
         f"- machine: {ctx['machine']}",
         f"- command: `{ctx['command']}`"]
    if "rows" in ctx:
        db, tbl = ctx["db_size"], ctx["table_size"]
        L += [f"- data: `{TABLE}` in the app database `{ctx['dbname']}`: {ctx['rows']:,} rows of {BODY_BYTES} random "
              f"bytes (pgcrypto `gen_random_bytes`), **{tbl / GiB:.2f} GiB** on disk with its index; the database "
              f"{db / GiB:.2f} GiB (`pg_database_size`); grown in {ctx['grow_s']:.0f} s, archiver caught up "
              f"{ctx['catchup_s']:.0f} s later"]
    if "dump_bytes" in ctx:
        L += [f"- compressibility: `pg_dump -Fc` writes {mib(ctx['dump_bytes'])} for {ctx['db_size'] / GiB:.2f} GiB "
              f"on disk (on disk / dump = **{ctx['db_size'] / ctx['dump_bytes']:.2f}:1**; the pgbench data of the "
              "previous version of this bench was 56:1); `pg_basebackup` tar "
              f"{mib(ctx.get('basebackup_bytes'))}" + (f"; pgBackRest (zst + aes-256-cbc) stores "
                                                       f"{mib(ctx['repo_bytes'])} per repository"
                                                       if ctx.get("repo_bytes") else "")]
    L.append("")
    if ctx["errors"]:
        L += ["**Errors in this run:**", ""] + [f"- {e}" for e in ctx["errors"]] + [""]

    dump = ctx.get("pg_dump_s")
    phys = ctx.get("physical", [])
    plain = [r for r in phys if not r.child.tty]
    phys_wall = med([r.child.wall for r in plain])
    # 1. backup
    L += ["## 1. Backup wall time vs baselines (same run, same data)", "",
          "Baselines run inside the Postgres accessory on db1 (`docker exec` through the SSH gateway), the byte "
          "count by `wc -c` instead of a file. `inv` runs are child processes of the bench: wall from spawn to "
          "exit (CLI start-up included), peak RSS and CPU their own (`wait4`). Rows in the order run.", ""]
    rows = [["`pg_dump -Fc \\| wc -c` (the target's baseline)", f1(dump), mib(ctx.get("dump_bytes")), "-", "-",
             "1.00x"],
            ["`pg_basebackup -Ft -X fetch -D - \\| wc -c` (raw copy, no compression)", f1(ctx.get("basebackup_s")),
             mib(ctx.get("basebackup_bytes")), "-", "-", ratio(ctx.get("basebackup_s"), dump)]]
    if ctx.get("startup"):
        s = ctx["startup"]
        rows.append(["`inv backup.db --physical --dry-run` (CLI start-up + plan, contacts nothing)", f1(s.wall), "-",
                     mib(s.maxrss_kib * 1024), f1(s.cpu), ratio(s.wall, dump)])
    if ctx.get("logical"):
        lg = ctx["logical"]
        rows.append(["`inv backup.db --logical` (pg_dump -Fc streamed to S3, counts + checksums)", f1(lg.wall),
                     mib(ctx.get("logical_bytes")), mib(lg.maxrss_kib * 1024), f1(lg.cpu), ratio(lg.wall, dump)])
    for i, r in enumerate(phys, 1):
        rows.append([f"`inv backup.db --physical --type full` #{i}" + (" (terminal)" if r.child.tty else ""),
                     f1(r.child.wall), " + ".join(mib(r.repo_bytes.get(n)) for n in sorted(r.repo_bytes)) or "-",
                     mib(r.child.maxrss_kib * 1024), f1(r.child.cpu), ratio(r.child.wall, dump)])
    L += table(["run", "wall s", "bytes", "peak RSS (operator)", "operator CPU s", "vs pg_dump -Fc"], rows)
    if plain:
        L += ["", f"- **physical full backup (median of {len(plain)} run(s) without a terminal) / `pg_dump -Fc`: "
                  f"{ratio(phys_wall, dump)}** ({f1(phys_wall)} s vs {f1(dump)} s); / `pg_basebackup`: "
                  f"{ratio(phys_wall, ctx.get('basebackup_s'))}"]
        if ctx.get("logical"):
            L += [f"- logical `backup.db --logical` / `pg_dump -Fc`: {ratio(ctx['logical'].wall, dump)}; "
                  f"physical / logical: {ratio(phys_wall, ctx['logical'].wall)}"]
        L += ["", "Where a physical backup's time goes (median over every run; stages from the times its own "
                  "lines appeared, and pgBackRest's own start/stop per repository from `pgbackrest info`):", ""]
        L += table(["stage", "median s", "share of the wall"], [
            ["CLI start-up, lock, catalog (`pgbackrest info`), choose the type",
             f1(med([r.stage("start") for r in phys])), ratio(med([r.stage("start") for r in phys]),
                                                               med([r.child.wall for r in phys]))],
            ["repo1: `pgbackrest backup` + `expire`", f1(med([r.stage("repo1") for r in phys])),
             ratio(med([r.stage("repo1") for r in phys]), med([r.child.wall for r in phys]))],
            ["· of which pgBackRest's backup (its start .. stop)", f1(med([r.pgbr_seconds.get(1) for r in phys])), ""],
            ["repo2 (the second copy): `pgbackrest backup` + `expire`, catalog, unlock",
             f1(med([r.stage("repo2") for r in phys])),
             ratio(med([r.stage("repo2") for r in phys]), med([r.child.wall for r in phys]))],
            ["· of which pgBackRest's backup (its start .. stop)", f1(med([r.pgbr_seconds.get(2) for r in phys])), ""]])
    bp = ctx.get("bundle_probe")
    if bp and False in bp and True in bp:
        L += ["", "The same full backup of repo1 run straight in the container (`pgbackrest --repo=1 --type=full "
                  "backup`, no tool around it), without and with pgBackRest's `--repo1-bundle` (small files packed "
                  "into bundles: one S3 object instead of one per file):", ""]
        L += table(["direct pgBackRest full backup, repo1 only", "wall s", "stored", "vs pg_dump -Fc"], [
            ["repo-bundle off (what the tool configures)", f1(bp[False]), mib(bp.get("bytesFalse")),
             ratio(bp[False], dump)],
            ["repo-bundle on", f1(bp[True]), mib(bp.get("bytesTrue")), ratio(bp[True], dump)]])
    if ctx.get("pgbr_log"):
        L += ["", "pgBackRest's own log of the last backup above (repo2; INFO lines, container clock):", "", "```"]
        L += ctx["pgbr_log"] + ["```"]
    L.append("")

    # 2. restore
    rs = ctx.get("restore")
    base = ctx.get("pg_restore_s")
    L += ["## 2. Restore to a second vs `pg_restore` of the same data", ""]
    rrows = [["staging the logical backup's object into the container (S3 -> operator -> SSH; not in the baseline)",
              f1(ctx.get("stage_s")), ratio(ctx.get("stage_s"), base)],
             ["**baseline: `pg_restore` (1 job) of the staged file into a scratch database**", f1(base), "1.00x"]]
    if rs is not None:
        c = rs["child"]
        ats = rs["at"]
        rrows += [[f"**`inv restore --at {format_utc(ctx['at'])} --physical --yes`: whole command**", f1(c.wall),
                   ratio(c.wall, base)]]
        marks = [("CLI start-up, plan (catalog, archiver, web containers) up to its print", None, "plan"),
                 ("lock, marked commit + WAL switch, wait until archived", "plan", "restore"),
                 ("`pgbackrest restore` of the full backup into a new volume", "restore", "restored"),
                 ("scratch server: WAL replay to T, promote, checks (last commit <= T, row counts)", "restored",
                  "checked"),
                 ("scratch server stopped, new timeline queued for the archive", "checked", "traffic"),
                 ("traffic stopped: maintenance page, app stopped", "traffic", "stop_old"),
                 ("· old Postgres stopped (archives its last WAL) and kept", "stop_old", "start_new"),
                 ("· restored Postgres started on the new volume, stanza checked", "start_new", "back"),
                 ("· app started again behind its health check, maintenance page off", "back", "end")]
        for what, a, b in marks:
            ta = 0.0 if a is None else ats.get(a)
            tb = ats.get(b)
            rrows.append([what, f1(tb - ta) if ta is not None and tb is not None else "-",
                          ratio(tb - ta, base) if ta is not None and tb is not None else "-"])
        d = rs["data"]
        rrows.append(["as the tool reports it: restore and replay / traffic stopped",
                      f"{f1(d.get('restore_seconds'))} / {f1(d.get('downtime_seconds'))}", ""])
    L += table(["step", "wall s", "vs pg_restore"], rrows)
    if rs is not None:
        c = rs["child"]
        L += ["", f"- **restore wall / `pg_restore`: {ratio(c.wall, base)}** ({f1(c.wall)} s vs {f1(base)} s); "
                  f"peak RSS of `inv restore`: {mib(c.maxrss_kib * 1024)}, operator CPU {f1(c.cpu)} s",
              f"- WAL replayed: from the last full backup's end to T ({rs['wal_note']})", "",
              "What clients saw during `inv restore` (GET /api/health on 127.0.0.1:8101/8102 every 0.2 s; seconds "
              "from the command's start; unavailable = from a host's first non-200 answer to its next 200):", ""]
        L += table(["host", "requests", "not 200", "answers", "outages (s)", "unavailable s"], rs["probe"])
        L += ["", f"- **site unavailable: {f1(rs['unavailable'])} s** (the longer of the two hosts)"]
    L.append("")

    # 3. RPO + archive lag
    rpo = ctx.get("rpo")
    if rpo is not None:
        L += ["## 3. Measured RPO and archive lag under a steady write load", "",
              f"A writer committed one row every {ctx['writer_interval']} s for {ctx['window']:.0f} s "
              f"({len(ctx['writer_rows'])} rows) through 127.0.0.1:{DB_PORT}; T = {format_utc(ctx['at'])}, a whole "
              "second in the middle. After the restore:", ""]
        L += table(["rows", "written", "present after the restore", "expected"], [
            ["committed (acknowledged) before T", rpo.before, rpo.before_present, "all"],
            ["begun after T", rpo.after, rpo.after_present, "none"],
            ["begun at or before T, acknowledged after it (either is right)", rpo.straddling, "-", "either"]])
        lc = (ctx.get("restore") or {}).get("data", {}).get("latest_commit")
        L += ["", f"- **rows lost: {rpo.lost}**; rows after T restored: {rpo.after_present}; the tool's own check: "
                  f"last replayed commit {lc or '-'} <= T"]
        newest, oldest = ctx["lag"]
        L += [f"- archive_timeout (sandbox): {ctx['archive_timeout']} s; over the window, the newest archived "
              f"segment's age (`now() - pg_stat_archiver.last_archived_time`) peaked at **{newest:.1f} s**; the "
              f"oldest commit not yet archived (its WAL file after `last_archived_wal`) was at most "
              f"**{oldest:.1f} s** old ({len(ctx['samples'])} samples, 1 s apart)"]
        if ctx.get("writer_errors"):
            L += [f"- writer: {'; '.join(ctx['writer_errors'])}"]
        L.append("")

    # 4. terminal or not
    tty = ctx.get("tty_rows")
    if tty:
        L += ["## 4. With and without a terminal (issue 12, item 5)", "",
              "The same commands, same data, same run, alternating; *terminal* = stdin/stdout/stderr a 160x50 "
              "pseudo-terminal drained by a thread (progress redraws on, colour on); *no terminal* = pipes (plain "
              "lines). Median (min–max, n) of the wall time.", ""]
        L += table(["command", "no terminal", "terminal", "terminal / no terminal (medians)",
                    "bytes drawn (terminal / plain)"], tty)
        L.append("")

    # 5. targets
    L += ["## Against the targets of issue 11", ""]
    trows = []
    if plain and dump:
        trows.append(["physical backup <= 1.0x `pg_dump -Fc`", ratio(phys_wall, dump),
                      "met" if phys_wall <= dump else "missed"])
    if rs is not None and base:
        w = rs["child"].wall
        trows.append(["restore wall <= 1.0x `pg_restore`", ratio(w, base), "met" if w <= base else "missed"])
        trows.append(["site unavailable <= 15 s for 1 GB", f"{rs['unavailable']:.1f} s",
                      "met" if rs["unavailable"] <= 15 else "missed"])
    rss = [r.child.maxrss_kib for r in phys] + ([rs["child"].maxrss_kib] if rs else []) + \
          ([ctx["logical"].maxrss_kib] if ctx.get("logical") else [])
    if rss:
        trows.append(["operator peak RSS <= 150 MB (backups and restore)", f"max {max(rss) * 1024 / 1e6:.0f} MB",
                      "met" if max(rss) * 1024 <= 150e6 else "missed"])
    if rpo is not None:
        trows.append(["RPO within the archive: 0 rows lost", f"{rpo.lost} lost, {rpo.after_present} extra",
                      "met" if rpo.lost == 0 and rpo.after_present == 0 else "missed"])
        newest, oldest = ctx["lag"]
        bound = ctx["archive_timeout"] + 5
        trows.append([f"archive lag <= archive_timeout + 5 s ({bound} s)",
                      f"oldest unarchived commit {oldest:.1f} s; newest segment age {newest:.1f} s",
                      "met" if max(oldest, newest) <= bound else "missed"])
    if "db_size" in ctx and ctx["db_size"] < ctx["min_gib"] * GiB:
        trows.append([f">= {ctx['min_gib']} GiB of data", f"{ctx['db_size'] / GiB:.2f} GiB", "missed: raise --gib"])
    L += table(["target", "measured", ""], trows) + [""]
    L += ["## Interpretation", ""] + [f"- {line}" for line in ctx.get("notes", [])]
    return "\n".join(L).rstrip() + "\n"


def notes(ctx: dict) -> list[str]:
    """Readings computed from this run's figures (no number here is typed in by hand)."""
    out = []
    phys = ctx.get("physical", [])
    dump = ctx.get("pg_dump_s")
    if phys and dump:
        r1 = med([r.pgbr_seconds.get(1) for r in phys])
        r2 = med([r.pgbr_seconds.get(2) for r in phys])
        wall = med([r.child.wall for r in phys if not r.child.tty])
        if r1 and r2 and wall:
            out.append(f"A physical backup writes the whole database once per repository, one after the other: "
                       f"pgBackRest took {r1:.1f} s for repo1 and {r2:.1f} s for repo2 (the second copy) of the "
                       f"{wall:.1f} s. Each is zst-compressing and encrypting the same data; `pg_dump -Fc` spends its "
                       f"{dump:.1f} s on zlib over the bytea's hex text. `pg_basebackup` "
                       f"({f1(ctx.get('basebackup_s'))} s) is the floor: a raw copy with no compression, encryption "
                       "or upload.")
    rs = ctx.get("restore")
    if rs is not None and ctx.get("pg_restore_s"):
        ats, base = rs["at"], ctx["pg_restore_s"]
        parts = {"restore": ("restored", "restore"), "replay + checks": ("checked", "restored"),
                 "swap": ("end", "traffic")}
        got = {k: ats[b] - ats[a] for k, (b, a) in parts.items() if ats.get(a) is not None and ats.get(b) is not None}
        if got:
            big = max(got, key=got.get)
            out.append(f"The restore took {ratio(rs['child'].wall, base)} of `pg_restore`; its largest stage is "
                       f"{big} ({got[big]:.1f} s). `pg_restore` loads every row again (COPY) and rebuilds the index; "
                       "pgBackRest copies the data files back and the server replays only the WAL written after "
                       "the backup.")
    for what, plain, term in ctx.get("tty_runs", []):
        if not plain or not term:
            continue
        if len(plain) < 2 or len(term) < 2:
            verdict = (f"one run each (medians {ratio(med(term), med(plain))}): no spread to tell a cost from "
                       "noise; run with --rounds 2 or more")
        elif min(term) > max(plain):
            verdict = (f"every terminal run was slower than every plain one (medians {ratio(med(term), med(plain))}): "
                       "a cost beyond this run's noise")
        elif max(term) < min(plain):
            verdict = f"every terminal run was faster than every plain one (medians {ratio(med(term), med(plain))})"
        else:
            verdict = (f"the two modes' ranges overlap (medians {ratio(med(term), med(plain))}): no difference "
                       f"beyond the run-to-run noise of {len(plain) + len(term)} runs")
        out.append(f"{what} with and without a terminal: {verdict}.")
    if ctx.get("tty_runs"):
        out.append("The physical backup draws no progress bar (pgBackRest runs inside the container; the task "
                   "prints its step lines), so its terminal runs measure colour and line output only; the restore "
                   "check draws a live byte counter for the whole download.")
    out.append("The operator process, the three DinD hosts, Postgres, pgBackRest, stunnel and moto share 2 CPUs: "
               "compression, encryption, TLS and S3 compete for them; on real hosts they run on different "
               "machines.")
    return out


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.backup_restore", description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=1.1, help="size of the random table on disk (default 1.1)")
    ap.add_argument("--min-gib", type=float, default=1.0, help="report a missed target when the database is smaller")
    ap.add_argument("--rounds", type=int, default=2, help="runs per mode (terminal / not) of each command (default 2)")
    ap.add_argument("--window", type=float, default=0.0,
                    help="seconds of the steady writer (default: 2.5 x archive_timeout, at least 60)")
    ap.add_argument("--writer-interval", type=float, default=0.25, help="seconds between the writer's rows")
    ap.add_argument("--max-total-seconds", type=float, default=1500.0,
                    help="rounds after the first of each command are skipped once the run is this old (default 1500)")
    ap.add_argument("--no-bundle-probe", dest="bundle_probe", action="store_false",
                    help="skip the two direct pgBackRest backups of repo1 (repo-bundle off / on)")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown file whose backup-bench section (between its markers) is replaced or appended")
    args = ap.parse_args(argv)
    if not 0.01 <= args.gib <= 20:
        ap.error("--gib must be between 0.01 and 20")
    if not 1 <= args.rounds <= 5:
        ap.error("--rounds must be between 1 and 5")
    if not 0.05 <= args.writer_interval <= 5:
        ap.error("--writer-interval must be between 0.05 and 5")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    command = " ".join([".venv/bin/python -m bench.backup_restore", *(argv if argv is not None else sys.argv[1:])])
    env = load_environment("sandbox")
    if env.pitr is None:
        print("the sandbox inventory has no pitr: section", file=sys.stderr)
        return 2
    ctx: dict = {"command": command, "machine": machine(), "errors": [], "min_gib": args.min_gib,
                 "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), "archive_timeout": env.pitr.archive_timeout}
    window = args.window or max(60.0, 2.5 * env.pitr.archive_timeout)
    log("sandbox.up (idempotent); buckets; accessory.boot")
    sandbox.up(env)
    services.ensure_bucket(env)
    boot = run_child("accessory.boot", [INV, "accessory.boot", "--host", "sandbox", "postgres", "--lock-wait", "300"],
                     900)
    if not boot.ok:
        print(boot.failure(), file=sys.stderr)
        return 1

    def budget_left(what: str) -> bool:
        if time.monotonic() - started < args.max_total_seconds:
            return True
        ctx["errors"].append(f"time budget (--max-total-seconds {args.max_total_seconds:g}) spent: {what} skipped")
        return False

    logical_ids: set[str] = set()
    bench_labels: set[tuple[str, int]] = set()
    writer: SteadyWriter | None = None
    kept: tuple[str, str] | None = None
    with Gateway(env, masker=Masker()) as gw:
        fleet = Fleet(env, gw)
        ctx["dbname"] = fleet.target.dbname
        try:
            log(f"health before: {health()}")
            fleet.drop_db(SCRATCH_DB)  # leftovers of an interrupted run
            fleet.run("rm", "-f", STAGED)
            fleet.sql(f"DROP TABLE IF EXISTS {TABLE}, {RPO_TABLE}")

            # 1. data
            log(f"growing {TABLE} to {args.gib} GiB")
            ctx["rows"], ctx["grow_s"] = fleet.grow(args.gib)
            ctx["db_size"], ctx["table_size"] = fleet.sizes()
            log("archiver catch-up")
            ctx["catchup_s"] = fleet.archive_now()
            log(f"  {ctx['db_size'] / GiB:.2f} GiB database; caught up in {ctx['catchup_s']:.0f}s")

            # 2. baselines
            log("baseline: pg_dump -Fc | wc -c")
            ctx["pg_dump_s"], ctx["dump_bytes"] = fleet.pg_dump()
            log(f"  {ctx['pg_dump_s']:.1f}s, {mib(ctx['dump_bytes'])}")
            log("baseline: pg_basebackup -Ft -D - | wc -c")
            ctx["basebackup_s"], ctx["basebackup_bytes"] = fleet.pg_basebackup()
            log(f"  {ctx['basebackup_s']:.1f}s, {mib(ctx['basebackup_bytes'])}")
            ctx["startup"] = run_child("CLI start-up", [INV, "backup.db", "--host", "sandbox", "--physical",
                                                        "--dry-run"], 300)

            # 3. logical reference + the pg_restore baseline
            lg = run_child("backup.db --logical", [INV, "backup.db", "--host", "sandbox", "--logical", "--json",
                                                   "--lock-wait", "300"], REMOTE_TIMEOUT)
            if not lg.ok:
                raise RuntimeError(lg.failure())
            manifest = json.loads(lg.text("stdout"))["data"]
            logical_ids.add(manifest["id"])
            ctx["logical"], ctx["logical_bytes"] = lg, manifest.get("size")
            log(f"staging {manifest['id']} into {fleet.target.container}:{STAGED}")
            ctx["stage_s"] = fleet.stage(manifest["object_key"])
            staged_sha = fleet.run("sha256sum", STAGED)[1].split()[0]
            if staged_sha != manifest["sha256"]:
                raise RuntimeError(f"staged dump sha256 {staged_sha[:12]} != manifest {manifest['sha256'][:12]}")
            log("baseline: pg_restore (1 job) of the staged file into a scratch database")
            ctx["pg_restore_s"] = fleet.pg_restore_file()
            log(f"  {ctx['pg_restore_s']:.1f}s")
            fleet.run("rm", "-f", STAGED)

            # 4. terminal or not: the restore check (download + SHA-256), then physical full backups
            checks: list[Child] = []
            for rnd in range(args.rounds):
                if rnd and not budget_left(f"restore-check round {rnd + 1}"):
                    break
                for tty in (False, True):
                    checks.append(restore_check(manifest["id"], tty, len(checks) + 1))
            ctx["checks"] = checks
            log("archiver catch-up (the scratch restore's WAL)")
            fleet.archive_now()
            extra: set[tuple[str, int]] = set()
            if args.bundle_probe and budget_left("the repo-bundle probe"):
                # Where does a physical backup's time go? The same full backup of repo1 straight in the
                # container, with and without pgBackRest's repo-bundle (small files packed together).
                probe = ctx["bundle_probe"] = {}
                for bundle in (False, True):
                    known = {(b.label, b.repo) for b in fleet.catalog().backups}
                    log(f"pgbackrest backup --type=full --repo=1 (bundle {'on' if bundle else 'off'})")
                    try:
                        probe[bundle] = fleet.pgbackrest_full(1, bundle=bundle)
                        log(f"  {probe[bundle]:.1f}s")
                    except Exception as exc:  # noqa: BLE001 - a probe: reported, the run goes on
                        ctx["errors"].append(f"direct pgbackrest backup (bundle {bundle}): "
                                             f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}")
                    new_sets = {(b.label, b.repo) for b in fleet.catalog().backups} - known
                    probe[f"bytes{bundle}"] = next((b.repo_size for b in fleet.catalog().backups
                                                    if (b.label, b.repo) in new_sets), None)
                    extra |= new_sets
                    bench_labels.update(new_sets)
            phys: list[PhysicalRun] = ctx.setdefault("physical", [])
            for rnd in range(args.rounds):
                if rnd and not budget_left(f"physical backup round {rnd + 1}"):
                    break
                for tty in (False, True):
                    prev = [lab for r in phys for lab in r.labels]
                    run = physical_backup(fleet, tty, len(phys) + 1)
                    phys.append(run)
                    bench_labels.update(run.labels)
                    # NOTE: the previous bench sets go now (not timed): moto keeps every object in memory.
                    fleet.expire(set(prev) | extra)
                    extra = set()
            ctx["repo_bytes"] = med([r.repo_bytes.get(1) for r in phys])
            with contextlib.suppress(Exception):
                ctx["pgbr_log"] = fleet.last_backup_log()
            ctx["tty_rows"], ctx["tty_runs"] = tty_rows(checks, phys), tty_runs(checks, phys)

            # 5. steady writer: archive lag, rows around T
            log(f"steady writer for {window:.0f}s")
            writer = SteadyWriter(fleet.conninfo, interval=args.writer_interval, deadline_s=window + 60)
            writer.create_table()
            writer.start()
            end = time.monotonic() + window
            while time.monotonic() < end and not writer.errors:
                time.sleep(1)
            writer.stop()
            rows = list(writer.rows)
            ctx.update(writer_rows=rows, samples=list(writer.samples), writer_errors=list(writer.errors),
                       writer_interval=args.writer_interval, window=window,
                       lag=archive_lag(rows, writer.samples))
            if len(rows) < 10:
                raise RuntimeError(f"the steady writer wrote {len(rows)} rows: {writer.errors}")
            at = (rows[0].at + timedelta(seconds=window / 2)).replace(microsecond=0)
            ctx["at"] = at

            # 6. restore to T
            with Probe(REMOTE_TIMEOUT) as probe:
                c = run_child("inv restore --physical", [INV, "restore", "--host", "sandbox", "--at", format_utc(at),
                                                         "--physical", "--yes", "--json", "--lock-wait", "300"],
                              REMOTE_TIMEOUT)
            data = {}
            with contextlib.suppress(ValueError, KeyError):
                data = json.loads(c.text("stdout"))["data"] or {}
            if data.get("kept_container"):
                kept = (data["kept_container"], data["kept_volume"])
            if not c.ok:
                raise RuntimeError(c.failure())
            ats = {"plan": c.at("point-in-time restore plan"), "restore": c.at("pgbackrest restore of"),
                   "restored": c.at("restored in"), "checked": c.at("checked: promoted"),
                   "traffic": c.at("stopping traffic"), "stop_old": c.at("(it archives its last WAL first)",
                                                                         contains=True),
                   "start_new": c.at(" (archiving on, new timeline)", contains=True),
                   "back": c.at("bringing the app back"), "end": c.wall}
            last_backup = phys[-1].labels[0][0] if phys and phys[-1].labels else "?"
            ctx["restore"] = {"child": c, "data": data, "at": ats, "probe": probe.rows(),
                              "unavailable": max(probe.unavailable_seconds(h) for h in ("web1", "web2")),
                              "wal_note": f"backup {last_backup}, then ~{window / 2 + 5:.0f} s of the steady "
                                          "writer's rows"}
            wait_db(fleet.conninfo)
            ctx["rpo"] = count_restored(fleet.conninfo, rows, at)
            log(f"RPO: {ctx['rpo']}")
        except Exception as exc:  # noqa: BLE001 - reported, then cleaned up
            traceback.print_exc()
            ctx["errors"].append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        finally:
            if writer is not None:
                writer.stop()
            cleanup(fleet, ctx, kept, logical_ids, bench_labels)
    ctx["total"] = time.monotonic() - started
    ctx["notes"] = notes(ctx)
    text = report(ctx)
    print("\n" + text)
    if args.out:
        write_section(args.out, SECTION, text)
        log(f"written to {args.out}")
    return 1 if ctx["errors"] else 0


def tty_runs(checks: list[Child], phys: list[PhysicalRun]) -> list[tuple[str, list[float], list[float]]]:
    """(command, wall times without a terminal, with one)."""
    out = []
    for what, runs in (("The restore check", checks), ("The physical backup", [r.child for r in phys])):
        out.append((what, [c.wall for c in runs if not c.tty], [c.wall for c in runs if c.tty]))
    return out


def tty_rows(checks: list[Child], phys: list[PhysicalRun]) -> list[list[str]]:
    out = []
    for what, runs in (("`inv restore --logical --id ID --dry-run` (download + SHA-256, live byte counter)", checks),
                       ("`inv backup.db --physical --type full` (step lines only)", [r.child for r in phys])):
        plain = [c.wall for c in runs if not c.tty]
        term = [c.wall for c in runs if c.tty]
        if plain and term:
            out.append([what, spread(plain), spread(term), ratio(med(term), med(plain)),
                        f"{kib(med([c.drawn_bytes for c in runs if c.tty]))} / "
                        f"{kib(med([c.drawn_bytes for c in runs if not c.tty]))}"])
    return out


def cleanup(fleet: Fleet, ctx: dict, kept: tuple[str, str] | None, logical_ids: set[str],
            bench_labels: set[tuple[str, int]]) -> None:
    log("cleanup")
    gw, host = fleet.gw, fleet.host
    steps = []
    if kept:
        steps += [(f"remove the kept container {kept[0]}", lambda: gw.run(host, docker.rm_argv(kept[0], force=True))),
                  (f"remove the kept volume {kept[1]}", lambda: gw.run(host, ("docker", "volume", "rm", kept[1])))]
    steps += [("drop the bench tables", fleet.drop_tables), ("drop the scratch db", lambda: fleet.drop_db(SCRATCH_DB)),
              ("remove the staged file", lambda: fleet.run("rm", "-f", STAGED)),
              ("delete the logical backup", lambda: log(f"  deleted {fleet.delete_logical(logical_ids)}"))]
    if bench_labels:
        def replace_physical() -> None:
            # A small full after the tables are gone, then every bench set expired (pgBackRest keeps at
            # least one full per repository, and the newest one cannot be expired).
            c = run_child("physical full (cleanup)", [INV, "backup.db", "--host", "sandbox", "--physical", "--type",
                                                      "full", "--lock-wait", "300"], REMOTE_TIMEOUT)
            if not c.ok:
                raise RuntimeError(c.failure())
            fleet.expire(bench_labels)
        steps.append(("replace the bench's physical backups", replace_physical))
    for what, fn in steps:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - every step is tried
            ctx["errors"].append(f"cleanup: {what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    ctx["final_health"] = health()
    log(f"health after: {ctx['final_health']}")
    if any(v != "200" for v in ctx["final_health"].values()):
        ctx["errors"].append(f"app not healthy at the end: {ctx['final_health']}")


if __name__ == "__main__":
    sys.exit(main())
