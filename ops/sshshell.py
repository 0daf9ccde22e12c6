"""``inv ssh``: OpenSSH to one host with exactly the inventory's settings.

The same trust as the gateway: the inventory's key only (no agent, no ~/.ssh/config,
no default keys), the project's known_hosts only, strict checking (an unknown or
changed key is refused, never added). Built here, run by the task with ``exec``.
"""

from __future__ import annotations

import shlex
import shutil

from ops.errors import ConfigError
from ops.inventory import Environment, Host


def ssh_argv(env: Environment, host: Host, command: list[str] | None = None) -> list[str]:
    program = shutil.which("ssh")
    if program is None:
        raise ConfigError("no ssh client on PATH", hint="install OpenSSH's client (apt-get install openssh-client)")
    if not env.ssh.known_hosts.exists():
        raise ConfigError(f"{env.ssh.known_hosts} does not exist: no host key is trusted yet",
                          hint=f"inv hosts.trust --host {env.name}:{host.name}")
    argv = [program, "-F", "/dev/null",
            "-o", f"UserKnownHostsFile={env.ssh.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no",
            "-o", "IdentityAgent=none", "-o", "ForwardAgent=no", "-o", "IdentitiesOnly=yes",
            "-o", f"ConnectTimeout={int(env.ssh.connect_timeout)}",
            "-o", f"ServerAliveInterval={env.ssh.keepalive}"]
    if env.ssh.key:
        argv += ["-i", str(env.ssh.key)]
    argv += ["-p", str(host.port), "-l", host.user, host.address]
    if command:
        # NOTE: ssh joins its arguments with spaces for the remote shell: pass one quoted line.
        argv += ["--", shlex.join(command)]
    return argv


__all__ = ["ssh_argv"]
