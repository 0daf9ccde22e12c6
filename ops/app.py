"""The running app on the web hosts: its logs, and one-off commands in its release."""

from __future__ import annotations

import uuid

from ops.commands import docker
from ops.deploy.release import Release, current_release
from ops.errors import OpsError
from ops.inventory import Host
from ops.layout import Layout
from ops.remote import Gateway, RunResult


def _current(gw: Gateway, host: Host) -> Release:
    release = current_release(gw, host)
    if release is None:
        raise OpsError("no release is current on this host", host=host.name,
                       hint=f"deploy first: inv deploy --host {gw.env.name}")
    return release


def logs(gw: Gateway, host: Host, *, lines: int = 100, since: str | None = None) -> RunResult:
    name = Layout(gw.env).web_container(_current(gw, host).id)
    return gw.query(host, docker.logs_argv(name, lines, since), check=False)


def exec_argv(gw: Gateway, release: Release, command: list[str]) -> tuple[str, ...]:
    layout = Layout(gw.env)
    return docker.run_argv(f"{gw.env.app}-exec-{uuid.uuid4().hex[:8]}", release.image, network=layout.network,
                           env_file=layout.release_env(release.id), env={"APP_VERSION": release.version},
                           labels={"ops.app": gw.env.app, "ops.role": "exec"}, restart=None, detach=False,
                           remove=True, command=command)


def run_one_off(gw: Gateway, host: Host, command: list[str], *, timeout: float | None = None) -> RunResult:
    """``command`` in a one-off container of the current release, with that release's env."""
    if not command:
        raise OpsError("no command given", hint="inv app.exec --host ENV -- node scripts/migrate.js")
    return gw.run(host, exec_argv(gw, _current(gw, host), command), check=False, timeout=timeout)
