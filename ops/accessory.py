"""Accessories: long-lived service containers (Postgres, Redis...) on one host each.

``boot`` makes the accessory's container run with the image and env the inventory and
env file say, and waits until it is ready; it is idempotent: the container carries a
label (``ops.spec``) hashing its run command, image id and env file content, so a
second boot with nothing changed does nothing. ``reboot`` stops (gracefully, generous
timeout), removes and boots again; the data volume ``<app>-<name>-data`` is never removed.

Secrets: the variables an accessory gets (``accessories.<name>.env`` in the inventory)
are read from the environment's env file and written to
``{app_dir}/accessories/<name>.env`` on its host (0600), passed with ``--env-file``:
never in argv, never printed (values of secret-looking names are registered with the
gateway's masker). NOTE: ``docker inspect`` on the host still shows them (Config.Env),
as it does for any env file; whoever can run docker there is root on that host anyway.

With the inventory's ``pitr:`` the Postgres accessory archives its WAL with pgBackRest: its env
file also carries the ``PGBACKREST_*`` settings (S3 keys and the repository passphrase from the
operator's secrets), the server runs with ``archive_mode=on``, each repository's CA file is
mounted read-only, and every boot runs ``stanza-create`` + ``check``. After a point-in-time
restore the data lives in a new volume, named in ``{app_dir}/accessories/<name>.volume``.

The published port is bound to the host's ``private_address`` when it has one (web hosts
reach Postgres there; nothing listens on the public interface), else on every address:
in production give db hosts a ``private_address``. The container listens on the same
port as it publishes (``accessories.<name>.port``).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ops.appenv import load_env_file
from ops.commands import docker, shell
from ops.commands import pgbackrest as pgbr
from ops.errors import ConfigError, HostError, OpsError, RemoteCommandFailed
from ops.inventory import Accessory, Environment, Host
from ops.layout import Layout
from ops.operation import Operation
from ops.opsenv import operator_value
from ops.registry import registry_access, service_ref, unreachable_error
from ops.remote import Gateway

LABEL_APP = "ops.app"
LABEL_ACCESSORY = "ops.accessory"
LABEL_SPEC = "ops.spec"

# Postgres: a checkpoint of a busy database can take a while; SIGKILL would mean crash
# recovery on the next start.
STOP_TIMEOUT = {"postgres": 120}
DEFAULT_STOP_TIMEOUT = 30
READY_TIMEOUT = {"postgres": 120.0}
DEFAULT_READY_TIMEOUT = 60.0
POLL_INTERVAL = 1.0
LOG_TAIL_ON_FAILURE = 20

Say = Callable[[str], None]


# -- names ------------------------------------------------------------------------------
def get_accessory(env: Environment, name: str) -> Accessory:
    if name not in env.accessories:
        known = ", ".join(env.accessories) or "(none)"
        raise ConfigError(f"unknown accessory {name!r} in {env.name}",
                          hint=f"accessories in {env.path.name}: {known}")
    return env.accessories[name]


def container_name(env: Environment, acc: Accessory) -> str:
    return f"{env.app}-{acc.name}"


def volume_name(env: Environment, acc: Accessory) -> str:
    """The data volume a first boot creates (a point-in-time restore moves to a new one: see
    ``current_volume``)."""
    return f"{env.app}-{acc.name}-data"


def volume_pointer_path(env: Environment, acc: Accessory) -> str:
    """A file on the accessory's host naming the data volume in use, once a physical restore has
    switched to a new one (absent: ``volume_name``). NOTE: Docker cannot rename volumes; the
    restored data lives in a new volume and every later boot must keep using it."""
    return Layout(env).path("accessories", f"{acc.name}.volume")


def current_volume(gw: Gateway, env: Environment, acc: Accessory) -> str:
    host = env.hosts[acc.host]
    res = gw.query(host, ("cat", volume_pointer_path(env, acc)), check=False)
    name = res.stdout.strip() if res.ok else ""
    return docker.check_name(name, "volume name") if name else volume_name(env, acc)


def network_name(env: Environment) -> str:
    """The app's network on every host: the app, its proxy and its accessories share it
    (on a single-host setup the app reaches ``<accessory name>:<port>`` by Docker DNS)."""
    return Layout(env).network


def env_file_path(env: Environment, acc: Accessory) -> str:
    return Layout(env).path("accessories", f"{acc.name}.env")


def kind(acc: Accessory) -> str:
    """``postgres`` for a Postgres image (by name or image), else ``generic``."""
    base = acc.image.image.rsplit("/", 1)[-1].split(":", 1)[0]
    return "postgres" if "postgres" in (acc.name, base) or base.startswith("postgres") else "generic"


def stop_timeout(acc: Accessory) -> int:
    return STOP_TIMEOUT.get(kind(acc), DEFAULT_STOP_TIMEOUT)


def ready_timeout(acc: Accessory) -> float:
    return READY_TIMEOUT.get(kind(acc), DEFAULT_READY_TIMEOUT)


# -- env file ---------------------------------------------------------------------------
def read_env(env: Environment, acc: Accessory) -> dict[str, str]:
    """The accessory's variables, from the environment's env file; every one must be set."""
    path = env.env_file
    if not acc.env:
        return {}
    if path is None:
        raise ConfigError(f"accessory {acc.name} needs {', '.join(acc.env)} but {env.path.name} sets no env_file",
                          hint="set env_file: in the inventory")
    if not path.is_file():
        raise ConfigError(f"env file {path} not found (accessory {acc.name} needs {', '.join(acc.env)})",
                          hint="create it (0600) with those variables" +
                               (", or run `inv sandbox.up`" if env.sandbox else ""))
    # NOTE: the one reader of secret files (ops.appenv): same quoting and ${...} rules as
    # the app's own view of this file, and it refuses a file group or others can read.
    values = load_env_file(path)
    missing = [name for name in acc.env if values.get(name) is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not set in {path} (needed by accessory {acc.name})",
                          hint=f"add {' and '.join(f'{m}=...' for m in missing)} to {path.name}")
    out = {name: values[name] for name in acc.env}
    for name, value in out.items():
        if any(c in value for c in "\n\r\0"):
            raise ConfigError(f"{name} in {path} spans lines; docker --env-file cannot carry it",
                              hint="use a one-line value")
    return out


def secret_values(values: dict[str, str]) -> list[str]:
    # NOTE: pgBackRest's S3 key id is not secret-looking by name, but it is a credential.
    return [value for name, value in values.items()
            if docker.looks_secret(name) or name.endswith(("_S3_KEY", "_S3_KEY_SECRET", "_CIPHER_PASS"))]


# -- pgBackRest (continuous archiving) in the Postgres accessory ----------------------
def archives(env: Environment, acc: Accessory) -> bool:
    """True when this accessory archives WAL with pgBackRest (the inventory's ``pitr:``)."""
    return env.pitr is not None and kind(acc) == "postgres"


def ca_host_path(env: Environment, acc: Accessory, n: int) -> str:
    return Layout(env).path("accessories", f"{acc.name}-repo{n}-ca.pem")


def pitr_values(env: Environment, acc: Accessory, values: dict[str, str]) -> dict[str, str]:
    """The ``PGBACKREST_*`` variables (S3 keys and the passphrase from the operator's secrets)."""
    p = env.pitr

    def need(var: str, what: str) -> str:
        value = operator_value(env, var)
        if not value:
            where = str(env.ops_env_file) if env.ops_env_file else "the environment (no ops_env_file set)"
            raise ConfigError(f"{var} is not set in {where}: pgBackRest needs it ({what})",
                              hint=f"add {var}=... to the ops env file (chmod 600)"
                                   + (" or run `inv sandbox.up`" if env.sandbox else ""))
        if any(c in value for c in "\n\r\0"):
            raise ConfigError(f"{var} spans lines; docker --env-file cannot carry it", hint="use a one-line value")
        return value

    passphrase = need(p.encryption_key_var, "the repository encryption passphrase; keep a copy offline")
    creds = {n: (need(r.key_var, f"S3 key of repo{n}"), need(r.secret_var, f"S3 secret of repo{n}"))
             for n, r in enumerate(p.repos, 1)}
    return pgbr.accessory_env(p, data_path=acc.data_path, port=acc.port,
                              db_user=values.get("POSTGRES_USER") or "postgres", credentials=creds,
                              passphrase=passphrase)


def env_file_bytes(values: dict[str, str]) -> bytes:
    """``docker run --env-file`` format: ``NAME=value`` per line, taken verbatim (no quotes)."""
    lines = ["# Written by ops (inv accessory.boot); the source of truth is the env file of the inventory."]
    return ("\n".join([*lines, *(f"{k}={v}" for k, v in values.items())]) + "\n").encode()


# -- plan -------------------------------------------------------------------------------
def _publish_address(host: Host) -> str:
    try:
        return str(ipaddress.ip_address(host.private_address)) if host.private_address else ""
    except ValueError:
        return ""


def run_argv(env: Environment, acc: Accessory, image: str, spec: str = "", *, volume: str | None = None,
             name: str | None = None) -> tuple[str, ...]:
    """``docker run`` of the accessory; ``spec`` goes into the ``ops.spec`` label. With pitr the
    server archives WAL (``postgres -c archive_mode=on ...``) and the repositories' CA files are
    mounted read-only."""
    labels = {LABEL_APP: env.app, LABEL_ACCESSORY: acc.name}
    if spec:
        labels[LABEL_SPEC] = spec
    host = env.hosts[acc.host]
    volumes = [(volume or volume_name(env, acc), acc.data_path, "")]
    command: tuple[str, ...] = ()
    if archives(env, acc):
        volumes += ca_mounts(env, acc)
        command = pgbr.server_command(env.pitr)
    return docker.run_argv(
        name or container_name(env, acc), image,
        network=network_name(env), network_aliases=(acc.name,),
        env_file=env_file_path(env, acc) if acc.env or archives(env, acc) else None,
        publish=[(_publish_address(host), acc.port, acc.port)],
        volumes=volumes, labels=labels, restart="unless-stopped", stop_timeout=stop_timeout(acc),
        command=command,
        # NOTE: an init (docker's tini) as PID 1, not the server: pgBackRest's async archive-push
        # leaves a background process that outlives its parent and is re-parented to PID 1. A
        # postmaster that reaps it sees an unknown child exit non-zero (e.g. while S3 is down) as a
        # crashed backend and restarts every connection into recovery, again on each retry.
        init=archives(env, acc),
    )


def spec_hash(run: tuple[str, ...], env_content: bytes, image_id: str) -> str:
    payload = json.dumps([list(run), hashlib.sha256(env_content).hexdigest(), image_id])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def ready_argv(env: Environment, acc: Accessory) -> tuple[str, ...] | None:
    """A command that exits 0 once the service accepts connections (None: no such check)."""
    if kind(acc) == "postgres":
        # NOTE: TCP on 127.0.0.1, not the socket: during initdb the image runs a temporary
        # server on the Unix socket only, which must not count as ready.
        return docker.exec_argv(container_name(env, acc), "pg_isready", "-q", "-h", "127.0.0.1",
                                "-p", str(acc.port))
    return None


# -- remote state -----------------------------------------------------------------------
@dataclass(frozen=True)
class ContainerState:
    name: str
    state: str                  # running | exited | created | paused | restarting | dead | absent
    image: str = ""             # the reference it was created from
    image_id: str = ""
    health: str = ""            # healthy | unhealthy | starting | "" (no health check)
    labels: dict[str, str] = field(default_factory=dict)
    started_at: str = ""

    @property
    def exists(self) -> bool:
        return self.state != "absent"


def inspect(gw: Gateway, host: Host, name: str) -> ContainerState:
    res = gw.query(host, docker.inspect_argv(name), check=False)
    if not res.ok:
        if "no such" in res.stderr.lower():
            return ContainerState(name, "absent")
        raise RemoteCommandFailed(f"cannot inspect container {name}: {res.stderr.strip()[-300:]}",
                                  host=host.name, exit_code=res.exit_code, stderr=res.stderr)
    data = json.loads(res.stdout)[0]
    st = data.get("State") or {}
    return ContainerState(name=name, state=st.get("Status", "unknown"), image=data["Config"]["Image"],
                          image_id=data.get("Image", ""), health=(st.get("Health") or {}).get("Status", ""),
                          labels=data["Config"].get("Labels") or {}, started_at=st.get("StartedAt", ""))


def image_id(gw: Gateway, host: Host, ref: str) -> str:
    res = gw.query(host, docker.image_id_argv(ref), check=False)
    return res.stdout.strip() if res.ok else ""


def _check_ours(env: Environment, acc: Accessory, host: Host, info: ContainerState) -> None:
    if info.exists and (info.labels.get(LABEL_APP) != env.app or info.labels.get(LABEL_ACCESSORY) != acc.name):
        raise HostError(f"a container named {info.name} exists and is not accessory {acc.name} of {env.app}",
                        host=host.name, hint=f"rename or remove it (docker rm -f {info.name}) if it is not needed")


# -- actions ----------------------------------------------------------------------------
@dataclass
class BootResult:
    accessory: str
    host: str
    container: str
    image: str
    action: str                 # unchanged | started | created | recreated
    seconds: float = 0.0
    dry_run: bool = False
    plan: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        where = f"{self.accessory} on {self.host}"
        if self.dry_run:
            if self.action == "unchanged":
                return f"{where}: {self.container} runs {self.image} with the same env; nothing to do"
            verb = {"created": "create", "recreated": "recreate", "started": "start"}.get(self.action, self.action)
            return f"{where}: would {verb} {self.container} ({len(self.plan)} step(s) above); nothing changed"
        if self.action == "unchanged":
            return f"{where}: {self.container} already runs {self.image} with the same env; nothing to do"
        return f"{where}: {self.action} {self.container} ({self.image}), ready in {self.seconds:.1f}s"


def _quiet(_: str) -> None:
    pass


def boot(gw: Gateway, name: str, *, say: Say = _quiet, lock_wait: float = 0.0) -> BootResult:
    """Pull, write the env file, (re)create the container if anything changed, wait until ready."""
    return _enveloped(gw, get_accessory(gw.env, name), replace=False, say=say, lock_wait=lock_wait)


def reboot(gw: Gateway, name: str, *, say: Say = _quiet, lock_wait: float = 0.0) -> BootResult:
    """Stop (gracefully), remove and boot again; the data volume stays."""
    return _enveloped(gw, get_accessory(gw.env, name), replace=True, say=say, lock_wait=lock_wait)


def _enveloped(gw: Gateway, acc: Accessory, *, replace: bool, say: Say, lock_wait: float) -> BootResult:
    """Under the environment lock: a reboot must never kill a running backup, restore or deploy."""
    if gw.dry_run:
        return _boot(gw, acc, replace=replace, say=say)
    action = "accessory.reboot" if replace else "accessory.boot"
    with Operation(gw, action, list(gw.env.hosts.values()), say=say, version=acc.name, lock_wait=lock_wait,
                   detail=f"{acc.name} on {acc.host}") as op:
        result = _boot(gw, acc, replace=replace, say=say)
        op.outcome = str(result)
    for warning in op.warnings:
        say(f"warning: {warning}")
    return result


def _boot(gw: Gateway, acc: Accessory, *, replace: bool, say: Say) -> BootResult:
    env = gw.env
    host = env.hosts[acc.host]
    values = read_env(env, acc)
    gw.mask.add(*secret_values(values))
    if archives(env, acc):
        values = {**values, **pitr_values(env, acc, values)}
        gw.mask.add(*secret_values(values))
    content = env_file_bytes(values)
    image = service_ref(env, acc.image)
    container = container_name(env, acc)
    plan_start = len(gw.plan)
    t0 = time.monotonic()
    volume = current_volume(gw, env, acc)
    cas = _ca_files(env, acc)

    say(f"{acc.name} on {host.name}: pulling {image}")
    _pull(gw, host, acc, image)
    spec = spec_hash(run_argv(env, acc, image, volume=volume), content + b"".join(cas.values()),
                     image_id(gw, host, image))
    info = inspect(gw, host, container)
    _check_ours(env, acc, host, info)

    def result(action: str) -> BootResult:
        return BootResult(acc.name, host.name, container, image, action, time.monotonic() - t0,
                          dry_run=gw.dry_run, plan=[cmd for _, cmd in gw.plan[plan_start:]])

    same = info.exists and info.labels.get(LABEL_SPEC) == spec
    if same and not replace and info.state == "running":
        if archives(env, acc) and not gw.dry_run:
            # NOTE: cheap (one WAL switch), and it recreates a stanza whose repository was emptied.
            ensure_stanza(gw, env, acc)
        return result("unchanged")

    try:
        gw.run(host, ("install", "-d", "-m", "0700", Layout(env).path("accessories")))
    except RemoteCommandFailed as exc:
        exc.hint = exc.hint or (f"{env.app_dir} must exist and belong to {host.user}: create it once as root "
                                f"(install -d -o {host.user} {env.app_dir})")
        raise
    if acc.env or archives(env, acc):
        gw.put(host, content, env_file_path(env, acc), mode=0o600)
    for path, pem in cas.items():
        gw.put(host, pem, path, mode=0o644)
    if same and not replace:
        action = "started"
        if info.state == "paused":
            gw.run(host, ("docker", "unpause", container))
        else:
            gw.run(host, docker.start_argv(container))
    else:
        _ensure_network(gw, host, network_name(env))
        gw.run(host, docker.volume_create_argv(volume,
                                               labels={LABEL_APP: env.app, LABEL_ACCESSORY: acc.name}))
        action = "created"
        if info.exists:
            say(f"{acc.name} on {host.name}: stopping {container} (up to {stop_timeout(acc)}s)")
            _stop_and_remove(gw, host, acc, container)
            action = "recreated"
        gw.run(host, run_argv(env, acc, image, spec, volume=volume))
    if gw.dry_run:
        gw.plan.append((host.name, f"wait until {container} is ready (up to {ready_timeout(acc):g}s)"))
        gw.echo(f"[dry-run] {host.name}: wait until {container} is ready")
        if archives(env, acc):
            gw.plan.append((host.name, f"pgbackrest stanza-create + check in {container} (stanza {env.pitr.stanza})"))
        return result(action)
    say(f"{acc.name} on {host.name}: waiting until {container} is ready")
    wait_ready(gw, acc)
    if archives(env, acc):
        say(f"{acc.name} on {host.name}: pgBackRest stanza {env.pitr.stanza}: create (if new) and check archiving")
        ensure_stanza(gw, env, acc)
    return result(action)


def launch_argv(gw: Gateway, acc: Accessory, *, volume: str) -> tuple[str, ...]:
    """The ``docker run`` a boot would issue on ``volume``, its ``ops.spec`` label included (a later
    boot finds it unchanged). For a restore that starts the accessory on new data: the image is
    the one already on the host (no pull while the site is down)."""
    env = gw.env
    host = env.hosts[acc.host]
    values = read_env(env, acc)
    if archives(env, acc):
        values = {**values, **pitr_values(env, acc, values)}
    gw.mask.add(*secret_values(values))
    content = env_file_bytes(values)
    image = service_ref(env, acc.image)
    spec = spec_hash(run_argv(env, acc, image, volume=volume), content + b"".join(_ca_files(env, acc).values()),
                     image_id(gw, host, image))
    return run_argv(env, acc, image, spec, volume=volume)


def ca_mounts(env: Environment, acc: Accessory) -> list[tuple[str, str, str]]:
    """The repositories' CA files as read-only mounts (for one-off pgBackRest containers too)."""
    if not archives(env, acc):
        return []
    return [(ca_host_path(env, acc, n), pgbr.container_ca_path(n), "ro")
            for n, repo in enumerate(env.pitr.repos, 1) if repo.ca_file is not None]


def _ca_files(env: Environment, acc: Accessory) -> dict[str, bytes]:
    """Host path -> PEM bytes of each repository's CA file (read on the operator's machine)."""
    if not archives(env, acc):
        return {}
    out = {}
    for n, repo in enumerate(env.pitr.repos, 1):
        if repo.ca_file is None:
            continue
        try:
            out[ca_host_path(env, acc, n)] = repo.ca_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"pitr.repos[{n}].ca_file {repo.ca_file}: {exc.strerror or exc}",
                              hint="point it at the PEM CA of the S3 endpoint"
                                   + (" (the sandbox's is made by `inv sandbox.up`)" if env.sandbox else "")) from None
    return out


