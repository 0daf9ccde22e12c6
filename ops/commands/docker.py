"""Pure builders of ``docker`` argv tuples, run on a host through the gateway.

Every value is validated here (names, ports, paths) because these argv end up in a
shell line on the host and in plans shown to the operator. Secrets never travel as
``-e NAME=value`` (visible in ``ps`` and ``docker inspect``): ``run_argv`` refuses an
``env`` name that looks secret; pass such values in an ``--env-file`` (0600 on the host).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence

from ops.commands import Argv
from ops.errors import ConfigError

# Docker's own rule for container/volume/network names.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
IMAGE_REF_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._:/@-]{0,254}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
# Names whose values are secrets (or embed one, like DATABASE_URL's password).
SECRET_NAME_RE = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE|SALT|DSN|_URL$|_URI$", re.IGNORECASE)
DURATION_RE = re.compile(r"^\d+(ms|s|m|h)$")
SINCE_RE = re.compile(r"^[0-9A-Za-z:.+-]{1,40}$")
VOLUME_MODES = {"", "ro", "rw", "z", "Z", "ro,z", "ro,Z"}
RESTART_RE = re.compile(r"^(no|always|unless-stopped|on-failure(:\d+)?)$")

# NOTE: Docker's json-file logs grow without bound unless told otherwise; a full disk
# takes Postgres down with it.
DEFAULT_LOG_OPTS: Mapping[str, str] = {"max-size": "10m", "max-file": "5"}

Publish = tuple[str, int, int]      # (host ip or "", host port or 0 for any free one, container port)
Volume = tuple[str, str, str]       # (named volume or absolute host path, container path, mode or "")


def looks_secret(name: str) -> bool:
    """True for variable names whose values must stay out of argv and output."""
    return bool(SECRET_NAME_RE.search(name))


# -- validation -------------------------------------------------------------------------
def check_name(value: str, what: str = "container name") -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ConfigError(f"invalid {what} {value!r}",
                          hint="use letters, digits, '_', '.', '-' (starting with a letter or digit)")
    return value


def check_image(ref: str) -> str:
    if not isinstance(ref, str) or not IMAGE_REF_RE.fullmatch(ref):
        raise ConfigError(f"invalid image reference {ref!r}", hint="write e.g. localhost:5000/team/app:TAG")
    return ref


def check_port(port: int, what: str = "port") -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"invalid {what} {port!r}", hint="use an integer 1-65535")
    return port


def _check_path(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in ":,\n\r\0"):
        raise ConfigError(f"invalid {what} {value!r}", hint="no ':', ',' or newlines in volume paths")
    return value


def _check_volume_source(source: str) -> str:
    _check_path(source, "volume source")
    if not source.startswith("/"):
        check_name(source, "volume name")
    return source


def _check_duration(value: str, what: str) -> str:
    if not DURATION_RE.fullmatch(str(value)):
        raise ConfigError(f"invalid {what} {value!r}", hint="write e.g. 5s, 500ms, 2m")
    return str(value)


def _check_nonneg_int(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"invalid {what} {value!r}", hint="use a whole number >= 0")
    return value


def _labels(labels: Mapping[str, str] | None) -> list[str]:
    out: list[str] = []
    for key, value in sorted((labels or {}).items()):
        if not LABEL_KEY_RE.fullmatch(key) or any(c in str(value) for c in "\n\r\0"):
            raise ConfigError(f"invalid label {key}={value!r}", hint="lowercase dotted keys, one-line values")
        out += ["--label", f"{key}={value}"]
    return out


# -- networks and volumes ---------------------------------------------------------------
def network_create_argv(name: str, *, labels: Mapping[str, str] | None = None) -> Argv:
    return ("docker", "network", "create", "--driver", "bridge", *_labels(labels), check_name(name, "network name"))


def network_inspect_argv(name: str) -> Argv:
    return ("docker", "network", "inspect", "--format", "{{.Name}}", check_name(name, "network name"))


def volume_create_argv(name: str, *, labels: Mapping[str, str] | None = None) -> Argv:
    """Idempotent: creating an existing volume returns its name and changes nothing."""
    return ("docker", "volume", "create", *_labels(labels), check_name(name, "volume name"))


def volume_rm_argv(name: str) -> Argv:
    """Remove a named volume (fails while a container, even a stopped one, uses it)."""
    return ("docker", "volume", "rm", check_name(name, "volume name"))


def volume_inspect_argv(name: str) -> Argv:
    return ("docker", "volume", "inspect", "--format", "{{.Name}}", check_name(name, "volume name"))


# -- images -----------------------------------------------------------------------------
def pull_argv(ref: str) -> Argv:
    return ("docker", "pull", "--quiet", check_image(ref))


def push_argv(ref: str) -> Argv:
    return ("docker", "push", check_image(ref))


def tag_argv(source: str, target: str) -> Argv:
    return ("docker", "tag", check_image(source), check_image(target))


def image_id_argv(ref: str) -> Argv:
    return ("docker", "image", "inspect", "--format", "{{.Id}}", check_image(ref))


# -- containers -------------------------------------------------------------------------
def run_argv(
    name: str,
    image: str,
    *,
    network: str | None = None,
    network_aliases: Sequence[str] = (),
    env_file: str | None = None,
    env: Mapping[str, str] | None = None,
    publish: Sequence[Publish] = (),
    volumes: Sequence[Volume] = (),
    labels: Mapping[str, str] | None = None,
    restart: str | None = "unless-stopped",
    detach: bool = True,
    remove: bool = False,
    command: Sequence[str] = (),
    entrypoint: str | None = None,
    user: str | None = None,
    workdir: str | None = None,
    stop_signal: str | None = None,
    stop_timeout: int | None = None,
    health_cmd: str | None = None,
    health_interval: str = "5s",
    health_timeout: str = "3s",
    health_retries: int = 3,
    health_start_period: str = "0s",
    log_driver: str | None = "json-file",
    log_opts: Mapping[str, str] | None = DEFAULT_LOG_OPTS,
    cpu_shares: int | None = None,
    init: bool = False,
) -> Argv:
    """``docker run`` for a service or one-off container.

    ``env`` is for non-secret values only (they show in ``ps`` on the host): a name
    that looks secret is refused. ``publish`` host ip "" means every address of the
    host: in production bind a private address (e.g. ``10.0.0.5``) for internal services.
    """
    argv = ["docker", "run"]
    if detach:
        argv.append("-d")
    if remove:
        if restart not in (None, "no"):
            raise ConfigError("a container removed on exit (--rm) cannot have a restart policy",
                              hint="pass restart=None for one-off containers")
        argv.append("--rm")
    argv += ["--name", check_name(name)]
    if restart is not None:
        if not RESTART_RE.fullmatch(restart):
            raise ConfigError(f"invalid restart policy {restart!r}", hint="no, always, unless-stopped, on-failure[:N]")
        argv += ["--restart", restart]
    if network:
        argv += ["--network", check_name(network, "network name")]
        for alias in network_aliases:
            argv += ["--network-alias", check_name(alias, "network alias")]
    elif network_aliases:
        raise ConfigError("network aliases need a network", hint="pass network=")
    if env_file is not None:
        argv += ["--env-file", _check_path(env_file, "env file path")]
    for key, value in sorted((env or {}).items()):
        if not ENV_NAME_RE.fullmatch(key):
            raise ConfigError(f"invalid environment variable name {key!r}")
        if looks_secret(key):
            raise ConfigError(f"{key} looks secret and would be visible in `ps` and `docker inspect` as -e",
                              hint="put it in the env file passed with --env-file (0600 on the host)")
        if any(c in str(value) for c in "\n\r\0"):
            raise ConfigError(f"environment value of {key} spans lines")
        argv += ["-e", f"{key}={value}"]
    for host_ip, host_port, container_port in publish:
        if host_ip:
            try:
                ip = ipaddress.ip_address(host_ip)
            except ValueError:
                raise ConfigError(f"invalid publish address {host_ip!r}", hint="an IP address, or '' for all") from None
            host_ip = f"[{ip}]" if ip.version == 6 else str(ip)
        # Host port 0: Docker picks a free one (read it back with ``docker port``).
        host_spec = "" if host_port == 0 and not isinstance(host_port, bool) else check_port(host_port, "host port")
        spec = f"{host_spec}:{check_port(container_port, 'container port')}"
        argv += ["-p", f"{host_ip}:{spec}" if host_ip else spec]
    for source, target, mode in volumes:
        if not str(target).startswith("/"):
            raise ConfigError(f"volume target {target!r} is not an absolute path")
        if mode not in VOLUME_MODES:
            raise ConfigError(f"invalid volume mode {mode!r}", hint=f"one of: {', '.join(sorted(VOLUME_MODES))}")
        spec = f"{_check_volume_source(source)}:{_check_path(target, 'volume target')}"
        argv += ["-v", f"{spec}:{mode}" if mode else spec]
    argv += _labels(labels)
    if entrypoint is not None:
        argv += ["--entrypoint", entrypoint]
    if user is not None:
        argv += ["--user", user]
    if workdir is not None:
        argv += ["--workdir", workdir]
    if stop_signal is not None:
        if not re.fullmatch(r"(SIG)?[A-Z0-9]+", stop_signal):
            raise ConfigError(f"invalid stop signal {stop_signal!r}", hint="write e.g. SIGINT")
        argv += ["--stop-signal", stop_signal]
    if stop_timeout is not None:
        argv += ["--stop-timeout", str(_check_nonneg_int(stop_timeout, "stop timeout"))]
    if cpu_shares is not None:
        argv += ["--cpu-shares", str(_check_cpu_shares(cpu_shares))]
    if init:
        argv.append("--init")
    if health_cmd is not None:
        argv += ["--health-cmd", health_cmd,
                 "--health-interval", _check_duration(health_interval, "health interval"),
                 "--health-timeout", _check_duration(health_timeout, "health timeout"),
                 "--health-retries", str(_check_nonneg_int(health_retries, "health retries")),
                 "--health-start-period", _check_duration(health_start_period, "health start period")]
    if log_driver is not None:
        argv += ["--log-driver", check_name(log_driver, "log driver")]
        for key, value in sorted((log_opts or {}).items()):
            argv += ["--log-opt", f"{key}={value}"]
    argv.append(check_image(image))
    argv += [str(part) for part in command]
    return tuple(argv)


# docker's default CPU weight of a container (cgroup v1 cpu.shares; v2 cpu.weight is derived).
DEFAULT_CPU_SHARES = 1024


def _check_cpu_shares(shares: int) -> int:
    if not isinstance(shares, int) or isinstance(shares, bool) or not 2 <= shares <= 262144:
        raise ConfigError(f"invalid CPU shares {shares!r}", hint="a whole number from 2 to 262144 (default 1024)")
    return shares


def cpu_shares_argv(name: str, shares: int) -> Argv:
    """Change a container's CPU weight (relative to its siblings) while it runs or before it starts."""
    return ("docker", "update", "--cpu-shares", str(_check_cpu_shares(shares)), check_name(name))


