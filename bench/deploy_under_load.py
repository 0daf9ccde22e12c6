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
import base64
import dataclasses
import functools
import hashlib
import http.client
import itertools
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import struct
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
from tests.support import nextjs
from tests.support.app_repo import apply_variant, head_sha, make_app_repo
from tests.support.websocket import ws_frame

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
    (ops_switch, "wait_serving", "switch: wait serving via nginx"),
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
    spans: list = dataclasses.field(default_factory=list)  # (step, host, start, end) of the call

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
        run.spans = TIMER.end()
        run.steps = step_totals(run.spans)
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
    nx = ap.add_argument_group("--app nextjs (examples/nextjs, prebuilt images; see bench/README.md)")
    ap.add_argument("--app", choices=("sample", "nextjs"), default="sample",
                    help="sample: examples/app, built from a git checkout (default); nextjs: the Next.js sample app")
    nx.add_argument("--browsers", type=int, default=4, help="browser-like threads (even: keep-alive, odd: fresh)")
    nx.add_argument("--max-requests", type=int, default=5000, help="hard cap of browser requests per phase")
    nx.add_argument("--max-rate", type=float, default=400.0, help="max browser requests per second (default 400)")
    nx.add_argument("--steady-seconds", type=float, default=10.0, help="length of the steady-state phase")
    nx.add_argument("--realtime-interval", type=float, default=0.25,
                    help="seconds between two 'version' emits of each Socket.io client (default 0.25)")
    args = ap.parse_args(argv)
    if not 1 <= args.browsers <= 32 or not 1 <= args.max_requests <= 50_000 or args.max_rate <= 0:
        ap.error("--browsers 1..32, --max-requests 1..50000, --max-rate > 0")
    if args.requests_per_phase < 1 or args.runs < 1 or not 1 <= args.workers <= 64:
        ap.error("--requests-per-phase and --runs must be >= 1, --workers 1..64")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    command = " ".join([".venv/bin/python -m bench.deploy_under_load", *(argv if argv is not None else sys.argv[1:])])
    if args.app == "nextjs":
        return main_nextjs(args, command)
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
    return finish(ctx, args, report, "deploy-bench", ("deploy2", "deploy1", "timing_order", "rollbacks",
                                                      "paired_deploys", "rollback_order", "version_pairs"))


def finish(ctx: dict, args, render, section: str, lists: tuple[str, ...]) -> int:
    """Print the report and write it into its section of ``--out``; 1 when nothing was measured."""
    for key in lists:
        ctx.setdefault(key, [])
    if "steady" not in ctx:
        print("no measurement was made", file=sys.stderr)
        return 1
    text = render(ctx)
    print("\n" + text)
    if args.out:
        write_section(args.out, section, text)
        print(f"written to {args.out}")
    return 0


# =============================================================================================
# --app nextjs: the real Next.js sample app (examples/nextjs), prebuilt images
# =============================================================================================
# Load: browser-like page loads (GET /, then every /_next/static/... URL the HTML names),
# half the browser threads on keep-alive connections, half on a fresh connection per
# request, paced by one shared rate limiter and capped per phase; plus, per web host, one
# Socket.io client over Engine.IO long-polling and one over WebSocket (a minimal RFC 6455
# client on a raw socket), each doing "emit version, wait for the ack" rounds.
NX_KINDS = ("page", "asset")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclasses.dataclass(slots=True)
class NRec:
    t: float  # request start (s since T0)
    lat: float
    host: int  # index in TARGETS
    kind: int  # index in NX_KINDS
    status: int
    fail: str | None  # None = success (an asset 404 is a failure too: "HTTP 404")
    version: str  # X-App-Version (pages; nginx-served bridged assets carry none)
    reused: bool
    fresh: bool  # the client opens a new connection per request


@dataclasses.dataclass(slots=True)
class NPage:
    t0: float
    t1: float
    host: int
    fresh: bool
    version: str
    assets: int
    asset_404: int
    failed: bool  # the page or any asset failed (404 included)


class Pacer:
    """One request slot every 1/rate s, shared by every browser thread; ``cap`` slots at most."""

    def __init__(self, rate: float, cap: int):
        self.gap = 1.0 / rate
        self.cap = cap
        self.used = 0
        self.next = now()
        self.lock = threading.Lock()
        self.capped_at: float | None = None

    def take(self, stop: threading.Event) -> bool:
        with self.lock:
            if self.used >= self.cap:
                if self.capped_at is None:
                    self.capped_at = now()
                return False
            self.used += 1
            slot = max(now(), self.next)
            self.next = slot + self.gap
        delay = slot - now()
        if delay > 0:
            stop.wait(delay)
        return not stop.is_set()


