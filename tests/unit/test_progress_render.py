"""What the operator sees: live lines on a terminal, plain lines elsewhere, nothing in --json stdout."""

from __future__ import annotations

import io
import json
import re

import pytest
from invoke import Context
from invoke.exceptions import Exit

from ops import render
from ops.progress import FAILED, FAILURE, OK, PULLING, ROLLED_BACK, SERVING, WARNING
from ops.render import LiveProgress, Marks, PlainProgress, make_progress, showing_progress
from ops.table import format_table
from ops.tasks import ops_task, print_json, say

SGR = re.compile(r"\x1b\[[0-9;]*m")  # colour / style codes
TERMINAL = {"TERM": "xterm-256color"}


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("stream", "json", "environ", "terminal", "colour"), [
    (io.StringIO(), False, TERMINAL, False, False),                        # a pipe, a cron mail
    (FakeTerminal(), False, TERMINAL, True, True),
    (FakeTerminal(), True, TERMINAL, False, False),                        # --json: machine mode
    (FakeTerminal(), False, {**TERMINAL, "NO_COLOR": "1"}, True, False),   # redraws yes, colour no
    (FakeTerminal(), False, {**TERMINAL, "NO_COLOR": ""}, True, True),     # no-color.org: empty = unset
    (FakeTerminal(), False, {"TERM": "dumb"}, False, False),
])
def test_live_lines_and_colour_only_where_they_belong(stream, json, environ, terminal, colour):
    assert render.is_terminal(stream, json=json, environ=environ) is terminal
    assert render.wants_color(stream, json=json, environ=environ) is colour
    sink = make_progress(json=json, stream=stream, environ=environ, stdout=io.StringIO())
    assert isinstance(sink, LiveProgress if terminal else PlainProgress)


def run_plain(every: float = 10.0) -> list[str]:
    lines: list[str] = []
    clock = Clock()
    sink = PlainProgress(lines.append, every=every, clock=clock)
    sink.start()
    sink.step("web1", PULLING, "web:v2")
    t = sink.transfer("pull web:v2", host="web1", total=None)
    for done in range(1, 9):
        clock.now += 3
        t.update(done * 5 * 2**20, 40 * 2**20)
    t.finish()
    sink.step("web1", SERVING, "v2")
    sink.step("web1", SERVING, "v2")  # the same state again is not a new line
    clock.now += 1
    sink.stop()
    return lines


def test_without_a_terminal_each_step_and_transfer_is_a_whole_line_at_most_every_ten_seconds():
    lines = run_plain()
    assert lines[0] == "web1: pulling web:v2"
    progress_lines = [ln for ln in lines if ln.startswith("web1 pull web:v2:")]
    # 24 s of transfer: a line at 12 s and 24 s (every 10 s at most), then its end line
    assert progress_lines == [
        "web1 pull web:v2: 20.0 MiB of 40.0 MiB (50%), 1.7 MiB/s, about 12.0 s left",
        "web1 pull web:v2: 40.0 MiB of 40.0 MiB (100%), 1.7 MiB/s",
        "web1 pull web:v2: 40.0 MiB in 24.0 s (1.7 MiB/s)",
    ]
    assert lines.count("web1: serving v2") == 1
    assert lines[-1] == "done in 25.0 s: web1 serving v2; 1 transfer(s), 40.0 MiB"
    assert not any("\r" in ln or "\x1b" in ln for ln in lines)


def test_without_a_known_total_there_is_no_eta_and_a_failed_transfer_says_so():
    lines: list[str] = []
    clock = Clock()
    sink = PlainProgress(lines.append, every=1, clock=clock)
    t = sink.transfer("backup db1")
    clock.now += 2
    t.advance(3 * 2**20)
    clock.now += 2
    t.finish(ok=False)
    sink.step("web2", ROLLED_BACK, "to v1")
    sink.stop(failed=True)
    assert lines[0] == "backup db1: 3.0 MiB, 1.5 MiB/s"
    assert lines[1] == "backup db1: FAILED after 3.0 MiB in 4.0 s"
    assert lines[-1] == "failed in 4.0 s: web2 rolled back to v1; 1 transfer(s), 3.0 MiB, 1 failed"


def test_nothing_reported_means_no_summary_line():
    lines: list[str] = []
    sink = PlainProgress(lines.append)
    sink.stop()
    assert lines == []


def live_run(environ) -> str:
    terminal = FakeTerminal()
    sink = make_progress(stream=terminal, environ=environ, stdout=io.StringIO())
    sink.start()
    sink.step("web1", PULLING, "web:v2")
    sink.step("web2", FAILED, "health check failed")
    t = sink.transfer("pull web:v2", host="web1")
    t.update(10 * 2**20, 40 * 2**20)
    sink.live.refresh()
    t.update(30 * 2**20, 40 * 2**20)
    sink.live.refresh()
    t.update(40 * 2**20, 40 * 2**20)
    t.finish()
    sink.step("web1", SERVING, "v2")
    sink.stop(failed=True)
    return terminal.getvalue()