def start_argv(name: str) -> Argv:
    return ("docker", "start", check_name(name))


def stop_argv(name: str, timeout: int = 10) -> Argv:
    """Stop signal, then SIGKILL after ``timeout`` seconds."""
    return ("docker", "stop", "--time", str(_check_nonneg_int(timeout, "stop timeout")), check_name(name))


def rm_argv(name: str, *, force: bool = False) -> Argv:
    """Remove a container; anonymous volumes go too (named volumes never do)."""
    return ("docker", "rm", *(("--force",) if force else ()), "--volumes", check_name(name))


def logs_argv(name: str, tail: int | str = 100, since: str | None = None, *, timestamps: bool = False) -> Argv:
    if tail != "all":
        tail = _check_nonneg_int(tail, "number of log lines")
    argv = ["docker", "logs", "--tail", str(tail)]
    if since is not None:
        if not SINCE_RE.fullmatch(since):
            raise ConfigError(f"invalid --since {since!r}", hint="write e.g. 10m, 2h or 2024-05-01T10:00:00Z")
        argv += ["--since", since]
    if timestamps:
        argv.append("--timestamps")
    return (*argv, check_name(name))


def inspect_argv(*names: str, kind: str = "container", fmt: str | None = None) -> Argv:
    """``docker <kind> inspect``: JSON by default, or ``fmt`` (a Go template)."""
    if kind not in ("container", "image", "volume", "network"):
        raise ConfigError(f"cannot inspect a {kind!r}")
    if not names:
        raise ConfigError("inspect needs at least one name")
    check = check_image if kind == "image" else check_name
    return ("docker", kind, "inspect", *(("--format", fmt) if fmt else ()), *(check(n) for n in names))


