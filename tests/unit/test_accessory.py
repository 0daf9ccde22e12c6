"""ops/accessory.py decisions (against a fake gateway) and the sandbox's app env and images."""

from __future__ import annotations

import dataclasses
import json
import stat

import pytest

from ops import accessory
from ops.commands import render
from ops.errors import ConfigError, HostError
from ops.inventory import load_environment
from ops.masking import Masker
from ops.remote import Gateway, RunResult
from ops.sandbox import app_env, images

PASSWORD = "Zx9-very-secret-password_42"


@pytest.fixture
def env(tmp_path):
    path = tmp_path / "app.env"
    path.write_text(f"POSTGRES_USER=athlete\nPOSTGRES_PASSWORD={PASSWORD}\nPOSTGRES_DB=athlete\nOTHER=not-for-db\n")
    path.chmod(0o600)
    # pitr=None: the plain accessory (the pgBackRest path: tests/unit/test_pgbackrest_accessory.py).
    return dataclasses.replace(load_environment("sandbox"), env_file=path, pitr=None)


@pytest.fixture
def pg(env):
    return env.accessories["postgres"]


class FakeGateway:
    """Records commands; answers ``docker inspect`` / ``image inspect`` / pg_isready from canned state."""

    def __init__(self, env, *, container=None, image_id="sha256:img1", dry_run=False):
        self.env = env
        self.dry_run = dry_run
        self.mask = Masker()
        self.plan: list[tuple[str, str]] = []
        self.ran: list[str] = []
        self.puts: list[tuple[str, bytes, int]] = []
        self.echoed: list[str] = []
        self.container = container          # dict for `docker inspect`, or None (absent)
        self.image_id = image_id

    def echo(self, line):
        self.echoed.append(line)

    def run(self, host, command, *, mutating=True, check=True, timeout=None, stdin=None):
        text = render(command)
        if self.dry_run and mutating:
            self.plan.append((host.name, text))
            return RunResult(host.name, text, dry_run=True)
        self.ran.append(text)
        if text.startswith("docker container inspect"):
            if self.container is None:
                return RunResult(host.name, text, stderr="Error: No such container: x", exit_code=1)
            return RunResult(host.name, text, stdout=json.dumps([self.container]))
        if text.startswith("docker image inspect"):
            return RunResult(host.name, text, stdout=self.image_id + "\n")
        if text.startswith("docker network inspect"):
            return RunResult(host.name, text, exit_code=1)
        if text.startswith("docker run"):
            labels = dict(a.split("=", 1) for a in command[command.index("--label") + 1::2] if "=" in a
                          and a.startswith("ops."))
            self.container = running(labels)
        return RunResult(host.name, text)

    def query(self, host, command, **kwargs):
        return self.run(host, command, mutating=False, **kwargs)

    map = Gateway.map  # the operation envelope (lock, audit) runs per host
    parallel = 4

    def put(self, host, data, path, *, mode=0o600):
        if self.dry_run:
            self.plan.append((host.name, f"put {path}"))
            return
        self.puts.append((path, data, mode))

    def tunnel(self, host, **kwargs):
        import contextlib
        return contextlib.nullcontext()


def running(labels, state="running"):
    return {"State": {"Status": state}, "Image": "sha256:img1",
            "Config": {"Image": "localhost:5000/sandbox/postgres:15", "Labels": labels}}


def test_unknown_accessory_names_the_known_ones(env):
    with pytest.raises(ConfigError, match="unknown accessory 'redis'.*postgres"):
        accessory.get_accessory(env, "redis")


def test_env_holds_only_the_listed_variables(env, pg):
    assert accessory.read_env(env, pg) == {"POSTGRES_USER": "athlete", "POSTGRES_PASSWORD": PASSWORD,
                                           "POSTGRES_DB": "athlete"}


def test_missing_variable_is_named_with_the_file(env, pg):
    env.env_file.write_text("POSTGRES_USER=athlete\nPOSTGRES_DB=athlete\n")
    with pytest.raises(ConfigError, match=f"POSTGRES_PASSWORD not set in {env.env_file}"):
        accessory.read_env(env, pg)


def test_missing_env_file_is_a_config_error(env, pg):
    env.env_file.unlink()
    with pytest.raises(ConfigError, match="not found"):
        accessory.read_env(env, pg)


def test_multiline_value_is_refused(env, pg):
    env.env_file.write_text('POSTGRES_USER=a\nPOSTGRES_PASSWORD="two\nlines"\nPOSTGRES_DB=a\n')
    with pytest.raises(ConfigError, match="spans lines"):
        accessory.read_env(env, pg)


