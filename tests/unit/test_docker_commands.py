"""ops/commands/docker.py: argv by plain equality; secrets never reach argv."""

from __future__ import annotations

import pytest

from ops.commands import docker as d
from ops.commands import render
from ops.errors import ConfigError

SECRET = "s3cr3t-Pa55word-value"
NO_LOGS = {"log_driver": None}


def test_service_container_run_argv():
    argv = d.run_argv(
        "athlete-platform-postgres", "localhost:5000/sandbox/postgres:15",
        network="athlete-platform", network_aliases=("postgres",),
        env_file="/srv/athlete-platform/accessories/postgres.env",
        publish=[("172.31.250.21", 5432, 5432)],
        volumes=[("athlete-platform-postgres-data", "/var/lib/postgresql/data", "")],
        labels={"ops.app": "athlete-platform", "ops.accessory": "postgres"},
        stop_timeout=120,
    )
    assert argv == (
        "docker", "run", "-d", "--name", "athlete-platform-postgres", "--restart", "unless-stopped",
        "--network", "athlete-platform", "--network-alias", "postgres",
        "--env-file", "/srv/athlete-platform/accessories/postgres.env",
        "-p", "172.31.250.21:5432:5432",
        "-v", "athlete-platform-postgres-data:/var/lib/postgresql/data",
        "--label", "ops.accessory=postgres", "--label", "ops.app=athlete-platform",
        "--stop-timeout", "120",
        "--log-driver", "json-file", "--log-opt", "max-file=5", "--log-opt", "max-size=10m",
        "localhost:5000/sandbox/postgres:15",
    )


def test_minimal_run_argv_has_restart_policy_and_log_rotation():
    assert d.run_argv("web", "app:1") == (
        "docker", "run", "-d", "--name", "web", "--restart", "unless-stopped",
        "--log-driver", "json-file", "--log-opt", "max-file=5", "--log-opt", "max-size=10m", "app:1")


def test_one_off_container_runs_in_foreground_removed_with_command():
    argv = d.run_argv("migrate-1", "app:1", detach=False, remove=True, restart=None, env_file="/srv/a/app.env",
                      env={"NODE_ENV": "production"}, command=("node", "scripts/migrate.js"), **NO_LOGS)
    assert argv == ("docker", "run", "--rm", "--name", "migrate-1", "--env-file", "/srv/a/app.env",
                    "-e", "NODE_ENV=production", "app:1", "node", "scripts/migrate.js")


def test_remove_with_a_restart_policy_is_refused():
    with pytest.raises(ConfigError, match="restart policy"):
        d.run_argv("x", "app:1", remove=True)


def test_health_check_stop_signal_user_workdir_entrypoint():
    argv = d.run_argv("web", "app:1", health_cmd="curl -fsS http://127.0.0.1:3000/api/health",
                      health_interval="2s", health_retries=5, health_start_period="10s",
                      stop_signal="SIGTERM", user="node", workdir="/app", entrypoint="/bin/sh", **NO_LOGS)
    assert argv == ("docker", "run", "-d", "--name", "web", "--restart", "unless-stopped",
                    "--entrypoint", "/bin/sh", "--user", "node", "--workdir", "/app", "--stop-signal", "SIGTERM",
                    "--health-cmd", "curl -fsS http://127.0.0.1:3000/api/health",
                    "--health-interval", "2s", "--health-timeout", "3s", "--health-retries", "5",
                    "--health-start-period", "10s", "app:1")


@pytest.mark.parametrize("publish,expected", [
    (("", 80, 80), "80:80"),
    (("127.0.0.1", 8080, 80), "127.0.0.1:8080:80"),
    (("10.0.0.5", 5432, 5432), "10.0.0.5:5432:5432"),
    (("::1", 8080, 80), "[::1]:8080:80"),
    (("127.0.0.1", 0, 3000), "127.0.0.1::3000"),  # any free host port
])
def test_publish_specs(publish, expected):
    assert d.run_argv("x", "i", publish=[publish], **NO_LOGS)[-3:] == ("-p", expected, "i")


