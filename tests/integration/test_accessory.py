"""Accessories on the fleet (Postgres on db1 through the real CLI; a generic one through the
library) and the nginx proxy image proxying to an upstream container on web1."""

from __future__ import annotations

import json
import re
import secrets
import time

import psycopg
import pytest
import yaml
from dotenv import dotenv_values

from ops import accessory
from ops.commands import docker, pipeline, shell
from ops.commands.nginx import nginx_reload_argv, nginx_test_argv, render_site_conf
from ops.errors import RemoteCommandFailed
from ops.inventory import PROJECT_ROOT, load_environment
from ops.registry import registry_access, service_ref
from ops.remote import Gateway
from ops.sandbox import images
from tests.integration.conftest import inv

pytestmark = pytest.mark.integration

HOST = ("--host", "sandbox")
PG_LOCAL_PORT = 15432          # db1's 5432, published on 127.0.0.1 by the sandbox


@pytest.fixture(scope="module")
def env_values(sandbox_env) -> dict[str, str]:
    return dotenv_values(sandbox_env.env_file)


@pytest.fixture(scope="module")
def booted(sandbox_env, env_values):
    """Postgres booted through the CLI (the first boot of a fresh fleet creates it)."""
    proc = inv("accessory.boot", *HOST, "postgres", check=True)
    return proc


def connect(values: dict[str, str]) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=PG_LOCAL_PORT, user=values["POSTGRES_USER"],
                           password=values["POSTGRES_PASSWORD"], dbname=values["POSTGRES_DB"], connect_timeout=5)


def container_state(gw, env) -> accessory.ContainerState:
    acc = env.accessories["postgres"]
    return accessory.inspect(gw, env.hosts[acc.host], accessory.container_name(env, acc))


def test_service_images_are_in_the_sandbox_registry(sandbox_env):
    for image in images.service_images(sandbox_env):
        local = images.image_id(f"{image.repo}:{images.context_hash(image.context, images.image_id(images.BASE_IMAGE))}")
        assert local and images.registry_image_id(image.push_ref) == local, image.push_ref
    # After `sandbox.down` the registry is empty: the same check then says "push".
    assert images.registry_image_id("127.0.0.1:5000/sandbox/ops-test-absent:1") is None


def test_boot_makes_postgres_reachable_with_the_env_file_credentials(booted, env_values):
    password = env_values["POSTGRES_PASSWORD"]
    assert password not in booted.stdout + booted.stderr
    with connect(env_values) as conn:
        assert conn.execute("select current_user, current_database()").fetchone() == (
            env_values["POSTGRES_USER"], env_values["POSTGRES_DB"])


def test_second_boot_is_a_no_op(booted, sandbox_env, gw):
    before = container_state(gw, sandbox_env)
    proc = inv("accessory.boot", *HOST, "postgres", check=True)
    assert "nothing to do" in proc.stdout
    after = container_state(gw, sandbox_env)
    assert (after.state, after.started_at, after.labels) == ("running", before.started_at, before.labels)


def test_password_is_in_no_argv_and_no_output_only_in_the_0600_env_file(booted, sandbox_env, gw, env_values):
    password = env_values["POSTGRES_PASSWORD"]
    db1 = sandbox_env.hosts["db1"]
    acc = sandbox_env.accessories["postgres"]
    name = accessory.container_name(sandbox_env, acc)
    raw = Gateway(sandbox_env)          # no masker: we look for the real value
    try:
        ps = raw.query(db1, ("ps", "-eww", "-o", "args")).stdout
        assert "postgres" in ps and password not in ps
        info = json.loads(raw.query(db1, docker.inspect_argv(name)).stdout)[0]
        assert password not in json.dumps([info["Path"], info["Args"], info["Config"]["Cmd"],
                                           info["Config"]["Entrypoint"], info["Config"]["Labels"]])
        # Accepted: Docker keeps --env-file values in Config.Env (readable by who runs docker on db1).
        assert f"POSTGRES_PASSWORD={password}" in info["Config"]["Env"]
        mode = raw.query(db1, ("stat", "-c", "%a %U", accessory.env_file_path(sandbox_env, acc))).stdout.split()
        assert mode == ["600", db1.user]
    finally:
        raw.close()
    for args in (("accessory.status", *HOST), ("accessory.logs", *HOST, "postgres", "--lines", "50"),
                 ("accessory.boot", *HOST, "--dry-run", "postgres"),
                 ("accessory.reboot", *HOST, "--dry-run", "postgres")):
        proc = inv(*args, check=True)
        assert password not in proc.stdout + proc.stderr, args


