"""ops/sandbox: the pure command builders, known_hosts formatting, key pair, local.run."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import paramiko
import pytest

from ops import local
from ops.errors import LocalToolError
from ops.inventory import Host, load_environment
from ops.sandbox import fleet, images, keys, services

WEB1 = Host(name="web1", address="127.0.0.1", port=22101, roles=("web",), private_address="172.31.250.11")
IMAGE = "ops-sandbox/host:0123456789ab"


def test_network_create_argv():
    assert fleet.network_create_argv("ops-sandbox", "172.31.250.0/24") == (
        "docker", "network", "create", "--driver", "bridge", "--subnet", "172.31.250.0/24",
        "--label", "ops.sandbox=1", "ops-sandbox")


def test_volume_create_argv():
    assert fleet.volume_create_argv("web1") == (
        "docker", "volume", "create", "--label", "ops.sandbox=1", "--label", "ops.sandbox.host=web1",
        "ops-sandbox-web1-docker")


def test_host_command_makes_keys_starts_dockerd_then_execs_sshd():
    assert fleet.host_command("web1") == (
        "set -e; ssh-keygen -A; mkdir -p /run/sshd; "
        "rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid; "
        "(dockerd --cgroup-parent /ops-sandbox-web1 >>/var/log/dockerd.log 2>&1 &); "
        "exec /usr/sbin/sshd -D -e")


def test_host_run_argv():
    spec = fleet.spec_hash(WEB1, IMAGE, "ops-sandbox", {8101: 80})
    assert fleet.host_run_argv(WEB1, IMAGE, "ops-sandbox", {8101: 80}) == (
        "docker", "run", "-d",
        "--label", "ops.sandbox=1", "--label", "ops.sandbox.host=web1", "--label", f"ops.sandbox.spec={spec}",
        "--name", "ops-sandbox-web1", "--hostname", "web1",
        "--network", "ops-sandbox", "--ip", "172.31.250.11", "--network-alias", "web1",
        "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--security-opt", "systempaths=unconfined",
        "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "-v", "ops-sandbox-web1-docker:/var/lib/docker",
        "-p", "127.0.0.1:22101:22", "-p", "127.0.0.1:8101:80",
        IMAGE, "sh", "-c", fleet.host_command("web1"))


def test_host_run_argv_never_uses_privileged_and_publishes_on_loopback_only():
    argv = fleet.host_run_argv(WEB1, IMAGE, "ops-sandbox", {8101: 80, 9000: 9000})
    assert "--privileged" not in argv
    published = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
    assert published == ["127.0.0.1:22101:22", "127.0.0.1:8101:80", "127.0.0.1:9000:9000"]


def test_spec_hash_changes_with_image_ports_and_address():
    base = fleet.spec_hash(WEB1, IMAGE, "ops-sandbox", {8101: 80})
    assert base == fleet.spec_hash(WEB1, IMAGE, "ops-sandbox", {8101: 80})
    moved = Host(**{**WEB1.__dict__, "private_address": "172.31.250.99"})
    assert len({base,
                fleet.spec_hash(WEB1, "ops-sandbox/host:other", "ops-sandbox", {8101: 80}),
                fleet.spec_hash(WEB1, IMAGE, "ops-sandbox", {8101: 81}),
                fleet.spec_hash(moved, IMAGE, "ops-sandbox", {8101: 80})}) == 4


def test_authorized_keys_argv_passes_user_as_argument_and_key_on_stdin():
    argv = fleet.authorized_keys_argv("web1", "deploy")
    assert argv[:6] == ("docker", "exec", "-i", "ops-sandbox-web1", "sh", "-c")
    assert argv[-2:] == ("sh", "deploy")
    assert "deploy" not in argv[6]
    assert "chmod 0600" in argv[6] and "install -d -m 0700" in argv[6]


def test_exec_argvs():
    assert fleet.host_keys_argv("db1") == (
        "docker", "exec", "ops-sandbox-db1", "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub")
    assert fleet.inner_docker_info_argv("db1") == (
        "docker", "exec", "ops-sandbox-db1", "docker", "info", "--format", "{{.ServerVersion}}")


def test_list_labelled_argv():
    assert fleet.list_labelled_argv("container") == (
        "docker", "container", "ls", "--all", "--quiet", "--filter", "label=ops.sandbox=1")
    assert fleet.list_labelled_argv("volume") == ("docker", "volume", "ls", "--quiet", "--filter", "label=ops.sandbox=1")
    assert fleet.list_labelled_argv("network") == (
        "docker", "network", "ls", "--quiet", "--filter", "label=ops.sandbox=1")


def test_image_builders():
    assert images.debootstrap_argv("/tmp/x/rootfs") == (
        "debootstrap", "--variant=minbase", "bookworm", "/tmp/x/rootfs", "http://deb.debian.org/debian")
    assert images.tar_argv("/tmp/x/rootfs", "/c/b.tar") == (
        "tar", "--numeric-owner", "-C", "/tmp/x/rootfs", "-cf", "/c/b.tar", ".")
    assert images.import_argv("/c/b.tar") == (
        "docker", "import", "--change", "LABEL ops.sandbox=1", "--change", 'CMD ["/bin/bash"]',
        "/c/b.tar", "ops-sandbox/debian:bookworm")
    assert images.build_argv("ops-sandbox/host:abc") == (
        "docker", "build", "--pull=false", "--build-arg", "BASE=ops-sandbox/debian:bookworm",
        "--label", "ops.sandbox=1", "-t", "ops-sandbox/host:abc", "-")


def test_host_image_tag_depends_on_dockerfile_and_base():
    tag = images.host_image_tag("FROM x\n", "sha256:aaa")
    assert tag.startswith("ops-sandbox/host:") and len(tag.split(":")[1]) == 12
    assert tag == images.host_image_tag("FROM x\n", "sha256:aaa")
    assert tag != images.host_image_tag("FROM x\nRUN true\n", "sha256:aaa")
    assert tag != images.host_image_tag("FROM x\n", "sha256:bbb")


def test_dockerfile_bakes_no_host_keys_and_hides_no_failures():
    text = images.DOCKERFILE.read_text()
    assert "rm -f /etc/ssh/ssh_host_*" in text
    assert "PasswordAuthentication no" in text and "PermitRootLogin no" in text
    assert "| tail" not in text
    for pkg in ("openssh-server", "docker.io", "ca-certificates", "iptables", "procps", "postgresql-client", "curl"):
        assert pkg in text


def test_known_hosts_line_formats_port_and_drops_comment():
    assert keys.known_hosts_line("127.0.0.1", 22101, "ssh-ed25519 AAAAC3Nza root@web1") == (
        "[127.0.0.1]:22101 ssh-ed25519 AAAAC3Nza")
    assert keys.known_hosts_line("10.0.0.5", 22, "ssh-rsa AAAAB3 x") == "10.0.0.5 ssh-rsa AAAAB3"
    with pytest.raises(ValueError):
        keys.known_hosts_line("127.0.0.1", 22, "garbage")


def test_parse_host_keys_and_whole_file():
    out = ("ecdsa-sha2-nistp256 AAAAE2 root@web1\nssh-ed25519 AAAAC3 root@web1\n"
           "ssh-rsa AAAAB3 root@web1\n\ncat: nothing\n")
    found = keys.parse_host_keys(out)
    assert found == ["ecdsa-sha2-nistp256 AAAAE2", "ssh-ed25519 AAAAC3", "ssh-rsa AAAAB3"]
    text = keys.known_hosts_text([("127.0.0.1", 22101, found), ("127.0.0.1", 22103, ["ssh-ed25519 BBBB"])])
    assert text.splitlines()[1:] == [
        "[127.0.0.1]:22101 ecdsa-sha2-nistp256 AAAAE2",
        "[127.0.0.1]:22101 ssh-ed25519 AAAAC3",
        "[127.0.0.1]:22101 ssh-rsa AAAAB3",
        "[127.0.0.1]:22103 ssh-ed25519 BBBB",
    ]
    assert text.startswith("#")


def test_ensure_keypair_makes_a_0600_ed25519_key_paramiko_loads(tmp_path):
    key = tmp_path / "state" / "id_ed25519"
    public, created = keys.ensure_keypair(key)
    assert created
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert Path(f"{key}.pub").read_bytes() == public
    assert public.startswith(b"ssh-ed25519 ") and public.endswith(b" ops-sandbox\n")
    loaded = paramiko.Ed25519Key.from_private_key_file(str(key))
    assert public.split()[1].decode() == loaded.get_base64()
    again, created = keys.ensure_keypair(key)
    assert (again, created) == (public, False)


def test_service_builders(tmp_path):
    assert services.registry_argv("/s/registry.yml") == ("docker-registry", "serve", "/s/registry.yml")
    assert services.s3_argv("127.0.0.1", 9000, python="/v/bin/python") == (
        "/v/bin/python", "-m", "moto.server", "-H", "127.0.0.1", "-p", "9000")
    import yaml
    config = yaml.safe_load(services.registry_config_text(tmp_path / "data", "127.0.0.1", 5000))
    assert config["http"]["addr"] == "127.0.0.1:5000"
    assert config["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "data")
    assert "auth" not in config


def test_services_follow_the_inventory():
    env = load_environment("sandbox")
    svcs = services.services(env)
    assert (svcs["registry"].address, svcs["registry"].port) == ("127.0.0.1", 5000)
    assert svcs["registry"].probe_url == "http://127.0.0.1:5000/v2/"
    assert (svcs["s3"].address, svcs["s3"].port) == ("127.0.0.1", 9000)
    assert svcs["s3"].pid_file == env.ssh.key.parent / "s3.pid"


def test_local_run_missing_executable_and_failure_are_one_line_errors():
    with pytest.raises(LocalToolError) as err:
        local.run(["no-such-tool-xyz", "--flag"])
    assert "'no-such-tool-xyz' not found" in str(err.value)
    with pytest.raises(LocalToolError) as err:
        local.run([sys.executable, "-c", "import sys; print('first'); sys.stderr.write('bad thing\\n'); sys.exit(3)"])
    assert "exited 3: bad thing" in str(err.value) and "\n" not in str(err.value)
    assert local.run(["sh", "-c", "exit 4"], check=False).returncode == 4
    with pytest.raises(LocalToolError, match="timed out after 0.2s"):
        local.run(["sleep", "5"], timeout=0.2)
    assert local.run(["cat"], input=b"abc").stdout == b"abc"
