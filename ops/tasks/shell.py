"""``inv ssh``: a shell (or one command) on a host, with the inventory's key and known_hosts."""

from __future__ import annotations

import os
import sys

from ops.errors import ConfigError
from ops.inventory import resolve_target
from ops.sshshell import ssh_argv
from ops.tasks import ops_task


@ops_task(help={"host": "env:host (prod:web1)"})
def ssh(c, host=""):
    """SSH to one host: inv ssh --host prod:web1 [-- COMMAND ARGS]; strict host keys, the inventory's key only."""
    target = resolve_target(host)
    if len(target.hosts) != 1:
        raise ConfigError(f"--host {host!r} names a whole environment", hint=f"name one host, e.g. --host "
                                                                              f"{target.env.name}:{target.hosts[0].name}")
    command = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    argv = ssh_argv(target.env, target.hosts[0], command)
    sys.stdout.flush()
    os.execv(argv[0], argv)