class SocketIOWebSocket:
    """Socket.io over Engine.IO v4's WebSocket transport, with a minimal RFC 6455 client:
    handshake (Sec-WebSocket-Accept checked), masked text frames out, unmasked frames in,
    ping -> pong, close answered. Engine.IO: ``0{...}`` open, ``40`` connect, ``42<id>[...]``
    emit with ack id, ``43<id>[...]`` ack, ``2`` ping -> ``3`` pong. Same ``run`` / ``gap``
    interface as ``tests.support.nextjs.EngineIOPolling``; every lost session is
    classified: *clean* (a close frame, Engine.IO close or namespace disconnect arrived
    first) or *abrupt* (EOF, reset, timeout)."""

    class Gone(Exception):
        def __init__(self, why: str, clean: bool):
            super().__init__(why)
            self.clean = clean

    def __init__(self, port: int, *, timeout: float = 10, interval: float = 0.25):
        self.port = port
        self.timeout = timeout
        self.interval = interval
        self.sock = None
        self.buf = b""
        self.acks: list[tuple[float, str]] = []
        self.events: list[tuple[float, str]] = []
        self.losses: list[tuple[float, bool, str]] = []  # (time, clean, why)
        self.sessions = 0
        self._ack_id = 0

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise self.Gone("read timeout", False) from None
            except OSError as exc:
                raise self.Gone(f"{type(exc).__name__}", False) from None
            if not chunk:
                raise self.Gone("EOF without a close frame", False)
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, payload: bytes, opcode: int = 1) -> None:
        try:
            self.sock.sendall(ws_frame(opcode, payload))
        except OSError as exc:
            raise self.Gone(f"send: {type(exc).__name__}", False) from None

    def _recv_text(self) -> str:
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 8:
                try:
                    self._send(data[:2], opcode=8)
                except self.Gone:
                    pass
                raise self.Gone(f"close frame {int.from_bytes(data[:2], 'big') if len(data) >= 2 else ''}", True)
            if opcode == 9:
                self._send(data, opcode=10)
                continue
            if opcode in (1, 0):
                return data.decode(errors="replace")

    def _packet(self, want) -> str:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            p = self._recv_text()
            if p == "2":
                self._send(b"3")
            elif p == "1" or p.startswith("41"):
                raise self.Gone(f"server closed the session ({p[:2]})", True)
            elif p.startswith("42"):
                self.events.append((time.monotonic(), f"event {p[2:60]}"))
            elif want(p):
                return p
        raise self.Gone("no answer in time", False)

    def connect(self) -> None:
        self.close()
        try:
            self.sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
            key = base64.b64encode(os.urandom(16)).decode()
            self.sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
                               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        except OSError as exc:
            raise self.Gone(f"connect: {type(exc).__name__}", False) from None
        self.buf = b""
        while b"\r\n\r\n" not in self.buf and len(self.buf) < 65536:
            try:
                chunk = self.sock.recv(4096)
            except OSError as exc:
                raise self.Gone(f"handshake: {type(exc).__name__}", False) from None
            if not chunk:
                raise self.Gone("handshake: EOF", False)
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if " 101 " not in lines[0] + " " or f"sec-websocket-accept: {accept}".lower() not in \
                [ln.lower() for ln in lines[1:]]:
            raise self.Gone(f"handshake refused: {lines[0][:60]}", False)
        self._packet(lambda p: p.startswith("0"))
        self._send(b"40")
        self._packet(lambda p: p.startswith("40"))
        self.sessions += 1

    def ask_version(self) -> str:
        self._ack_id += 1
        prefix = f"43{self._ack_id}["
        self._send(f'42{self._ack_id}["version"]'.encode())
        p = self._packet(lambda p: p.startswith(prefix))
        return json.loads(p[len(prefix) - 1:])[0]["version"]

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def run(self, stop, *, deadline: float, max_rounds: int = 100_000) -> None:
        connected = False
        try:
            for _ in range(max_rounds):
                if stop.is_set() or time.monotonic() >= deadline:
                    return
                try:
                    if not connected:
                        self.connect()
                        connected = True
                    self.acks.append((time.monotonic(), self.ask_version()))
                except self.Gone as exc:
                    if connected:
                        self.losses.append((time.monotonic(), exc.clean, str(exc)))
                    self.events.append((time.monotonic(), f"session lost: {exc}"))
                    connected = False
                    self.close()
                except (ValueError, KeyError, IndexError) as exc:
                    self.events.append((time.monotonic(), f"bad packet: {exc}"))
                    connected = False
                    self.close()
                stop.wait(self.interval)
        finally:
            self.close()

    gap = nextjs.EngineIOPolling.gap


