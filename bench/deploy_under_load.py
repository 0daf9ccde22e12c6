"""Deploys and rollbacks on the sandbox fleet under constant HTTP load.

    .venv/bin/python -m bench.deploy_under_load [--requests-per-phase N] [--runs R] [--out BENCHMARKS.md]

What it measures (every baseline in the same run; see bench/README.md):

1. Zero downtime: a bounded pool of threads sends GET / and GET /api/health over
   keep-alive connections (http.client) alternately to web1's and web2's nginx
   (127.0.0.1:8101 / :8102) during (a) a steady state of N requests, (b) a deploy
   v1 -> v2 (built from a temp git checkout of the sample app, the full pipeline),
   (c) a rollback to v1. Every response's status, latency and X-App-Version is kept;
   every failure (non-2xx/3xx, connection error, timeout) is counted, never retried.
2. Deploy wall time of a prebuilt, pushed image (DeployRequest(version=TAG)) on
   2 web hosts vs 1 web host (the env with only web1 + db1), alternating tags.
3. Rollback wall time vs a deploy of a prebuilt image (each rollback follows a
   2-host deploy it undoes).

At the end the fleet is left serving this run's newest version (v2) on both hosts.
Only 127.0.0.1 is contacted (nginx ports, and the fleet through ops' own gateway).
Every loop is bounded by a count and by time.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import http.client
import itertools
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.report import write_section
from ops import audit as ops_audit
from ops import sandbox
from ops.deploy import image as ops_image
from ops.deploy import pipeline
from ops.deploy import switch as ops_switch
from ops.deploy.pipeline import DeployRequest, deploy, rollback
from ops.inventory import Environment, Host, load_environment
from ops.lock import EnvironmentLock, LockHeld
from ops.lock import status as lock_status
from ops.remote import Gateway
from tests.support.app_repo import apply_variant, head_sha, make_app_repo

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # the only address load is sent to
TARGETS = (("web1", 8101), ("web2", 8102))
PATHS = ("/", "/api/health")
MIN_SPANNING = 5000  # the goal: 0 failures out of at least this many requests spanning a deploy

T0 = time.monotonic()  # every timestamp below is seconds since this


def now() -> float:
    return time.monotonic() - T0


# ---------------------------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(slots=True)
class Rec:
    t: float  # request start (s since T0)
    lat: float  # seconds until the whole body was read, or until the error
    host: int  # index in TARGETS
    path: int  # index in PATHS
    status: int  # 0 when no status line arrived
    fail: str | None  # None = success; else the kind of failure
    version: str  # X-App-Version ('' when none)
    reused: bool  # sent on a keep-alive connection that had already carried a request


class Load:
    """``workers`` threads, each with one keep-alive connection per web host.

    Stops at ``limit`` requests, when ``stop()`` is called, or at ``deadline`` (s since T0),
    whichever comes first. A request's timeout is ``timeout`` seconds (connect and each read).
    """

    def __init__(self, workers: int, *, limit: int, deadline: float, timeout: float):
        self.workers = workers
        self.limit = limit
        self.deadline = deadline
        self.timeout = timeout
        self._tickets = itertools.count()
        self._stop = threading.Event()
        self._out: list[list[Rec]] = [[] for _ in range(workers)]
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True, name=f"load-{i}")
                         for i in range(workers)]
        self.hit_deadline = False

    def start(self) -> Load:
        for th in self._threads:
            th.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> list[Rec]:
        for th in self._threads:
            th.join(timeout=self.timeout * 3 + 5)
        recs = [r for out in self._out for r in out]
        recs.sort(key=lambda r: r.t)
        return recs

    def wait(self) -> list[Rec]:
        """Until the limit or the deadline (for count-bounded phases)."""
        for th in self._threads:
            while th.is_alive():
                th.join(timeout=1.0)
                if now() > self.deadline + self.timeout + 5:
                    self.stop()
        return self.join()

    def _work(self, wid: int) -> None:
        out = self._out[wid]
        conns: dict[int, http.client.HTTPConnection] = {}
        i = wid  # offset so workers do not move in lockstep
        try:
            while not self._stop.is_set():
                if now() >= self.deadline:
                    self.hit_deadline = True
                    break
                if next(self._tickets) >= self.limit:
                    break
                host, path = i % 2, (i // 2) % 2
                i += 1
                port = TARGETS[host][1]
                conn = conns.get(port)
                if conn is None:
                    conn = conns[port] = http.client.HTTPConnection(HOST, port, timeout=self.timeout)
                reused = conn.sock is not None
                status, fail, version = 0, None, ""
                t = now()
                try:
                    conn.request("GET", PATHS[path])
                    resp = conn.getresponse()
                    resp.read()
                    status = resp.status
                    version = resp.getheader("X-App-Version") or ""
                    if not 200 <= status < 400:
                        fail = f"HTTP {status}"
                except TimeoutError:
                    fail = "timeout"
                    conn.close()
                except (OSError, http.client.HTTPException) as exc:
                    fail = type(exc).__name__
                    conn.close()
                out.append(Rec(t, now() - t, host, path, status, fail, version, reused))
        finally:
            for c in conns.values():
                c.close()


# ---------------------------------------------------------------------------------------------
# step timing: in-process wrappers around ops functions (no ops file is changed)
# ---------------------------------------------------------------------------------------------
class StepTimer:
    """Records (step, host, start, end) for wrapped ops functions while ``active`` is set."""

    def __init__(self):
        self.lock = threading.Lock()
        self.spans: list[tuple[str, str, float, float]] | None = None

    def begin(self) -> None:
        with self.lock:
            self.spans = []

    def end(self) -> list[tuple[str, str, float, float]]:
        with self.lock:
            spans, self.spans = self.spans or [], None
        return spans

    def wrap(self, owner, attr: str, step: str) -> None:
        original = getattr(owner, attr)
        timer = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            host = next((a.name for a in args if isinstance(a, Host)), "")
            start = now()
            try:
                return original(*args, **kwargs)
            finally:
                with timer.lock:
                    if timer.spans is not None:
                        timer.spans.append((step, host, start, now()))

        setattr(owner, attr, timed)


STEPS = [  # (owner, attribute, step name), in pipeline order
    (pipeline, "preflight", "preflight (SSH, docker version, app_dir) all hosts"),
    (EnvironmentLock, "acquire", "lock acquire"),
    (ops_audit, "record", "audit record (hosts + S3)"),
    (ops_image, "build_and_push", "build + push image"),
    (ops_image, "pull", "pull (skipped when present)"),
    (pipeline, "_upload_env", "env file upload"),
    (pipeline, "current_release", "read current release"),
    (pipeline, "run_migrations", "migrate (one-off container)"),
    (ops_switch, "start_container", "switch: start container"),
    (ops_switch, "wait_healthy", "switch: wait healthy"),
    (ops_switch, "ensure_proxy", "switch: nginx config (reload only if changed)"),
    (ops_switch, "join_service", "switch: join the service alias"),
    (ops_switch, "wait_serving", "switch: wait serving via nginx + DNS cache expiry"),
    (ops_switch, "set_current", "switch: set current"),
    (ops_switch, "retire_others", "switch: stop old (graceful) + leave network + prune"),
    (pipeline, "append_history", "history append"),
    (pipeline.Deployment, "_central_release", "S3 release record"),
    (EnvironmentLock, "release", "lock release"),
    (pipeline.Deployment, "close", "close SSH connections"),
]
TIMER = StepTimer()


def install_step_timer() -> None:
    for owner, attr, step in STEPS:
        TIMER.wrap(owner, attr, step)


def union_length(spans: list[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(spans):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def step_totals(spans) -> dict[str, float]:
    """Wall time spent in each step (union over hosts running it in parallel)."""
    by_step: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for step, _host, s, e in spans:
        by_step[step].append((s, e))
    return {step: union_length(v) for step, v in by_step.items()}


# ---------------------------------------------------------------------------------------------
# one deploy / rollback call, timed, with its say-lines timestamped
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    kind: str  # deploy | rollback
    label: str
    start: float = 0.0
    end: float = 0.0
    events: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    steps: dict[str, float] = dataclasses.field(default_factory=dict)
    version: str = ""
    error: str = ""
    lock_waits: int = 0

    @property
    def wall(self) -> float:
        return self.end - self.start

    def switch_windows(self) -> dict[str, tuple[float, float]]:
        """Per host: from 'switching HOST' to 'HOST: serving' (the host's whole switch_host)."""
        out: dict[str, list[float]] = {}
        for t, line in self.events:
            m = re.match(r"switching (.+) to ", line)
            if m:
                for h in m.group(1).split(", "):
                    out[h] = [t, self.end]
            m = re.match(r"\s+(\S+): serving ", line)
            if m and m.group(1) in out:
                out[m.group(1)][1] = t
        return {h: (s, e) for h, (s, e) in out.items()}

    def switch_window(self) -> tuple[float, float] | None:
        w = self.switch_windows()
        if not w:
            return None
        return min(s for s, _ in w.values()), max(e for _, e in w.values())


def timed_call(kind: str, label: str, fn: Callable[[Callable[[str], None]], object], *, quiet=False,
               max_lock_retries: int = 30) -> Run:
    """Run ``fn(say)`` (a deploy or rollback); a 'locked by' refusal waits 10 s and retries."""
    for attempt in range(max_lock_retries + 1):
        run = Run(kind, label, lock_waits=attempt)

        def say(line: str, run=run) -> None:
            t = now()
            run.events.append((t, line))
            if not quiet:
                print(f"      [{t - run.start:6.2f}s] {line}", flush=True)

        TIMER.begin()
        run.start = now()
        try:
            result = fn(say)
            run.version = result.release.version
        except LockHeld as exc:
            TIMER.end()
            print(f"    {label}: {str(exc).splitlines()[0]} -- waiting 10 s, then retrying", flush=True)
            time.sleep(10)
            continue
        except Exception as exc:  # noqa: BLE001 - recorded and reported, never hidden
            run.error = f"{type(exc).__name__}: {exc}"
            print(f"    {label}: FAILED: {run.error}", flush=True)
        run.end = now()
        run.steps = step_totals(TIMER.end())
        print(f"    {label}: {run.wall:.2f} s{' (FAILED)' if run.error else ''}", flush=True)
        return run
    raise RuntimeError(f"{label}: environment still locked after {max_lock_retries} retries")


def wait_lock_free(env: Environment, limit_s: float = 600) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        with Gateway(env) as gw:
            held = {h: v for h, v in lock_status(gw, list(env.hosts.values())).items() if v is not None}
        if not held:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"environment still locked: {held}")
        print(f"    locked by {next(iter(held.values())).describe()}: waiting 10 s", flush=True)
        time.sleep(10)


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def pct(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]


