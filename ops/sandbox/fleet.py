"""Host containers, their network and volumes, their keys.

Each inventory host becomes one container ``ops-sandbox-<host>`` on the bridge network
``sandbox.network`` at ``host.private_address``, running sshd (published on
127.0.0.1:<host.port>) and its own dockerd (data on the volume ``ops-sandbox-<host>-docker``).
Everything carries the label ``ops.sandbox=1`` so ``down`` finds it.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import json
import shlex
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ops import local
from ops.errors import ConfigError, HostError, LocalToolError
from ops.inventory import Environment, Host
from ops.sandbox import keys

LABEL_KEY = "ops.sandbox"
LABEL = f"{LABEL_KEY}=1"
PREFIX = "ops-sandbox-"
DOCKERD_LOG = "/var/log/dockerd.log"
READY_TIMEOUT = 120.0
DOCKER_TIMEOUT = 60.0
# One volume of this machine mounted in every web host at `uploads.path` (uploads.storage: shared):
# the sandbox's stand-in for an NFS share. The examples' images run the app as this uid
# (examples/*/Dockerfile), so the shared directory is theirs.
UPLOADS_VOLUME = f"{PREFIX}uploads"
APP_UID = 10001

# Docker-in-Docker without --privileged (which fails here: no CAP_SYS_RESOURCE).
DIND_FLAGS: tuple[str, ...] = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
)

Say = Callable[[str], None]


# -- names ------------------------------------------------------------------------------
def container_name(host: str) -> str:
    return f"{PREFIX}{host}"


def volume_name(host: str) -> str:
    return f"{PREFIX}{host}-docker"


def cgroup_parent(host: str) -> str:
    return f"/{container_name(host)}"


# -- pure builders ---------------------------------------------------------------------
def network_create_argv(network: str, subnet: str) -> tuple[str, ...]:
    return ("docker", "network", "create", "--driver", "bridge", "--subnet", subnet,
            "--label", LABEL, network)


def volume_create_argv(host: str) -> tuple[str, ...]:
    return ("docker", "volume", "create", "--label", LABEL, "--label", f"{LABEL_KEY}.host={host}",
            volume_name(host))


def host_command(host: str) -> str:
    """The container's shell command: own host keys, dockerd in the background, sshd in front.

    ``ssh-keygen -A`` only makes missing keys, so a restarted container keeps its keys;
    stale pid files from a previous run would stop dockerd from starting again.
    """
    return "; ".join((
        "set -e",
        "ssh-keygen -A",
        "mkdir -p /run/sshd",
        "rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid",
        f"(dockerd --cgroup-parent {shlex.quote(cgroup_parent(host))} >>{DOCKERD_LOG} 2>&1 &)",
        "exec /usr/sbin/sshd -D -e",
    ))


def shared_mounts(env: Environment, host: Host) -> tuple[tuple[str, str], ...]:
    """(volume, path in the host) mounts every web host shares: the uploads with storage: shared."""
    if "web" in host.roles and env.uploads.shared:
        return ((UPLOADS_VOLUME, env.uploads.path),)
    return ()


def _host_run_args(host: Host, image: str, network: str, publish: Mapping[int, int],
                   mounts: tuple[tuple[str, str], ...] = ()) -> list[str]:
    args = ["--name", container_name(host.name), "--hostname", host.name,
            "--network", network, "--ip", host.private_address, "--network-alias", host.name,
            *DIND_FLAGS,
            "-v", f"{volume_name(host.name)}:/var/lib/docker",
            *(arg for source, path in mounts for arg in ("-v", f"{source}:{path}")),
            "-p", f"127.0.0.1:{host.port}:22"]
    for local_port, container_port in sorted(publish.items()):
        args += ["-p", f"127.0.0.1:{local_port}:{container_port}"]
    return args + [image, "sh", "-c", host_command(host.name)]


def spec_hash(host: Host, image: str, network: str, publish: Mapping[int, int],
              mounts: tuple[tuple[str, str], ...] = ()) -> str:
    """Hash of everything the container is created from: a change means recreate."""
    return hashlib.sha256("\0".join(_host_run_args(host, image, network, publish, mounts)).encode()).hexdigest()[:16]


def host_run_argv(host: Host, image: str, network: str, publish: Mapping[int, int],
                  mounts: tuple[tuple[str, str], ...] = ()) -> tuple[str, ...]:
    labels = ["--label", LABEL, "--label", f"{LABEL_KEY}.host={host.name}",
              "--label", f"{LABEL_KEY}.spec={spec_hash(host, image, network, publish, mounts)}"]
    return ("docker", "run", "-d", *labels, *_host_run_args(host, image, network, publish, mounts))


AUTHORIZED_KEYS_SCRIPT = """set -e
u="$1"
if ! id -u "$u" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash --groups docker "$u"; usermod -p '*' "$u"
fi
g=$(id -gn "$u"); h=$(getent passwd "$u" | cut -d: -f6)
install -d -m 0700 -o "$u" -g "$g" "$h/.ssh"
cat > "$h/.ssh/authorized_keys.new"
chown "$u:$g" "$h/.ssh/authorized_keys.new"; chmod 0600 "$h/.ssh/authorized_keys.new"
mv -f "$h/.ssh/authorized_keys.new" "$h/.ssh/authorized_keys"
"""


def authorized_keys_argv(host: str, user: str) -> tuple[str, ...]:
    """``docker exec -i``: the public key comes on stdin; the user is ``$1``, never spliced."""
    return ("docker", "exec", "-i", container_name(host), "sh", "-c", AUTHORIZED_KEYS_SCRIPT, "sh", user)


def host_keys_argv(host: str) -> tuple[str, ...]:
    return ("docker", "exec", container_name(host), "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub")


def inner_docker_info_argv(host: str) -> tuple[str, ...]:
    return ("docker", "exec", container_name(host), "docker", "info", "--format", "{{.ServerVersion}}")


def list_labelled_argv(kind: str) -> tuple[str, ...]:
    """kind: container | volume | network."""
    if kind == "container":
        return ("docker", "container", "ls", "--all", "--quiet", "--filter", f"label={LABEL}")
    return ("docker", kind, "ls", "--quiet", "--filter", f"label={LABEL}")


# -- checks -----------------------------------------------------------------------------
def check_inventory(env: Environment) -> None:
    sb = env.sandbox
    if sb is None:
        raise ConfigError(f"environment {env.name!r} has no 'sandbox:' section",
                          hint="the sandbox fleet is made from inventory/sandbox.yml")
    if env.ssh.key is None:
        raise ConfigError(f"environment {env.name!r} sets no ssh.key", hint="set ssh.key: .sandbox/id_ed25519")
    net = ipaddress.ip_network(sb.subnet)
    problems = []
    for host in env.hosts.values():
        if not (_is_ip(host.address) and ipaddress.ip_address(host.address).is_loopback):
            problems.append(f"hosts.{host.name}.address {host.address!r} must be a 127.x address")
        if not host.private_address or ipaddress.ip_address(host.private_address) not in net:
            problems.append(f"hosts.{host.name}.private_address {host.private_address!r} must lie in {sb.subnet}")
    if problems:
        raise ConfigError("; ".join(problems), hint=f"fix {env.path.name}: sandbox hosts are containers on this machine")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def port_free(port: int, address: str = "127.0.0.1") -> bool:
    """Nothing listens on address:port (SO_REUSEADDR: TIME_WAIT leftovers do not count). An address
    this machine does not have (the sandbox network's gateway once the network is gone) is free."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            return exc.errno == errno.EADDRNOTAVAIL
    return True


def _busy_ports(ports, wait: float) -> list[int]:
    """Ports on 127.0.0.1 that cannot be bound; ``wait``: give docker-proxy time to let go."""
    deadline = time.monotonic() + wait
    while True:
        busy = [p for p in ports if not port_free(p)]
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(0.2)


def ssh_banner(address: str, port: int, timeout: float = 2.0) -> bool:
    """True when something at address:port speaks SSH (docker-proxy alone accepts then closes)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


# -- docker state -----------------------------------------------------------------------
@dataclass(frozen=True)
class ContainerInfo:
    name: str
    state: str          # running | exited | created | paused | dead ...
    image: str          # the reference it was created from
    labels: dict[str, str]

    @property
    def ours(self) -> bool:
        return self.labels.get(LABEL_KEY) == "1"


def inspect_container(name: str) -> ContainerInfo | None:
    proc = local.run(("docker", "container", "inspect", name), check=False, timeout=DOCKER_TIMEOUT)
    if proc.returncode != 0:
        if b"No such" in proc.stderr or b"no such" in proc.stderr:
            return None
        raise LocalToolError(f"`docker container inspect {name}` failed: {local.tail(proc.stderr)}")
    data = json.loads(proc.stdout)[0]
    return ContainerInfo(name=name, state=data["State"]["Status"], image=data["Config"]["Image"],
                         labels=data["Config"].get("Labels") or {})


def ensure_network(env: Environment, say: Say) -> str:
    sb = env.sandbox
    proc = local.run(("docker", "network", "inspect", sb.network), check=False, timeout=DOCKER_TIMEOUT)
    if proc.returncode != 0:
        local.run(network_create_argv(sb.network, sb.subnet), timeout=DOCKER_TIMEOUT)
        return "created"
    data = json.loads(proc.stdout)[0]
    labels = data.get("Labels") or {}
    subnets = [c.get("Subnet") for c in (data.get("IPAM") or {}).get("Config") or []]
    if labels.get(LABEL_KEY) != "1":
        raise LocalToolError(f"a docker network named {sb.network!r} exists and is not the sandbox's",
                             hint=f"remove it (`docker network rm {sb.network}`) or change sandbox.network")
    if sb.subnet not in subnets:
        raise LocalToolError(f"network {sb.network!r} has subnet {', '.join(filter(None, subnets))}, "
                             f"inventory says {sb.subnet}", hint="run `inv sandbox.down` then `inv sandbox.up`")
    return "reused"


def ensure_host(env: Environment, host: Host, image: str, say: Say) -> str:
    """Create, start, recreate or reuse one host container; return what happened."""
    sb = env.sandbox
    publish = sb.publish.get(host.name, {})
    mounts = shared_mounts(env, host)
    name = container_name(host.name)
    want = spec_hash(host, image, sb.network, publish, mounts)
    info = inspect_container(name)
    if info is not None and not info.ours:
        raise LocalToolError(f"a container named {name!r} exists and is not the sandbox's",
                             host=host.name, hint=f"remove it: docker rm -f {name}")
    action = "created"
    if info is not None:
        if info.labels.get(f"{LABEL_KEY}.spec") != want or info.state in ("dead", "removing"):
            say(f"{host.name}: recreating {name} (image or settings changed)")
            local.run(("docker", "rm", "--force", name), timeout=DOCKER_TIMEOUT)
            action = "recreated"
        elif info.state == "running":
            return "running"
        elif info.state == "paused":
            local.run(("docker", "unpause", name), timeout=DOCKER_TIMEOUT)
            return "unpaused"
        else:
            local.run(("docker", "start", name), timeout=DOCKER_TIMEOUT)
            return "started"
    busy = _busy_ports((host.port, *publish), wait=5.0 if action == "recreated" else 0.0)
    if busy:
        raise LocalToolError(f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 already in use by something else",
                             host=host.name,
                             hint=f"free them (`ss -ltnp` shows the owner) or change the ports in {env.path.name}")
    local.run(volume_create_argv(host.name), timeout=DOCKER_TIMEOUT)
    for source, _ in mounts:
        local.run(("docker", "volume", "create", "--label", LABEL, source), timeout=DOCKER_TIMEOUT)
    local.run(host_run_argv(host, image, sb.network, publish, mounts), timeout=DOCKER_TIMEOUT)
    return action


def own_shared_uploads(env: Environment, host: Host) -> str:
    """The shared uploads directory writable by the app's uid (an empty volume is root's); '' if none."""
    for _, path in shared_mounts(env, host):
        local.run(("docker", "exec", container_name(host.name), "sh", "-c", 'chown "$1:$1" "$2" && chmod 0750 "$2"',
                   "sh", str(APP_UID), path), timeout=DOCKER_TIMEOUT)
        return f"shared uploads at {path}"
    return ""


def wait_ready(host: Host, deadline: float) -> None:
    """Until sshd answers on the published port and the inner dockerd answers ``docker info``."""
    name = container_name(host.name)
    ssh_ok = docker_ok = False
    last = ""
    while time.monotonic() < deadline:
        info = inspect_container(name)
        if info is None or info.state != "running":
            raise HostError(f"container {name} is {info.state if info else 'gone'}",
                            host=host.name, hint=f"see `docker logs {name}`")
        ssh_ok = ssh_ok or ssh_banner(host.address, host.port)
        if not docker_ok:
            proc = local.run(inner_docker_info_argv(host.name), check=False, timeout=15)
            docker_ok = proc.returncode == 0
            last = local.tail(proc.stderr)
        if ssh_ok and docker_ok:
            return
        time.sleep(0.5)
    waiting = "sshd" if not ssh_ok else "the inner dockerd"
    log = local.run(("docker", "exec", name, "tail", "-n", "5", DOCKERD_LOG), check=False, timeout=15)
    raise HostError(f"{waiting} not ready after {READY_TIMEOUT:g}s ({last or 'no error'}); "
                    f"{DOCKERD_LOG}: {local.tail(log.stdout + log.stderr, 400) or '(empty)'}",
                    host=host.name, hint=f"see `docker logs {name}`; `inv sandbox.down` then up rebuilds it")


def install_authorized_key(host: Host, public_line: bytes) -> None:
    local.run(authorized_keys_argv(host.name, host.user), input=public_line, timeout=DOCKER_TIMEOUT)


def host_keys(host: Host) -> list[str]:
    proc = local.run(host_keys_argv(host.name), timeout=DOCKER_TIMEOUT)
    found = keys.parse_host_keys(proc.stdout.decode())
    if not found:
        raise HostError("no SSH host keys in /etc/ssh", host=host.name, hint="recreate it: `inv sandbox.down`, up")
    return found


# -- teardown ---------------------------------------------------------------------------
def labelled(kind: str) -> list[str]:
    return local.run(list_labelled_argv(kind), timeout=DOCKER_TIMEOUT).stdout.decode().split()


def remove_all() -> dict[str, int]:
    """Remove every labelled container, then volume, then network; return counts."""
    counts = {}
    for kind, argv in (("container", ("docker", "container", "rm", "--force", "--volumes")),
                       ("volume", ("docker", "volume", "rm", "--force")),
                       ("network", ("docker", "network", "rm"))):
        ids = labelled(kind)
        if ids:
            local.run((*argv, *ids), timeout=120)
        counts[kind] = len(ids)
    return counts


def remove_cgroups(host_names: list[str]) -> int:
    """rmdir the empty cgroup dirs the inner dockerds left (cgroup v1: one tree per controller)."""
    removed = 0
    for controller in Path("/sys/fs/cgroup").iterdir() if Path("/sys/fs/cgroup").is_dir() else ():
        for host in host_names:
            top = controller / cgroup_parent(host).lstrip("/")
            if not top.is_dir():
                continue
            for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
                try:
                    path.rmdir()
                    removed += 1
                except OSError:
                    pass
    return removed


def require_engine() -> None:
    try:
        proc = local.run(("docker", "info", "--format", "{{.ServerVersion}}"), check=False, timeout=20)
    except LocalToolError as exc:
        raise LocalToolError(f"no Docker engine reachable ({exc.message})",
                             hint="install docker.io, then start it: `sudo dockerd &` or `bash scripts/bootstrap`") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        raise LocalToolError(f"no Docker engine reachable ({local.tail(proc.stderr, 160) or 'docker info failed'})",
                             hint="start one: `sudo dockerd &` or `bash scripts/bootstrap`")