class NextLoad:
    """Browser threads (paced, capped) and realtime clients, until ``stop()`` or ``deadline``."""

    def __init__(self, args, *, cap: int, rate: float, deadline: float, realtime: bool = True):
        self.args = args
        self.deadline = deadline
        self.pacer = Pacer(rate, cap)
        self._stop = threading.Event()
        self.recs: list[list[NRec]] = [[] for _ in range(args.browsers)]
        self.pages: list[list[NPage]] = [[] for _ in range(args.browsers)]
        self.threads = [threading.Thread(target=self._browse, args=(i,), daemon=True) for i in range(args.browsers)]
        self.realtime: dict[str, object] = {}
        if realtime:
            for hname, port in TARGETS:
                self.realtime[f"polling {hname}"] = nextjs.EngineIOPolling(port, interval=args.realtime_interval)
                self.realtime[f"websocket {hname}"] = SocketIOWebSocket(port, interval=args.realtime_interval)
        mono_deadline = time.monotonic() + (deadline - now())
        self.threads += [threading.Thread(target=c.run, args=(self._stop,), kwargs={"deadline": mono_deadline},
                                          daemon=True) for c in self.realtime.values()]
        self.start_t = 0.0
        self.mono_offset = time.monotonic() - now()  # realtime clients record time.monotonic()

    def start(self) -> NextLoad:
        self.start_t = now()
        for th in self.threads:
            th.start()
        return self

    def stop(self) -> tuple[list[NRec], list[NPage]]:
        self._stop.set()
        for th in self.threads:
            th.join(timeout=self.args.timeout * 3 + 5)
        recs = sorted((r for out in self.recs for r in out), key=lambda r: r.t)
        pages = sorted((p for out in self.pages for p in out), key=lambda p: p.t0)
        return recs, pages

    def _get(self, conns: dict, port: int, path: str, fresh: bool):
        conn = None if fresh else conns.get(port)
        if conn is None:
            conn = http.client.HTTPConnection(HOST, port, timeout=self.args.timeout)
            if not fresh:
                conns[port] = conn
        reused = conn.sock is not None
        try:
            conn.request("GET", path, headers={"User-Agent": "ops-bench-browser"})
            resp = conn.getresponse()
            body = resp.read()
            if fresh or resp.will_close:
                conn.close()
                conns.pop(port, None)
            return resp.status, resp.getheader("X-App-Version") or "", body, reused, None
        except TimeoutError:
            fail = "timeout"
        except (OSError, http.client.HTTPException) as exc:
            fail = type(exc).__name__
        conn.close()
        conns.pop(port, None)
        return 0, "", b"", reused, fail

    def _browse(self, wid: int) -> None:
        fresh = wid % 2 == 1
        out, pages, conns = self.recs[wid], self.pages[wid], {}
        try:
            for i in range(1_000_000):
                if self._stop.is_set() or now() >= self.deadline or not self.pacer.take(self._stop):
                    return
                hi = (wid + i) % len(TARGETS)
                port = TARGETS[hi][1]
                t0 = now()
                status, version, body, reused, fail = self._get(conns, port, "/", fresh)
                if fail is None and status != 200:
                    fail = f"HTTP {status}"
                out.append(NRec(t0, now() - t0, hi, 0, status, fail, version, reused, fresh))
                n_assets, n404, failed = 0, 0, fail is not None
                if fail is None:
                    urls = nextjs.page_asset_urls(body.decode(errors="replace"))
                    failed = not urls
                    for url in urls:
                        if not self.pacer.take(self._stop):
                            failed = True  # an unfinished page load is not counted as a page load
                            n_assets = -1
                            break
                        t = now()
                        a_status, _, _, a_reused, a_fail = self._get(conns, port, url, fresh)
                        if a_fail is None and a_status != 200:
                            a_fail = f"HTTP {a_status}"
                        out.append(NRec(t, now() - t, hi, 1, a_status, a_fail, "", a_reused, fresh))
                        n_assets += 1
                        n404 += a_status == 404
                        failed = failed or a_fail is not None
                if n_assets >= 0:
                    pages.append(NPage(t0, now(), hi, fresh, version, n_assets, n404, failed))
        finally:
            for c in conns.values():
                c.close()


