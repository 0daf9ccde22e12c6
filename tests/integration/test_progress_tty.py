"""What an on-call person watching ``inv deploy`` sees, on the real fleet.

With a pseudo-terminal attached: the pulls' byte counts advance live to the image's size
and the run ends with the one-line summary and the table of what each host serves, in
colour. Without one (a cron mail, a CI log): the same facts as whole lines, no redraws.

The image deployed carries a 64 MiB layer of random bytes that no host has yet, so the
pulls really move bytes (the sample app alone shares every layer with earlier releases).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from ops import registry
from ops.deploy import image as images
from ops.errors import RemoteCommandFailed
from ops.masking import Masker
from ops.render import PlainProgress
from tests.support.app_repo import git, make_app_repo
from tests.support.fleet import INV, ROOT, inv

BALLAST_MIB = 64
SGR = re.compile(r"\x1b\[[0-9;]*m")
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_terminal(*args: str, timeout: float = 600) -> tuple[int, str]:
    """``inv ARGS`` with a 160-column pseudo-terminal as its stdin, stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    proc = subprocess.Popen([INV, *args], cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env={**environ, "TERM": "xterm-256color"})
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the command and its children are gone
                break
            if not data:
                break
            out += data
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, out.decode(errors="replace")


@pytest.fixture(scope="module")
def ballast_build(sandbox_env, tmp_path_factory) -> tuple[str, list[str]]:
    """A pushed release of the sample app with a 64 MiB layer no host has, and the lines its build reported."""
    inv("accessory.boot", "--host", "sandbox", "postgres", check=True)
    repo = make_app_repo(tmp_path_factory.mktemp("progress") / "app")
    (repo / "ballast.bin").write_bytes(os.urandom(BALLAST_MIB * 2**20))
    git(repo, "add", "ballast.bin")
    git(repo, "commit", "--quiet", "--no-verify", "-m", "ballast for the progress test")
    env = dataclasses.replace(sandbox_env, build=dataclasses.replace(sandbox_env.build, source=repo))
    source = images.git_source(repo)
    tag = images.version_for(source, allow_dirty=False)
    lines: list[str] = []
    images.build_and_push(env, source, tag, lambda _: None, Masker(), PlainProgress(lines.append))
    return tag, lines


@pytest.fixture(scope="module")
def ballast_version(ballast_build) -> str:
    return ballast_build[0]


def test_the_image_build_reports_each_step_as_it_starts_then_what_it_built(ballast_build):
    tag, lines = ballast_build
    steps = [tuple(map(int, m.groups())) for ln in lines if (m := re.match(r"image: building step (\d+)/(\d+): \S", ln))]
    assert steps, lines
    total = steps[0][1]
    # in order, each one step docker announced; cached steps that arrive in one burst show as the last of it
    numbers = [n for n, _ in steps]
    assert numbers == sorted(set(numbers)) and numbers[-1] == total and {t for _, t in steps} == {total}, lines
    assert f"image: built {tag} ({total} steps)" in lines, lines
    assert lines.index(f"image: built {tag} ({total} steps)") < next(
        i for i, ln in enumerate(lines) if ln.startswith("push ")), lines  # built, then pushed


def pull_counts(screen: str, host: str) -> list[tuple[float, float]]:
    """Every (done, total) MiB a frame showed for ``host``'s pull of the app image."""
    return [(float(d), float(t)) for d, t in
            re.findall(rf"{host} pull web:\S+ [^\n]*? ([\d.]+)/([\d.]+) MiB", screen)]


def test_a_deploy_on_a_terminal_shows_the_pulls_advance_then_the_summary_and_what_each_host_serves(
        ballast_version):
    code, raw = run_in_terminal("deploy", "--host", "sandbox", "--version", ballast_version)
    screen = SGR.sub("", raw)
    assert code == 0, screen[-3000:]
    for host in ("web1", "web2"):
        counts = pull_counts(screen, host)
        assert counts, screen[-3000:]
        done, total = counts[-1]
        assert total >= BALLAST_MIB and done == total, counts  # every byte of the new layer counted
        assert [d for d, _ in counts] == sorted(d for d, _ in counts), counts  # never went back
    # it advanced on screen: some frame caught a pull part-way
    assert any(d < t for h in ("web1", "web2") for d, t in pull_counts(screen, h)), pull_counts(screen, "web1")
    summary = next(line for line in CONTROL.sub("", screen).splitlines() if line.startswith("✓ done in "))
    assert f"web1 serving {ballast_version}" in summary and f"web2 serving {ballast_version}" in summary
    assert re.search(r"\d+ transfer\(s\), [\d.]+ MiB", summary), summary
    assert re.search(rf"✓ web1 +serving +{ballast_version}", screen)
    assert re.search(rf"✓ web2 +serving +{ballast_version}", screen)
    assert "\x1b[32m" in raw  # green: it is a terminal and NO_COLOR is unset