def lat_stats(recs: list[Rec]) -> dict:
    lats = [r.lat * 1000 for r in recs]
    fails = [r for r in recs if r.fail]
    span = (recs[-1].t + recs[-1].lat - recs[0].t) if recs else 0.0
    return {"n": len(recs), "fail": len(fails), "p50": pct(lats, 50), "p99": pct(lats, 99),
            "max": max(lats) if lats else math.nan, "rps": len(recs) / span if span > 0 else math.nan,
            "new_conns": sum(1 for r in recs if not r.reused), "span": span}


def within(recs: list[Rec], start: float, end: float) -> list[Rec]:
    return [r for r in recs if start <= r.t <= end]


@dataclasses.dataclass
class Phase:
    name: str
    recs: list[Rec]
    run: Run | None = None
    load_start: float = 0.0
    load_end: float = 0.0
    hit_deadline: bool = False


def run_phase(name: str, args, deadline: float, action=None, label: str = "") -> Phase:
    """Load alone for ``N`` requests, or load around ``action`` (pre-roll, action, post-roll)."""
    print(f"\n== phase: {name}", flush=True)
    if action is None:
        load = Load(args.workers, limit=args.requests_per_phase, deadline=deadline, timeout=args.timeout).start()
        start = now()
        recs = load.wait()
        phase = Phase(name, recs, None, start, now(), load.hit_deadline)
    else:
        cap = args.requests_per_phase * 200
        load = Load(args.workers, limit=cap, deadline=deadline, timeout=args.timeout).start()
        start = now()
        time.sleep(args.pre_roll)
        run = timed_call("deploy" if "deploy" in name else "rollback", label, action)
        time.sleep(args.post_roll)
        load.stop()
        recs = load.join()
        phase = Phase(name, recs, run, start, now(), load.hit_deadline)
    s = lat_stats(phase.recs)
    print(f"   {s['n']} requests, {s['fail']} failed, p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms, "
          f"max {s['max']:.1f} ms{' (HIT THE LOAD DEADLINE)' if phase.hit_deadline else ''}", flush=True)
    return phase