def ensure_stanza(gw: Gateway, env: Environment, acc: Accessory) -> None:
    """``stanza-create`` (idempotent) and ``check`` (a WAL switch archived in every repository):
    a boot whose archiving does not work fails here, not days later in a restore."""
    host = env.hosts[acc.host]
    container = container_name(env, acc)
    io = env.pitr.check_io_timeout
    for what, argv in (("stanza-create", pgbr.stanza_create_argv(container, io_timeout=io)),
                       ("check", pgbr.check_argv(container, io_timeout=io))):
        res = gw.run(host, argv, check=False, timeout=io * 6 + 120)
        if not res.ok:
            detail = " | ".join(line.strip() for line in (res.stderr + res.stdout).splitlines() if line.strip())[-400:]
            raise HostError(f"pgBackRest {what} of stanza {env.pitr.stanza} failed in {container}: "
                            f"{detail or f'exit {res.exit_code}'}", host=host.name,
                            hint="WAL is not being archived: check pitr.repos (endpoint, port, bucket, ca_file) "
                                 "and the S3 keys in the ops env file; the server keeps its WAL until it is fixed")


def _pull(gw: Gateway, host: Host, acc: Accessory, image: str) -> None:
    access = registry_access(gw, host) if acc.image.from_registry else contextlib.nullcontext()
    with access:
        try:
            gw.run(host, docker.pull_argv(image))
        except OpsError as exc:
            tunnel = acc.image.from_registry and gw.env.registry.tunnel
            raise unreachable_error(gw.env, host, image, exc, tunnel=tunnel) or exc from None


