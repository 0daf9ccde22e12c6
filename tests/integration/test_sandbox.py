"""The sandbox fleet itself: containers, SSH with the generated key and known_hosts, inner
dockerd, registry, bucket; ``up`` is idempotent; ``down`` leaves nothing (runs last, then
brings the fleet back for any later test)."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import paramiko
import pytest

from ops import sandbox
from ops.sandbox import fleet, services

pytestmark = pytest.mark.integration


def docker(*args: str) -> str:
    return subprocess.run(("docker", *args), capture_output=True, text=True, check=True, timeout=60).stdout


def labelled(kind: str) -> list[str]:
    return docker(*fleet.list_labelled_argv(kind)[1:]).split()


def http_status(url: str) -> int | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=3) as resp:
            return resp.status
    except OSError:
        return None


def ssh_client(env, host) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(env.ssh.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host.address, port=host.port, username=host.user, key_filename=str(env.ssh.key),
                   look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
    return client


def run(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    _, out, err = client.exec_command(command, timeout=30)
    code = out.channel.recv_exit_status()
    return code, out.read().decode(), err.read().decode()


def container_ids() -> dict[str, str]:
    rows = docker("container", "ls", "--all", "--filter", "label=ops.sandbox=1",
                  "--format", "{{.Names}} {{.ID}} {{.State}}").split("\n")
    return {name: f"{cid} {state}" for name, cid, state in (r.split() for r in rows if r.strip())}


def assert_nothing_left(env) -> None:
    """No labelled container, volume or network; services stopped; generated state gone."""
    assert labelled("container") == []
    assert labelled("volume") == []
    assert labelled("network") == []
    for host in env.hosts.values():
        assert subprocess.run(("docker", "volume", "inspect", fleet.volume_name(host.name)),
                              capture_output=True, timeout=30).returncode != 0
    assert subprocess.run(("docker", "network", "inspect", env.sandbox.network),
                          capture_output=True, timeout=30).returncode != 0
    for svc in services.services(env).values():
        assert services.running_pid(svc) is None
        assert not svc.pid_file.exists()
        assert fleet.port_free(svc.port, svc.address), f"{svc.name} still listens on {svc.port}"
    for host in env.hosts.values():
        assert fleet.port_free(host.port), f"ssh port of {host.name} still taken"
        for port in env.sandbox.publish.get(host.name, {}):
            assert fleet.port_free(port)
    key = env.ssh.key
    for path in (key, key.with_name(key.name + ".pub"), env.ssh.known_hosts, *services.generated_files(env)):
        assert not path.exists(), f"{path} left behind"


def test_one_running_container_per_inventory_host(sandbox_env):
    ids = container_ids()
    assert sorted(ids) == sorted(fleet.container_name(h) for h in sandbox_env.hosts)
    assert all(v.endswith(" running") for v in ids.values())
    for host in sandbox_env.hosts.values():
        data = json.loads(docker("container", "inspect", fleet.container_name(host.name)))[0]
        net = data["NetworkSettings"]["Networks"][sandbox_env.sandbox.network]
        assert net["IPAddress"] == host.private_address
        ssh = data["NetworkSettings"]["Ports"]["22/tcp"]
        assert ssh == [{"HostIp": "127.0.0.1", "HostPort": str(host.port)}]


@pytest.mark.parametrize("name", ["web1", "web2", "db1"])
def test_host_accepts_deploy_key_under_reject_policy_and_runs_inner_docker(sandbox_env, name):
    host = sandbox_env.hosts[name]
    client = ssh_client(sandbox_env, host)
    try:
        code, out, _ = run(client, "id -un; hostname")
        assert code == 0 and out.split() == [host.user, name]
        code, out, err = run(client, "docker info --format '{{.ServerVersion}} {{.Driver}}'")
        assert code == 0, err
        assert "overlay2" in out
        code, out, _ = run(client, "id -u")
        assert code == 0 and out.strip() != "0"
    finally:
        client.close()


def test_unknown_host_key_is_rejected(sandbox_env, tmp_path):
    host = sandbox_env.hosts["web1"]
    client = paramiko.SSHClient()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    client.load_host_keys(str(empty))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException):
        client.connect(host.address, port=host.port, username=host.user, key_filename=str(sandbox_env.ssh.key),
                       look_for_keys=False, allow_agent=False, timeout=10)
    client.close()


def test_password_and_root_logins_are_refused(sandbox_env):
    host = sandbox_env.hosts["web1"]
    transport = paramiko.Transport((host.address, host.port))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.AuthenticationException):
            transport.auth_password(host.user, "anything")
        key = paramiko.Ed25519Key.from_private_key_file(str(sandbox_env.ssh.key))
        with pytest.raises(paramiko.AuthenticationException):
            transport.auth_publickey("root", key)
    finally:
        transport.close()


def test_registry_answers_v2(sandbox_env):
    assert http_status(f"http://{sandbox_env.registry.url}/v2/") == 200


def test_bucket_exists(sandbox_env):
    client = services.s3_client(sandbox_env)
    client.head_bucket(Bucket=sandbox_env.s3.bucket)
    names = [b["Name"] for b in client.list_buckets()["Buckets"]]
    assert sandbox_env.s3.bucket in names


def test_status_reports_hosts_and_services(sandbox_env):
    rows = {r.name: r for r in sandbox.status(sandbox_env)}
    for host in sandbox_env.hosts.values():
        assert rows[host.name].state == "running" and rows[host.name].port == host.port
        assert rows[host.name].image.startswith("ops-sandbox/host:")
    assert rows["registry"].answering and rows["registry"].pid
    assert rows["s3"].answering and rows["s3"].pid


def test_up_twice_is_idempotent_and_fast(sandbox_env):
    before = container_ids()
    known = sandbox_env.ssh.known_hosts.read_text()
    key = sandbox_env.ssh.key.read_bytes()
    pids = {n: services.running_pid(s) for n, s in services.services(sandbox_env).items()}
    report = sandbox.up(sandbox_env)
    assert container_ids() == before, str(report)
    assert sandbox_env.ssh.known_hosts.read_text() == known
    assert sandbox_env.ssh.key.read_bytes() == key
    assert {n: services.running_pid(s) for n, s in services.services(sandbox_env).items()} == pids
    client = ssh_client(sandbox_env, sandbox_env.hosts["db1"])
    client.close()


@pytest.mark.last
def test_down_removes_every_container_volume_and_network(sandbox_env):
    report = sandbox.down(sandbox_env)
    try:
        assert_nothing_left(sandbox_env)
        assert "ops-sandbox/debian:bookworm" in docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
        assert sandbox.down(sandbox_env).steps, "a second down is harmless"
        assert_nothing_left(sandbox_env)
    finally:
        sandbox.up(sandbox_env)   # later tests keep a fleet
    assert str(report)
    client = ssh_client(sandbox_env, sandbox_env.hosts["web1"])
    client.close()