def test_dry_run_reboot_plans_stop_and_run_and_changes_nothing(booted, sandbox_env, gw):
    before = container_state(gw, sandbox_env)
    proc = inv("accessory.reboot", *HOST, "--dry-run", "postgres", check=True)
    assert "docker stop --time 120 athlete-platform-postgres" in proc.stderr
    assert "docker run -d --name athlete-platform-postgres" in proc.stderr
    assert "nothing changed" in proc.stdout
    after = container_state(gw, sandbox_env)
    assert (after.state, after.started_at) == ("running", before.started_at)


def test_reboot_keeps_the_data(booted, sandbox_env, gw, env_values):
    marker = f"m{secrets.token_hex(6)}"
    with connect(env_values) as conn:
        conn.execute("create table if not exists ops_reboot_test (marker text primary key)")
        conn.execute("insert into ops_reboot_test values (%s)", (marker,))
    before = container_state(gw, sandbox_env)
    proc = inv("accessory.reboot", *HOST, "postgres", check=True)
    assert "recreated athlete-platform-postgres" in proc.stdout
    after = container_state(gw, sandbox_env)
    assert after.state == "running" and after.started_at != before.started_at
    with connect(env_values) as conn:
        assert conn.execute("select count(*) from ops_reboot_test where marker = %s", (marker,)).fetchone() == (1,)
        conn.execute("delete from ops_reboot_test where marker = %s", (marker,))
    logs = inv("accessory.logs", *HOST, "postgres", "--lines", "200", check=True).stdout
    # A clean shutdown reads "was shut down at"; a SIGKILL would read "was interrupted" + recovery.
    assert "database system was shut down at" in logs and "automatic recovery" not in logs


def test_status_table_and_json(booted):
    table = inv("accessory.status", *HOST, check=True).stdout
    assert re.search(r"postgres\s+db1\s+athlete-platform-postgres\s+localhost:5000/sandbox/postgres:15\s+running",
                     table)
    rows = json.loads(inv("accessory.status", *HOST, "--name", "postgres", "--json", check=True).stdout)["data"]
    assert [(r["accessory"], r["host"], r["state"]) for r in rows] == [("postgres", "db1", "running")]
    assert "accepting" in rows[0]["health"]


def test_logs_prints_the_last_lines(booted):
    out = inv("accessory.logs", *HOST, "postgres", "--lines", "3", check=True).stdout
    assert 1 <= len(out.splitlines()) <= 3


def test_unknown_accessory_is_one_line_naming_the_known_ones(sandbox_env):
    proc = inv("accessory.boot", *HOST, "redis")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown accessory 'redis' in sandbox — accessories in sandbox.yml: postgres"