def _ensure_network(gw: Gateway, host: Host, network: str) -> None:
    if not gw.query(host, docker.network_inspect_argv(network), check=False).ok:
        gw.run(host, docker.network_create_argv(network, labels={LABEL_APP: gw.env.app}))


def _stop_and_remove(gw: Gateway, host: Host, acc: Accessory, container: str) -> None:
    timeout = stop_timeout(acc)
    gw.run(host, docker.stop_argv(container, timeout), timeout=timeout + 60)
    gw.run(host, docker.rm_argv(container))


def wait_ready(gw: Gateway, acc: Accessory, *, timeout: float | None = None) -> ContainerState:
    """Until the service answers (Postgres: pg_isready; otherwise health check or running)."""
    env = gw.env
    host = env.hosts[acc.host]
    container = container_name(env, acc)
    limit = timeout if timeout is not None else ready_timeout(acc)
    deadline = time.monotonic() + limit
    probe = ready_argv(env, acc)
    info = ContainerState(container, "absent")
    while True:
        info = inspect(gw, host, container)
        if info.state in ("exited", "dead", "absent"):
            raise HostError(f"{container} is {info.state} instead of running: {_log_tail(gw, host, container)}",
                            host=host.name, hint=f"inv accessory.logs --host {env.name} {acc.name}")
        if info.state == "running":
            if probe is not None:
                if gw.query(host, probe, check=False, timeout=15).ok:
                    return info
            elif info.health in ("", "healthy"):
                return info
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    raise HostError(f"{container} not ready after {limit:g}s (state {info.state}"
                    f"{', health ' + info.health if info.health else ''}): {_log_tail(gw, host, container)}",
                    host=host.name, hint=f"inv accessory.logs --host {env.name} {acc.name}")


