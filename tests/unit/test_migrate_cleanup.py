"""A migration cut off (timeout, lost SSH session, Ctrl-C) never leaves its container
migrating unattended, and a migration still running blocks a second one."""

from __future__ import annotations

import pytest

from ops.commands import render
from ops.deploy import migrate
from ops.deploy.release import Release
from ops.errors import CommandTimeout, HostUnreachable, RemoteCommandFailed
from ops.inventory import load_environment
from ops.masking import Masker
from ops.remote import RunResult

RELEASE = Release(id="20260101T000000Z-V1", version="v1", image="localhost:5000/sandbox/app:v1")
PS_ROW = "athlete-migrate-20260101t000000z-v0\t2026-01-01 09:58:00 +0000 UTC\tUp 3 hours\n"


class FakeGateway:
    """Records commands; ``docker run`` raises ``run_raises``; ``docker ps`` prints ``ps``."""

    def __init__(self, env, *, run_raises=None, ps="", rm_raises=None):
        self.env = env
        self.dry_run = False
        self.mask = Masker()
        self.run_raises = run_raises
        self.rm_raises = rm_raises
        self.ps = ps
        self.ran: list[str] = []
        self.echoed: list[str] = []

    def echo(self, line):
        self.echoed.append(line)

    def run(self, host, command, *, mutating=True, check=True, timeout=None, stdin=None):
        text = render(command)
        self.ran.append(text)
        if text.startswith("docker ps"):
            return RunResult(host.name, text, stdout=self.ps)
        if text.startswith("docker run") and self.run_raises is not None:
            raise self.run_raises
        if text.startswith("docker rm") and self.rm_raises is not None:
            raise self.rm_raises
        return RunResult(host.name, text, stdout="2 migrations applied")

    def query(self, host, command, **kwargs):
        return self.run(host, command, mutating=False, **kwargs)


@pytest.fixture
def env():
    return load_environment("sandbox")


@pytest.fixture
def web1(env):
    return env.hosts["web1"]


@pytest.fixture(autouse=True)
def no_database(monkeypatch):
    monkeypatch.setattr(migrate, "finished_names", lambda gw, host, url: [])


def container(env) -> str:
    return f"{env.app}-migrate-20260101t000000z-v1"


def rm_command(env) -> str:
    return f"docker rm --force --volumes {container(env)}"


def test_a_finished_migration_removes_nothing(env, web1):
    gw = FakeGateway(env)
    report = migrate.run_migrations(gw, web1, RELEASE, url=None)
    assert report.output == "2 migrations applied"
    assert not any(cmd.startswith("docker rm") for cmd in gw.ran)


def test_a_timed_out_migration_removes_its_container_and_says_so(env, web1):
    gw = FakeGateway(env, run_raises=CommandTimeout("command timed out after 600s: docker run ...", host="web1"))
    with pytest.raises(migrate.MigrationFailed) as excinfo:
        migrate.run_migrations(gw, web1, RELEASE, url=None)
    assert gw.ran[-1] == rm_command(env)
    message = excinfo.value.message
    assert "command timed out after 600s" in message
    assert message.endswith(f"nothing was switched; its container {container(env)} was removed")


def test_a_lost_ssh_session_during_the_migration_removes_its_container(env, web1):
    gw = FakeGateway(env, run_raises=HostUnreachable("SSH session lost while running docker run ...", host="web1"))
    with pytest.raises(migrate.MigrationFailed) as excinfo:
        migrate.run_migrations(gw, web1, RELEASE, url=None)
    assert gw.ran[-1] == rm_command(env)
    assert excinfo.value.message.endswith(f"its container {container(env)} was removed")


def test_a_session_ending_without_exit_status_counts_as_lost(env, web1):
    lost = RemoteCommandFailed("exit -1: docker run ...", host="web1", exit_code=-1)
    gw = FakeGateway(env, run_raises=lost)
    with pytest.raises(migrate.MigrationFailed) as excinfo:
        migrate.run_migrations(gw, web1, RELEASE, url=None)
    assert gw.ran[-1] == rm_command(env)
    assert excinfo.value.message.endswith(f"its container {container(env)} was removed")


def test_ctrl_c_during_the_migration_removes_its_container_then_stops(env, web1):
    gw = FakeGateway(env, run_raises=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt) as excinfo:
        migrate.run_migrations(gw, web1, RELEASE, url=None)
    assert gw.ran[-1] == rm_command(env)
    said = f"web1: migration interrupted; its container {container(env)} was removed"
    assert gw.echoed == [said]
    assert excinfo.value.__notes__ == [said]