def exec_argv(container: str, *command: str, user: str | None = None, interactive: bool = False) -> Argv:
    if not command:
        raise ConfigError("exec needs a command")
    opts = (("-i",) if interactive else ()) + (("--user", user) if user else ())
    return ("docker", "exec", *opts, check_name(container), *map(str, command))


def ps_argv(*, filters: Mapping[str, str] | Sequence[tuple[str, str]] = (), fmt: str | None = None,
            all: bool = True) -> Argv:
    """``docker ps`` with ``--filter key=value`` (e.g. ``label``: ``ops.app=x``)."""
    pairs = sorted(filters.items()) if isinstance(filters, Mapping) else list(filters)
    argv = ["docker", "ps", "--no-trunc"]
    if all:
        argv.append("--all")
    for key, value in pairs:
        if key not in ("label", "name", "status", "ancestor", "network", "id", "volume"):
            raise ConfigError(f"unsupported docker ps filter {key!r}")
        argv += ["--filter", f"{key}={value}"]
    if fmt:
        argv += ["--format", fmt]
    return tuple(argv)


__all__ = ["DEFAULT_LOG_OPTS", "Publish", "Volume", "check_image", "check_name", "check_port", "exec_argv",
           "image_id_argv", "inspect_argv", "logs_argv", "looks_secret", "network_create_argv",
           "network_inspect_argv", "ps_argv", "pull_argv", "push_argv", "rm_argv", "run_argv", "start_argv",
           "stop_argv", "tag_argv", "volume_create_argv", "volume_inspect_argv"]