def test_without_a_terminal_a_rollback_reports_whole_lines_and_one_summary(ballast_version):
    proc = inv("rollback", "--host", "sandbox", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for stream in (proc.stdout, proc.stderr):
        assert "\r" not in stream and "\x1b" not in stream
    lines = proc.stderr.splitlines()
    for host in ("web1", "web2"):
        assert any(re.fullmatch(rf"{host}: switching \S+", ln) for ln in lines), proc.stderr
        assert any(re.fullmatch(rf"{host}: serving \S+", ln) for ln in lines), proc.stderr
    summaries = [ln for ln in lines if ln.startswith("done in ")]
    assert len(summaries) == 1 and "web1 serving" in summaries[0] and "web2 serving" in summaries[0]
    assert re.search(r"^web1 +serving +\S+ +\S+$", proc.stdout, re.M), proc.stdout  # the table, undecorated


def test_a_failed_pull_ends_its_transfer_as_failed_and_names_dockers_own_error(gw, sandbox_env):
    lines: list[str] = []
    ref = registry.host_ref(sandbox_env, "athlete-platform/web:no-such-tag")
    with pytest.raises(RemoteCommandFailed) as failed:
        images.pull(gw, sandbox_env.hosts["web1"], ref, PlainProgress(lines.append))
    assert failed.value.host == "web1"
    assert re.search(r"docker pull \S+:no-such-tag: .*(not found|manifest unknown)", failed.value.message), \
        failed.value.message
    assert lines[0] == "web1: pulling web:no-such-tag"
    assert re.fullmatch(r"web1 pull web:no-such-tag: FAILED after 0 B in [\d.]+ s", lines[-1]), lines


BALLAST_TABLE = "progress_ballast"


@pytest.fixture
def ballast_rows(sandbox_env):
    """~40 MB of barely compressible text in the app database (dropped after): a dump that takes a while."""
    from tests.faults.helpers import db_conn

    with db_conn(sandbox_env) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {BALLAST_TABLE}")
        conn.execute(f"CREATE TABLE {BALLAST_TABLE} AS SELECT g AS id, "
                     "string_agg(md5(random()::text || g::text || h::text), '') AS body "
                     "FROM generate_series(1, 20000) g, generate_series(1, 64) h GROUP BY g")
    try:
        yield
    finally:
        with db_conn(sandbox_env) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {BALLAST_TABLE}")


def transfer_counts(screen: str, label: str) -> list[float]:
    """Bytes done (in the bar's unit, MiB here) of every frame that showed the transfer ``label``."""
    return [float(d) for d in re.findall(rf"{re.escape(label)}[^\n]*? ([\d.]+)/[\d.]", screen)]


def test_a_backup_and_a_restore_check_on_a_terminal_count_their_bytes_and_end_with_a_summary(ballast_rows):
    code, raw = run_in_terminal("backup.db", "--host", "sandbox", "--logical")
    screen = CONTROL.sub("", SGR.sub("", raw))
    assert code == 0, screen[-3000:]
    frames = transfer_counts(screen, "db1 pg_dump -> s3 db-")
    assert frames, screen[-3000:]
    assert any(d < frames[-1] for d in frames), frames  # it advanced on screen
    assert frames == sorted(frames), frames             # never went back
    assert re.search(r"done in [\d.]+ s: 1 transfer\(s\), (\d\d+(\.\d)? MiB)", screen), screen[-1500:]
    backup_id = re.search(r"backup (\S+): ", screen).group(1)

    code, raw = run_in_terminal("restore", "--host", "sandbox", "--logical", "--id", backup_id, "--dry-run")
    screen = CONTROL.sub("", SGR.sub("", raw))
    assert code == 0, screen[-3000:]
    assert transfer_counts(screen, f"check {backup_id}"), screen[-3000:]
    # the whole object read back and hashed before the plan is shown
    assert re.search(r"done in [\d.]+ s: 1 transfer\(s\), (\d\d+(\.\d)? MiB)", screen), screen[-1500:]
