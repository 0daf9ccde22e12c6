"""inv prune when the fleet moved between the plan and the apply: that host is refused and keeps
everything; the lock is released; the error names the host."""

from __future__ import annotations

import subprocess

import pytest

from ops import prune
from ops.deploy.release import current_release_id
from ops.errors import OpsError
from ops.layout import Layout
from ops.remote import Gateway
from ops.sandbox.fleet import container_name
from tests.faults.helpers import assert_lock_free
from tests.support import deployed

deployed_app = deployed.deployed_app  # the shared fixture, under its name
OLD = "20200101T000000Z-prunefault"


def on_web2(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container_name("web2"), *argv], capture_output=True, text=True,
                          timeout=60)


def test_a_host_whose_current_release_changed_since_the_plan_is_refused_and_keeps_everything(deployed_app,
                                                                                          sandbox_env):
    layout = Layout(sandbox_env)
    old_dir = layout.release_dir(OLD)
    current_file = layout.path("current")
    assert on_web2("su", "deploy", "-c", f"mkdir -p {old_dir} && touch {old_dir}/app.env").returncode == 0
    web2 = sandbox_env.hosts["web2"]
    with Gateway(sandbox_env) as gw:
        current = current_release_id(gw, web2)
        _, surveys = prune.plan(gw, [web2])
        assert old_dir in surveys[0].release_dirs
        # Between the plan and the apply, the host's current release changes (another deploy).
        on_web2("su", "deploy", "-c", f"printf '%s\\n' {OLD} > {current_file}")
        try:
            with pytest.raises(OpsError) as err:
                prune.apply(gw, surveys)
        finally:
            on_web2("su", "deploy", "-c", f"printf '%s\\n' {current} > {current_file}")
    assert "web2: the current release changed since the plan" in str(err.value)
    assert on_web2("test", "-d", old_dir).returncode == 0
    assert_lock_free()
    on_web2("rm", "-rf", old_dir)
