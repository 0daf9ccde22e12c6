"""backup.db and restore of a >= 1 GB pgbench database on the sandbox fleet, against plain baselines.

    .venv/bin/python -m bench.backup_restore [--scale 75] [--small-scale 20] [--out BENCHMARKS.md]

What it measures, every baseline in the same run (see bench/README.md):

1. ``inv backup.db`` wall time (the CLI, in a child process) vs ``pg_dump -Fc > /dev/null``
   run inside the same Postgres accessory container on db1, and vs the naive pipeline
   ``pg_dump -Fc | gzip`` streamed over SSH into a plain boto3 ``upload_fileobj``;
   ``backup.db --no-checksums`` too (the per-row checksum scan runs beside pg_dump).
2. The tool's peak RSS (``wait4`` rusage of the child process) at two database sizes.
3. ``inv restore --at <the backup's finish> --yes`` (child process) vs a plain
   ``pg_restore`` of the same dump, staged as a file inside the container first (the
   baseline excludes the transfer), into a scratch database; ``pg_restore -j 2`` of the
   file as a second reference. An HTTP probe on 127.0.0.1:8101/8102 records what clients
   saw while traffic was stopped.

The pgbench tables live in the app database (POSTGRES_DB, the one backup.db dumps) and
are dropped at the end, with the scratch databases, the database the restore kept aside
(``<db>_before_<ts>``) and every S3 object this run made (deleted by id). The app keeps
its own tables (the restore puts back a snapshot taken in this run). Only 127.0.0.1 and
the sandbox containers are contacted; every loop is bounded by a count or a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from bench.report import write_section
from ops import postgres, s3, sandbox
from ops.appenv import load_env_file
from ops.backup.catalog import list_backups
from ops.backup.stream_upload import download_stream
from ops.backup.timeparse import parse_utc
from ops.commands import docker
from ops.inventory import Environment, load_environment
from ops.lock import status as lock_status
from ops.masking import Masker
from ops.remote import Gateway, pipe_into
from ops.restore.database import drop_database_sql

ROOT = Path(__file__).resolve().parents[1]
INV = str(Path(sys.executable).with_name("inv"))
HTTP = (("web1", 8101), ("web2", 8102))  # nginx of the web hosts, 127.0.0.1 only
GiB = 1024 ** 3
MiB = 1024 ** 2
PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_history", "pgbench_tellers")
SCRATCH_DB = "bench_restore_scratch"
STAGED = "/tmp/bench-backup-restore.dump"  # inside the accessory container
NAIVE_PREFIX = "bench/"  # under the env's S3 prefix, outside backups/ (the catalog never sees it)
SECTION = "backup-bench"
REMOTE_TIMEOUT = 3600.0  # any single remote command (pgbench -i, pg_dump, pg_restore)

T0 = time.monotonic()


def log(line: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {line}", flush=True)


# ---------------------------------------------------------------------------------------------
# child processes: wall time, peak RSS and CPU of one process (os.wait4 rusage)
# ---------------------------------------------------------------------------------------------
@dataclass
class Child:
    label: str
    argv: list[str]
    wall: float = math.nan
    rc: int | None = None
    maxrss_kib: int = 0
    cpu: float = 0.0
    timed_out: bool = False
    lines: list[tuple[float, str]] = field(default_factory=list)  # stdout, seconds from start
    err: deque = field(default_factory=lambda: deque(maxlen=40))

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    @property
    def stdout(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def at(self, prefix: str) -> float | None:
        """Seconds from the start to the first stdout line starting with ``prefix``."""
        return next((t for t, line in self.lines if line.startswith(prefix)), None)

    def failure(self) -> str:
        tail = [ln for ln in self.err if ln.strip()][-3:] or [ln for _, ln in self.lines if ln.strip()][-3:]
        return f"{self.label}: exit {self.rc}{' (timed out)' if self.timed_out else ''}: " + " | ".join(tail)


def run_child(label: str, argv: list[str], timeout: float, *, echo: bool = True) -> Child:
    """Run ``argv`` (cwd = repo root), stream its output, and read its own rusage with wait4."""
    child = Child(label, argv)
    log(f"{label}: {' '.join(argv)}")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    reaped = threading.Lock()
    done = False

    def kill() -> None:
        with reaped:
            if not done:
                child.timed_out = True
                proc.kill()

    def read(stream, sink) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            sink(line)
            if echo:
                print(f"    | {line[:200]}", flush=True)

    readers = [threading.Thread(target=read, args=(proc.stdout, lambda ln: child.lines.append(
                   (time.monotonic() - t0, ln))), daemon=True),
               threading.Thread(target=read, args=(proc.stderr, child.err.append), daemon=True)]
    for t in readers:
        t.start()
    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        with reaped:
            done = True
        timer.cancel()
    child.wall = time.monotonic() - t0
    proc.returncode = child.rc = os.waitstatus_to_exitcode(status)
    child.maxrss_kib = usage.ru_maxrss  # KiB on Linux: the child's own peak resident set
    child.cpu = usage.ru_utime + usage.ru_stime
    for t in readers:
        t.join(timeout=10)
    log(f"{label}: {'ok' if child.ok else 'FAILED'} in {child.wall:.1f}s, peak RSS {child.maxrss_kib / 1024:.0f} MiB")
    return child


# ---------------------------------------------------------------------------------------------
# the naive pipeline (run as a child of this script: --child-naive KEY)
# ---------------------------------------------------------------------------------------------
class Counting:
    """A non-seekable reader (boto3 then buffers parts itself, like `aws s3 cp -`)."""

    def __init__(self, raw):
        self.raw = raw
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.n += len(data)
        return data


def naive_argv(target: postgres.PgTarget) -> tuple[str, ...]:
    # bash -o pipefail: a failing pg_dump fails the pipeline (the exit status is checked below)
    return docker.exec_argv(target.container, "bash", "-o", "pipefail", "-c",
                            'pg_dump -Fc --no-password --username="$1" --dbname="$2" | gzip -c',
                            "naive", target.user, target.dbname)


def child_naive(key: str) -> int:
    env = load_environment("sandbox")
    target = postgres.pg_target(env, load_env_file(env.env_file))
    client = s3.client(env)
    t0 = time.monotonic()
    with Gateway(env, masker=Masker()) as gw:
        stream = gw.stream(target.host, naive_argv(target))
        counted = Counting(io.BufferedReader(stream, buffer_size=8 * MiB))
        client.upload_fileobj(counted, env.s3.bucket, key)  # default TransferConfig: 8 MiB parts, 10 threads
        stream.finish()  # raises unless the remote pipeline exited 0
    print(json.dumps({"bytes": counted.n, "seconds": time.monotonic() - t0}))
    return 0


# ---------------------------------------------------------------------------------------------
# the fleet
# ---------------------------------------------------------------------------------------------
class Fleet:
    def __init__(self, env: Environment, gw: Gateway):
        self.env = env
        self.gw = gw
        self.target = postgres.pg_target(env, load_env_file(env.env_file))
        self.client = s3.client(env)

    def run(self, *argv: str, timeout: float = REMOTE_TIMEOUT) -> tuple[float, str]:
        """(seconds, stdout) of a command inside the accessory container on db1 (raises on failure)."""
        t0 = time.monotonic()
        res = self.gw.run(self.target.host, docker.exec_argv(self.target.container, *argv), timeout=timeout)
        return time.monotonic() - t0, res.stdout

    def sql(self, query: str, dbname: str | None = None) -> str:
        _, out = self.run("psql", "--no-password", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                          f"--username={self.target.user}", f"--dbname={dbname or self.target.dbname}", "-c", query,
                          timeout=600)
        return out.strip()

    def db_size(self) -> int:
        return int(self.sql("SELECT pg_database_size(current_database())"))

    def pgbench_init(self, scale: int) -> float:
        # d: drop old pgbench tables, t: create, G: generate server-side, v: vacuum, p: primary keys
        seconds, _ = self.run("pgbench", "-i", "-s", str(scale), "--init-steps=dtGvp", "-q",
                              f"--username={self.target.user}", self.target.dbname)
        return seconds

    def drop_pgbench(self) -> None:
        self.sql("DROP TABLE IF EXISTS " + ", ".join(PGBENCH_TABLES))

    def drop_db(self, name: str) -> None:
        self.sql(drop_database_sql(name), dbname="postgres")

    def pg_dump_devnull(self) -> float:
        seconds, _ = self.run("sh", "-c", 'pg_dump -Fc --no-password --username="$1" --dbname="$2" > /dev/null',
                              "pg_dump", self.target.user, self.target.dbname)
        return seconds

    def stage(self, object_key: str) -> float:
        """The backup object into a file inside the container (S3 -> here -> SSH -> docker exec -i)."""
        t0 = time.monotonic()
        body, _ = download_stream(self.client, self.env.s3.bucket, object_key)
        try:
            pipe_into(self.gw, self.target.host,
                      docker.exec_argv(self.target.container, "sh", "-c", 'cat > "$1"', "stage", STAGED,
                                       interactive=True), body)
        finally:
            body.close()
        return time.monotonic() - t0

    def pg_restore_file(self, jobs: int) -> float:
        self.drop_db(SCRATCH_DB)
        self.run("createdb", "--no-password", f"--username={self.target.user}", "--template=template0", SCRATCH_DB)
        try:
            seconds, _ = self.run("pg_restore", "--no-password", f"--username={self.target.user}",
                                  f"--dbname={SCRATCH_DB}", "--no-owner", "--exit-on-error", f"--jobs={jobs}", STAGED)
        finally:
            self.drop_db(SCRATCH_DB)
        return seconds

    def delete_backups(self, ids: set[str]) -> list[str]:
        listing = list_backups(self.env, self.client, kind="db")
        entries = list(listing) + list(getattr(listing, "orphans", []))
        gone = []
        for entry in entries:
            if entry.id in ids:
                for key in (entry.data_key, entry.manifest_key):
                    with contextlib.suppress(BotoCoreError, ClientError):
                        self.client.delete_object(Bucket=self.env.s3.bucket, Key=key)
                gone.append(entry.id)
        return gone


def wait_lock_free(env: Environment, gw: Gateway, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        held = {h: v for h, v in lock_status(gw, list(env.hosts.values())).items() if v is not None}
        if not held:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"environment still locked after {limit_s:g}s: {held}")
        log(f"locked by {next(iter(held.values())).describe()}: waiting 10 s")
        time.sleep(10)


def health() -> dict[str, str]:
    out = {}
    for name, port in HTTP:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/api/health")
            resp = conn.getresponse()
            resp.read()
            out[name] = str(resp.status)
        except OSError as exc:
            out[name] = type(exc).__name__
        finally:
            conn.close()
    return out


class Probe:
    """GET /api/health on both web hosts every 0.2 s until stopped (or the deadline): what clients saw."""

    def __init__(self, deadline_s: float):
        self.records: list[tuple[float, str, str]] = []  # (t from start, host, status or error)
        self._stop = threading.Event()
        self._deadline = time.monotonic() + deadline_s
        self._thread = threading.Thread(target=self._run, daemon=True, name="probe")
        self.t0 = time.monotonic()

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        conns: dict[str, http.client.HTTPConnection] = {}
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            for name, port in HTTP:
                t = time.monotonic() - self.t0
                try:
                    conn = conns.get(name) or http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    conns[name] = conn
                    conn.request("GET", "/api/health")
                    resp = conn.getresponse()
                    resp.read()
                    status = str(resp.status)
                    if resp.will_close:
                        conn.close()
                        conns.pop(name, None)
                except (OSError, http.client.HTTPException) as exc:
                    status = type(exc).__name__
                    conns.pop(name, None)
                self.records.append((t, name, status))
            self._stop.wait(0.2)

    def summary(self) -> list[list[str]]:
        rows = []
        for name, _ in HTTP:
            recs = [r for r in self.records if r[1] == name]
            bad = [r for r in recs if r[2] != "200"]
            kinds = sorted({r[2] for r in bad})
            rows.append([name, str(len(recs)), str(len(bad)), ", ".join(kinds) or "-",
                         f"{bad[0][0]:.1f} .. {bad[-1][0]:.1f}" if bad else "-",
                         f"{bad[-1][0] - bad[0][0]:.1f}" if bad else "0"])
        return rows


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def f1(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def ratio(a, b) -> str:
    if a is None or b is None or not b or (isinstance(a, float) and math.isnan(a)) or math.isnan(b):
        return "-"
    return f"{a / b:.2f}x"


def mib(n) -> str:
    return "-" if n is None else f"{n / MiB:.1f} MiB"


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
            f"{platform.python_version()}, Docker {dock}; the operator process, the three DinD hosts, the Postgres "
            "accessory and the S3 endpoint (moto) all share these CPUs")


@dataclass
class Backup:
    label: str
    child: Child
    manifest: dict | None = None

    @property
    def id(self) -> str | None:
        return self.manifest.get("id") if self.manifest else None

    @property
    def size(self) -> int | None:
        return self.manifest.get("size") if self.manifest else None

    @property
    def in_task(self) -> float | None:
        """Seconds from the manifest's started_at to its finished_at (the task, without CLI start-up)."""
        if not self.manifest:
            return None
        return (parse_utc(self.manifest["finished_at"]) - parse_utc(self.manifest["started_at"])).total_seconds()