def test_on_a_terminal_the_lines_are_redrawn_in_place_with_bytes_colour_and_symbols():
    out = live_run(TERMINAL)
    plain = re.sub(r" +", " ", SGR.sub("", out))
    assert "\x1b[1A" in out or "\r" in out  # redrawn in place (cursor up / carriage return)
    assert "10.0/40.0 MiB" in plain and "30.0/40.0 MiB" in plain and "40.0/40.0 MiB" in plain
    assert "✓ web1 serving v2" in plain and "✗ web2 failed health check failed" in plain
    assert "\x1b[32m" in out or "\x1b[1;32m" in out or "\x1b[0;32m" in out  # green somewhere
    assert "failed in" in plain.splitlines()[-1]


def test_a_finished_transfer_whose_total_was_an_estimate_ends_as_a_full_bar_of_what_moved():
    terminal = FakeTerminal()
    sink = make_progress(stream=terminal, environ=TERMINAL, stdout=io.StringIO())
    sink.start()
    t = sink.transfer("pg_dump -> s3 db.dump", total=8 * 2**20)  # the database's size on disk
    t.update(3 * 2**20, 8 * 2**20)
    sink.live.refresh()
    t.update(5 * 2**20, 8 * 2**20)  # the dump came out smaller
    t.finish()
    sink.stop()
    last_frame = re.sub(r" +", " ", SGR.sub("", terminal.getvalue())).split("pg_dump -> s3")[-1]
    assert "5.0/5.0 MiB" in last_frame and "8.0 MiB" not in last_frame, last_frame
    assert "?/s" not in last_frame and re.search(r"[\d.]+ [KMG]iB/s", last_frame), last_frame


def test_no_color_keeps_the_redraws_but_drops_colours_and_symbols():
    out = live_run({**TERMINAL, "NO_COLOR": "1"})
    assert not SGR.search(out)
    assert "✓" not in out and "✗" not in out
    assert "web2 failed health check failed" in re.sub(r" +", " ", out) and "30.0/40.0 MiB" in out


def test_a_table_is_unchanged_without_marks_and_aligned_with_them():
    rows = [["web1", "serving", "v2"], ["web2", "failed", "-"], ["web3", "excluded", "-"]]
    plain = format_table(["HOST", "STATE", "VERSION"], rows)
    assert format_table(["HOST", "STATE", "VERSION"], rows, levels=[OK, FAILURE, WARNING], marks=Marks(False)) == plain
    marked = format_table(["HOST", "STATE", "VERSION"], rows, levels=[OK, FAILURE, WARNING], marks=Marks(True))
    lines = marked.splitlines()
    assert [SGR.sub("", ln)[2:] for ln in lines] == plain.splitlines()  # same columns behind the symbol
    assert lines[2] == "\x1b[32m✓ web1  serving   v2\x1b[0m"
    assert lines[3].startswith("\x1b[1;31m✗ web2")
    assert lines[4].startswith("\x1b[33m! web3")


# -- --json stays one document on stdout ----------------------------------------------------
@ops_task()
def _reporting_task(c, json=False, fail=False):
    with showing_progress(json=json) as progress:
        progress.step("web1", PULLING, "web:v2")
        with progress.transfer("pull web:v2", host="web1", total=100) as t:
            t.update(100, 100)
        progress.step("web1", SERVING, "v2")
        say("deployed v2")
        if fail:
            raise KeyboardInterrupt
    print_json({"hosts": ["web1"]})


@pytest.mark.parametrize("terminal", [False, True])
def test_json_stdout_is_one_document_and_progress_goes_to_stderr_plainly(monkeypatch, capsys, terminal):
    monkeypatch.setenv("TERM", "xterm")
    if terminal:  # even with a terminal on stderr: --json is machine mode
        monkeypatch.setattr("sys.stderr", FakeTerminal())
    _reporting_task(Context(), json=True)
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"ok": True, "data": {"hosts": ["web1"]}, "warnings": [], "error": None}
    err = captured.err if not terminal else __import__("sys").stderr.getvalue()
    assert "web1: pulling web:v2" in err and "web1: serving v2" in err and "deployed v2" in err
    assert "\r" not in err and "\x1b" not in err
    assert err.rstrip().splitlines()[-1].startswith("done in ")


def test_an_interrupted_task_still_ends_with_the_summary_then_its_envelope(capsys):
    with pytest.raises(Exit):
        _reporting_task(Context(), json=True, fail=True)
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["type"] == "Interrupted"
    assert captured.err.rstrip().splitlines()[-1].startswith("failed in ")


@pytest.mark.parametrize(("json_mode", "no_color", "expected"), [
    (False, None, "\x1b[33m! warning: disk 91% full\x1b[0m\n"),
    (True, None, "warning: disk 91% full\n"),
    (False, "1", "warning: disk 91% full\n"),
])
def test_a_warning_is_yellow_on_a_terminal_only(monkeypatch, json_mode, no_color, expected):
    from ops.cli import Output

    monkeypatch.setenv("TERM", "xterm")
    if no_color:
        monkeypatch.setenv("NO_COLOR", no_color)
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    output = Output(json=json_mode)
    output.warn("disk 91% full")
    assert terminal.getvalue() == expected
    assert output.warnings == ["disk 91% full"]
