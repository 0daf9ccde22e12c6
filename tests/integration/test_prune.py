"""inv prune on the sandbox fleet: what a rollback needs stays, old secrets and leftovers go."""

from __future__ import annotations

import subprocess

from ops.deploy.release import current_release_id
from ops.layout import Layout
from ops.remote import Gateway
from ops.sandbox.fleet import container_name
from tests.support import deployed
from tests.support.deployed import serving_everywhere

from .conftest import inv

deployed_app = deployed.deployed_app  # the shared fixture, under its name

OLD = "20200101T000000Z-prunetest"
JUNK_IMAGE = "localhost:5000/athlete-platform/web:prunetest-old"
EXEC = "athlete-platform-exec-prunetest"


def on_web2(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container_name("web2"), *argv], capture_output=True, text=True,
                          timeout=120)


def test_prune_plans_then_removes_old_release_dirs_leftover_containers_and_unused_images(deployed_app, sandbox_env):
    layout = Layout(sandbox_env)
    old_dir = layout.release_dir(OLD)
    assert on_web2("su", "deploy", "-c", f"mkdir -p {old_dir} && echo SECRET=old > {old_dir}/app.env").returncode == 0
    image = on_web2("docker", "inspect", "--format", "{{.Config.Image}}", layout.proxy_container).stdout.strip()
    on_web2("docker", "rm", "-f", EXEC)
    assert on_web2("docker", "run", "--name", EXEC, "--label", "ops.app=athlete-platform", "--label", "ops.role=exec",
                   image, "true").returncode == 0
    assert on_web2("docker", "tag", image, JUNK_IMAGE).returncode == 0
    with Gateway(sandbox_env) as gw:
        current = current_release_id(gw, sandbox_env.hosts["web2"])

    plan = inv("prune", "--host", "sandbox:web2", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert f"remove release directory {old_dir} (its env file holds that release's secrets)" in plan.stdout
    assert f"remove stopped container {EXEC}" in plan.stdout and f"remove image {JUNK_IMAGE}" in plan.stdout
    assert f"kept for rollback: {current}" in plan.stdout
    assert layout.release_dir(current) not in plan.stdout
    assert on_web2("test", "-d", old_dir).returncode == 0  # the dry run changed nothing

    done = inv("prune", "--host", "sandbox:web2", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "web2: removed " in done.stdout
    assert on_web2("test", "-e", old_dir).returncode == 1
    assert on_web2("docker", "inspect", EXEC).returncode == 1
    assert on_web2("docker", "image", "inspect", JUNK_IMAGE).returncode == 1
    assert on_web2("test", "-f", f"{layout.release_dir(current)}/app.env").returncode == 0
    assert serving_everywhere(deployed_app.env) == deployed_app.version
    # What a rollback steps back to kept its env file (on a fleet with one release only, there is
    # no rollback target at all: then the plan says so instead).
    rollback = inv("rollback", "--host", "sandbox", "--dry-run")
    assert "is gone from the host" not in rollback.stderr
    assert rollback.returncode == 0 or "no a release before the current one" in rollback.stderr, rollback.stderr
    assert "prune" in inv("audit", "--host", "sandbox:web2", "--lines", "2").stdout