def test_a_failed_removal_gives_the_exact_command_to_run(env, web1):
    gw = FakeGateway(env, run_raises=CommandTimeout("command timed out after 600s", host="web1"),
                     rm_raises=HostUnreachable("cannot reach deploy@10.0.0.1:22: Connection refused", host="web1"))
    with pytest.raises(migrate.MigrationFailed) as excinfo:
        migrate.run_migrations(gw, web1, RELEASE, url=None)
    assert excinfo.value.message.endswith(
        "removing its container failed (cannot reach deploy@10.0.0.1:22: Connection refused); "
        f"run on web1: {rm_command(env)}")


def test_a_container_already_gone_is_not_reported_as_a_failed_removal(env, web1):
    gone = RemoteCommandFailed("exit 1: docker rm", host="web1", exit_code=1,
                               stderr=f"Error response from daemon: No such container: {container(env)}")
    gw = FakeGateway(env, run_raises=CommandTimeout("command timed out after 600s", host="web1"), rm_raises=gone)
    with pytest.raises(migrate.MigrationFailed) as excinfo:
        migrate.run_migrations(gw, web1, RELEASE, url=None)
    assert excinfo.value.message.endswith(f"its container {container(env)} had already ended")


def test_a_migration_that_exited_non_zero_needs_no_removal(env, web1):
    failed = RemoteCommandFailed("exit 1: docker run ...", host="web1", exit_code=1, stderr="P3009 failed migration")
    gw = FakeGateway(env, run_raises=failed)
    with pytest.raises(migrate.MigrationFailed, match="nothing was switched:\n    P3009 failed migration"):
        migrate.run_migrations(gw, web1, RELEASE, url=None)
    assert not any(cmd.startswith("docker rm") for cmd in gw.ran)


def test_a_running_migrate_container_of_the_app_blocks_a_second_migration(env, web1):
    gw = FakeGateway(env, ps=PS_ROW)
    with pytest.raises(migrate.MigrationInProgress) as excinfo:
        migrate.run_migrations(gw, web1, RELEASE, url=None)
    err = excinfo.value
    assert err.host == "web1"
    assert err.message == (f"a migration of {env.app} is already running: athlete-migrate-20260101t000000z-v0 "
                           "(since 2026-01-01 09:58:00 +0000 UTC, Up 3 hours); not starting another")
    assert err.hint.endswith("once you are sure it is dead, run on web1: "
                             "docker rm --force --volumes athlete-migrate-20260101t000000z-v0")
    assert "\n" not in str(err)
    assert not any(cmd.startswith("docker run") for cmd in gw.ran)
    assert not any(cmd.startswith("docker rm") for cmd in gw.ran), "a leftover is never removed on a guess"


def test_the_leftover_check_looks_for_running_migrate_containers_of_this_app_only(env):
    assert migrate.running_migrations_argv(env.app) == (
        "docker", "ps", "--no-trunc", "--filter", f"label=ops.app={env.app}", "--filter", "label=ops.role=migrate",
        "--format", "{{.Names}}\t{{.CreatedAt}}\t{{.Status}}")


def test_the_migrate_container_carries_the_labels_the_check_looks_for(env):
    class Gw:
        pass

    gw = Gw()
    gw.env = env
    argv = migrate.migrate_argv(gw, RELEASE)
    assert f"ops.app={env.app}" in argv and "ops.role=migrate" in argv
    assert argv[argv.index("--name") + 1] == container(env)


def test_the_removal_runs_shielded_from_a_second_ctrl_c(env, web1, monkeypatch):
    import contextlib
    import signal

    seen = []

    class RecordingGateway(FakeGateway):
        def run(self, host, command, **kwargs):
            if render(command).startswith("docker rm"):
                seen.append(signal.getsignal(signal.SIGINT))
            return super().run(host, command, **kwargs)

    gw = RecordingGateway(env, run_raises=KeyboardInterrupt())
    with contextlib.suppress(KeyboardInterrupt):
        migrate.run_migrations(gw, web1, RELEASE, url=None)
    assert len(seen) == 1
    assert seen[0] is not signal.default_int_handler, "a second Ctrl-C would cut the removal short"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
