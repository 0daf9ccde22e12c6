"""``inv app.logs`` and ``inv app.exec``: the app as it runs on the web hosts."""

from __future__ import annotations

import shlex
import sys

from invoke.exceptions import Exit

from ops import app
from ops.cli import number
from ops.errors import ConfigError
from ops.inventory import resolve_target
from ops.remote import Gateway
from ops.tasks import ops_task


@ops_task(help={"host": "environment (prod) or env:host (prod:web1)", "lines": "lines per source and host",
                "since": "only newer than this (e.g. 10m, 1h30m, 2026-11-24T03:00:00Z)",
                "follow": "keep printing new lines from every host, interleaved (Ctrl-C ends)",
                "nginx": "also nginx's access and error logs"})
def logs(c, host="", lines=100, since="", follow=False, nginx=False):
    """Logs of the current app container on each web host (with -f: followed, every host at once)."""
    lines = int(number(lines, "--lines", minimum=1, integer=True))
    since = app.check_since(since)
    target = resolve_target(host)
    webs = [h for h in target.hosts if "web" in h.roles]
    if not webs:
        raise ConfigError(f"no web host in --host {host}", hint="name an environment with web hosts, or env:webN")
    with Gateway(target.env) as gw:
        if follow:
            app.follow(gw, webs, lambda line: print(line, flush=True), lines=lines,
                       since=since, nginx=nginx)
            return
        results = gw.map(lambda h: app.logs(gw, h, lines=lines, since=since, nginx=nginx), webs)
    for name, got in results.ok.items():
        for line in got:
            print(f"{name} | {line}")
    results.raise_if_failed("app logs")


@ops_task(name="exec", help={"host": "environment or env:host (default: the first web host)",
                             "cmd": "the command, if not given after '--'",
                             "interactive": "keep stdin open (with -t: inv app.exec -it --host prod -- sh)",
                             "tty": "a terminal: for shells and REPLs"})
def exec_(c, host="", cmd="", interactive=False, tty=False):
    """Run a one-off command in the current release: inv app.exec --host prod -- CMD ARGS."""
    # NOTE: Invoke keeps what follows '--' out of task arguments; read it from argv,
    # token by token, so each argument reaches docker as one argv element.
    command = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else shlex.split(cmd)
    target = resolve_target(host)
    web = next((h for h in target.hosts if "web" in h.roles), None)
    if web is None:
        raise ConfigError(f"no web host in --host {host}", hint="name an environment with web hosts, or env:webN")
    if interactive or tty:
        with Gateway(target.env) as gw:
            status = app.run_interactive(gw, web, command)
        if status:
            raise Exit(code=status)
        return
    with Gateway(target.env) as gw:
        res = app.run_one_off(gw, web, command)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    if not res.ok:
        raise Exit(code=res.exit_code)