@dataclasses.dataclass
class NPhase:
    name: str
    recs: list[NRec]
    pages: list[NPage]
    realtime: dict
    run: Run | None
    load_start: float
    load_end: float
    capped_at: float | None
    mono_offset: float
    rate: float


def nx_phase(name: str, args, *, cap: int, rate: float, deadline: float, action=None, label="",
             seconds: float = 0.0) -> NPhase:
    print(f"\n== phase: {name} (rate {rate:.0f} req/s, cap {cap})", flush=True)
    load = NextLoad(args, cap=cap, rate=rate, deadline=deadline).start()
    run = None
    try:
        time.sleep(args.pre_roll if action else seconds)
        if action is not None:
            run = timed_call("deploy" if "deploy" in name else "rollback", label, action)
            time.sleep(args.post_roll)
    finally:
        recs, pages = load.stop()
    ph = NPhase(name, recs, pages, load.realtime, run, load.start_t, now(), load.pacer.capped_at,
                load.mono_offset, rate)
    s = lat_stats(recs)
    print(f"   {s['n']} requests, {s['fail']} failed, {len(pages)} page loads, "
          f"{sum(1 for p in pages if p.asset_404)} with an asset 404, p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms"
          + (f" (CAP REACHED at {ph.capped_at - (run.start if run else ph.load_start):+.1f} s)"
             if ph.capped_at else ""), flush=True)
    if run:
        for cname, c in ph.realtime.items():
            print(f"   {cname}: gap {c.gap(run.start + ph.mono_offset, run.end + ph.mono_offset):.2f} s, "
                  f"{len(c.acks)} acks, {c.sessions} sessions", flush=True)
    return ph


def nx_overlap(ph: NPhase, old: str, new: str) -> list[dict]:
    """Per host, from the X-App-Version of page responses: first new, last old, overlap."""
    rows = []
    base = ph.run.start
    for hi, (hname, _port) in enumerate(TARGETS):
        recs = [r for r in ph.recs if r.host == hi and r.kind == 0 and not r.fail]
        first_new = next((r.t for r in recs if r.version == new), None)
        last_old = next((r.t for r in reversed(recs) if r.version == old), None)
        both = sorted({math.floor(r.t - base) for r in recs if r.version == old}
                      & {math.floor(r.t - base) for r in recs if r.version == new})
        rows.append({"host": hname, "first_new": None if first_new is None else first_new - base,
                     "last_old": None if last_old is None else last_old - base,
                     "overlap": None if first_new is None or last_old is None else max(0.0, last_old - first_new),
                     "old_after_new": sum(1 for r in recs if first_new is not None and r.t > first_new
                                          and r.version == old),
                     "both_seconds": both})
    return rows