def tool_backup(label: str, *, checksums: bool = True) -> Backup:
    argv = [INV, "backup.db", "--host", "sandbox", "--json"] + ([] if checksums else ["--no-checksums"])
    child = run_child(label, argv, REMOTE_TIMEOUT, echo=False)
    b = Backup(label, child)
    if child.ok:
        with contextlib.suppress(ValueError):
            b.manifest = json.loads(child.stdout)["data"]
    if b.manifest is None:
        raise RuntimeError(child.failure())
    log(f"  backup {b.id}: {mib(b.size)}")
    return b


def report(ctx: dict) -> str:
    big, small = ctx["scale"], ctx["small_scale"]
    L = ["", "# Benchmarks: backup.db and restore (sandbox fleet, pgbench database)", "",
         "Generated by `bench/backup_restore.py` (see `bench/README.md` for what each figure means); this section "
         "is rewritten between its markers on each run.", "",
         f"- date: {ctx['date']} (UTC)",
         f"- machine: {ctx['machine']}",
         f"- command: `{ctx['command']}`",
         f"- database: the app database `{ctx['dbname']}` (POSTGRES_DB) in the Postgres 15 accessory on db1, plus "
         f"pgbench tables: scale {big} = **{ctx['big_db'] / GiB:.2f} GiB** on disk (`pg_database_size`, "
         f"{big * 100_000:,} pgbench_accounts rows), scale {small} = {ctx['small_db'] / GiB:.2f} GiB "
         f"(pgbench -i {ctx['init_big']:.0f} s / {ctx['init_small']:.0f} s)",
         f"- dump (`pg_dump -Fc`, the backup object): {mib(ctx['big_backup'].size)} at scale {big}, "
         f"{mib(ctx['small_backup'].size)} at scale {small}",
         f"- total run time: {ctx['total']:.0f} s", ""]
    if ctx["errors"]:
        L += ["**Errors in this run:**", ""] + [f"- {e}" for e in ctx["errors"]] + [""]

    # 1. backup wall time
    base = ctx["pg_dump"]
    L += [f"## 1. `backup.db` wall time vs baselines (scale {big}, same run)", "",
          "Each row one run, in the order run. `pg_dump` runs inside the accessory container on db1 (through the "
          "SSH gateway, `docker exec`); the others are child processes of the benchmark whose peak RSS and CPU are "
          "their own (`wait4` rusage).", ""]
    rows = []
    for r in ctx["backup_rows"]:
        rows.append([r["what"], f1(r["wall"]), f1(r.get("in_task")), mib(r.get("bytes")),
                     mib(r["rss"] * 1024) if r.get("rss") else "-",
                     f1(r.get("cpu")) if r.get("cpu") is not None else "-", ratio(r["wall"], base)])
    L += table(["run", "wall s", "in the task s", "object", "peak RSS (operator)", "operator CPU s",
                "wall vs pg_dump > /dev/null"], rows)
    tool = ctx["big_backup"].child.wall
    naive = ctx.get("naive_wall")
    L += ["", f"- **backup.db / pg_dump -Fc > /dev/null: {ratio(tool, base)}** ({f1(tool)} s vs {f1(base)} s)"]
    if ctx.get("nochk_wall"):
        L += [f"- backup.db --no-checksums / pg_dump > /dev/null: {ratio(ctx['nochk_wall'], base)}; "
              f"backup.db / backup.db --no-checksums: {ratio(tool, ctx['nochk_wall'])}"]
    if naive:
        L += [f"- **backup.db / naive `pg_dump -Fc | gzip | upload_fileobj`: {ratio(tool, naive)}** "
              f"(naive / pg_dump > /dev/null: {ratio(naive, base)})"]
    L += [""]

    # 2. RSS
    sb, bb = ctx["small_backup"], ctx["big_backup"]
    L += ["## 2. Peak RSS of `inv backup.db` at two sizes", "",
          "The whole `inv backup.db --host sandbox --json` process (Python, Invoke, paramiko, boto3), "
          "`ru_maxrss` from `wait4`.", ""]
    floor = [["- (`--dry-run`: no dump, contacts nothing)", "-", "-", f1(ctx.get("startup")),
              mib(ctx["startup_rss"] * 1024), "-"]] if ctx.get("startup_rss") else []
    L += table(["pgbench scale", "database", "dump object", "wall s", "peak RSS", "operator CPU s"], floor + [
        [small, f"{ctx['small_db'] / GiB:.2f} GiB", mib(sb.size), f1(sb.child.wall), mib(sb.child.maxrss_kib * 1024),
         f1(sb.child.cpu)],
        [big, f"{ctx['big_db'] / GiB:.2f} GiB", mib(bb.size), f1(bb.child.wall), mib(bb.child.maxrss_kib * 1024),
         f1(bb.child.cpu)]])
    L += ["", f"- size ratio (dump object) {ratio(bb.size, sb.size)}, database {ratio(ctx['big_db'], ctx['small_db'])}"
              f"; **peak RSS ratio {ratio(bb.child.maxrss_kib, sb.child.maxrss_kib)}**", ""]

    # 3. restore
    r = ctx.get("restore")
    L += [f"## 3. Restore wall time vs plain `pg_restore` (scale {big}, the same dump)", ""]
    if r is None:
        L += ["Not measured (see the errors above).", ""]
    else:
        L += table(["step", "wall s", "vs pg_restore (1 job)"], [[a, f1(b), ratio(b, ctx["pg_restore"])]
                                                                for a, b in ctx["restore_rows"]])
        L += ["", f"- **inv restore (whole command) / pg_restore: {ratio(r.wall, ctx['pg_restore'])}**; "
                  f"its streamed pg_restore step alone: {ratio(ctx.get('restore_stream'), ctx['pg_restore'])}",
              f"- traffic stopped (as `inv restore` reports it): **{f1(ctx.get('downtime'))} s**; peak RSS of "
              f"`inv restore`: {mib(r.maxrss_kib * 1024)}, operator CPU {f1(r.cpu)} s", ""]
        L += ["What clients saw during `inv restore` (GET /api/health on 127.0.0.1:8101/8102 every 0.2 s; seconds "
              "from the command's start):", ""]
        L += table(["host", "requests", "not 200", "answers", "first .. last not-200 (s)", "window s"],
                   ctx["probe"])
        L += [""]

    L += ["## Interpretation", ""] + [f"- {line}" for line in interpretation(ctx)] + [""]
    return "\n".join(L) + "\n"


