"""The SSH session the gateway builds is the inventory's alone: no Fabric config files,
no agent, keepalives on, SFTP bounded by a timeout, and ssh.key problems named as such.

No SSH server: connections are inspected before opening, or opened against fakes.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import fabric
import paramiko
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ops.errors import CommandTimeout, ConfigError, HostError, HostUnreachable
from ops.inventory import Environment, load_environment
from ops.remote import Gateway, SealedConfig, check_key_file
from tests.unit.test_gateway import closed_ports

HOSTILE_FABRIC_CONFIG = {
    "connect_kwargs": {"allow_agent": True, "look_for_keys": True, "key_filename": "/home/op/.ssh/id_rsa"},
    "forward_agent": True,
    "timeouts": {"connect": 999},
    "gateway": "nc bastion 22",
    "user": "mallory",
    "run": {"echo": True, "env": {"LEAK": "1"}},
}


def make_env(tmp_path: Path, **ssh) -> Environment:
    data = {
        "app": "shop",
        "image": "shop/web",
        "registry": {"url": "127.0.0.1:5000"},
        "ssh": {"user": "deploy", "known_hosts": "inventory/test.known_hosts", "connect_timeout": 2, **ssh},
        "hosts": {"web1": {"address": "127.0.0.1", "port": closed_ports(1)[0], "roles": ["web"]}},
    }
    inv = tmp_path / "inventory"
    inv.mkdir(exist_ok=True)
    (inv / "test.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    return load_environment("test", inv)


@pytest.fixture
def hostile_operator(tmp_path, monkeypatch) -> Path:
    """An operator machine whose Fabric/Invoke config would forward the agent everywhere."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".fabric.yaml").write_text(yaml.safe_dump(HOSTILE_FABRIC_CONFIG))
    (home / ".fabric.json").write_text(json.dumps(HOSTILE_FABRIC_CONFIG))
    (home / ".fabric.py").write_text("forward_agent = True\nconnect_kwargs = {'allow_agent': True}\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "fabric.yaml").write_text(yaml.safe_dump(HOSTILE_FABRIC_CONFIG))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(project)
    monkeypatch.setenv("FABRIC_RUN_ECHO", "1")
    monkeypatch.setenv("FABRIC_FORWARD_AGENT", "1")
    monkeypatch.setenv("FABRIC_TIMEOUTS_CONNECT", "999")
    monkeypatch.setenv("FABRIC_USER", "mallory")
    return home


def test_the_hostile_home_would_forward_the_agent_with_a_plain_fabric_config(hostile_operator):
    # The premise of the tests below: Fabric's own Config does read ~/.fabric.yaml.
    conn = fabric.Connection("127.0.0.1", config=fabric.Config(overrides={"load_ssh_configs": False}))
    assert conn.forward_agent is True
    assert conn.config.timeouts.connect == 999


def test_gateway_connection_ignores_fabric_config_files_and_env_vars(tmp_path, hostile_operator):
    env = make_env(tmp_path)
    conn = Gateway(env)._new_connection(env.hosts["web1"])

    assert conn.forward_agent is False
    assert conn.connect_kwargs["allow_agent"] is False
    assert conn.connect_kwargs["look_for_keys"] is False
    assert "key_filename" not in conn.connect_kwargs
    assert conn.connect_timeout == 2
    assert not conn.gateway
    assert conn.user == "deploy"
    assert conn.config.forward_agent is False
    assert conn.config.timeouts.connect == 2
    assert dict(conn.config.connect_kwargs) == {}
    assert conn.config.run.echo is False
    assert dict(conn.config.run.env) == {}
    assert conn.config.gateway is None
    assert conn.config.authentication.strategy_class is None


def test_sealed_config_reads_no_file_even_when_pointed_at_one_or_cloned(tmp_path, hostile_operator):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "fabric.yaml").write_text(yaml.safe_dump(HOSTILE_FABRIC_CONFIG))
    config = SealedConfig(system_prefix=f"{etc}/", user_prefix=f"{hostile_operator}/.",
                          project_location=str(Path.cwd()), runtime_path=str(etc / "fabric.yaml"))
    config.load_project()
    config.load_runtime()
    config.load_shell_env()

    for cfg in (config, config.clone()):
        assert cfg.forward_agent is False
        assert dict(cfg.connect_kwargs) == {}
        assert cfg.timeouts.connect is None
        assert cfg.run.echo is False


def test_gateway_passes_only_the_inventory_key_to_paramiko(tmp_path, hostile_operator):
    key = write_key(tmp_path / "deploy_ed25519")
    env = make_env(tmp_path, key=str(key))
    conn = Gateway(env)._new_connection(env.hosts["web1"])
    assert conn.connect_kwargs["key_filename"] == [str(key)]


# -- keepalive ------------------------------------------------------------------------


class FakeTransport:
    active = True

    def __init__(self):
        self.keepalive = None

    def set_keepalive(self, interval):
        self.keepalive = interval


@pytest.fixture
def fake_open(monkeypatch) -> FakeTransport:
    """fabric.Connection.open succeeds without a server; its transport records keepalives."""
    transport = FakeTransport()

    def open_(conn):
        conn.transport = transport

    monkeypatch.setattr(fabric.Connection, "open", open_)
    monkeypatch.setattr(paramiko.SSHClient, "get_transport", lambda _client: transport)
    return transport


def test_every_opened_session_sends_keepalives_every_15s_by_default(tmp_path, fake_open):
    env = make_env(tmp_path)
    Gateway(env).connection(env.hosts["web1"])
    assert fake_open.keepalive == 15


