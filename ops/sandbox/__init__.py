"""The local sandbox fleet: Docker-in-Docker hosts + a registry + an S3 endpoint.

``up`` also builds the proxy and accessory images (``docker/<name>/``) and pushes them to
the sandbox registry, and writes the app's env file (``.sandbox/app.env``) once.

``up(env)`` makes (or reuses) everything ``inventory/sandbox.yml`` describes, ``status(env)``
reports it, ``down(env)`` removes it. All state lives in Docker objects labelled
``ops.sandbox=1`` and in the git-ignored state dir ``.sandbox/``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ops.errors import LocalToolError
from ops.inventory import Environment
from ops.sandbox import app_env, fleet, images, keys, services

Say = Callable[[str], None]


@dataclass
class Report:
    action: str                           # up | down
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, line: str) -> None:
        self.steps.append(line)

    def __str__(self) -> str:
        return "\n".join([*self.steps, f"sandbox {self.action}: done in {self.seconds:.1f}s"])


@dataclass(frozen=True)
class StatusRow:
    name: str                     # host name | registry | s3
    kind: str                     # host | registry | s3
    state: str                    # running, exited, absent, stopped, ...
    port: int | None = None       # ssh port for hosts, listen port for services
    image: str | None = None
    pid: int | None = None
    answering: bool | None = None


def _quiet(_: str) -> None:
    pass


def up(env: Environment, *, say: Say = _quiet) -> Report:
    """Bring the fleet up (idempotent: reuses what runs, starts what stopped, recreates what changed)."""
    t0 = time.monotonic()
    report = Report("up")

    def step(line: str) -> None:
        report.add(line)
        say(line)

    fleet.check_inventory(env)
    fleet.require_engine()
    public, created = keys.ensure_keypair(env.ssh.key)
    step(f"key pair {env.ssh.key}: {'generated' if created else 'reused'}")

    # NOTE: the network first: the S3 TLS front listens on its gateway address.
    step(f"network {env.sandbox.network}: {fleet.ensure_network(env, say)}")
    services.write_registry_config(env)
    if front := services.write_tls_front(env):
        step(f"S3 TLS front: {front}")
    for svc in services.services(env).values():
        step(f"{svc.name} on {svc.address}:{svc.port}: {services.ensure(svc, say)}")
    step(f"bucket {env.s3.bucket}: {services.ensure_bucket(env)}")

    image, how = images.ensure_host_image(say)
    step(f"image {image}: {how}")
    for ref, how in images.ensure_service_images(env, say):
        step(f"image {ref}: {how}")
    step(f"env file {env.env_file}: {app_env.ensure(env)}")
    for host in env.hosts.values():
        step(f"{host.name}: container {fleet.container_name(host.name)} {fleet.ensure_host(env, host, image, say)}")

    deadline = time.monotonic() + fleet.READY_TIMEOUT
    entries = []
    for host in env.hosts.values():
        fleet.wait_ready(host, deadline)
        fleet.install_authorized_key(host, public)
        entries.append((host.address, host.port, fleet.host_keys(host)))
        shared = fleet.own_shared_uploads(env, host)
        step(f"{host.name}: ready (ssh {host.user}@{host.address}:{host.port}, inner dockerd up"
             + (f", {shared})" if shared else ")"))
    keys.write_known_hosts(env.ssh.known_hosts, keys.known_hosts_text(entries))
    step(f"known_hosts {env.ssh.known_hosts}: {sum(len(e[2]) for e in entries)} host keys")
    report.seconds = time.monotonic() - t0
    return report


def status(env: Environment) -> list[StatusRow]:
    """One row per host container, then the registry and S3 rows."""
    fleet.check_inventory(env)
    rows = []
    try:
        fleet.require_engine()
        engine = True
    except LocalToolError:
        engine = False
    for host in env.hosts.values():
        if not engine:
            rows.append(StatusRow(host.name, "host", "unknown (no Docker engine)", host.port))
            continue
        info = fleet.inspect_container(fleet.container_name(host.name))
        if info is None:
            rows.append(StatusRow(host.name, "host", "absent", host.port))
        else:
            ssh = fleet.ssh_banner(host.address, host.port, timeout=1.0) if info.state == "running" else False
            rows.append(StatusRow(host.name, "host", info.state, host.port, image=info.image, answering=ssh))
    for svc in services.services(env).values():
        pid = services.running_pid(svc)
        ok = services.answering(svc.probe_url, ca=svc.probe_ca)
        state = "running" if pid else ("not ours" if ok else "stopped")
        rows.append(StatusRow(svc.name, svc.name, state, svc.port, pid=pid, answering=ok))
    return rows


def down(env: Environment, *, purge: bool = False, say: Say = _quiet) -> Report:
    """Remove every labelled container, volume and network, stop the services, delete the state.

    Cached images stay (``purge=True`` removes the ops-sandbox images too); the debootstrap
    tarball under ~/.cache/ops-sandbox always stays.
    """
    t0 = time.monotonic()
    report = Report("down")

    def step(line: str) -> None:
        report.add(line)
        say(line)

    for svc in services.services(env).values():
        step(f"{svc.name}: {'stopped' if services.stop(svc) else 'was not running'}")
    fleet.require_engine()
    counts = fleet.remove_all()
    step("removed " + ", ".join(f"{n} {kind}(s)" for kind, n in counts.items()))
    fleet.remove_cgroups(list(env.hosts))
    root = services.state_dir(env)
    app_env.remove(env, root)
    key = env.ssh.key
    for path in [key, key.with_name(key.name + ".pub"), env.ssh.known_hosts, *services.generated_files(env)]:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    step(f"state in {root}: deleted")
    if purge:
        removed = images.remove_images()
        step(f"images removed: {', '.join(removed) or 'none'}")
    report.seconds = time.monotonic() - t0
    return report


__all__ = ["Report", "StatusRow", "up", "status", "down"]