def version_switch(phase: Phase, old: str, new: str) -> list[dict]:
    """Per host: when the new version first answered, when the old one last did (s from action start)."""
    rows = []
    base = phase.run.start
    windows = phase.run.switch_windows()
    for hi, (hname, _port) in enumerate(TARGETS):
        recs = [r for r in phase.recs if r.host == hi and r.version]
        first_new = next((r.t for r in recs if r.version == new), None)
        last_old = next((r.t for r in reversed(recs) if r.version == old), None)
        after = sum(1 for r in recs if first_new is not None and r.t > first_new and r.version == old)
        others = Counter(r.version for r in recs if r.version not in (old, new))
        win = windows.get(hname)
        rows.append({
            "host": hname,
            "first_new": None if first_new is None else first_new - base,
            "last_old": None if last_old is None else last_old - base,
            "old_after_new": after,
            "other_versions": dict(others),
            "window": None if win is None else (win[0] - base, win[1] - base),
        })
    return rows


def timeline_width(phase: Phase, max_rows: int = 45) -> int:
    return max(1, math.ceil((phase.load_end - phase.load_start) / max_rows))


def timeline(phase: Phase, names: dict[str, str]) -> list[list[str]]:
    base = phase.run.start
    start, end = phase.load_start - base, phase.load_end - base
    width = timeline_width(phase)
    rows = []
    t = math.floor(start)
    while t < end:
        recs = [r for r in phase.recs if t <= r.t - base < t + width]
        evs = [ev for ev_t, ev in phase.run.events if t <= ev_t - base < t + width]
        if t <= phase.run.end - base < t + width:
            evs.append("(call returned)")
        per_host = []
        for hi in range(len(TARGETS)):
            c = Counter(names.get(r.version, r.version or "-") for r in recs if r.host == hi and not r.fail)
            per_host.append(" ".join(f"{v}:{n}" for v, n in sorted(c.items())) or "-")
        lats = [r.lat * 1000 for r in recs]
        fails = Counter(r.fail for r in recs if r.fail)
        rows.append([f"{t:+.0f}..{t + width:+.0f}", str(len(recs)),
                     ", ".join(f"{k} x{n}" for k, n in fails.items()) or "0",
                     f"{pct(lats, 99):.0f}" if lats else "-", *per_host,
                     "; ".join(shorten(e, names) for e in evs)])
        t += width
    return rows