def test_keepalive_interval_comes_from_the_inventory(tmp_path, fake_open):
    env = make_env(tmp_path, keepalive=40)
    Gateway(env).connection(env.hosts["web1"])
    assert fake_open.keepalive == 40


# -- SFTP timeout ---------------------------------------------------------------------


class FakeChannel:
    def __init__(self):
        self.timeout = None

    def settimeout(self, value):
        self.timeout = value


class FakeFile:
    def __init__(self, sftp):
        self.sftp = sftp

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, data):
        if self.sftp.hang:
            raise TimeoutError("timed out")
        self.sftp.written = data


class FakeSFTP:
    def __init__(self, *, hang=False, lost=False):
        self.channel = FakeChannel()
        self.hang = hang
        self.lost = lost
        self.written = None
        self.renamed = None
        self.removed = []

    def get_channel(self):
        return self.channel

    def open(self, path, mode):
        if self.lost:
            raise EOFError()
        return FakeFile(self)

    def chmod(self, path, mode):
        pass

    def posix_rename(self, src, dst):
        self.renamed = (src, dst)

    def remove(self, path):
        self.removed.append(path)


def gateway_with_sftp(env: Environment, sftp: FakeSFTP) -> Gateway:
    gw = Gateway(env)

    class Conn:
        def sftp(self):
            return sftp

    gw.connection = lambda host: Conn()
    return gw


def test_put_bounds_every_sftp_operation_by_the_command_timeout(tmp_path):
    env = make_env(tmp_path, command_timeout=42)
    sftp = FakeSFTP()
    gateway_with_sftp(env, sftp).put(env.hosts["web1"], b"A=1\n", "/srv/shop/env")
    assert sftp.channel.timeout == 42
    assert sftp.written == b"A=1\n"
    assert sftp.renamed[1] == "/srv/shop/env"


def test_put_to_a_host_that_stops_answering_raises_a_timeout_not_a_hang(tmp_path):
    env = make_env(tmp_path, command_timeout=42)
    sftp = FakeSFTP(hang=True)
    with pytest.raises(CommandTimeout) as excinfo:
        gateway_with_sftp(env, sftp).put(env.hosts["web1"], b"A=1\n", "/srv/shop/env")
    assert excinfo.value.host == "web1"
    assert excinfo.value.message == "no answer for 42s while writing /srv/shop/env over SFTP"
    assert sftp.renamed is None


def test_put_over_a_lost_session_says_the_session_was_lost(tmp_path):
    env = make_env(tmp_path)
    with pytest.raises(HostUnreachable, match="SSH session lost while writing /srv/shop/env"):
        gateway_with_sftp(env, FakeSFTP(lost=True)).put(env.hosts["web1"], b"x", "/srv/shop/env")


def test_put_that_the_host_refuses_is_still_a_write_error(tmp_path):
    env = make_env(tmp_path)
    sftp = FakeSFTP()
    sftp.open = lambda path, mode: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
    with pytest.raises(HostError, match="cannot write /srv/shop/env: .*Permission denied") as excinfo:
        gateway_with_sftp(env, sftp).put(env.hosts["web1"], b"x", "/srv/shop/env")
    assert type(excinfo.value) is HostError


# -- ssh.key problems are named as such -----------------------------------------------


def write_key(path: Path, *, passphrase: bytes | None = None) -> Path:
    key = ed25519.Ed25519PrivateKey.generate()
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption))
    path.chmod(0o600)
    return path


def test_missing_ssh_key_file_is_named_instead_of_blaming_the_host(tmp_path):
    missing = tmp_path / "nope_ed25519"
    env = make_env(tmp_path, key=str(missing))
    with contextlib.closing(Gateway(env)) as gw, pytest.raises(ConfigError) as excinfo:
        gw.run(env.hosts["web1"], ("true",))
    assert excinfo.value.message == f"SSH key file {missing} not found"
    assert excinfo.value.hint == "set ssh.key in test.yml to the deploy key's private key file"
    assert "host up" not in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_passphrase_protected_ssh_key_is_named_as_encrypted(tmp_path):
    key = write_key(tmp_path / "locked_ed25519", passphrase=b"correct horse")
    with pytest.raises(ConfigError, match=f"SSH key file {key} is encrypted") as excinfo:
        check_key_file(key, "prod.yml")
    assert "without a passphrase" in excinfo.value.hint


def test_a_file_that_is_not_a_private_key_is_named_as_such(tmp_path):
    bogus = tmp_path / "id.pub"
    bogus.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO6b5ZB2Yv9cN7Yy9i8K3zq8 op@laptop\n")
    with pytest.raises(ConfigError, match=f"SSH key file {bogus} is not a private key ops can read"):
        check_key_file(bogus, "prod.yml")


def test_unreadable_ssh_key_is_named_as_unreadable(tmp_path, monkeypatch):
    key = write_key(tmp_path / "deploy_ed25519")
    # NOTE: chmod 000 does not stop root (these tests may run as root): fake the denial.
    monkeypatch.setattr(paramiko.PKey, "from_path", lambda *_a, **_k: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied", str(key))))
    with pytest.raises(ConfigError, match=f"SSH key file {key} is not readable by this user"):
        check_key_file(key, "prod.yml")


def test_a_readable_key_passes_and_the_closed_port_is_then_the_reported_problem(tmp_path):
    key = write_key(tmp_path / "deploy_ed25519")
    env = make_env(tmp_path, key=str(key))
    with contextlib.closing(Gateway(env)) as gw, pytest.raises(HostUnreachable, match="cannot reach"):
        gw.run(env.hosts["web1"], ("true",))
