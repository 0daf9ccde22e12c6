"""The running app on the web hosts: its logs, and one-off commands in its release."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import threading
import uuid
from collections.abc import Callable
from datetime import datetime

from ops.commands import ShellLine, docker
from ops.deploy.release import Release, current_release
from ops.errors import ConfigError, OpsError
from ops.inventory import Host
from ops.layout import Layout
from ops.remote import Gateway, RunResult


def _current(gw: Gateway, host: Host) -> Release:
    release = current_release(gw, host)
    if release is None:
        raise OpsError("no release is current on this host", host=host.name,
                       hint=f"deploy first: inv deploy --host {gw.env.name}")
    return release


# Go durations as docker takes them (10m, 1h30m, 90s), or a timestamp (2026-11-24T03:00:00Z, 2026-11-24).
_DURATION_RE = re.compile(r"^(\d+(\.\d+)?(h|m|s|ms))+\Z")
SINCE_EXAMPLES = "e.g. --since 10m, 1h30m or 2026-11-24T03:00:00Z"
FOLLOW_IDLE = 7 * 86400.0  # seconds a followed log may stay silent: the operator ends it with Ctrl-C


def check_since(since: str | None) -> str | None:
    """``--since`` as docker takes it, or a ConfigError (exit 2) before anything runs."""
    if not since:
        return None
    text = since.strip()
    if _DURATION_RE.match(text):
        return text
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {since!r} is neither a duration nor a timestamp", hint=SINCE_EXAMPLES) from None
    return text


def _merged(argv: tuple[str, ...]) -> ShellLine:
    """``argv 2>&1``: docker writes a container's stderr (nginx's error log) to its own stderr."""
    return ShellLine(shlex.join(argv) + " 2>&1")


def sources(gw: Gateway, host: Host, *, nginx: bool) -> list[tuple[str, str]]:
    """(label, container) of what to read on a web host: the current app container, and nginx."""
    layout = Layout(gw.env)
    out = [("app", layout.web_container(_current(gw, host).id))]
    if nginx:
        out.append(("nginx", layout.proxy_container))
    return out


def logs(gw: Gateway, host: Host, *, lines: int = 100, since: str | None = None, nginx: bool = False) -> list[str]:
    """The last ``lines`` of each source, prefixed ``<label> | `` when nginx's are included."""
    out: list[str] = []
    for label, name in sources(gw, host, nginx=nginx):
        res = gw.query(host, _merged(docker.logs_argv(name, lines, since)), check=False)
        out += [f"{label} | {line}" if nginx else line for line in res.stdout.splitlines()]
    return out


def follow(gw: Gateway, hosts: list[Host], emit: Callable[[str], None], *, lines: int = 10,
           since: str | None = None, nginx: bool = False) -> None:
    """Follow the logs of every source on every host at once, each line handed to ``emit`` as it
    arrives, prefixed ``<host> <label> | ``. Runs until Ctrl-C (or every stream ends)."""
    streams = []
    for host in hosts:
        for label, name in sources(gw, host, nginx=nginx):
            argv = docker.logs_argv(name, lines, since)
            cmd = _merged((*argv[:2], "--follow", *argv[2:]))
            streams.append((f"{host.name} {label}", gw.stream(host, cmd, idle_timeout=FOLLOW_IDLE)))
    width = max(len(prefix) for prefix, _ in streams) if streams else 0
    emit_lock = threading.Lock()

    def pump(prefix: str, stream) -> None:
        with contextlib.suppress(OpsError, OSError, ValueError):
            for raw in io.BufferedReader(stream):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with emit_lock:
                    emit(f"{prefix.ljust(width)} | {gw.mask(line)}")

    threads = [threading.Thread(target=pump, args=(p, s), daemon=True, name=f"logs-{p}") for p, s in streams]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
    finally:
        for _, stream in streams:
            stream.channel.close()


def exec_argv(gw: Gateway, release: Release, command: list[str], *, tty: bool = False) -> tuple[str, ...]:
    layout = Layout(gw.env)
    argv = docker.run_argv(f"{gw.env.app}-exec-{uuid.uuid4().hex[:8]}", release.image, network=layout.network,
                           env_file=layout.release_env(release.id), env={"APP_VERSION": release.version},
                           labels={"ops.app": gw.env.app, "ops.role": "exec"}, restart=None, detach=False,
                           remove=True, command=command)
    # -i -t: stdin kept open and a terminal inside the container (the SSH session has a PTY too).
    return (*argv[:2], "-i", "-t", *argv[2:]) if tty else argv


def run_one_off(gw: Gateway, host: Host, command: list[str], *, timeout: float | None = None) -> RunResult:
    """``command`` in a one-off container of the current release, with that release's env."""
    if not command:
        raise OpsError("no command given", hint="inv app.exec --host ENV -- node scripts/migrate.js")
    return gw.run(host, exec_argv(gw, _current(gw, host), command), check=False, timeout=timeout)


def run_interactive(gw: Gateway, host: Host, command: list[str]) -> int:
    """``command`` (default: a shell) in a one-off container of the current release, on this terminal."""
    from ops.terminal import interactive

    return interactive(gw, host, exec_argv(gw, _current(gw, host), command or ["sh"], tty=True))