def _log_tail(gw: Gateway, host: Host, container: str) -> str:
    res = gw.query(host, _logs_line(container, LOG_TAIL_ON_FAILURE), check=False)
    lines = [line.strip() for line in res.stdout.splitlines() if line.strip()]
    return " | ".join(lines[-3:])[-400:] or "no log output"


def _logs_line(container: str, lines: int):
    """``docker logs`` with stderr merged into stdout (Postgres logs to stderr)."""
    return shell("docker logs --tail {n} {c} 2>&1", n=lines, c=docker.check_name(container))


# -- status and logs --------------------------------------------------------------------
@dataclass(frozen=True)
class StatusRow:
    accessory: str
    host: str
    container: str
    image: str
    state: str
    health: str


def status(gw: Gateway, names: list[str] | None = None) -> list[StatusRow]:
    env = gw.env
    accs = [get_accessory(env, n) for n in names] if names else list(env.accessories.values())
    rows = []
    for acc in accs:
        host = env.hosts[acc.host]
        info = inspect(gw, host, container_name(env, acc))
        health = info.health or "-"
        if info.state == "running" and (probe := ready_argv(env, acc)) is not None:
            ready = gw.query(host, probe, check=False, timeout=15).ok
            health = f"{info.health}, {'accepting' if ready else 'not accepting'}" if info.health else (
                "accepting" if ready else "not accepting")
        rows.append(StatusRow(acc.name, host.name, info.name, info.image or service_ref(env, acc.image),
                              info.state, health))
    return rows


def logs(gw: Gateway, name: str, lines: int = 100) -> str:
    env = gw.env
    acc = get_accessory(env, name)
    host = env.hosts[acc.host]
    if isinstance(lines, bool) or not isinstance(lines, int) or lines < 0:
        raise ConfigError(f"--lines must be a whole number >= 0, got {lines!r}")
    container = container_name(env, acc)
    try:
        values = read_env(env, acc)
    except ConfigError:
        values = {}
    gw.mask.add(*secret_values(values))
    res = gw.query(host, _logs_line(container, lines), check=False)
    if not res.ok:
        raise RemoteCommandFailed(f"docker logs {container} failed: {res.stdout.strip()[-300:] or res.stderr.strip()}",
                                  host=host.name, exit_code=res.exit_code, stderr=res.stderr,
                                  hint=f"is it booted? inv accessory.boot --host {env.name} {name}")
    return res.stdout


__all__ = ["BootResult", "ContainerState", "StatusRow", "archives", "boot", "container_name", "current_volume",
           "ensure_stanza", "env_file_bytes",
           "env_file_path", "get_accessory", "inspect", "logs", "network_name", "read_env", "reboot",
           "run_argv", "spec_hash", "status", "volume_name", "wait_ready"]