def shorten(line: str, names: dict[str, str]) -> str:
    line = line.strip()
    line = re.sub(r"\d{8}T\d{6}Z-[A-Za-z0-9._-]+", "<release>", line)
    for tag, name in names.items():
        line = line.replace(tag, name)
    return line[:70]


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def f1(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def f2(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def ratio(a, b) -> str:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.2f}x"


def machine() -> dict:
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        pass
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                            text=True, timeout=30).stdout.strip()
    return {"nproc": os.cpu_count(), "memory": mem, "cpu": cpu, "kernel": platform.release(),
            "python": platform.python_version(), "docker": docker}


def report(ctx: dict) -> str:
    args, names = ctx["args"], ctx["names"]
    steady: Phase = ctx["steady"]
    phases: list[Phase] = [p for p in (ctx.get("deploy_phase"), ctx.get("rollback_phase")) if p]
    m = ctx["machine"]
    L = ["# Benchmarks: deploy and rollback under load (sandbox fleet)", "",
         "Generated by `bench/deploy_under_load.py` (see `bench/README.md` for what each figure means).", "",
         f"- date: {ctx['date']} (UTC)",
         f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, kernel {m['kernel']}, "
         f"Python {m['python']}, Docker {m['docker']}",
         f"- command: `{ctx['command']}`",
         f"- load: {args.workers} threads, keep-alive http.client connections, alternating 127.0.0.1:8101 (web1) "
         f"and :8102 (web2), alternating GET / and GET /api/health; request timeout {args.timeout:g} s; "
         f"no retries; pre-roll {args.pre_roll:g} s before and post-roll {args.post_roll:g} s after each "
         f"deploy/rollback call",
         f"- versions: v1 = `{ctx['v1']}` (sample app), v2 = `{ctx['v2']}` (variant v2)",
         f"- total run time: {ctx['total']:.0f} s", ""]

    # -- 1. zero downtime -----------------------------------------------------------------
    L += ["## 1. Zero downtime under load", ""]
    s0 = lat_stats(steady.recs)
    rows = [["(a) steady state, no deploy", s0["n"], s0["fail"], f1(s0["rps"]), f1(s0["p50"]), f1(s0["p99"]),
             f1(s0["max"]), s0["new_conns"], f1(s0["span"])]]
    ratio_rows = []
    total_span, total_fail = 0, 0
    for p in phases:
        tag = "(b)" if "deploy" in p.name else "(c)"
        s = lat_stats(p.recs)
        rows.append([f"{tag} {p.name}: whole phase", s["n"], s["fail"], f1(s["rps"]), f1(s["p50"]), f1(s["p99"]),
                     f1(s["max"]), s["new_conns"], f1(s["span"])])
        d = lat_stats(within(p.recs, p.run.start, p.run.end))
        total_span += d["n"]
        total_fail += d["fail"]
        rows.append([f"{tag} {p.name}: during the call", d["n"], d["fail"], f1(d["rps"]), f1(d["p50"]),
                     f1(d["p99"]), f1(d["max"]), d["new_conns"], f1(p.run.wall)])
        win = p.run.switch_window()
        if win:
            w = lat_stats(within(p.recs, *win))
            rows.append([f"{tag} {p.name}: switch window", w["n"], w["fail"], f1(w["rps"]), f1(w["p50"]),
                         f1(w["p99"]), f1(w["max"]), w["new_conns"], f1(win[1] - win[0])])
            ratio_rows.append([f"{tag} {p.name}: switch window / steady", ratio(w["p50"], s0["p50"]),
                               ratio(w["p99"], s0["p99"]), ratio(w["max"], s0["max"]), ratio(w["rps"], s0["rps"])])
        ratio_rows.append([f"{tag} {p.name}: during the call / steady", ratio(d["p50"], s0["p50"]),
                           ratio(d["p99"], s0["p99"]), ratio(d["max"], s0["max"]), ratio(d["rps"], s0["rps"])])
    L += table(["phase", "requests", "failed", "req/s", "p50 ms", "p99 ms", "max ms", "new connections",
                "seconds"], rows)
    L += ["", f"Requests started while a deploy or rollback call was running: **{total_span}**, failed: "
          f"**{total_fail}** (goal: 0 out of at least {MIN_SPANNING:,} per deploy).", ""]
    for p in phases:
        n = len(within(p.recs, p.run.start, p.run.end))
        if n < MIN_SPANNING:
            L += [f"**Note:** only {n} requests spanned the {p.name} call, below {MIN_SPANNING:,}.", ""]
        if p.run.error:
            L += [f"**The {p.name} call FAILED:** `{p.run.error.splitlines()[0]}`", ""]
        if p.hit_deadline:
            L += [f"**The load of {p.name} hit the hard time limit.**", ""]
    L += ["Latency ratios (window / steady state; >1 = slower than steady state):", ""]
    L += table(["window", "p50", "p99", "max", "throughput"], ratio_rows)
    L += [""]

    L += ["### Failures, by kind", ""]
    frows = []
    for p in [steady, *phases]:
        base = p.run.start if p.run else p.load_start
        groups: dict[tuple, list[Rec]] = defaultdict(list)
        for r in p.recs:
            if r.fail:
                groups[(r.fail, "reused keep-alive" if r.reused else "new connection", TARGETS[r.host][0],
                        PATHS[r.path])].append(r)
        for (kind, conn, host, path), rs in sorted(groups.items()):
            ts = ", ".join(f"{r.t - base:+.2f}" for r in rs[:12]) + (" ..." if len(rs) > 12 else "")
            frows.append([p.name, kind, conn, host, path, len(rs), ts])
    if frows:
        L += table(["phase", "kind", "connection", "host", "path", "count",
                    "request start, s from the call's start"], frows)
    else:
        L += ["No failed request in any phase."]
    L += [""]

    L += ["### The moment of the switch, per host (X-App-Version of each response)", ""]
    vrows = []
    for p, (old, new) in zip(phases, ctx["version_pairs"], strict=False):
        for row in version_switch(p, old, new):
            w = row["window"]
            vrows.append([p.name, row["host"], f"{names.get(old, old)} -> {names.get(new, new)}",
                          "-" if w is None else f"{w[0]:.2f} .. {w[1]:.2f}",
                          f2(row["first_new"]), f2(row["last_old"]),
                          f2(None if row["first_new"] is None or row["last_old"] is None
                             else row["last_old"] - row["first_new"]),
                          row["old_after_new"], ", ".join(f"{k or '?'}:{v}" for k, v in row["other_versions"].items())
                          or "-"])
    L += table(["phase", "host", "versions", "switch_host ran (s)", "first new answer (s)",
                "last old answer (s)", "overlap (s)", "old answers after first new", "other versions"], vrows)
    L += ["", "Seconds are from the start of the deploy/rollback call. 'Overlap' > 0 means both versions "
          "answered on that host for that long: both containers answer to the service name from the moment the "
          "new one joins until the old one stops (nginx spreads requests over both; by design).", ""]

    for p in phases:
        L += [f"### Timeline of the {p.name} ({timeline_width(p)} s bins, s from the call's start)", "",
              "Versions: successful responses per version in the bin; p99 over every request of the bin.", ""]
        L += table(["t (s)", "requests", "failed", "p99 ms", "web1 versions", "web2 versions", "deploy output"],
                   timeline(p, names))
        L += [""]

    # -- 2. wall time 2 hosts vs 1 -----------------------------------------------------------
    L += ["## 2. Deploy wall time of a prebuilt image: 2 web hosts vs 1 web host", "",
          "`DeployRequest(version=TAG)` of an already pushed tag (no build; the image is already on the "
          "hosts, so the pull is skipped); no HTTP load; runs interleaved 2,1,1,2,... alternating tags.", ""]
    d2, d1 = ctx["deploy2"], ctx["deploy1"]
    rows = [[r.label, names.get(r.version, r.version) or "-", f2(r.wall), r.error.splitlines()[0][:60] if r.error
             else "ok"] for r in ctx["timing_order"]]
    L += table(["run", "version", "wall s", "outcome"], rows)
    m2 = median_wall(d2)
    m1 = median_wall(d1)
    L += ["", table_line("median, 2 web hosts", m2, len(ok_runs(d2))),
          table_line("median, 1 web host", m1, len(ok_runs(d1))),
          f"- **ratio 2 hosts / 1 host: {ratio(m2, m1)}**", ""]

    # -- 3. rollback -------------------------------------------------------------------------
    L += ["## 3. Rollback wall time vs a deploy of a prebuilt image", "",
          "Each rollback (`rollback(to=v1)`: the newest v1 release, whose container is retained stopped, so the switch does `docker start`) follows a "
          "2-host deploy of a prebuilt image, which is timed too; no HTTP load.", ""]
    rows = [[r.label, names.get(r.version, r.version) or "-", f2(r.wall), r.error.splitlines()[0][:60] if r.error
             else "ok"] for r in ctx["rollback_order"]]
    L += table(["run", "version", "wall s", "outcome"], rows)
    mr = median_wall(ctx["rollbacks"])
    mp = median_wall(ctx["paired_deploys"])
    L += ["", table_line("median rollback (2 web hosts)", mr, len(ok_runs(ctx["rollbacks"]))),
          table_line("median deploy just before it (2 web hosts)", mp, len(ok_runs(ctx["paired_deploys"]))),
          f"- **ratio rollback / deploy of a prebuilt image: {ratio(mr, mp)}** "
          f"(vs the section-2 median of 2-host deploys: {ratio(mr, m2)})", ""]

    # -- where the time goes --------------------------------------------------------------
    L += ["## Where the time goes (median seconds per step)", "",
          "Measured by in-process timing wrappers around ops functions (no ops file changed); a step run on "
          "several hosts in parallel counts its wall time once; switch steps run once per host (batch size "
          f"{ctx['batch']}), so they add up.", ""]
    cols = [("2-host deploy", ok_runs(d2)), ("1-host deploy", ok_runs(d1)), ("rollback", ok_runs(ctx["rollbacks"]))]
    if ctx.get("deploy_phase") and not ctx["deploy_phase"].run.error:
        cols.append(("deploy with build, under load", [ctx["deploy_phase"].run]))
    steps = [s for _, _, s in STEPS]
    rows = []
    for step in steps:
        vals = [statistics.median([r.steps.get(step, 0.0) for r in runs]) if runs else math.nan for _, runs in cols]
        if any(v and not math.isnan(v) and v >= 0.005 for v in vals):
            rows.append([step, *[f2(v) for v in vals]])
    rows.append(["**wall time**", *[f2(statistics.median([r.wall for r in runs])) if runs else "-"
                                    for _, runs in cols]])
    L += table(["step", *[c for c, _ in cols]], rows)
    L += [""]

    if ctx.get("errors"):
        L += ["## Errors during the run", ""] + [f"- `{e}`" for e in ctx["errors"]] + [""]
    L += [f"Fleet at the end: {ctx.get('final', '?')}", ""]
    return "\n".join(L)


