"""One CLI run in a child process, with or without a pseudo-terminal: its wall time, its own peak RSS
and CPU (``os.wait4`` rusage) and every output line with the second it appeared.

With ``tty=True`` the child's stdin, stdout and stderr are one 160x50 pseudo-terminal (TERM set,
NO_COLOR unset), as when an on-call person runs it: the live progress renderer draws. A thread
drains the terminal the way an emulator would; redraws (carriage returns, cursor moves) are turned
into plain lines for the timestamps. Without it, stdout and stderr are pipes (a cron mail, CI).
"""

from __future__ import annotations

import fcntl
import math
import os
import pty
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ops.local_pty import plain_text

ROOT = Path(__file__).resolve().parents[1]
T0 = time.monotonic()


def log(line: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {line}", flush=True)


@dataclass
class Child:
    label: str
    argv: list[str]
    tty: bool = False
    wall: float = math.nan
    rc: int | None = None
    maxrss_kib: int = 0
    cpu: float = 0.0
    timed_out: bool = False
    drawn_bytes: int = 0  # what reached the terminal (tty) or the pipes
    lines: list[tuple[float, str, str]] = field(default_factory=list)  # (s from start, stream, text)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def text(self, stream: str | None = None) -> str:
        return "\n".join(t for _, s, t in self.lines if stream is None or s == stream)

    def at(self, prefix: str, *, contains: bool = False) -> float | None:
        """Seconds from the start to the first line starting with (or containing) ``prefix``."""
        for t, _, line in self.lines:
            if (prefix in line) if contains else line.lstrip("✓✗! ").startswith(prefix):
                return t
        return None

    def failure(self) -> str:
        tail = [ln for _, _, ln in self.lines if ln.strip()][-3:]
        return f"{self.label}: exit {self.rc}{' (timed out)' if self.timed_out else ''}: " + " | ".join(tail)


def run_child(label: str, argv: list[str], timeout: float, *, tty: bool = False, echo: bool = False) -> Child:
    """Run ``argv`` (cwd = repo root) to its end or ``timeout`` (then killed)."""
    child = Child(label, argv, tty)
    log(f"{label}{' [terminal]' if tty else ''}: {' '.join(argv)}")
    lock = threading.Lock()

    def add(t0: float, stream: str, line: str) -> None:
        with lock:
            child.lines.append((time.monotonic() - t0, stream, line))
        if echo:
            print(f"    | {line[:200]}", flush=True)

    environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
    master = slave = None
    if tty:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        environ = {k: v for k, v in environ.items() if k != "NO_COLOR"} | {"TERM": "xterm-256color"}
        std = {"stdin": slave, "stdout": slave, "stderr": slave}
    else:
        std = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, env=environ, close_fds=True, **std)
    if slave is not None:
        os.close(slave)  # else reading the master never sees the end (EIO) once the child exits

    def drain(read: Callable[[], bytes], stream: str) -> None:
        pending = ""
        while True:
            try:
                data = read()
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            child.drawn_bytes += len(data)
            pending += plain_text(data)
            *done, pending = pending.split("\n")
            for line in done:
                if line.strip():
                    add(t0, stream, line.rstrip())
        if pending.strip():
            add(t0, stream, pending.rstrip())

    if tty:
        readers = [threading.Thread(target=drain, args=(lambda: os.read(master, 65536), "tty"), daemon=True)]
    else:
        readers = [threading.Thread(target=drain, args=(lambda s=s: s.read1(65536), name), daemon=True)
                   for s, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]
    for t in readers:
        t.start()
    reaped = threading.Lock()
    done = False

    def kill() -> None:
        with reaped:
            if not done:
                child.timed_out = True
                proc.kill()

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
    if master is not None:
        os.close(master)
    child.lines.sort(key=lambda x: x[0])
    log(f"{label}: {'ok' if child.ok else 'FAILED'} in {child.wall:.1f}s, peak RSS {child.maxrss_kib / 1024:.0f} MiB"
        + ("" if child.ok else f" — {child.failure()}"))
    return child
