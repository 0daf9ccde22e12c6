"""Does watching cost anything? Image push and pull with a terminal, without one, and quiet.

    .venv/bin/python -m bench.progress_overhead [--rounds 3] [--mib 64] [--out BENCHMARKS.md]

The same run, the same image size, three ways of reporting, in rotated order per round:

- **terminal**: the live renderer (``ops.render.LiveProgress``, rich) drawing on a real
  pseudo-terminal (drained by a thread, as a terminal emulator would);
- **no terminal**: the plain-line renderer (a cron mail / CI log), to a non-terminal;
- **quiet**: no progress at all, the code path before progress existed (``docker pull
  --quiet`` / ``docker push`` with its output captured at the end).

Measured: **pull** = ``images.pull`` of a fresh image on both web hosts at once (through the
SSH tunnel to the registry, like a deploy), after removing it from them; **push** =
``images.push`` of a freshly built image (a new random layer each time, so every byte
moves). Wall time and the operator process's CPU time (``time.process_time``) per call.

Leaves nothing on the hosts or locally (the bench images are removed); the registry keeps
the pushed blobs (Debian's registry has no delete here: ``inv sandbox.down`` clears it).
Only 127.0.0.1 and the sandbox containers are contacted; every loop is bounded.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import pty
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.report import write_section
from ops import local, registry, sandbox
from ops.deploy import image as images
from ops.inventory import load_environment
from ops.progress import NO_PROGRESS
from ops.remote import Gateway
from ops.render import make_progress

MODES = ("terminal", "no terminal", "quiet")
DOCKERFILE = "ARG BASE\nFROM ${BASE}\nCOPY ballast.bin /ballast.bin\n"


class Terminal:
    """A pseudo-terminal the live renderer draws on; a thread reads it like an emulator would."""

    def __init__(self):
        self.master, slave = pty.openpty()
        self.stream = open(slave, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.bytes = 0
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.bytes += len(data)

    def close(self) -> None:
        self.stream.close()
        self.reader.join(timeout=5)
        os.close(self.master)


def sink_for(mode: str, terminal: Terminal):
    if mode == "terminal":
        return make_progress(stream=terminal.stream, environ={"TERM": "xterm-256color"}, stdout=io.StringIO())
    if mode == "no terminal":
        return make_progress(stream=io.StringIO(), environ={"TERM": "xterm-256color"})
    return None


def timed(mode: str, terminal: Terminal, fn) -> tuple[float, float]:
    """(wall s, CPU s) of ``fn(progress)`` with ``mode``'s renderer around it, start to summary."""
    sink = sink_for(mode, terminal)
    wall, cpu = time.perf_counter(), time.process_time()
    if sink is None:
        fn(NO_PROGRESS)
    else:
        sink.start()
        try:
            fn(sink)
        finally:
            sink.stop()
    return time.perf_counter() - wall, time.process_time() - cpu