def test_env_file_is_docker_env_file_format():
    assert accessory.env_file_bytes({"A": "1", "B": "x y"}).decode().splitlines()[1:] == ["A=1", "B=x y"]


def test_run_argv_binds_private_address_and_carries_no_secret(env, pg):
    argv = accessory.run_argv(env, pg, "localhost:5000/sandbox/postgres:15", "abc")
    assert "172.31.250.21:5432:5432" in argv
    assert "/srv/athlete-platform/accessories/postgres.env" in argv
    assert "athlete-platform-postgres-data:/var/lib/postgresql/data" in argv
    assert "ops.spec=abc" in argv and "--stop-timeout" in argv
    assert PASSWORD not in render(argv)


def test_spec_hash_follows_image_env_and_command():
    base = accessory.spec_hash(("docker", "run", "x"), b"A=1\n", "sha256:1")
    assert base == accessory.spec_hash(("docker", "run", "x"), b"A=1\n", "sha256:1")
    assert base != accessory.spec_hash(("docker", "run", "x"), b"A=2\n", "sha256:1")
    assert base != accessory.spec_hash(("docker", "run", "x"), b"A=1\n", "sha256:2")
    assert base != accessory.spec_hash(("docker", "run", "y"), b"A=1\n", "sha256:1")


def test_first_boot_writes_env_file_creates_volume_and_runs(env):
    gw = FakeGateway(env)
    result = accessory.boot(gw, "postgres")
    assert result.action == "created"
    assert gw.puts == [("/srv/athlete-platform/accessories/postgres.env",
                        accessory.env_file_bytes(accessory.read_env(env, env.accessories["postgres"])), 0o600)]
    runs = [c for c in gw.ran if c.startswith("docker run")]
    assert len(runs) == 1 and PASSWORD not in runs[0]
    assert any(c.startswith("docker volume create") for c in gw.ran)
    assert any(c.startswith("docker pull --quiet localhost:5000/sandbox/postgres:15") for c in gw.ran)
    assert gw.mask(f"pw={PASSWORD}") == "pw=********"
    assert gw.mask("athlete") == "athlete", "non-secret values stay readable"


def test_second_boot_with_nothing_changed_does_nothing(env):
    gw = FakeGateway(env)
    accessory.boot(gw, "postgres")
    gw.ran.clear()
    gw.puts.clear()
    result = accessory.boot(gw, "postgres")
    assert result.action == "unchanged"
    assert gw.puts == []
    assert not any(c.startswith(("docker run", "docker stop", "docker rm")) for c in gw.ran)


def test_changed_env_recreates_the_container(env):
    gw = FakeGateway(env)
    accessory.boot(gw, "postgres")
    env.env_file.write_text("POSTGRES_USER=athlete\nPOSTGRES_PASSWORD=another-pass\nPOSTGRES_DB=athlete\n")
    gw.ran.clear()
    assert accessory.boot(gw, "postgres").action == "recreated"
    assert [c.split()[1] for c in gw.ran if c.startswith(("docker stop", "docker rm", "docker run"))] == [
        "stop", "rm", "run"]
    assert "docker stop --time 120 athlete-platform-postgres" in gw.ran


def test_stopped_container_with_same_spec_is_started_not_recreated(env):
    gw = FakeGateway(env)
    accessory.boot(gw, "postgres")
    gw.container["State"]["Status"] = "exited"
    gw.ran.clear()
    # After `docker start` the fake still says exited: boot must report it, not hang.
    with pytest.raises(HostError, match="exited instead of running"):
        accessory.boot(gw, "postgres")
    assert "docker start athlete-platform-postgres" in gw.ran
    assert not any(c.startswith("docker run") for c in gw.ran)


def test_reboot_stops_removes_and_runs_even_when_unchanged(env):
    gw = FakeGateway(env)
    accessory.boot(gw, "postgres")
    gw.ran.clear()
    assert accessory.reboot(gw, "postgres").action == "recreated"
    assert not any(c.startswith("docker volume rm") for c in gw.ran)
    assert [c.split()[1] for c in gw.ran if c.startswith(("docker stop", "docker rm", "docker run"))] == [
        "stop", "rm", "run"]


def test_reboot_runs_under_the_environment_lock_and_is_audited(env):
    gw = FakeGateway(env)
    accessory.boot(gw, "postgres")
    gw.ran.clear()
    accessory.reboot(gw, "postgres")
    lock_dir = f"{env.app_dir}/lock"
    first_lock = next(i for i, c in enumerate(gw.ran) if f"mkdir {lock_dir}" in c)
    stop = next(i for i, c in enumerate(gw.ran) if c.startswith("docker stop"))
    unlock = max(i for i, c in enumerate(gw.ran) if f"rm -rf {lock_dir}" in c)
    assert first_lock < stop < unlock
    audit = [c for c in gw.ran if "audit.log" in c and '"action":"accessory.reboot"' in c]
    # one "started" and one "ok" line on every host of the environment
    assert sum('"outcome":"started"' in c for c in audit) == sum('"outcome":"ok"' in c for c in audit) == len(env.hosts)
    assert len(audit) == 2 * len(env.hosts)