@pytest.mark.parametrize("publish", [("0.0.0.0.1", 80, 80), ("host", 80, 80), ("", -1, 80), ("", 80, 70000),
                                     ("", "80", 80), ("", True, 80)])
def test_bad_publish_is_refused(publish):
    with pytest.raises(ConfigError):
        d.run_argv("x", "i", publish=[publish])


@pytest.mark.parametrize("volume,expected", [
    (("data", "/var/lib/x", ""), "data:/var/lib/x"),
    (("/srv/app/proxy/conf.d", "/etc/nginx/conf.d", "ro"), "/srv/app/proxy/conf.d:/etc/nginx/conf.d:ro"),
])
def test_volume_specs(volume, expected):
    assert d.run_argv("x", "i", volumes=[volume], **NO_LOGS)[-3:] == ("-v", expected, "i")


@pytest.mark.parametrize("volume", [("a:b", "/x", ""), ("data", "rel/path", ""), ("data", "/x", "rw,exec"),
                                    ("../data", "/x", ""), ("/a,b", "/x", ""), ("data", "/x:/y", "")])
def test_bad_volume_is_refused(volume):
    with pytest.raises(ConfigError):
        d.run_argv("x", "i", volumes=[volume])


@pytest.mark.parametrize("name", ["POSTGRES_PASSWORD", "NEXTAUTH_SECRET", "DATABASE_URL", "API_TOKEN",
                                  "AWS_SECRET_ACCESS_KEY", "SMTP_PASSWORD", "SENTRY_DSN", "private_key"])
def test_secret_looking_env_is_refused_as_argv(name):
    with pytest.raises(ConfigError, match="looks secret"):
        d.run_argv("x", "i", env={name: SECRET})


def test_plain_env_is_allowed_and_bad_names_refused():
    assert ("-e", "NODE_ENV=production") == d.run_argv("x", "i", env={"NODE_ENV": "production"}, **NO_LOGS)[7:9]
    with pytest.raises(ConfigError):
        d.run_argv("x", "i", env={"BAD NAME": "1"})
    with pytest.raises(ConfigError):
        d.run_argv("x", "i", env={"MODE": "a\nb"})


@pytest.mark.parametrize("name", ["", "-rm", "a b", "a;b", "a/b", "$(x)", "a\n", "ä", "x" * 129])
def test_hostile_container_names_are_refused(name):
    with pytest.raises(ConfigError):
        d.run_argv(name, "i")
    with pytest.raises(ConfigError):
        d.stop_argv(name)


@pytest.mark.parametrize("image", ["", "-x", "a b", "a;b", "app:1\n", "$(x)"])
def test_hostile_images_are_refused(image):
    with pytest.raises(ConfigError):
        d.pull_argv(image)


@pytest.mark.parametrize("labels", [{"Ops.App": "x"}, {"ops.app": "a\nb"}, {"a b": "x"}])
def test_bad_labels_are_refused(labels):
    with pytest.raises(ConfigError):
        d.run_argv("x", "i", labels=labels)