def interpretation(ctx: dict) -> list[str]:
    out = []
    base, tool = ctx["pg_dump"], ctx["big_backup"].child.wall
    nochk, naive = ctx.get("nochk_wall"), ctx.get("naive_wall")
    sb, bb = ctx["small_backup"], ctx["big_backup"]
    inner, startup = bb.in_task, ctx.get("startup")
    squeeze = ctx["big_db"] / bb.size if bb.size else math.nan
    out.append(f"pgbench data is extremely compressible: {ctx['big_db'] / GiB:.2f} GiB on disk dump to {mib(bb.size)} "
               f"({squeeze:.0f}:1). A backup here is dominated by pg_dump reading and compressing the tables "
               f"({f1(base)} s on one core); the SSH/S3 path carries little. Real data compresses far less: the "
               "streaming path then weighs more.")
    out.append(f"backup.db takes {ratio(tool, base)} of `pg_dump > /dev/null` as a command; "
               + (f"{f1(startup)} s of it is the CLI start-up (Python, Invoke, every task module; "
                  "`inv backup.db --dry-run` in the same run) and " if startup else "")
               + (f"{f1(inner)} s ({ratio(inner, base)}) is the task itself from its manifest's started_at to "
                  "finished_at (lock on 3 hosts, snapshot, pg_dump streamed through SSH into the multipart upload "
                  "with SHA-256, counts) " if inner else "")
               + "— every stage competing with pg_dump for the same "
               f"{os.cpu_count()} CPUs." + ((" The per-row checksums run beside pg_dump in the same snapshot: they "
                                           f"cost little here (backup.db / --no-checksums: {ratio(tool, nochk)})"
                                           if tool / nochk < 1.1 else
                                           " The per-row checksums run beside pg_dump in the same snapshot but take "
                                           f"CPU from it on this machine: backup.db / --no-checksums "
                                           f"{ratio(tool, nochk)}") + "; one run each." if nochk else ""))
    if naive:
        out.append(f"The naive pipeline takes {ratio(naive, base)} of pg_dump and backup.db {ratio(tool, naive)} of "
                   f"the naive one. The naive run has no CLI start-up, no lock, no snapshot or counts, and (pgbench "
                   "data again) gzip shrinks the already deflated archive a further ~50x, so it ships almost nothing; "
                   "it also checks nothing (no manifest, no checksum, a failed dump is not noticed by "
                   "`pg_dump | gzip` without pipefail).")
    out.append(f"Memory: peak RSS {mib(sb.child.maxrss_kib * 1024)} at {mib(sb.size)} of dump vs "
               f"{mib(bb.child.maxrss_kib * 1024)} at {mib(bb.size)} ({ratio(bb.child.maxrss_kib, sb.child.maxrss_kib)}"
               f" for {ratio(bb.size, sb.size)} the data). Most of it is the interpreter and libraries; the upload "
               "holds at most two 8 MiB parts (one filling, one uploading). A dump under one part is sent as a single "
               "PUT, so the small run holds less; a dump of many parts should stay at the big run's figure, but with "
               "pgbench data both runs stream at most a few parts: this shows no growth with database size, not "
               "with gigabytes of dump.")
    if ctx.get("restore") is not None:
        out.append("`inv restore` does much more than `pg_restore`: before touching anything it downloads the whole "
                   "object to check its SHA-256, takes a safety backup of the live database (a full backup.db), "
                   "streams the object again into pg_restore (stdin: no `--jobs`), checks every table's row count and "
                   "checksum against the manifest, then swaps. The whole-command ratio is the price of those "
                   "guarantees; the like-for-like figure is the streamed pg_restore step "
                   f"({ratio(ctx.get('restore_stream'), ctx['pg_restore'])} of pg_restore from a staged file: streaming "
                   "costs nothing here). `pg_restore -j 2` from a file "
                   f"({ratio(ctx.get('pg_restore_j2'), ctx['pg_restore'])}) is what a parallel restore could gain.")
        out.append(f"Traffic was stopped for {f1(ctx.get('downtime'))} s of the {f1(ctx['restore'].wall)} s (the "
                   "tool's figure, maintenance page up to the app back and healthy); clients saw 503 answers for the "
                   "windows in the probe table and no other failure. That time is fixed waits (DNS-cache expiry, "
                   "container stop/start, health checks), not proportional to the data: the restore and checks run "
                   "while the old database keeps serving.")
    return out


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
RESTORE_LINE = re.compile(r"^restored \S+ from (\S+) in ([\d.]+)s \(pg_restore ([\d.]+)s, traffic stopped ([\d.]+)s\)"
                          r"(?:; safety backup (\S+))?")