def test_container_of_someone_else_is_not_touched(env):
    gw = FakeGateway(env, container=running({"maintainer": "someone"}))
    with pytest.raises(HostError, match="is not accessory postgres"):
        accessory.boot(gw, "postgres")
    assert not any(c.startswith(("docker stop", "docker rm", "docker run")) for c in gw.ran)


def test_dry_run_plans_every_step_and_runs_none(env):
    gw = FakeGateway(env, dry_run=True)
    result = accessory.boot(gw, "postgres")
    assert result.dry_run and result.action == "created"
    planned = [cmd for _, cmd in gw.plan]
    assert planned[0].startswith("docker pull")
    assert any(c.startswith("docker run") for c in planned)
    assert planned[-1].startswith("wait until athlete-platform-postgres is ready")
    assert not any(c.startswith(("docker run", "docker pull", "install")) for c in gw.ran)
    assert gw.puts == []
    assert "would create" in str(result)


def test_kind_and_timeouts(env, pg):
    assert accessory.kind(pg) == "postgres" and accessory.stop_timeout(pg) == 120
    redis = dataclasses.replace(pg, name="cache", image=dataclasses.replace(pg.image, image="redis:7"))
    assert accessory.kind(redis) == "generic" and accessory.ready_argv(env, redis) is None


# -- sandbox app env --------------------------------------------------------------------
def test_sandbox_app_env_has_every_variable_with_consistent_secrets():
    env = load_environment("sandbox")
    counter = iter(range(100))
    values = app_env.app_env_values(env, token=lambda n: f"tok{next(counter)}-{n}")
    password = values["POSTGRES_PASSWORD"]
    assert values["DATABASE_URL"] == f"postgresql://athlete:{password}@172.31.250.21:5432/athlete"
    assert values["NEXTAUTH_URL"] == values["NEXT_PUBLIC_SOCKET_URL"] == "http://127.0.0.1:8101"
    assert values["NEXTAUTH_SECRET"] != password
    assert values["MAX_FILE_SIZE"] == "10485760"
    assert (values["POSTGRES_USER"], values["POSTGRES_DB"]) == ("athlete", "athlete")
    assert set(values) >= {"NEXT_PUBLIC_SOCKET_NAMESPACE", "FILE_UPLOAD_DIR", "SMTP_HOST", "SMTP_PORT",
                           "SMTP_USER", "SMTP_PASSWORD", "SENTRY_ENVIRONMENT"}
    real = app_env.app_env_values(env)
    assert len(real["NEXTAUTH_SECRET"]) == 48


def test_sandbox_app_env_is_written_0600_once_and_removed_only_from_state_dir(tmp_path):
    env = dataclasses.replace(load_environment("sandbox"), env_file=tmp_path / "state" / "app.env")
    assert app_env.ensure(env).startswith("written")
    first = env.env_file.read_bytes()
    assert stat.S_IMODE(env.env_file.stat().st_mode) == 0o600
    assert app_env.ensure(env) == "kept" and env.env_file.read_bytes() == first
    assert not app_env.remove(env, tmp_path / "elsewhere") and env.env_file.exists()
    assert app_env.remove(env, tmp_path / "state") and not env.env_file.exists()


# -- sandbox service images -------------------------------------------------------------
def test_service_images_come_from_the_inventory_refs_with_a_build_context(tmp_path):
    env = load_environment("sandbox")
    for name in ("nginx", "postgres"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Dockerfile").write_text("FROM x\n")
    found = {i.name: i.push_ref for i in images.service_images(env, tmp_path)}
    assert found == {"nginx": "127.0.0.1:5000/sandbox/nginx:1.22", "postgres": "127.0.0.1:5000/sandbox/postgres:15"}
    (tmp_path / "postgres" / "Dockerfile").unlink()
    assert [i.name for i in images.service_images(env, tmp_path)] == ["nginx"]


def test_context_hash_follows_every_file_and_the_base(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    first = images.context_hash(tmp_path, "sha256:base")
    assert images.context_hash(tmp_path, "sha256:base") == first
    assert images.context_hash(tmp_path, "sha256:other") != first
    (tmp_path / "entrypoint.sh").write_text("#!/bin/sh\n")
    assert images.context_hash(tmp_path, "sha256:base") != first
