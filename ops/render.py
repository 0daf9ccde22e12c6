"""What the operator sees of a long operation (the CLI side of ``ops.progress``).

- stderr is a terminal (and not ``--json``, not ``TERM=dumb``): one live line per host
  and a bar per transfer (bytes, rate, elapsed, ETA when the total is known), redrawn
  in place by rich; colours and symbols unless ``NO_COLOR`` is set.
- otherwise (cron mail, CI log, ``--json``): plain lines, never a carriage return: a
  line when a host changes step, a line per transfer every ``every`` seconds and when
  it ends, and one summary line at the end. No colour, no symbols.

Progress always goes to stderr: ``--json`` stdout stays one document.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

from ops.progress import FAILURE, OK, RUNNING, WARNING, Progress, Transfer, level_of
from ops.table import human_bytes

Clock = Callable[[], float]


# -- when to decorate ---------------------------------------------------------------------
def is_terminal(stream, *, json: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """Live redraws: only on a real terminal, never under --json or TERM=dumb."""
    environ = os.environ if environ is None else environ
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not json and environ.get("TERM") != "dumb"


def wants_color(stream, *, json: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """Colour and symbols: a terminal, and NO_COLOR (https://no-color.org: set and not empty) unset."""
    environ = os.environ if environ is None else environ
    return is_terminal(stream, json=json, environ=environ) and not environ.get("NO_COLOR")


_SYMBOLS = {OK: "✓", WARNING: "!", FAILURE: "✗", RUNNING: "•"}
_STYLES = {OK: "green", WARNING: "yellow", FAILURE: "bold red", RUNNING: "cyan"}
_ANSI = {OK: "\x1b[32m", WARNING: "\x1b[33m", FAILURE: "\x1b[1;31m", RUNNING: "\x1b[36m"}
_RESET = "\x1b[0m"


@dataclass(frozen=True)
class Marks:
    """Symbols and colours for ok / warning / failed, or nothing at all when off."""

    enabled: bool = False

    def symbol(self, level: str) -> str:
        return _SYMBOLS.get(level, " ") if self.enabled else ""

    def line(self, text: str, level: str | None) -> str:
        """``text`` behind its level's symbol, in its colour; unchanged when off."""
        if not self.enabled:
            return text
        if level is None:
            return f"  {text}"
        return f"{_ANSI[level]}{_SYMBOLS[level]} {text}{_RESET}"


def marks_for(stream, *, json: bool = False, environ: Mapping[str, str] | None = None) -> Marks:
    return Marks(wants_color(stream, json=json, environ=environ))


# -- what was reported ----------------------------------------------------------------------
@dataclass
class _Move:
    name: str
    started: float
    done: int = 0
    total: int | None = None
    ended: float | None = None
    ok: bool = True
    said_at: float = 0.0


def _rate(move: _Move, now: float) -> float:
    spent = (move.ended or now) - move.started
    return move.done / spent if spent > 0 else 0.0


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {int(s % 60):02d} s"


def _amount(move: _Move) -> str:
    if move.total:
        return f"{human_bytes(move.done)} of {human_bytes(move.total)} ({100 * move.done // move.total}%)"
    return human_bytes(move.done)


@dataclass
class _Record:
    """Steps and transfers as reported, shared by both renderers (thread-safe)."""

    clock: Clock = time.monotonic
    steps: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # host -> (state, detail, since)
    moves: list[_Move] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.started = self.clock()

    def summary(self, failed: bool = False) -> str | None:
        """The one final line: where each host ended up, and what was moved."""
        with self.lock:
            steps, moves = dict(self.steps), list(self.moves)
        if not steps and not moves:
            return None
        parts = []
        if steps:
            parts.append(", ".join(f"{host} {state}" + (f" {detail}" if detail and level_of(state) != RUNNING else "")
                                   for host, (state, detail, _) in steps.items()))
        if moves:
            moved = sum(m.done for m in moves)
            broken = sum(1 for m in moves if not m.ok)
            parts.append(f"{len(moves)} transfer(s), {human_bytes(moved)}" + (f", {broken} failed" if broken else ""))
        took = _seconds(self.clock() - self.started)
        return f"{'failed' if failed else 'done'} in {took}: " + "; ".join(parts)


class _RecordedTransfer(Transfer):
    def __init__(self, sink: _Sink, move: _Move):
        self.sink, self.move = sink, move

    def advance(self, n: int) -> None:
        self.sink.moved(self.move, self.move.done + n, self.move.total)

    def update(self, done: int, total: int | None = None) -> None:
        self.sink.moved(self.move, done, total if total is not None else self.move.total)

    def finish(self, ok: bool = True) -> None:
        if self.move.ended is None:
            self.sink.ended(self.move, ok)


class _Sink(Progress):
    """What both renderers share: the record; subclasses draw it."""

    def __init__(self, clock: Clock = time.monotonic):
        self.record = _Record(clock)

    def transfer(self, label: str, *, total: int | None = None, host: str | None = None) -> Transfer:
        move = _Move(f"{host} {label}" if host else label, self.record.clock(), total=total)
        with self.record.lock:
            self.record.moves.append(move)
        self.began(move)
        return _RecordedTransfer(self, move)

    def step(self, host: str, state: str, detail: str = "") -> None:
        with self.record.lock:
            if self.record.steps.get(host, ("", "", 0))[:2] == (state, detail):
                return
            self.record.steps[host] = (state, detail, self.record.clock())
        self.stepped(host, state, detail)

    def moved(self, move: _Move, done: int, total: int | None) -> None:
        with self.record.lock:
            move.done, move.total = done, total

    def ended(self, move: _Move, ok: bool) -> None:
        with self.record.lock:
            move.ended, move.ok = self.record.clock(), ok

    # drawing hooks
    def began(self, move: _Move) -> None: ...

    def stepped(self, host: str, state: str, detail: str) -> None: ...

    def start(self) -> None: ...

    def stop(self, failed: bool = False) -> None: ...


class PlainProgress(_Sink):
    """Non-terminal output: whole lines only (a cron mail, a CI log, --json's stderr)."""

    def __init__(self, write: Callable[[str], None], *, every: float = 10.0, clock: Clock = time.monotonic):
        super().__init__(clock)
        self.write = write
        self.every = every

    def stepped(self, host: str, state: str, detail: str) -> None:
        self.write(f"{host}: {state}" + (f" {detail}" if detail else ""))

    def began(self, move: _Move) -> None:
        move.said_at = move.started

    def moved(self, move: _Move, done: int, total: int | None) -> None:
        super().moved(move, done, total)
        now = self.record.clock()
        if now - move.said_at < self.every:
            return
        move.said_at = now
        rate = _rate(move, now)
        eta = (f", about {_seconds((move.total - move.done) / rate)} left"
               if move.total and rate > 0 and move.done < move.total else "")
        self.write(f"{move.name}: {_amount(move)}, {human_bytes(rate)}/s{eta}")

    def ended(self, move: _Move, ok: bool) -> None:
        super().ended(move, ok)
        took = move.ended - move.started
        if ok:
            self.write(f"{move.name}: {human_bytes(move.done)} in {_seconds(took)} ({human_bytes(_rate(move, move.ended))}/s)")
        else:
            self.write(f"{move.name}: FAILED after {_amount(move)} in {_seconds(took)}")

    def stop(self, failed: bool = False) -> None:
        line = self.record.summary(failed)
        if line:
            self.write(line)


class _RateColumn(ProgressColumn):
    """Bytes per second in the units of every other size here (KiB, MiB: ``human_bytes``)."""

    def render(self, task) -> Text:
        # A finished task keeps no recent samples: then the average over its whole time.
        speed = task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed else None)
        return Text(f"{human_bytes(speed)}/s" if speed else "?/s", style="progress.data.speed")