KEPT_LINE = re.compile(r"^the previous database is kept as (\S+);")
CHECKED_LINE = re.compile(r"checked just now \(([\d.]+)s\)")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.backup_restore", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=75, help="pgbench scale of the big database (75 ~ 1.1 GiB; default 75)")
    ap.add_argument("--small-scale", type=int, default=20, help="pgbench scale of the small one (default 20)")
    ap.add_argument("--min-gib", type=float, default=1.0, help="report an error when the big database is smaller")
    ap.add_argument("--max-total-seconds", type=float, default=2400.0,
                    help="optional runs (--no-checksums, pg_restore -j 2) are skipped after this (default 2400)")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown file whose backup-bench section (between its markers) is replaced or appended")
    ap.add_argument("--child-naive", metavar="KEY", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not 1 <= args.small_scale < args.scale:
        ap.error("need 1 <= --small-scale < --scale")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child_naive:
        return child_naive(args.child_naive)
    started = time.monotonic()
    command = " ".join([".venv/bin/python -m bench.backup_restore", *(argv if argv is not None else sys.argv[1:])])
    env = load_environment("sandbox")
    ctx: dict = {"command": command, "machine": machine(), "errors": [], "scale": args.scale,
                 "small_scale": args.small_scale, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M")}
    log("sandbox.up (idempotent)")
    sandbox.up(env)
    made: set[str] = set()  # backup ids to delete at the end
    naive_key = None
    before_db = None

    def budget_left(what: str) -> bool:
        if time.monotonic() - started < args.max_total_seconds:
            return True
        ctx["errors"].append(f"time budget (--max-total-seconds) exhausted: {what} skipped")
        return False

    with Gateway(env, masker=Masker()) as gw:
        fleet = Fleet(env, gw)
        ctx["dbname"] = fleet.target.dbname
        try:
            wait_lock_free(env, gw)
            log(f"health before: {health()}")
            fleet.drop_db(SCRATCH_DB)  # leftovers of an interrupted run
            fleet.run("rm", "-f", STAGED)

            # -- small size: RSS reference
            log(f"pgbench -i -s {args.small_scale}")
            ctx["init_small"] = fleet.pgbench_init(args.small_scale)
            ctx["small_db"] = fleet.db_size()
            log(f"  {ctx['small_db'] / GiB:.2f} GiB in {ctx['init_small']:.0f}s")
            ctx["small_backup"] = tool_backup(f"backup.db, scale {args.small_scale}")
            made.add(ctx["small_backup"].id)

            # -- big size
            log(f"pgbench -i -s {args.scale}")
            ctx["init_big"] = fleet.pgbench_init(args.scale)
            ctx["big_db"] = fleet.db_size()
            log(f"  {ctx['big_db'] / GiB:.2f} GiB in {ctx['init_big']:.0f}s")
            if ctx["big_db"] < args.min_gib * GiB:
                ctx["errors"].append(f"the big database is {ctx['big_db'] / GiB:.2f} GiB, less than {args.min_gib} "
                                     "GiB: raise --scale")
            rows = ctx["backup_rows"] = []

            log("baseline: pg_dump -Fc > /dev/null inside the accessory container")
            ctx["pg_dump"] = fleet.pg_dump_devnull()
            log(f"  {ctx['pg_dump']:.1f}s")
            rows.append({"what": "`pg_dump -Fc > /dev/null` in the container on db1", "wall": ctx["pg_dump"]})
            dry = run_child("CLI start-up", [INV, "backup.db", "--host", "sandbox", "--dry-run"], 300, echo=False)
            if dry.ok:
                ctx["startup"], ctx["startup_rss"] = dry.wall, dry.maxrss_kib
                rows.append({"what": "`inv backup.db --dry-run` (CLI start-up + plan; contacts nothing)",
                             "wall": dry.wall, "rss": dry.maxrss_kib, "cpu": dry.cpu})

            bb = ctx["big_backup"] = tool_backup(f"backup.db, scale {args.scale}")
            made.add(bb.id)
            rows.append({"what": "`inv backup.db --host sandbox` (default: counts + checksums)", "wall": bb.child.wall,
                         "in_task": bb.in_task, "bytes": bb.size, "rss": bb.child.maxrss_kib, "cpu": bb.child.cpu})

            naive_key = s3.key(env, NAIVE_PREFIX + f"naive-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.dump.gz")
            naive = run_child("naive pg_dump | gzip | upload_fileobj",
                              [sys.executable, "-m", "bench.backup_restore", "--child-naive", naive_key],
                              REMOTE_TIMEOUT, echo=False)
            if naive.ok:
                ctx["naive_wall"] = naive.wall
                rows.append({"what": "naive: `pg_dump -Fc \\| gzip` over SSH -> boto3 `upload_fileobj`",
                             "wall": naive.wall, "bytes": json.loads(naive.stdout)["bytes"],
                             "rss": naive.maxrss_kib, "cpu": naive.cpu})
            else:
                ctx["errors"].append(naive.failure())

            if budget_left("backup.db --no-checksums"):
                nochk = tool_backup("backup.db --no-checksums", checksums=False)
                made.add(nochk.id)
                ctx["nochk_wall"] = nochk.child.wall
                rows.append({"what": "`inv backup.db --host sandbox --no-checksums` (counts only)",
                             "wall": nochk.child.wall, "in_task": nochk.in_task, "bytes": nochk.size, "rss": nochk.child.maxrss_kib,
                             "cpu": nochk.child.cpu})
                fleet.delete_backups({nochk.id})

            log("baseline 2: pg_dump -Fc > /dev/null again (drift check)")
            again = fleet.pg_dump_devnull()
            rows.append({"what": "`pg_dump -Fc > /dev/null` again (last)", "wall": again})
            with contextlib.suppress(BotoCoreError, ClientError):
                fleet.client.delete_object(Bucket=env.s3.bucket, Key=naive_key)

            # -- restore: baseline from a staged file, then the tool
            log(f"staging {bb.id} into {fleet.target.container}:{STAGED}")
            ctx["stage"] = fleet.stage(bb.manifest["object_key"])
            staged_sha = fleet.run("sha256sum", STAGED)[1].split()[0]
            if staged_sha != bb.manifest["sha256"]:
                raise RuntimeError(f"staged dump sha256 {staged_sha[:12]} != manifest {bb.manifest['sha256'][:12]}")
            log("baseline: pg_restore (1 job) from the staged file into a scratch database")
            ctx["pg_restore"] = fleet.pg_restore_file(1)
            log(f"  {ctx['pg_restore']:.1f}s")
            if budget_left("pg_restore -j 2"):
                ctx["pg_restore_j2"] = fleet.pg_restore_file(2)
                log(f"  -j 2: {ctx['pg_restore_j2']:.1f}s")
            fleet.run("rm", "-f", STAGED)

            wait_lock_free(env, gw)
            at = bb.manifest["finished_at"]
            with Probe(REMOTE_TIMEOUT) as probe:
                r = run_child("inv restore", [INV, "restore", "--host", "sandbox", "--at", at, "--yes"], REMOTE_TIMEOUT)
            for line in r.stdout.splitlines():
                if m := KEPT_LINE.match(line):
                    before_db = m.group(1)
                if m := RESTORE_LINE.match(line):
                    ctx["downtime"] = float(m.group(4))
                    if m.group(5):
                        made.add(m.group(5))
            if not r.ok:
                raise RuntimeError(r.failure())
            ctx["restore"] = r
            ctx["probe"] = probe.summary()
            plan_at = r.at("restore plan for")
            checked = CHECKED_LINE.search(r.stdout)
            s0, s1 = r.at("safety backup of"), r.at("  safety backup ")
            p0, p1 = r.at("restoring "), r.at("  pg_restore done in")
            stop = r.at("stopping traffic") or r.at("swapping")
            ctx["restore_stream"] = (p1 - p0) if p0 is not None and p1 is not None else None
            ctx["restore_rows"] = [
                ["staging the object into the container (S3 -> operator -> SSH -> file; not in the baseline)",
                 ctx["stage"]],
                ["**baseline: `pg_restore` (1 job) from the staged file into a scratch database**", ctx["pg_restore"]],
                ["`pg_restore -j 2` from the staged file (reference; impossible from a stream)",
                 ctx.get("pg_restore_j2")],
                [f"**`inv restore --at {at} --yes`: whole command**", r.wall],
                ["· plan: list backups, read the live state, download + SHA-256 of the object", plan_at],
                ["· · of which the download + SHA-256 check", float(checked.group(1)) if checked else None],
                ["· safety backup of the live database (a full backup.db)",
                 (s1 - s0) if s0 is not None and s1 is not None else None],
                ["· create the new database + streamed pg_restore (S3 -> SSH -> `docker exec -i pg_restore`)",
                 ctx["restore_stream"]],
                ["· row counts + checksums vs the manifest", (stop - p1) if stop is not None and p1 is not None else None],
                ["· traffic stopped (maintenance page, swap, app back and healthy), as reported", ctx.get("downtime")],
            ]
        except Exception as exc:  # noqa: BLE001 - reported, then cleaned up
            traceback.print_exc()
            ctx["errors"].append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        finally:
            log("cleanup")
            steps = [("drop pgbench tables", fleet.drop_pgbench), ("drop scratch db", lambda: fleet.drop_db(SCRATCH_DB)),
                     ("remove staged file", lambda: fleet.run("rm", "-f", STAGED))]
            if before_db:
                steps.append((f"drop {before_db}", lambda: fleet.drop_db(before_db)))
            if naive_key:
                steps.append(("delete naive object", lambda: fleet.client.delete_object(Bucket=env.s3.bucket,
                                                                                         Key=naive_key)))
            steps.append(("delete this run's backups", lambda: log(f"  deleted {fleet.delete_backups(made)}")))
            for what, fn in steps:
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001
                    ctx["errors"].append(f"cleanup: {what}: {exc}")
            ctx["final_health"] = health()
            log(f"health after: {ctx['final_health']}")
            if any(v != "200" for v in ctx["final_health"].values()):
                ctx["errors"].append(f"app not healthy at the end: {ctx['final_health']}")

    ctx["total"] = time.monotonic() - started
    if "big_backup" not in ctx or "pg_dump" not in ctx:
        print("no complete measurement; errors: " + "; ".join(ctx["errors"]), file=sys.stderr)
        return 1
    ctx.setdefault("pg_restore", math.nan)
    text = report(ctx)
    print("\n" + text)
    if args.out:
        write_section(args.out, SECTION, text)
        log(f"written to {args.out}")
    return 1 if ctx["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
