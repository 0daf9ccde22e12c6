"""Image references as the operator and as the hosts see them.

With ``registry.tunnel: true`` the registry lives on the operator's machine
(``registry.url``, e.g. 127.0.0.1:5000) and hosts reach it as ``localhost:PORT``
through an SSH reverse tunnel opened for the duration of a pull.
"""

from __future__ import annotations

import contextlib
import re

from ops.errors import HostError, OpsError
from ops.inventory import Environment, Host, ImageRef
from ops.remote import Gateway

DEFAULT_PORT = 443

# What dockerd says when it cannot reach a registry at all (as opposed to: no such
# image, denied). Through a reverse tunnel, a registry that is down on the operator's
# machine shows up on the host as a reset or an EOF.
_UNREACHABLE_RE = re.compile(
    r"connection refused|no such host|i/o timeout|connection reset by peer|no route to host|"
    r"network is unreachable|tls handshake timeout|client\.timeout exceeded|\beof\b", re.IGNORECASE)


class RegistryUnreachable(HostError):
    """A host could not reach the registry (directly or through the SSH tunnel)."""


def _host_port(env: Environment) -> tuple[str, int]:
    host, _, port = env.registry.url.partition(":")
    return host, int(port) if port else DEFAULT_PORT


def operator_ref(env: Environment, path_and_tag: str) -> str:
    """Where the operator pushes: ``registry.url/path:tag``."""
    return f"{env.registry.url}/{path_and_tag}"


def host_ref(env: Environment, path_and_tag: str) -> str:
    """What ``docker pull`` on a host names for the same image."""
    if env.registry.tunnel:
        return f"localhost:{_host_port(env)[1]}/{path_and_tag}"
    return operator_ref(env, path_and_tag)


def app_refs(env: Environment, tag: str) -> tuple[str, str]:
    """(operator ref, host ref) of the app image at ``tag``."""
    path = f"{env.image.split('/', 1)[1]}:{tag}" if _has_registry_part(env.image) else f"{env.image}:{tag}"
    return operator_ref(env, path), host_ref(env, path)


def service_ref(env: Environment, image: ImageRef) -> str:
    """Host-side ref of a proxy/accessory image: from our registry, or as written."""
    return host_ref(env, image.image) if image.from_registry else image.image


def needs_tunnel(env: Environment) -> bool:
    return env.registry.tunnel


@contextlib.contextmanager
def registry_access(gw: Gateway, host: Host):
    """Make the registry reachable from ``host`` while the block runs."""
    if not needs_tunnel(gw.env):
        yield
        return
    local_host, port = _host_port(gw.env)
    with gw.tunnel(host, remote_port=port, local_host=local_host, local_port=port):
        yield


def _has_registry_part(image: str) -> bool:
    """``registry.example.com/team/app`` names its registry; ``team/app`` does not."""
    first, sep, _ = image.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def unreachable_error(env: Environment, host: Host, ref: str, exc: OpsError, *,
                      tunnel: bool | None = None) -> RegistryUnreachable | None:
    """The real cause of a failed ``docker pull ref`` on ``host`` when the registry was
    out of reach; None when it failed for another reason (no such tag, denied...).

    ``tunnel``: whether the pull went through the SSH tunnel (default: the inventory's
    ``registry.tunnel``; False for images from elsewhere, e.g. Docker Hub).
    """
    text = (getattr(exc, "stderr", "") or exc.message).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("See '")]
    hit = next((ln for ln in reversed(lines) if _UNREACHABLE_RE.search(ln)), None)
    if hit is None and getattr(exc, "exit_code", None) != -1:
        return None
    cause = hit or "the SSH session ended without an exit status (exit -1)"
    if env.registry.tunnel if tunnel is None else tunnel:
        port = _host_port(env)[1]
        return RegistryUnreachable(
            f"registry {ref} unreachable from {host.name} through the SSH tunnel ({cause})", host=host.name,
            hint=f"is the registry running on this machine at {env.registry.url} (curl http://{env.registry.url}/v2/)"
                 f" and port {port} free on {host.name} for the tunnel? check with: inv doctor --host {env.name}")
    return RegistryUnreachable(
        f"registry {ref} unreachable from {host.name} ({cause})", host=host.name,
        hint=f"can {host.name} resolve and reach the registry of {ref} (DNS, firewall, proxy)? "
             f"check with: inv doctor --host {env.name}")
