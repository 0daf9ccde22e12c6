"""The library's progress protocol, the byte-counting hooks, and docker's own progress parsed."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from ops import local_pty, progress
from ops.deploy.image import DockerProgress, docker_size, pull_in_pty
from ops.errors import LocalToolError
from ops.progress import FAILED, NO_PROGRESS, SERVING, SWITCHING, Progress, Transfer, in_step

DATA = Path(__file__).parent / "progress_data"


class Recording(Progress):
    """Keeps what the library reported, in order."""

    def __init__(self):
        self.events: list[tuple] = []

    def transfer(self, label, *, total=None, host=None):
        events = self.events
        events.append(("transfer", label, total, host))

        class _T(Transfer):
            def advance(self, n):
                events.append(("advance", n))

            def update(self, done, total=None):
                events.append(("update", done, total))

            def finish(self, ok=True):
                events.append(("finish", ok))

        return _T()

    def step(self, host, state, detail=""):
        self.events.append(("step", host, state, detail))


def test_the_default_progress_accepts_every_report_and_a_transfer_ends_cleanly_in_a_with():
    with NO_PROGRESS.transfer("pull x", total=10, host="web1") as t:
        assert isinstance(t, Transfer)
        t.advance(5)
        t.update(10, 10)
    NO_PROGRESS.step("web1", SERVING, "v1")


def test_a_counting_reader_reports_every_byte_and_hands_them_on_unchanged():
    rec = Recording()
    data = bytes(range(256)) * 1000
    with rec.transfer("backup") as t:
        reader = progress.counting_reader(io.BytesIO(data), t)
        got = b"".join(iter(lambda: reader.read(7000), b""))
    assert got == data
    assert sum(e[1] for e in rec.events if e[0] == "advance") == len(data)
    assert rec.events[-1] == ("finish", True)


def test_a_counting_reader_works_on_readers_without_readinto_like_boto3_bodies():
    class ReadOnly:
        def __init__(self, data):
            self.buf = io.BytesIO(data)

        def read(self, n=-1):
            return self.buf.read(n)

    rec = Recording()
    t = rec.transfer("restore")
    reader = progress.counting_reader(ReadOnly(b"x" * 10_000), t)
    buffered = io.BufferedReader(reader, buffer_size=4096)
    assert buffered.read() == b"x" * 10_000
    assert sum(e[1] for e in rec.events if e[0] == "advance") == 10_000


def test_counted_chunks_are_passed_through_and_counted():
    rec = Recording()
    t = rec.transfer("uploads")
    assert list(progress.counted([b"ab", b"", b"cde"], t)) == [b"ab", b"", b"cde"]
    assert [e for e in rec.events if e[0] == "advance"] == [("advance", 2), ("advance", 0), ("advance", 3)]


def test_a_transfer_left_by_an_exception_ends_as_failed():
    rec = Recording()
    with pytest.raises(RuntimeError), rec.transfer("pull"):
        raise RuntimeError("cut")
    assert rec.events[-1] == ("finish", False)


def test_in_step_moves_the_host_on_when_the_body_succeeds():
    rec = Recording()
    with in_step(rec, "web1", SWITCHING, "v2", then=SERVING, then_detail="v2"):
        pass
    assert rec.events == [("step", "web1", SWITCHING, "v2"), ("step", "web1", SERVING, "v2")]


def test_in_step_marks_the_host_failed_with_the_first_line_of_the_error_and_re_raises():
    rec = Recording()
    with pytest.raises(ValueError), in_step(rec, "web2", SWITCHING, then=SERVING):
        raise ValueError("health check failed\nlogs: ...")
    assert rec.events[-1] == ("step", "web2", FAILED, "health check failed")
    with pytest.raises(KeyboardInterrupt), in_step(rec, "web2", SWITCHING, then=SERVING):
        raise KeyboardInterrupt
    assert rec.events[-1] == ("step", "web2", FAILED, "interrupted")


# -- docker's progress ------------------------------------------------------------------------
def test_docker_sizes_are_read_back_in_decimal_units():
    assert docker_size("512B") == 512
    assert docker_size("1.536kB") == 1536
    assert docker_size("115.1MB") == 115_100_000
    assert docker_size("2.5GB") == 2_500_000_000
    assert docker_size("lots") is None


def test_a_real_pull_on_a_terminal_counts_only_the_layers_it_downloads():
    raw = (DATA / "docker_pull_on_a_tty.out").read_bytes()
    counts = DockerProgress("pull")
    seen = []
    for i in range(0, len(raw), 100):
        if counts.feed(raw[i:i + 100]):
            seen.append(counts.done)
    assert "92ecbb0cc2b7" not in counts.layers  # "Already exists": nothing to move
    assert counts.total == 115_100_000 + 221 + 225 + 2187
    assert counts.done == counts.total
    assert seen == sorted(seen) and len(set(seen)) > 10  # it advanced, never went back
    assert counts.last_lines()[-2] == "Status: Downloaded newer image for localhost:5000/sandbox/postgres:15"


def test_output_cut_anywhere_gives_the_same_counts_as_output_in_one_piece():
    raw = (DATA / "docker_pull_on_a_tty.out").read_bytes()
    whole, bytewise = DockerProgress("pull"), DockerProgress("pull")
    whole.feed(raw)
    for i in range(len(raw)):
        bytewise.feed(raw[i:i + 1])
    assert bytewise.layers == whole.layers
    assert bytewise.last_lines() == whole.last_lines()
    assert not any("\x1b" in line for line in bytewise.last_lines())


def test_a_real_push_skips_mounted_layers_and_ends_with_every_byte_pushed():
    counts = DockerProgress("push")
    counts.feed((DATA / "docker_push_on_a_tty.out").read_bytes())
    assert "2bcea82f1ac3" not in counts.layers  # "Mounted from sandbox/postgres"
    assert counts.layers["707c5967cc35"] == [109_800_000, 109_800_000]
    assert counts.done == counts.total  # a layer pushed without a size counts as its own total
    assert counts.last_lines()[-1].startswith("t1: digest: sha256:")


def test_docker_errors_are_kept_for_the_message():
    counts = DockerProgress("pull")
    changed = counts.feed(b"Error response from daemon: manifest for localhost:5000/app:nope not found\r\n")
    assert changed is False
    assert counts.last_lines() == ["Error response from daemon: manifest for localhost:5000/app:nope not found"]


def test_the_remote_pull_runs_docker_under_script_with_the_ref_quoted():
    assert str(pull_in_pty("localhost:5000/athlete-platform/web:abc123")) == (
        "script -qfec 'docker pull localhost:5000/athlete-platform/web:abc123' /dev/null")


# -- a local command under a pty ------------------------------------------------------------
def test_a_local_command_under_a_pty_sees_a_terminal_and_its_output_comes_as_it_runs():
    chunks: list[bytes] = []
    text = local_pty.run([sys.executable, "-c", "import sys; print(sys.stdout.isatty()); print('a\\rb')"],
                         chunks.append, timeout=30)
    assert b"".join(chunks).startswith(b"True")
    assert text.split() == ["True", "a", "b"]


def test_a_failing_local_command_under_a_pty_names_itself_and_its_last_output():
    with pytest.raises(LocalToolError, match=r"exited 3: .*no such thing"):
        local_pty.run([sys.executable, "-c", "import sys; print('no such thing'); sys.exit(3)"], lambda _: None,
                      timeout=30)
    with pytest.raises(LocalToolError, match="not found on this machine"):
        local_pty.run(["/nonexistent/docker"], lambda _: None, timeout=30)


def test_a_local_command_under_a_pty_that_runs_too_long_is_killed():
    with pytest.raises(LocalToolError, match="timed out after 0.5s"):
        local_pty.run([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"],
                      lambda _: None, timeout=0.5)
