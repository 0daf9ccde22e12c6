"""Image references as the operator and as the hosts see them.

With ``registry.tunnel: true`` the registry lives on the operator's machine
(``registry.url``, e.g. 127.0.0.1:5000) and hosts reach it as ``localhost:PORT``
through an SSH reverse tunnel opened for the duration of a pull.
"""

from __future__ import annotations

import contextlib

from ops.inventory import Environment, Host, ImageRef
from ops.remote import Gateway

DEFAULT_PORT = 443


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