def nx_report(ctx: dict) -> str:
    args, names = ctx["args"], ctx["names"]
    m = ctx["machine"]
    steady: NPhase = ctx["steady"]
    phases: list[NPhase] = [p for p in (ctx.get("deploy_phase"), ctx.get("rollback_phase")) if p]
    L = ["# Benchmarks: the Next.js sample app deployed under load (sandbox fleet)", "",
         "Generated by `bench/deploy_under_load.py --app nextjs` (see `bench/README.md`).", "",
         f"- date: {ctx['date']} (UTC)",
         f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, kernel {m['kernel']}, "
         f"Python {m['python']}, Docker {m['docker']}",
         f"- command: `{ctx['command']}`",
         f"- app: examples/nextjs (Next.js 15, custom server with Socket.io), two builds whose page chunks differ: "
         f"v1 = `{ctx['v1']}`, v2 = `{ctx['v2']}` (prebuilt, pushed, deployed by tag: "
         "`deploy(env, DeployRequest(version=TAG))`, the in-process form of `inv deploy --version TAG`)",
         f"- load: {args.browsers} browser threads (even: keep-alive, odd: a new connection per request), "
         "alternating web1 (127.0.0.1:8101) and web2 (:8102); a page load = GET / then GET of every "
         "`/_next/static/...` URL in the HTML; one shared pacer (rate below) and a cap of "
         f"{args.max_requests:,} requests per phase; no retries; request timeout {args.timeout:g} s; "
         f"pre-roll {args.pre_roll:g} s, post-roll {args.post_roll:g} s",
         f"- realtime: per host one Socket.io client on long-polling and one on WebSocket, each a round "
         f"'emit version, wait for the ack' every {args.realtime_interval:g} s; gap = longest time without "
         "an ack over the deploy/rollback call",
         f"- inventory: batch_size {ctx['batch']}, drain_seconds {ctx['drain']:g}, stop_timeout {ctx['stop']}, "
         f"asset_path `{ctx['asset_path'] or '(off)'}`",
         f"- total run time: {ctx['total']:.0f} s", "",
         "What this is and is not: one run, on one 2-host sandbox whose hosts, registry and load "
         "generator share this machine's CPUs; the browser load is paced (the rate below) and capped at "
         f"{args.max_requests:,} requests per phase, so a deploy sees a few hundred page loads, not the "
         "issue's 1,000; the realtime clients are minimal protocol implementations in Python (no "
         "Socket.io client library); the overlap is read from page responses only (nginx serves the "
         "bridged assets itself, without X-App-Version).", ""]

    L += ["## 1. Requests and page loads", ""]
    rows, ratio_rows = [], []
    s0 = lat_stats(steady.recs)

    def row(label, recs, pages, secs):
        s = lat_stats(recs)
        return s, [label, s["n"], s["fail"], len(pages), sum(1 for p in pages if p.asset_404),
                   sum(1 for p in pages if p.failed), f1(s["p50"]), f1(s["p99"]), f1(s["max"]), f1(secs)]

    _, r = row("steady state", steady.recs, steady.pages, steady.load_end - steady.load_start)
    rows.append(r)
    for p in phases:
        _, r = row(f"{p.name}: whole phase", p.recs, p.pages, p.load_end - p.load_start)
        rows.append(r)
        inside = [x for x in p.pages if p.run.start <= x.t0 and x.t1 <= p.run.end]
        d, r = row(f"{p.name}: during the call", within(p.recs, p.run.start, p.run.end), inside, p.run.wall)
        rows.append(r)
        ratio_rows.append([f"{p.name}: during the call / steady", ratio(d["p50"], s0["p50"]),
                           ratio(d["p99"], s0["p99"]), ratio(d["max"], s0["max"])])
        win = p.run.switch_window()
        if win:
            wp = [x for x in p.pages if win[0] <= x.t0 and x.t1 <= win[1]]
            w, r = row(f"{p.name}: switch window", within(p.recs, *win), wp, win[1] - win[0])
            rows.append(r)
            ratio_rows.append([f"{p.name}: switch window / steady", ratio(w["p50"], s0["p50"]),
                               ratio(w["p99"], s0["p99"]), ratio(w["max"], s0["max"])])
    L += [f"Pace: {steady.rate:.0f} browser requests/s in every phase.", ""]
    L += table(["window", "requests", "failed", "page loads", "with an asset 404", "failed page loads",
                "p50 ms", "p99 ms", "max ms", "seconds"], rows)
    L += ["", "A failed request: a status other than 200 (an asset 404 included), a connection error or a "
          "timeout. A failed page load: its HTML or any of its assets failed. Latency of every request "
          "(pages and assets).", ""]
    for p in [steady, *phases]:
        if p.capped_at:
            base = p.run.start if p.run else p.load_start
            L += [f"**Note:** the request cap was reached in `{p.name}` at {p.capped_at - base:+.1f} s "
                  "(from the call's start): no page load after that.", ""]
        if p.run and p.run.error:
            L += [f"**The {p.name} call FAILED:** `{p.run.error.splitlines()[0]}`", ""]
    L += ["Latency ratios (window / steady state):", ""]
    L += table(["window", "p50", "p99", "max"], ratio_rows)
    L += [""]

    L += ["Slowest requests of each phase (s from the call's start; what was asked, of which host, the "
          "X-App-Version of the answer, which switch step was running then):", ""]
    srows = []
    for p in [steady, *phases]:
        base = p.run.start if p.run else p.load_start
        steps = [(s_, e_, step) for step, _h, s_, e_ in p.run.spans] if p.run else []
        for r in sorted(p.recs, key=lambda r: r.lat, reverse=True)[:5]:
            running = sorted({step.replace("switch: ", "") for s_, e_, step in steps if s_ <= r.t <= e_})
            srows.append([p.name, f"{r.t - base:+.2f}", f1(r.lat * 1000), NX_KINDS[r.kind], TARGETS[r.host][0],
                          "fresh" if r.fresh else ("keep-alive, reused" if r.reused else "keep-alive, new"),
                          names.get(r.version, r.version) or "-", "; ".join(running)[:90] or "-"])
    L += table(["phase", "start s", "ms", "request", "host", "connection", "version", "steps running"], srows)
    L += [""]

    frows = []
    for p in [steady, *phases]:
        base = p.run.start if p.run else p.load_start
        groups: dict[tuple, list[NRec]] = defaultdict(list)
        for r in p.recs:
            if r.fail:
                groups[(r.fail, NX_KINDS[r.kind], "fresh" if r.fresh else "keep-alive", TARGETS[r.host][0])].append(r)
        for (kind, what, conn, host), rs in sorted(groups.items()):
            frows.append([p.name, kind, what, conn, host, len(rs),
                          ", ".join(f"{r.t - base:+.2f}" for r in rs[:10]) + (" ..." if len(rs) > 10 else "")])
    L += ["### Failures, by kind", ""]
    L += table(["phase", "kind", "request", "connection", "host", "count", "start, s from the call's start"],
               frows) if frows else ["No failed request in any phase."]
    L += [""]

    L += ["## 2. Realtime (Socket.io) across the call", ""]
    rrows = []
    for p in phases:
        a, b = p.run.start + p.mono_offset, p.run.end + p.mono_offset
        for cname, c in p.realtime.items():
            versions = [v for _, v in c.acks]
            losses = getattr(c, "losses", None)
            lost = "-" if losses is None else (f"{sum(1 for _, cl, _ in losses if cl)} clean, "
                                               f"{sum(1 for _, cl, _ in losses if not cl)} abrupt")
            rrows.append([p.name, cname, f2(c.gap(a, b)), len(c.acks), c.sessions, lost,
                          " -> ".join(dict.fromkeys(names.get(v, v) for v in versions)) or "-"])
    L += table(["phase", "client", "longest gap s", "acks", "sessions", "sessions lost", "versions seen"], rrows)
    L += ["", "Long-polling: a lost session is a 400 'Session ID unknown' (a request reached the other "
          "container), a close packet or a connection error; the client then connects again. WebSocket: "
          "'clean' = a close frame (or Engine.IO close) arrived before the connection ended.", ""]

    L += ["## 3. Mixed-version overlap per host (X-App-Version of page responses)", ""]
    orows = []
    for p, (old, new) in zip(phases, ctx["version_pairs"], strict=False):
        for o in nx_overlap(p, old, new):
            both = o["both_seconds"]
            orows.append([p.name, o["host"], f"{names.get(old, old)} -> {names.get(new, new)}", f2(o["first_new"]),
                          f2(o["last_old"]), f2(o["overlap"]), o["old_after_new"],
                          f"{both[0]:+d} .. {both[-1]:+d} ({len(both)})" if both else "none"])
    L += table(["phase", "host", "versions", "first new answer (s)", "last old answer (s)", "overlap (s)",
                "old answers after first new", "seconds in which both answered: first .. last (count)"], orows)
    L += ["", "Seconds from the start of the call.", ""]

    L += ["## 4. Deploy wall time of a prebuilt image: 2 web hosts vs 1 web host", "",
          "`deploy(env, DeployRequest(version=TAG))` on both web hosts vs with `exclude=('web2',)` "
          "(`inv deploy --host sandbox --exclude web2`); images already on the hosts; no load; "
          "interleaved 2,1,1,2,...", ""]
    L += table(["run", "version", "wall s", "outcome"],
               [[r.label, names.get(r.version, r.version) or "-", f2(r.wall),
                 r.error.splitlines()[0][:60] if r.error else "ok"] for r in ctx["timing_order"]])
    m2, m1 = median_wall(ctx["deploy2"]), median_wall(ctx["deploy1"])
    L += ["", table_line("median, 2 web hosts", m2, len(ok_runs(ctx["deploy2"]))),
          table_line("median, 1 web host", m1, len(ok_runs(ctx["deploy1"]))),
          f"- **ratio 2 hosts / 1 host: {ratio(m2, m1)}**", ""]
    cols = [("2-host deploy", ok_runs(ctx["deploy2"])), ("1-host deploy", ok_runs(ctx["deploy1"]))]
    cols += [(p.name, [p.run]) for p in phases if not p.run.error]
    srows = []
    for _, _, step in STEPS:
        vals = [statistics.median([r.steps.get(step, 0.0) for r in runs]) if runs else math.nan for _, runs in cols]
        if any(v and not math.isnan(v) and v >= 0.005 for v in vals):
            srows.append([step, *[f2(v) for v in vals]])
    srows.append(["**wall time**", *[f2(statistics.median([r.wall for r in runs])) if runs else "-"
                                    for _, runs in cols]])
    L += ["Where the time goes (seconds per step, median; timing wrappers around ops functions):", ""]
    L += table(["step", *[c for c, _ in cols]], srows)
    L += [""]

    L += ["## Against the targets of issue 8", ""]
    dp = ctx.get("deploy_phase")
    if dp:
        inside = within(dp.recs, dp.run.start, dp.run.end)
        pages_in = [x for x in dp.pages if dp.run.start <= x.t0 and x.t1 <= dp.run.end]
        win = dp.run.switch_window()
        w = lat_stats(within(dp.recs, *win)) if win else None
        gaps = [c.gap(dp.run.start + dp.mono_offset, dp.run.end + dp.mono_offset) for c in dp.realtime.values()]
        ov = [o["overlap"] for o in nx_overlap(dp, *ctx["version_pairs"][0]) if o["overlap"] is not None]
        L += table(["target", "measured (deploy v1 -> v2)"], [
            ["0 failed of >= 5,000 requests per deploy",
             f"{sum(1 for r in inside if r.fail)} failed of {len(inside)} (capped at {args.max_requests:,}/phase)"],
            ["0 asset 404s of >= 1,000 page loads",
             f"{sum(p.asset_404 for p in pages_in)} asset 404s in {len(pages_in)} page loads"],
            ["realtime gap <= 2 s", f"max {f2(max(gaps) if gaps else None)} s"],
            ["p99 in the switch window <= 2x steady", ratio(w["p99"], s0["p99"]) if w else "-"],
            ["mixed-version overlap per host <= 1 s", f"max {f2(max(ov) if ov else None)} s"],
            ["2-host deploy <= 1.3x a 1-host deploy", ratio(m2, m1)],
            ["2-host deploy <= 20 s", f"{f2(m2)} s"],
        ])
        L += [""]
    if ctx.get("errors"):
        L += ["## Errors during the run", ""] + [f"- `{e}`" for e in ctx["errors"]] + [""]
    L += [f"Fleet before the run: {ctx.get('before', '?')}; at the end: {ctx.get('final', '?')}", ""]
    return "\n".join(L)