class LiveProgress(_Sink):
    """A terminal: one line per host and a bar per transfer, redrawn in place (rich.Live)."""

    def __init__(self, console: Console, *, marks: Marks, clock: Clock = time.monotonic,
                 redirect_stdout: bool = False):
        super().__init__(clock)
        self.console = console
        self.marks = marks
        self.bars = RichProgress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                                 _RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console, auto_refresh=False)
        self.tasks: dict[int, int] = {}
        self.live = Live(self, console=console, refresh_per_second=8, transient=False,
                         redirect_stdout=redirect_stdout, redirect_stderr=True)

    def __rich__(self):
        return Group(self._steps_table(), self.bars)

    def _steps_table(self) -> Table:
        table = Table.grid(padding=(0, 1))
        with self.record.lock:
            steps = list(self.record.steps.items())
        now = self.record.clock()
        for host, (state, detail, since) in steps:
            level = level_of(state)
            style = _STYLES[level] if self.marks.enabled else ""
            table.add_row(Text(self.marks.symbol(level) or "-", style=style), Text(host, style="bold"),
                          Text(state, style=style), Text(detail),
                          Text("" if level != RUNNING else _seconds(now - since), style="dim"))
        return table

    def began(self, move: _Move) -> None:
        self.tasks[id(move)] = self.bars.add_task(move.name, total=move.total)

    def moved(self, move: _Move, done: int, total: int | None) -> None:
        super().moved(move, done, total)
        self.bars.update(self.tasks[id(move)], completed=done, total=total)

    def ended(self, move: _Move, ok: bool) -> None:
        super().ended(move, ok)
        task = self.tasks[id(move)]
        if ok:
            # What moved is the size now: a total that was an estimate (a backup's database
            # size on disk) would leave a finished bar part-way.
            self.bars.update(task, total=move.done, completed=move.done)
        else:
            self.bars.update(task, description=Text(f"{self.marks.symbol(FAILURE)} {move.name} FAILED".strip(),
                                                    style=_STYLES[FAILURE] if self.marks.enabled else ""))
        self.bars.stop_task(task)

    def start(self) -> None:
        self.live.start()

    def stop(self, failed: bool = False) -> None:
        self.live.stop()
        line = self.record.summary(failed)
        if line:
            level = FAILURE if failed else OK
            self.console.print(Text(f"{self.marks.symbol(level)} {line}".strip(),
                                    style=_STYLES[level] if self.marks.enabled else ""), soft_wrap=True)