def test_small_builders():
    assert d.network_create_argv("athlete-platform", labels={"ops.app": "athlete-platform"}) == (
        "docker", "network", "create", "--driver", "bridge", "--label", "ops.app=athlete-platform", "athlete-platform")
    assert d.network_inspect_argv("n") == ("docker", "network", "inspect", "--format", "{{.Name}}", "n")
    assert d.volume_create_argv("v", labels={"ops.app": "a"}) == ("docker", "volume", "create", "--label",
                                                                  "ops.app=a", "v")
    assert d.pull_argv("localhost:5000/app:abc") == ("docker", "pull", "--quiet", "localhost:5000/app:abc")
    assert d.push_argv("127.0.0.1:5000/app:abc") == ("docker", "push", "127.0.0.1:5000/app:abc")
    assert d.tag_argv("app:abc", "127.0.0.1:5000/app:abc") == ("docker", "tag", "app:abc", "127.0.0.1:5000/app:abc")
    assert d.image_id_argv("app:abc") == ("docker", "image", "inspect", "--format", "{{.Id}}", "app:abc")
    assert d.start_argv("c") == ("docker", "start", "c")
    assert d.stop_argv("c", 120) == ("docker", "stop", "--time", "120", "c")
    assert d.stop_argv("c") == ("docker", "stop", "--time", "10", "c")
    assert d.rm_argv("c") == ("docker", "rm", "--volumes", "c")
    assert d.rm_argv("c", force=True) == ("docker", "rm", "--force", "--volumes", "c")
    assert d.logs_argv("c", 50) == ("docker", "logs", "--tail", "50", "c")
    assert d.logs_argv("c", "all", "10m", timestamps=True) == (
        "docker", "logs", "--tail", "all", "--since", "10m", "--timestamps", "c")
    assert d.inspect_argv("a", "b") == ("docker", "container", "inspect", "a", "b")
    assert d.inspect_argv("app:1", kind="image", fmt="{{.Id}}") == (
        "docker", "image", "inspect", "--format", "{{.Id}}", "app:1")
    assert d.exec_argv("c", "pg_isready", "-q") == ("docker", "exec", "c", "pg_isready", "-q")
    assert d.exec_argv("c", "psql", user="postgres", interactive=True) == (
        "docker", "exec", "-i", "--user", "postgres", "c", "psql")
    assert d.ps_argv(filters={"label": "ops.app=a"}, fmt="{{.Names}}") == (
        "docker", "ps", "--no-trunc", "--all", "--filter", "label=ops.app=a", "--format", "{{.Names}}")


@pytest.mark.parametrize("call", [
    lambda: d.logs_argv("c", -1), lambda: d.logs_argv("c", "5; rm"), lambda: d.logs_argv("c", 5, "1h; rm"),
    lambda: d.stop_argv("c", -1), lambda: d.inspect_argv(), lambda: d.inspect_argv("c", kind="secret"),
    lambda: d.exec_argv("c"), lambda: d.ps_argv(filters={"before": "x"}),
    lambda: d.run_argv("x", "i", restart="sometimes"), lambda: d.run_argv("x", "i", stop_signal="KILL; rm"),
    lambda: d.run_argv("x", "i", health_cmd="true", health_interval="5 s"),
    lambda: d.run_argv("x", "i", network_aliases=("a",)),
])
def test_bad_arguments_are_refused(call):
    with pytest.raises(ConfigError):
        call()


def test_secret_in_env_file_never_reaches_argv():
    """The way an accessory gets its password: a file path in argv, the value nowhere."""
    argv = d.run_argv("db", "postgres:15", env_file="/srv/app/accessories/postgres.env",
                      env={"PGDATA": "/var/lib/postgresql/data"})
    assert SECRET not in render(argv)
    assert "--env-file" in argv and "/srv/app/accessories/postgres.env" in argv


def test_looks_secret():
    assert d.looks_secret("POSTGRES_PASSWORD") and d.looks_secret("DATABASE_URL") and d.looks_secret("NEXTAUTH_SECRET")
    assert not d.looks_secret("POSTGRES_USER") and not d.looks_secret("POSTGRES_DB")
    assert not d.looks_secret("NODE_ENV") and not d.looks_secret("MAX_FILE_SIZE")


def test_a_starting_container_can_run_at_a_lower_cpu_weight_and_be_raised_later():
    argv = d.run_argv("athlete-platform-web-r1", "localhost:5000/app:v1", cpu_shares=128)
    assert argv[argv.index("--cpu-shares") + 1] == "128"
    assert "--cpu-shares" not in d.run_argv("athlete-platform-web-r1", "localhost:5000/app:v1")
    assert d.cpu_shares_argv("athlete-platform-web-r1", d.DEFAULT_CPU_SHARES) == (
        "docker", "update", "--cpu-shares", "1024", "athlete-platform-web-r1")
    for bad in (1, 0, -5, 300000, True, "128"):
        with pytest.raises(ConfigError, match="CPU shares"):
            d.cpu_shares_argv("athlete-platform-web-r1", bad)