def main_nextjs(args, command: str) -> int:
    from ops.registry import app_refs
    from ops.sandbox.images import BASE_IMAGE, ensure_base

    started = time.monotonic()
    ctx: dict = {"args": args, "command": command, "machine": machine(), "errors": [],
                 "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M")}
    install_step_timer()
    env = load_environment("sandbox")
    ctx.update(batch=env.deploy.batch_size, drain=env.deploy.drain_seconds, stop=env.deploy.stop_timeout,
               asset_path=env.deploy.asset_path)
    print("sandbox.up (idempotent)", flush=True)
    sandbox.up(env)
    wait_lock_free(env)
    # What each host serves (whatever the health status): put back at the end.
    before = {h: s.split(" ", 1)[1] for h, s in served().items()
              if s.split(" ", 1)[0].isdigit() and s.split(" ", 1)[1] not in ("None", "")}
    ctx["before"] = ", ".join(f"{h}: {v}" for h, v in before.items()) or "nothing"
    print(f"served before: {ctx['before']}", flush=True)

    print("\n== build (cached) and push v1, v2 of examples/nextjs", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-nextjs-"))
    try:
        ensure_base()
        built = nextjs.build_versions(work, BASE_IMAGE, lambda tag: app_refs(env, tag)[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    v1, v2 = built["v1"]["tag"], built["v2"]["tag"]
    ctx.update(v1=v1, v2=v2, names={v1: "v1", v2: "v2"})
    for k, b in built.items():
        print(f"   {k}: {b['tag']} build {b['build_s']:.1f} s, push {b['push_s']:.1f} s", flush=True)

    def dep(tag: str, exclude: tuple[str, ...] = ()):
        return lambda say: deploy(env, DeployRequest(version=tag, exclude=exclude), say)

    try:
        subprocess.run([str(Path(sys.executable).parent / "inv"), "accessory.boot", "--host", "sandbox", "postgres"],
                       cwd=ROOT, check=True, timeout=600, stdin=subprocess.DEVNULL)
        print("\n== setup: deploy v1 on both web hosts (not under load)", flush=True)
        setup = timed_call("deploy", "setup deploy v1", dep(v1))
        if setup.error:
            raise RuntimeError(f"setup deploy of v1 failed: {setup.error}")
        # Pace so that ~90% of the cap falls in a call as long as the setup deploy, plus the rolls.
        rate = min(args.max_rate, 0.9 * args.max_requests / (setup.wall * 1.2 + args.pre_roll + args.post_roll))
        load_deadline = now() + args.max_load_seconds
        nx_phase("warm-up", args, cap=200, rate=rate, deadline=load_deadline, seconds=2)
        ctx["steady"] = nx_phase("steady state", args, cap=args.max_requests, rate=rate, deadline=load_deadline,
                                 seconds=args.steady_seconds)
        ctx["deploy_phase"] = nx_phase("deploy v1->v2", args, cap=args.max_requests, rate=rate,
                                       deadline=load_deadline, action=dep(v2), label="deploy v2 under load")
        ctx["rollback_phase"] = nx_phase("rollback v2->v1", args, cap=args.max_requests, rate=rate,
                                         deadline=load_deadline,
                                         action=lambda say: rollback(env, DeployRequest(), None, say),
                                         label="rollback under load")
        ctx["version_pairs"] = [(v1, v2), (v2, v1)]
        print(f"   serving: {served()}", flush=True)

        print("\n== deploy wall time, prebuilt image: 2 web hosts vs 1 web host", flush=True)
        ctx["deploy2"], ctx["deploy1"], ctx["timing_order"] = [], [], []
        web1 = v1
        for i in range(args.runs):
            for which in ((2, 1) if i % 2 == 0 else (1, 2)):
                if time.monotonic() - started > args.max_total_seconds:
                    ctx["errors"].append("time budget (--max-total-seconds) exhausted: remaining timed runs skipped")
                    break
                tag = v2 if web1 == v1 else v1
                run = timed_call("deploy", f"{which} host{'s' if which == 2 else ''} #{i + 1} -> "
                                 f"{ctx['names'][tag]}", dep(tag, () if which == 2 else ("web2",)), quiet=True)
                (ctx["deploy2"] if which == 2 else ctx["deploy1"]).append(run)
                ctx["timing_order"].append(run)
                if not run.error:
                    web1 = tag
    except Exception as exc:  # noqa: BLE001 - reported, then the fleet is restored
        traceback.print_exc()
        ctx["errors"].append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        restore = sorted(set(before.values()))
        now_serving = {h: s.split(" ", 1)[-1] for h, s in served().items()}
        if restore and all(now_serving.get(h) == v for h, v in before.items()):
            print(f"\n== restore: the fleet already serves what it served before ({ctx['before']})", flush=True)
        elif len(restore) == 1:
            print(f"\n== restore: deploy {restore[0]} (served before) on both web hosts", flush=True)
            final = timed_call("deploy", "restore", dep(restore[0]), quiet=True)
            if final.error:
                ctx["errors"].append(f"restoring deploy: {final.error.splitlines()[0]}")
        elif restore:
            for h, tag in before.items():
                others = tuple(x for x, _ in TARGETS if x != h)
                final = timed_call("deploy", f"restore {h}", dep(tag, others), quiet=True)
                if final.error:
                    ctx["errors"].append(f"restoring {h}: {final.error.splitlines()[0]}")
        ctx["final"] = ", ".join(f"{h}: {s}" for h, s in served().items())
        print(f"   serving: {ctx['final']}", flush=True)

    ctx["total"] = time.monotonic() - started
    return finish(ctx, args, nx_report, "nextjs-deploy-bench", ("deploy2", "deploy1", "timing_order", "version_pairs"))


if __name__ == "__main__":
    sys.exit(main())
