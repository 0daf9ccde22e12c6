"""A pull that fails because the registry is out of reach says so, naming the host, the
tunnel and the cause, instead of a bare "exit 1: docker pull ..."."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest

from ops import accessory, registry
from ops.commands import render
from ops.deploy import image
from ops.errors import RemoteCommandFailed
from ops.inventory import load_environment
from ops.masking import Masker
from ops.remote import RunResult
from tests.unit.test_accessory import FakeGateway as AccessoryGateway

REF = "localhost:5000/sandbox/app:abc123"
REFUSED = ('Error response from daemon: Get "http://localhost:5000/v2/": dial tcp [::1]:5000: '
           "connect: connection refused")


class PullGateway:
    """The image is absent; ``docker pull`` fails with ``stderr`` / ``exit_code``."""

    def __init__(self, env, *, stderr="", exit_code=1):
        self.env = env
        self.dry_run = False
        self.mask = Masker()
        self.stderr = stderr
        self.exit_code = exit_code
        self.tunnels = []

    def run(self, host, command, *, mutating=True, check=True, timeout=None, stdin=None):
        text = render(command)
        if text.startswith("docker pull"):
            raise RemoteCommandFailed(f"exit {self.exit_code}: {text}", host=host.name, exit_code=self.exit_code,
                                      stderr=self.stderr)
        return RunResult(host.name, text, exit_code=1)  # image inspect: not there

    def query(self, host, command, **kwargs):
        return self.run(host, command, mutating=False, **kwargs)

    @contextlib.contextmanager
    def tunnel(self, host, **kwargs):
        self.tunnels.append(kwargs)
        yield


@pytest.fixture
def env():
    return load_environment("sandbox")  # registry.tunnel: true


@pytest.mark.parametrize("stderr, cause", [
    (REFUSED, "connect: connection refused"),
    ('Error response from daemon: Get "http://localhost:5000/v2/": EOF', "EOF"),
    ("Error response from daemon: Get \"https://reg.example.com/v2/\": dial tcp: lookup reg.example.com: "
     "no such host", "no such host"),
    ('Error response from daemon: Get "http://localhost:5000/v2/": dial tcp 127.0.0.1:5000: i/o timeout',
     "i/o timeout"),
])
def test_pull_through_the_tunnel_names_the_registry_host_tunnel_and_cause(env, stderr, cause):
    web1 = env.hosts["web1"]
    gw = PullGateway(env, stderr=stderr)
    with pytest.raises(registry.RegistryUnreachable) as excinfo:
        image.pull(gw, web1, REF)
    err = excinfo.value
    assert err.host == "web1"
    assert err.message.startswith(f"registry {REF} unreachable from web1 through the SSH tunnel (")
    assert err.message.endswith(f"{cause})")
    assert "inv doctor --host sandbox" in err.hint
    assert "127.0.0.1:5000" in err.hint
    assert "\n" not in str(err)
    assert gw.tunnels, "the pull ran inside the tunnel"


def test_a_session_lost_during_the_pull_is_reported_as_unreachable_too(env):
    gw = PullGateway(env, stderr="", exit_code=-1)
    with pytest.raises(registry.RegistryUnreachable, match=r"ended without an exit status \(exit -1\)"):
        image.pull(gw, env.hosts["web1"], REF)


def test_without_a_tunnel_the_message_does_not_mention_one(env):
    direct = dataclasses.replace(env, registry=dataclasses.replace(env.registry, tunnel=False))
    gw = PullGateway(direct, stderr=REFUSED)
    with pytest.raises(registry.RegistryUnreachable) as excinfo:
        image.pull(gw, direct.hosts["web1"], REF)
    assert "tunnel" not in excinfo.value.message
    assert "DNS, firewall, proxy" in excinfo.value.hint


def test_a_missing_tag_is_not_mistaken_for_an_unreachable_registry(env):
    gw = PullGateway(env, stderr=f"Error response from daemon: manifest for {REF} not found: manifest unknown")
    with pytest.raises(RemoteCommandFailed) as excinfo:
        image.pull(gw, env.hosts["web1"], REF)
    assert type(excinfo.value) is RemoteCommandFailed


class UnreachableAccessoryGateway(AccessoryGateway):
    def run(self, host, command, **kwargs):
        if render(command).startswith("docker pull"):
            raise RemoteCommandFailed("exit 1: docker pull", host=host.name, exit_code=1, stderr=REFUSED)
        return super().run(host, command, **kwargs)


def test_accessory_boot_names_the_unreachable_registry(tmp_path, env):
    env_file = tmp_path / "app.env"
    env_file.write_text("POSTGRES_USER=athlete\nPOSTGRES_PASSWORD=Zx9-very-secret-password_42\nPOSTGRES_DB=a\n")
    env_file.chmod(0o600)
    # NOTE: no pitr: this is about the registry, not the archive's secrets in the sandbox's ops env file.
    env = dataclasses.replace(env, env_file=env_file, pitr=None)
    with pytest.raises(registry.RegistryUnreachable, match="unreachable from db1 through the SSH tunnel"):
        accessory.boot(UnreachableAccessoryGateway(env), "postgres")