def build_ballast(env, context: Path, mib: int, tag: str) -> str:
    """A new image whose top layer is ``mib`` MiB of random bytes; returns its operator-side ref."""
    (context / "ballast.bin").write_bytes(os.urandom(mib * 2**20))
    (context / "Dockerfile").write_text(DOCKERFILE)
    ref = registry.operator_ref(env, f"ops-bench/ballast:{tag}")
    base = env.build.args.get("BASE_IMAGE", "ops-sandbox/debian:bookworm")
    local.run(("docker", "build", "--quiet", "--build-arg", f"BASE={base}", "--tag", ref, str(context)), timeout=600)
    return ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mib", type=int, default=64, help="size of the image layer that moves")
    ap.add_argument("--out", type=Path, help="write the report section into this markdown file")
    args = ap.parse_args()
    rounds = max(1, min(args.rounds, 10))

    env = load_environment("sandbox")
    sandbox.up(env)
    webs = env.with_roles("web")
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    pulls: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    pushes: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    terminal = Terminal()
    made: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, Gateway(env) as gw:
        try:
            ref = build_ballast(env, Path(tmp), args.mib, f"{stamp}-pull")
            made.append(ref)
            local.run(("docker", "push", ref), timeout=600)
            host_ref = registry.host_ref(env, f"ops-bench/ballast:{stamp}-pull")

            def forget() -> None:
                gw.map(lambda h: gw.run(h, ("docker", "image", "rm", "--force", host_ref), check=False), webs)

            for r in range(rounds):
                order = MODES[r % 3:] + MODES[:r % 3]
                for mode in order:
                    forget()
                    pulls[mode].append(timed(mode, terminal, lambda p: gw.map(
                        lambda h: images.pull(gw, h, host_ref, p), webs).raise_if_failed("bench pull")))
                    push_ref = build_ballast(env, Path(tmp), args.mib, f"{stamp}-push-{r}-{MODES.index(mode)}")
                    made.append(push_ref)
                    pushes[mode].append(timed(mode, terminal, lambda p, ref=push_ref: images.push(ref, p)))
                    print(f"round {r + 1}/{rounds} {mode}: pull {pulls[mode][-1][0]:.2f} s, "
                          f"push {pushes[mode][-1][0]:.2f} s", flush=True)
            forget()
        finally:
            for made_ref in made:
                local.run(("docker", "image", "rm", "--force", made_ref), check=False)
            terminal.close()

    text = report(pulls, pushes, rounds, args.mib, terminal.bytes)
    print(text)
    if args.out:
        write_section(args.out, "progress_overhead", text)


def report(pulls, pushes, rounds: int, mib: int, drawn: int) -> str:
    def row(name: str, data) -> str:
        quiet = statistics.median(w for w, _ in data["quiet"])
        cells = []
        for mode in MODES:
            walls = [w for w, _ in data[mode]]
            med = statistics.median(walls)
            cells.append(f"{med:.2f} s ({min(walls):.2f}–{max(walls):.2f}), x{med / quiet:.2f}")
        cpu = " / ".join(f"{statistics.median(c for _, c in data[m]):.2f}" for m in MODES)
        return f"| {name} | " + " | ".join(cells) + f" | {cpu} |"

    def overlaps(data) -> bool:
        quiet = [w for w, _ in data["quiet"]]
        return all(min(w for w, _ in data[m]) <= max(quiet) and max(w for w, _ in data[m]) >= min(quiet)
                   for m in MODES)

    cpu_medians = [statistics.median(c for _, c in pulls[m]) for m in MODES]
    cpu_spread = max(cpu_medians) - min(cpu_medians)
    verdict = ("every mode's range overlaps quiet's, for pull and push: no slowdown beyond the run-to-run noise"
               if overlaps(pulls) and overlaps(pushes) else
               "a mode's range does NOT overlap quiet's: look at the ranges before trusting the ratios")
    return "\n".join([
        "# Benchmarks: progress display overhead (sandbox fleet)",
        "",
        f"`python -m bench.progress_overhead --rounds {rounds} --mib {mib}` on "
        f"{platform.node() or 'this machine'} ({os.cpu_count()} CPUs), "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. Same run, modes rotated per round; "
        "median wall time (min–max) and the ratio to *quiet* (no progress, the code before it).",
        "",
        f"| {rounds} rounds, {mib} MiB layer | terminal (live, rich) | no terminal (plain lines) | quiet "
        "| operator CPU s (terminal / plain / quiet) |",
        "|---|---|---|---|---|",
        row("pull on web1 + web2 at once (SSH tunnel)", pulls),
        row("push from the operator's machine", pushes),
        "",
        f"The live renderer drew {drawn / 1024:.0f} KiB on the terminal in all. *terminal* and *no terminal* "
        "pull through `script` on the host so docker reports its byte counts (quiet uses `docker pull "
        "--quiet`); push under a local pty (quiet captures docker's output at the end).",
        "",
        f"Reading: {verdict}. The operator's CPU time per pull differs by {cpu_spread:.2f} s between modes "
        "(the operator process also carries the SSH tunnel the hosts pull through).",
    ])


if __name__ == "__main__":
    main()