# -- a generic accessory (no readiness probe but "running") through the library ----------
@pytest.fixture
def generic_env(sandbox_env, tmp_path):
    """The sandbox inventory plus an accessory 'cache' on db1 made from the proxy image."""
    raw = yaml.safe_load((PROJECT_ROOT / "inventory" / "sandbox.yml").read_text())
    for section, key in (("ssh", "key"), ("ssh", "known_hosts")):
        raw[section][key] = str(PROJECT_ROOT / raw[section][key])
    raw["env_file"] = str(sandbox_env.env_file)
    raw["build"]["source"] = str(PROJECT_ROOT / raw["build"]["source"])
    raw["accessories"] = {"cache": {"host": "db1", "image": raw["proxy"]["image"], "from_registry": True,
                                    "port": 18081, "data_path": "/var/cache/ops-test"}}
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "sandbox.yml").write_text(yaml.safe_dump(raw))
    env = load_environment("sandbox", tmp_path / "inventory")
    yield env
    acc = env.accessories["cache"]
    with Gateway(env) as gw:
        host = env.hosts[acc.host]
        gw.run(host, docker.rm_argv(accessory.container_name(env, acc), force=True), check=False)
        gw.run(host, ("docker", "volume", "rm", accessory.volume_name(env, acc)), check=False)


def test_generic_accessory_dry_run_then_boot_then_no_op(generic_env):
    acc = generic_env.accessories["cache"]
    host = generic_env.hosts[acc.host]
    name = accessory.container_name(generic_env, acc)
    with Gateway(generic_env, dry_run=True, echo=lambda _: None) as gw:
        planned = accessory.boot(gw, "cache")
        assert planned.action == "created" and any(cmd.startswith("docker run") for cmd in planned.plan)
        assert accessory.inspect(gw, host, name).state == "absent"
    with Gateway(generic_env) as gw:
        assert accessory.boot(gw, "cache").action == "created"
        assert accessory.boot(gw, "cache").action == "unchanged"
        rows = accessory.status(gw)
        assert [(r.container, r.state, r.health) for r in rows] == [(name, "running", "-")]


# -- the proxy image -----------------------------------------------------------------------
UPSTREAM_CONF = """server {
    listen 3000;
    location / {
        add_header X-Frame-Options SAMEORIGIN;
        return 200 "upstream upgrade=$http_upgrade connection=$http_connection xff=$http_x_forwarded_for proto=$http_x_forwarded_proto\\n";
    }
}
"""


@pytest.fixture
def proxy_pair(sandbox_env, gw):
    """On web1: an upstream container and a proxy container (both from the nginx image) on a
    private network; the proxy published on web1's 127.0.0.1 only."""
    web1 = sandbox_env.hosts["web1"]
    suffix = secrets.token_hex(4)
    net, up, px = f"ops-test-net-{suffix}", f"ops-test-up-{suffix}", f"ops-test-px-{suffix}"
    workdir = f"/tmp/ops-test-proxy-{suffix}"
    port = 20000 + secrets.randbelow(10000)
    image = service_ref(sandbox_env, sandbox_env.proxy.image)
    try:
        with registry_access(gw, web1):
            gw.run(web1, docker.pull_argv(image))
        gw.run(web1, ("mkdir", "-p", f"{workdir}/up", f"{workdir}/conf.d"))
        gw.put(web1, UPSTREAM_CONF.encode(), f"{workdir}/up/up.conf", mode=0o644)
        gw.put(web1, render_site_conf(upstream=f"{up}:3000", listen_port=80, max_body_bytes=1024,
                                      release="r1").encode(), f"{workdir}/conf.d/site.conf", mode=0o644)
        gw.run(web1, docker.network_create_argv(net))
        gw.run(web1, docker.run_argv(up, image, network=net, restart=None,
                                     volumes=[(f"{workdir}/up", "/etc/nginx/conf.d", "ro")]))
        gw.run(web1, docker.run_argv(px, image, network=net, restart=None, publish=[("127.0.0.1", port, 80)],
                                     volumes=[(f"{workdir}/conf.d", "/etc/nginx/conf.d", "ro")]))
        yield web1, px, workdir, f"http://127.0.0.1:{port}"
    finally:
        gw.run(web1, ("docker", "rm", "--force", up, px), check=False)
        gw.run(web1, ("docker", "network", "rm", net), check=False)
        gw.run(web1, ("rm", "-rf", workdir), check=False)


