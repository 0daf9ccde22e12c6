"""``migrate:`` in the inventory: it can be turned off, and a migrate command whose program
is not in the image fails on the first web host before any other host pulls the image."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import pytest
import yaml

from ops.commands import render
from ops.deploy import migrate, pipeline
from ops.deploy.migrate import MigrateCommandNotFound, MigrationReport, check_program, program_check_argv
from ops.deploy.pipeline import Deployment, DeployRequest
from ops.deploy.release import Release
from ops.errors import InventoryError, RemoteCommandFailed
from ops.inventory import MigrateSettings, load_environment
from ops.remote import RunResult
from tests.support.fakes import sequential_map

RELEASE = Release(id="20260101T000000Z-V2", version="v2", image="localhost:5000/athlete-platform/web:v2")
MINIMAL = {
    "app": "shop",
    "image": "registry.example.com/team/shop",
    "registry": {"url": "registry.example.com"},
    "ssh": {"user": "ops", "known_hosts": "inventory/prod.known_hosts"},
    "hosts": {"web1": {"address": "10.0.0.11", "roles": ["web"]}},
}


def inventory(tmp_path: Path, **changes) -> Path:
    inv = tmp_path / "inventory"
    inv.mkdir(exist_ok=True)
    (inv / "prod.yml").write_text(yaml.safe_dump({**MINIMAL, **changes}, sort_keys=False))
    return inv


def problems(tmp_path: Path, **changes) -> list[str]:
    with pytest.raises(InventoryError) as err:
        load_environment("prod", inventory(tmp_path, **changes))
    return [line.split(": ", 1)[1] for line in err.value.problems]


# ---------------------------------------------------------------- the inventory


def test_migration_is_on_by_default_with_prismas_command():
    settings = MigrateSettings()
    assert settings.enabled
    assert settings.command == "npx prisma migrate deploy"
    assert settings.program == "npx"


def test_migrate_false_turns_the_step_off(tmp_path):
    env = load_environment("prod", inventory(tmp_path, migrate=False))
    assert env.migrate.enabled is False
    assert env.migrate.program == ""


def test_migrate_true_is_refused_with_the_two_things_one_may_mean(tmp_path):
    assert problems(tmp_path, migrate=True) == [
        "migrate: true is not a setting — remove the line (migration is on by default) or write 'migrate: false' "
        "to turn it off"]


@pytest.mark.parametrize("command", ["none", "off", "false", "None"])
def test_a_command_meant_to_turn_migration_off_points_at_migrate_false(tmp_path, command):
    assert problems(tmp_path, migrate={"command": command}) == [
        f"migrate.command: {command!r} would run as a program — to turn migration off write 'migrate: false' "
        "instead of a migrate: section"]


def test_a_command_with_an_unclosed_quote_is_refused(tmp_path):
    assert problems(tmp_path, migrate={"command": "node 'scripts/migrate.js"}) == [
        "migrate.command: cannot be split into words (No closing quotation) — close every quote"]


def test_a_command_of_assignments_only_names_no_program(tmp_path):
    assert problems(tmp_path, migrate={"command": "DEBUG=1"}) == [
        "migrate.command: 'DEBUG=1' names no program — write e.g. npx prisma migrate deploy"]


@pytest.mark.parametrize(("command", "program"), [
    ("npx prisma migrate deploy", "npx"),
    ("node scripts/migrate.js", "node"),
    ("DEBUG=1 PRISMA_HIDE_UPDATE_MESSAGE=1 npx prisma migrate deploy", "npx"),
    ("'/app/bin/migrate all' --yes", "/app/bin/migrate all"),
    ("./migrate.sh", "./migrate.sh"),
])
def test_the_program_is_the_first_word_after_variable_assignments(command, program):
    assert MigrateSettings(command=command).program == program


def test_the_documented_inventories_keep_migration_on():
    assert load_environment("prod").migrate.program == "npx"
    assert load_environment("sandbox").migrate.program == "node"


# ---------------------------------------------------------------- the check


class FakeGateway:
    """Records every command in ``log``; the program check exits ``check_exit`` with ``check_stderr``."""

    def __init__(self, env, *, check_exit=0, check_stdout="/usr/bin/npx\n", check_stderr=""):
        self.env = env
        self.dry_run = False
        self.check = (check_exit, check_stdout, check_stderr)
        self.log: list[str] = []

    def echo(self, line):
        pass

    def mask(self, text):
        return text

    def query(self, host, command, *, check=True, timeout=None):
        text = render(command)
        self.log.append(f"{host.name}: {text}")
        if "command -v" in text:
            code, out, err = self.check
            return RunResult(host.name, text, stdout=out if code == 0 else "", stderr=err, exit_code=code)
        return RunResult(host.name, text)

    def run(self, host, command, **kwargs):
        return self.query(host, command, **kwargs)

    def map(self, fn, hosts=None):
        return sequential_map(fn, hosts)


@pytest.fixture
def env():
    return dataclasses.replace(load_environment("sandbox"), migrate=MigrateSettings(command="npx prisma migrate deploy"))


@pytest.fixture
def web1(env):
    return env.hosts["web1"]


def test_the_check_runs_command_v_in_a_throwaway_container_with_the_program_as_an_argument(env):
    gw = FakeGateway(env)
    assert render(program_check_argv(gw, RELEASE)) == (
        "docker run --rm --name athlete-platform-migrate-check-20260101t000000z-v2 --network none "
        "--label ops.app=athlete-platform --label ops.role=migrate-check --entrypoint sh "
        "localhost:5000/athlete-platform/web:v2 -c 'command -v \"$1\"' sh npx")


def test_a_program_with_shell_characters_stays_one_quoted_argument(env):
    env = dataclasses.replace(env, migrate=MigrateSettings(command="'/app/my tool;rm -rf /' up"))
    argv = program_check_argv(FakeGateway(env), RELEASE)
    assert argv[-1] == "/app/my tool;rm -rf /"
    assert render(argv).endswith("web:v2 -c 'command -v \"$1\"' sh '/app/my tool;rm -rf /'")


def test_a_program_found_in_the_image_passes_and_says_where_it_is(env, web1):
    assert check_program(FakeGateway(env), web1, RELEASE) == "/usr/bin/npx"


@pytest.mark.parametrize("exit_code", [1, 127])
def test_a_program_missing_from_the_image_says_set_migrate_command(env, web1, exit_code):
    gw = FakeGateway(env, check_exit=exit_code)
    with pytest.raises(MigrateCommandNotFound) as err:
        check_program(gw, web1, RELEASE)
    assert str(err.value) == (
        "web1: set migrate.command (npx not found in localhost:5000/athlete-platform/web:v2); nothing was changed "
        "and no other host pulled it — migrate.command in sandbox.yml is 'npx prisma migrate deploy': name a "
        "program the image has (e.g. node scripts/migrate.js), or write 'migrate: false' if the app has no "
        "migrations")


def test_an_image_without_a_shell_is_named_as_the_missing_program(env, web1):
    stderr = ('docker: Error response from daemon: failed to create task for container: exec: "sh": '
              "executable file not found in $PATH: unknown.")
    with pytest.raises(MigrateCommandNotFound, match=r"set migrate.command \(sh not found in "):
        check_program(FakeGateway(env, check_exit=127, check_stderr=stderr), web1, RELEASE)


def test_a_docker_failure_during_the_check_is_not_blamed_on_the_command(env, web1):
    gw = FakeGateway(env, check_exit=125, check_stderr="docker: Error response from daemon: no space left on device.")
    with pytest.raises(RemoteCommandFailed) as err:
        check_program(gw, web1, RELEASE)
    assert "no space left on device" in str(err.value)
    assert "set migrate.command" not in str(err.value)


# ---------------------------------------------------------------- the deploy


def deployment(monkeypatch, env, gw) -> Deployment:
    run = Deployment.__new__(Deployment)
    run.env, run.req, run.gw, run.warnings = env, DeployRequest(), gw, []
    run.said = []
    run.say = run.said.append
    run.all_hosts = list(env.hosts.values())
    run.web = [h for h in run.all_hosts if "web" in h.roles]
    run.app_env = types.SimpleNamespace(content=b"A=1\n")
    run._plan_migrations = None     # the plan found nothing that needs a restore point
    monkeypatch.setattr(pipeline.migrations_step, "recheck_under_lock", lambda gw, host, url: None)

    def pull(gw, host, ref, progress=None):
        gw.log.append(f"{host.name}: pull {ref}")
        return "sha256:new"

    monkeypatch.setattr(pipeline.images, "pull", pull)
    monkeypatch.setattr(pipeline, "_upload_env", lambda gw, host, rel, content: gw.log.append(f"{host.name}: env"))
    monkeypatch.setattr(pipeline, "ensure_network", lambda gw, host: None)
    monkeypatch.setattr(pipeline, "append_history", lambda gw, host, rel, outcome, **kw: None)

    def migrations(gw, host, rel, url):
        gw.log.append(f"{host.name}: migrate")
        return MigrationReport(after=["20240105093000_init"])

    monkeypatch.setattr(pipeline, "run_migrations", migrations)
    run._switch_all = lambda rel, previous: gw.log.append("switch")
    run._central_release = lambda rel, outcome: None
    return run


def test_the_first_web_host_pulls_and_checks_before_any_other_host_pulls(monkeypatch, env):
    gw = FakeGateway(env)
    deployment(monkeypatch, env, gw)._deploy_locked(RELEASE, None, {})
    steps = [line for line in gw.log if "inspect" not in line]
    image = RELEASE.image
    check = next(i for i, line in enumerate(steps) if "command -v" in line)
    assert steps[:check + 1] == [f"web1: pull {image}", steps[check]]
    assert steps[check].startswith("web1: docker run --rm --name athlete-platform-migrate-check-")
    assert steps.index(f"web2: pull {image}") > check
    assert steps[-2:] == ["web1: migrate", "switch"]


def test_a_missing_program_stops_the_deploy_before_another_host_pulls_or_anything_changes(monkeypatch, env):
    gw = FakeGateway(env, check_exit=1)
    with pytest.raises(MigrateCommandNotFound, match=r"set migrate.command \(npx not found in "):
        deployment(monkeypatch, env, gw)._deploy_locked(RELEASE, None, {})
    assert not [line for line in gw.log if line.startswith("web2:")]
    assert not [line for line in gw.log if line.endswith((": env", ": migrate")) or line == "switch"]


def test_with_migrate_off_nothing_is_checked_or_migrated_and_the_deploy_says_so(monkeypatch, env):
    env = dataclasses.replace(env, migrate=MigrateSettings(enabled=False))
    gw = FakeGateway(env)
    run = deployment(monkeypatch, env, gw)
    result = run._deploy_locked(RELEASE, None, {})
    assert not [line for line in gw.log if "command -v" in line or line.endswith(": migrate")]
    assert gw.log[-1] == "switch"
    assert result.migrations.applied == []
    assert "no migration: migrate is off ('migrate: false' in sandbox.yml)" in run.said


def test_the_plan_says_the_check_comes_before_the_other_hosts_pull(monkeypatch, env):
    run = deployment(monkeypatch, env, FakeGateway(env))
    assert run._pull_and_migrate_lines("img:v2") == [
        "pull img:v2 on web1 and check it has 'npx' (migrate.command): if not, stop before any other host pulls it; "
        "then pull it on web2",
        "migrate once on web1: npx prisma migrate deploy"]


def test_the_plan_says_when_migration_is_off(monkeypatch, env):
    env = dataclasses.replace(env, migrate=MigrateSettings(enabled=False))
    run = deployment(monkeypatch, env, FakeGateway(env))
    assert run._pull_and_migrate_lines("img:v2") == [
        "pull img:v2 on web1, web2", "no migration: migrate is off ('migrate: false' in sandbox.yml)"]


def test_a_leftover_check_container_is_not_taken_for_a_migration_in_progress():
    assert migrate.CHECK_ROLE != migrate.ROLE_LABEL[1]
    assert "ops.role=migrate-check" not in " ".join(migrate.running_migrations_argv("athlete-platform"))
