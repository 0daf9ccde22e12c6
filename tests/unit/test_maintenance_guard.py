"""Deploys and rollbacks are refused while the maintenance page is on (ops.maintenance)."""

from __future__ import annotations

import pytest

from ops.cli import exit_code
from ops.errors import ConfigError
from ops.inventory import load_environment
from ops.maintenance import refuse_during_maintenance
from ops.remote import RunResult
from tests.support.fakes import sequential_map


class FakeGateway:
    """``docker inspect`` of the maintenance container answers on the hosts in ``on``."""

    def __init__(self, env, on: set[str]):
        self.env, self.on, self.asked = env, on, []

    def map(self, fn, hosts=None):
        return sequential_map(fn, hosts)

    def query(self, host, command, **kwargs):
        self.asked.append((host.name, command))
        if host.name in self.on:
            return RunResult(host.name, " ".join(command), stdout="running\n")
        return RunResult(host.name, " ".join(command), stderr="Error: No such object", exit_code=1)


@pytest.fixture
def env():
    return load_environment("sandbox")


def test_a_deploy_with_the_page_on_one_host_is_a_usage_error_naming_it_and_the_fix(env):
    gw = FakeGateway(env, {"web2"})
    with pytest.raises(ConfigError) as err:
        refuse_during_maintenance(gw, list(env.hosts.values()), "deploy")
    assert str(err.value) == (
        "deploy refused: web2 is in maintenance (athlete-platform-maintenance answers 503); nothing was changed — "
        "inv maintenance.off --host sandbox brings the current release back; then inv deploy --host sandbox "
        "(RUNBOOK.md 'maintenance')")
    assert exit_code(err.value) == 2
    assert {name for name, _ in gw.asked} == {"web1", "web2"}  # only web hosts are asked
    assert all("athlete-platform-maintenance" in argv for _, argv in gw.asked)


def test_a_rollback_is_refused_too_and_without_the_page_nothing_is_refused(env):
    with pytest.raises(ConfigError, match=r"^rollback refused: web1, web2 are in maintenance"):
        refuse_during_maintenance(FakeGateway(env, {"web1", "web2"}), list(env.hosts.values()), "rollback")
    refuse_during_maintenance(FakeGateway(env, set()), list(env.hosts.values()), "deploy")