def ok_runs(runs: list[Run]) -> list[Run]:
    return [r for r in runs if not r.error]


def median_wall(runs: list[Run]) -> float | None:
    ok = ok_runs(runs)
    return statistics.median(r.wall for r in ok) if ok else None


def table_line(what: str, value, n: int) -> str:
    return f"- {what}: **{f2(value)} s** (of {n} successful runs)"


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def served() -> dict[str, str]:
    out = {}
    for name, port in TARGETS:
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        try:
            conn.request("GET", "/api/health")
            resp = conn.getresponse()
            resp.read()
            out[name] = f"{resp.status} {resp.getheader('X-App-Version')}"
        except OSError as exc:
            out[name] = type(exc).__name__
        finally:
            conn.close()
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.deploy_under_load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests-per-phase", type=int, default=5000,
                    help="requests of the steady-state phase; also the minimum expected during each deploy/rollback "
                         "call (reported when not reached) (default 5000)")
    ap.add_argument("--runs", type=int, default=2, help="timed runs per configuration in parts 2 and 3 (default 2)")
    ap.add_argument("--workers", type=int, default=8, help="load threads (default 8)")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds (default 10)")
    ap.add_argument("--pre-roll", type=float, default=1.0, help="load seconds before each deploy call (default 1)")
    ap.add_argument("--post-roll", type=float, default=3.0, help="load seconds after each deploy call (default 3)")
    ap.add_argument("--max-load-seconds", type=float, default=600.0,
                    help="hard stop of all load, counted from the first load phase (default 600)")
    ap.add_argument("--max-total-seconds", type=float, default=1800.0,
                    help="no new timed run starts after this (the final restoring deploy still runs) (default 1800)")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown report here (e.g. BENCHMARKS.md)")
    args = ap.parse_args(argv)
    if args.requests_per_phase < 1 or args.runs < 1 or not 1 <= args.workers <= 64:
        ap.error("--requests-per-phase and --runs must be >= 1, --workers 1..64")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    command = " ".join([".venv/bin/python -m bench.deploy_under_load", *(argv if argv is not None else sys.argv[1:])])
    ctx: dict = {"args": args, "command": command, "machine": machine(), "errors": [],
                 "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M")}
    install_step_timer()

    base = load_environment("sandbox")
    print("sandbox.up (idempotent)", flush=True)
    sandbox.up(base)
    wait_lock_free(base)

    tmp = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    env_file = tmp / "app.env"
    env_file.write_bytes(base.env_file.read_bytes())
    os.chmod(env_file, 0o600)
    repo = make_app_repo(tmp / "app")
    env2 = dataclasses.replace(base, env_file=env_file, build=dataclasses.replace(base.build, source=repo))
    one = {k: v for k, v in env2.hosts.items() if k in ("web1", "db1")}
    env1 = dataclasses.replace(env2, hosts=one, sandbox=dataclasses.replace(
        env2.sandbox, publish={k: v for k, v in env2.sandbox.publish.items() if k in one}))
    ctx["batch"] = env2.deploy.batch_size
    v1 = head_sha(repo)[:12]
    ctx["v1"], ctx["v2"] = v1, ""
    names = {v1: "v1"}
    ctx["names"] = names
    v2 = ""
    try:
        print(f"\n== setup: build and deploy v1 ({v1}) on both web hosts (not measured under load)", flush=True)
        setup = timed_call("deploy", "setup deploy v1 (build)", lambda say: deploy(env2, DeployRequest(), say))
        if setup.error:
            raise RuntimeError(f"setup deploy of v1 failed: {setup.error}")
        v2 = apply_variant(repo, "v2")[:12]
        ctx["v2"] = v2
        names[v2] = "v2"
        print(f"   serving: {served()}", flush=True)

        load_deadline = now() + args.max_load_seconds
        run_phase("warm-up", argparse.Namespace(**{**vars(args), "requests_per_phase": args.workers * 50}),
                  load_deadline)
        ctx["steady"] = run_phase("steady state", args, load_deadline)
        wait_lock_free(env2)
        ctx["deploy_phase"] = run_phase("deploy v1->v2 (build)", args, load_deadline,
                                        action=lambda say: deploy(env2, DeployRequest(), say),
                                        label="deploy v2 (build+push+switch) under load")
        ctx["rollback_phase"] = run_phase("rollback v2->v1", args, load_deadline,
                                          action=lambda say: rollback(env2, DeployRequest(), None, say),
                                          label="rollback to v1 under load")
        ctx["version_pairs"] = [(v1, v2), (v2, v1)]
        print(f"   serving: {served()}", flush=True)

        def budget_left() -> bool:
            left = time.monotonic() - started < args.max_total_seconds
            if not left:
                ctx["errors"].append("time budget (--max-total-seconds) exhausted: remaining timed runs skipped")
            return left

        # 3. rollback timing first, while every release in the history came from a 2-host deploy
        #    (both hosts then agree on the release to roll back to).
        print("\n== rollback wall time (each after a 2-host deploy of a prebuilt image)", flush=True)
        ctx["rollbacks"], ctx["paired_deploys"], ctx["rollback_order"] = [], [], []
        for i in range(args.runs):
            if not budget_left():
                break
            d = timed_call("deploy", f"deploy v2 prebuilt, 2 hosts #{i + 1}",
                           lambda say: deploy(env2, DeployRequest(version=v2), say), quiet=True)
            r = timed_call("rollback", f"rollback to v1 #{i + 1}",
                           lambda say: rollback(env2, DeployRequest(), v1, say), quiet=True)
            ctx["paired_deploys"].append(d)
            ctx["rollbacks"].append(r)
            ctx["rollback_order"] += [d, r]

        # 2. 2 hosts vs 1 host, interleaved 2,1,1,2,... each deploy changes the version of every host it touches.
        print("\n== deploy wall time, prebuilt image: 2 web hosts vs 1 web host", flush=True)
        ctx["deploy2"], ctx["deploy1"], ctx["timing_order"] = [], [], []
        web1_version = v1  # after the rollbacks above
        for i in range(args.runs):
            for which in ((2, 1) if i % 2 == 0 else (1, 2)):
                if not budget_left():
                    break
                tag = v2 if web1_version == v1 else v1
                env = env2 if which == 2 else env1
                run = timed_call("deploy", f"{which} host{'s' if which == 2 else ''} #{i + 1} -> {names[tag]}",
                                 lambda say, env=env, tag=tag: deploy(env, DeployRequest(version=tag), say), quiet=True)
                (ctx["deploy2"] if which == 2 else ctx["deploy1"]).append(run)
                ctx["timing_order"].append(run)
                if not run.error:
                    web1_version = tag
    except Exception as exc:  # noqa: BLE001 - reported, then the fleet is restored
        traceback.print_exc()
        ctx["errors"].append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        if v2:
            print(f"\n== restore: deploy v2 ({v2}) on both web hosts", flush=True)
            final = timed_call("deploy", "final deploy v2 (2 hosts)",
                               lambda say: deploy(env2, DeployRequest(version=v2), say), quiet=True)
            if final.error:
                ctx["errors"].append(f"final deploy: {final.error.splitlines()[0]}")
        ctx["final"] = ", ".join(f"{h}: {s}" for h, s in served().items()) + (f" (v2 = {v2})" if v2 else "")
        print(f"   serving: {ctx['final']}", flush=True)
        shutil.rmtree(tmp, ignore_errors=True)

    ctx["total"] = time.monotonic() - started
    for key in ("deploy2", "deploy1", "timing_order", "rollbacks", "paired_deploys", "rollback_order",
                "version_pairs"):
        ctx.setdefault(key, [])
    if "steady" not in ctx:
        print("no measurement was made", file=sys.stderr)
        return 1
    text = report(ctx)
    print("\n" + text)
    if args.out:
        write_section(args.out, "deploy-bench", text)
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