def curl(gw, host, url, *extra: str) -> tuple[int, dict[str, str], str]:
    out = gw.query(host, ("curl", "-sS", "--max-time", "5", "-D", "-", *extra, url)).stdout
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    status_line, *header_lines = head.splitlines()
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers.setdefault(key.strip().lower(), value.strip())
    return int(status_line.split()[1]), headers, body


def wait_answering(gw, host, url, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return curl(gw, host, url)
        except RemoteCommandFailed:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_proxy_image_proxies_with_security_headers_websocket_and_body_limit(gw, proxy_pair):
    web1, px, workdir, url = proxy_pair
    status, headers, body = wait_answering(gw, web1, url + "/")
    assert status == 200 and body.startswith("upstream ")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY", "the upstream's SAMEORIGIN is replaced, not doubled"
    assert headers["x-xss-protection"] == "1; mode=block"
    assert "strict-transport-security" not in headers, "HSTS only over TLS: this site is plain http"
    assert headers["content-security-policy"] == "default-src 'self'"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert headers["x-release"] == "r1"
    # Via docker-proxy the client is the app network's gateway; the header is set, the proto too.
    assert re.search(r"connection= xff=\d+\.\d+\.\d+\.\d+ proto=http$", body.strip()), body
    _, _, ws = curl(gw, web1, url + "/socket.io/?EIO=4", "-H", "Upgrade: websocket", "-H", "Connection: Upgrade")
    assert "upgrade=websocket connection=upgrade" in ws
    big = gw.query(web1, pipeline(("head", "-c", "4096", "/dev/zero"),
                                  ("curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
                                   "--data-binary", "@-", url + "/upload"))).stdout
    assert big == "413"
    status, headers, _ = curl(gw, web1, url + "/nope", "-X", "POST", "--data-binary", "x" * 100)
    assert headers["x-frame-options"] == "DENY" and headers["x-release"] == "r1"
    logs = gw.query(web1, shell("docker logs {c} 2>&1", c=px)).stdout
    assert '"GET / HTTP/1.1" 200' in logs, "access log goes to the container's stdout"


def test_proxy_reload_switches_release_and_bad_config_is_refused_before_reload(gw, proxy_pair):
    web1, px, workdir, url = proxy_pair
    wait_answering(gw, web1, url + "/")
    gw.put(web1, render_site_conf(upstream="ops-test-no-such-upstream:3000", listen_port=80, max_body_bytes=1024,
                                  release="bad").encode(), f"{workdir}/conf.d/site.conf", mode=0o644)
    with pytest.raises(RemoteCommandFailed, match="test failed") as failed:
        gw.run(web1, nginx_test_argv(px))
    assert "host not found in upstream" in failed.value.stderr
    assert curl(gw, web1, url + "/")[1]["x-release"] == "r1", "the running config is untouched"
    upstream = px.replace("-px-", "-up-")
    gw.put(web1, render_site_conf(upstream=f"{upstream}:3000", listen_port=80, max_body_bytes=1024,
                                  release="r2").encode(), f"{workdir}/conf.d/site.conf", mode=0o644)
    gw.run(web1, nginx_test_argv(px))
    gw.run(web1, nginx_reload_argv(px))
    deadline = time.monotonic() + 10
    while curl(gw, web1, url + "/")[1]["x-release"] != "r2":
        assert time.monotonic() < deadline, "reload did not take effect"
        time.sleep(0.2)


def test_proxy_container_stops_gracefully_on_sigquit(gw, proxy_pair):
    web1, px, _, url = proxy_pair
    wait_answering(gw, web1, url + "/")
    info = json.loads(gw.query(web1, docker.inspect_argv(px)).stdout)[0]
    assert info["Config"]["StopSignal"] == "SIGQUIT"
    gw.run(web1, docker.stop_argv(px, 20))
    # 0, not 137: nginx exited on SIGQUIT itself, docker never had to kill it
    assert json.loads(gw.query(web1, docker.inspect_argv(px)).stdout)[0]["State"]["ExitCode"] == 0
