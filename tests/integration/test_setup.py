"""``inv setup`` on a bare Debian host of the sandbox (sshd + root with the operator's key).

One throwaway inventory (a copy of sandbox.yml plus the host ``bare1``, its own
known_hosts) for the module; the tests run in file order on the same host.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time

import pytest
import yaml

from ops.commands import shell
from ops.inventory import load_environment
from ops.remote import Gateway
from tests.support import bare_host

from .conftest import ROOT, inv

# A TCP server in the base image's perl: says hello to each client.
PROBE = ("perl", "-MIO::Socket::INET", "-e",
         '$s=IO::Socket::INET->new(LocalPort=>7000,Listen=>5,ReuseAddr=>1) or die; '
         'while($c=$s->accept){print $c "hello\n"; close $c}')


@pytest.fixture(scope="module")
def bare_env(sandbox_env):
    raw = yaml.safe_load(sandbox_env.path.read_text())
    name = f"setup-{secrets.token_hex(3)}"
    known_hosts = ROOT / ".sandbox" / f"{name}.known_hosts"
    raw["ssh"]["known_hosts"] = str(known_hosts.relative_to(ROOT))
    raw["hosts"][bare_host.NAME] = {"address": "127.0.0.1", "port": bare_host.SSH_PORT,
                                    "private_address": bare_host.ADDRESS, "roles": ["web"]}
    raw["setup"] = {"admin_user": "root", "docker_daemon": {
        # Docker-in-Docker on this machine: the inner engine's cgroups under the host container's.
        "cgroup-parent": f"/{bare_host.CONTAINER}",
        "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "5"}}}
    path = ROOT / "inventory" / f"{name}.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    bare_host.start(sandbox_env.sandbox.network, (ROOT / ".sandbox" / "id_ed25519.pub").read_text())
    try:
        inv("hosts.trust", "--host", f"{name}:{bare_host.NAME}", "--yes", check=True)
        yield name
    finally:
        path.unlink(missing_ok=True)
        known_hosts.unlink(missing_ok=True)
        bare_host.remove()


def setup(env_name: str, *args: str) -> subprocess.CompletedProcess:
    return inv("setup", "--host", f"{env_name}:{bare_host.NAME}", *args, timeout=1500)


def reach_from_web1(sandbox_env, port: int) -> str:
    """What a TCP client on web1 (another host on the network) reads from bare1:port in 3 s."""
    with Gateway(sandbox_env) as gw:
        res = gw.query(sandbox_env.hosts["web1"], shell(
            "timeout 3 bash -c 'exec 3<>/dev/tcp/{a}/{p} && head -c 100 <&3' 2>&1; echo \" exit=$?\"",
            a=bare_host.ADDRESS, p=port), check=False)
    return res.stdout.strip()


def answers_hello(sandbox_env, port: int, tries: int = 10) -> bool:
    """The probe server answers from web1 (a few tries: it may still be starting)."""
    for _ in range(tries):
        if "hello" in reach_from_web1(sandbox_env, port):
            return True
        time.sleep(0.5)
    return False


def test_dry_run_on_a_bare_host_lists_every_step_and_installs_nothing(bare_env):
    out = setup(bare_env, "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    for step in ("packages: apt-get install docker.io nftables curl", "docker engine: start dockerd",
                 "deploy user: create user deploy", "app dir: create /srv/athlete-platform owned by deploy",
                 "firewall: nftables: ssh 22, open 80"):
        assert step in out.stdout, out.stdout
    assert "nothing was changed" in out.stdout
    assert bare_host.root("dpkg-query -W docker.io", check=False).returncode != 0
    assert bare_host.root("id deploy", check=False).returncode != 0


def test_setup_installs_docker_creates_the_deploy_user_and_passes_doctor(bare_env):
    out = setup(bare_env, "--yes", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)["data"]
    assert data["changed"] == [bare_host.NAME]
    assert all(check["ok"] for check in data["doctor"][0]["checks"]), data["doctor"]
    assert "Traceback" not in out.stderr
    # As the deploy user, with the inventory's key, on a new connection: Docker answers.
    env = load_environment(bare_env)
    with Gateway(env) as gw:
        host = env.hosts[bare_host.NAME]
        assert gw.query(host, ("docker", "info", "--format", "{{.ServerVersion}}")).stdout.strip()
        assert gw.query(host, ("stat", "-c", "%U %a", env.app_dir)).stdout.split() == ["deploy", "750"]
    daemon = json.loads(bare_host.root("cat /etc/docker/daemon.json").stdout)
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "5"}
    # No password login for the deploy user, yet not a locked account.
    assert bare_host.root("getent shadow deploy | cut -d: -f2").stdout.decode().strip() == "*"


def test_the_firewall_lets_published_proxy_ports_through_and_drops_other_published_ports(bare_env, sandbox_env):
    image = "ops-sandbox/debian:bookworm"
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    subprocess.run(["docker", "exec", "-i", bare_host.CONTAINER, "docker", "load", "-q"], stdin=save.stdout,
                   check=True, capture_output=True, timeout=300)
    save.wait(timeout=60)
    bare_host.root("docker rm -f probe >/dev/null 2>&1 || true")
    bare_host.docker("exec", bare_host.CONTAINER, "docker", "run", "-d", "--name", "probe",
                     "-p", "80:7000", "-p", "8080:7000", image, *PROBE)
    assert answers_hello(sandbox_env, 80)
    blocked = reach_from_web1(sandbox_env, 8080)
    assert "hello" not in blocked and "exit=124" in blocked, blocked  # dropped: the client times out
    # Without our table the same port answers: it is the firewall that drops it.
    bare_host.root("nft delete table inet ops_firewall")
    assert answers_hello(sandbox_env, 8080)


def test_a_second_setup_changes_only_what_drifted_then_nothing(bare_env, sandbox_env):
    out = setup(bare_env, "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "packages: ok (nothing to do)" in out.stdout and "deploy user: ok (nothing to do)" in out.stdout
    assert "firewall: nftables" in out.stdout  # deleted by the test above
    assert setup(bare_env, "--yes").returncode == 0
    assert "exit=124" in reach_from_web1(sandbox_env, 8080)
    again = setup(bare_env, "--yes")
    assert again.returncode == 0 and "nothing to do: every host is set up" in again.stdout, again.stdout


def test_setup_of_an_unknown_host_is_one_line_and_exit_2(bare_env):
    out = inv("setup", "--host", f"{bare_env}:nosuch", "--dry-run")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "nosuch" in out.stderr