# -- the task side's entry point ------------------------------------------------------------
def make_progress(*, json: bool = False, stream=None, environ: Mapping[str, str] | None = None,
                  stdout=None) -> _Sink:
    """The renderer for this run: live on a terminal stderr, plain lines otherwise."""
    stream = sys.stderr if stream is None else stream
    environ = os.environ if environ is None else environ
    if is_terminal(stream, json=json, environ=environ):
        color = wants_color(stream, json=json, environ=environ)
        console = Console(file=stream, force_terminal=True, no_color=not color, color_system="auto" if color else None,
                          highlight=False)
        stdout = sys.stdout if stdout is None else stdout
        # NOTE: stdout lines are drawn above the live lines only when both go to this
        # terminal; stdout piped elsewhere must not be pulled into stderr.
        same_terminal = is_terminal(stdout, environ=environ)
        return LiveProgress(console, marks=Marks(color), redirect_stdout=same_terminal)
    return PlainProgress(lambda line: print(line, file=stream, flush=True))


@contextmanager
def showing_progress(*, json: bool = False, stream=None, environ: Mapping[str, str] | None = None) -> Iterator[Progress]:
    """``with showing_progress(json=...) as progress:`` around one library call; the summary at the end."""
    sink = make_progress(json=json, stream=stream, environ=environ)
    sink.start()
    try:
        yield sink
    except BaseException:
        sink.stop(failed=True)
        raise
    sink.stop()
