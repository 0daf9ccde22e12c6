"""The sample app deployed on the sandbox fleet once, for the on-call tests (status, smoke,
maintenance, logs, prune, notifications).

``deployed_app`` (module scope: each test file gets the fleet serving a known release)
boots Postgres, builds the sample app from a temp git checkout and deploys it with the
library; a second call in the same session finds it serving and does not deploy again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ops.deploy.pipeline import DeployRequest, deploy
from ops.deploy.release import current_release
from ops.deploy.switch import local_site
from ops.inventory import Environment
from ops.remote import Gateway
from ops.status import parse_probe, probe_argv
from tests.support.app_repo import make_app_repo
from tests.support.fleet import inv


@dataclasses.dataclass
class Deployed:
    env: Environment          # the sandbox env with build.source = the temp checkout
    version: str
    lines: list[str]

    def redeploy(self, **kw):
        return deploy(self.env, DeployRequest(**kw), self.lines.append)


def serving_everywhere(env: Environment) -> str | None:
    """The version every web host serves through nginx, as its records say; None otherwise."""
    with Gateway(env) as gw:
        seen = set()
        for host in env.with_roles("web"):
            release = current_release(gw, host)
            res = gw.query(host, probe_argv(*local_site(gw, host, env.health.path)), check=False)
            probe = parse_probe(res.stdout)
            if release is None or probe.status != 200 or probe.version != release.version:
                return None
            seen.add(release.version)
    return seen.pop() if len(seen) == 1 else None


def deploy_sample(sandbox_env: Environment, tmp: Path) -> Deployed:
    repo = make_app_repo(tmp / "app")
    env = dataclasses.replace(sandbox_env, build=dataclasses.replace(sandbox_env.build, source=repo))
    lines: list[str] = []
    version = serving_everywhere(env)
    if version is None:
        inv("accessory.boot", "--host", "sandbox", "postgres", check=True)
        version = deploy(env, DeployRequest(), lines.append).release.version
    return Deployed(env, version, lines)


@pytest.fixture(scope="module")
def deployed_app(sandbox_env, tmp_path_factory) -> Deployed:
    return deploy_sample(sandbox_env, tmp_path_factory.mktemp("deployed"))
