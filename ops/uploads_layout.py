"""The inventory's ``uploads:`` section: where the app's uploaded files live, so that every web host
serves the same set.

    uploads:
      storage: shared                  # volume (default) | shared | object
      path: /mnt/athlete-uploads       # shared: a directory every web host mounts from the same storage

- ``volume``: a Docker volume ``<app>-uploads`` on the web host. Valid with ONE web host only: with
  two, each would keep its own volume and a file uploaded through one would never be served by
  the other (nor backed up, since ``backup.uploads`` reads one host).
- ``shared``: ``path`` is one directory on shared storage (NFS, EFS, CephFS, a cluster FS...) that
  every web host mounts at the same place; the web containers bind-mount it, ``backup.uploads``
  archives it once (through the first web host), ``restore.uploads`` restores it once.
- ``object``: the app keeps its uploads in object storage itself (S3...): nothing on the hosts to
  share, back up or restore (``backup.uploads`` / ``restore.uploads`` refuse and say so).

An inventory with more than one web host and ``volume`` is refused when it is loaded (one line
naming the file, the key and the fix). Kept apart from ``ops/inventory.py`` like ``pitr_config``;
the validator passed in is ``inventory._Validator`` (duck-typed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ops.errors import ConfigError, HostError

STORAGES = ("volume", "shared", "object")
# A plain absolute path: it reaches `docker run -v` (quoted anyway) and shell scripts on the hosts.
PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]\Z")


@dataclass(frozen=True)
class UploadsSettings:
    storage: str = "volume"
    path: str | None = None

    @property
    def shared(self) -> bool:
        return self.storage == "shared"


def validate(v: Any, raw: dict, *, web_hosts: list[str]) -> UploadsSettings:
    """``uploads:`` of an inventory (defaults when absent); problems go to ``v`` (one line each)."""
    sec = v.section(raw, "uploads", {"storage", "path"}) if raw.get("uploads") is not None else {}
    storage = sec.get("storage", "volume")
    if storage not in STORAGES:
        v.problem("uploads.storage", f"{storage!r} is not a choice", f"use one of: {', '.join(STORAGES)}")
        return UploadsSettings()
    path = v.string(sec, "path", "uploads.path", None, pattern=PATH_RE,
                    what="an absolute directory like /mnt/athlete-uploads (letters, digits, '.', '_', '-', '/')")
    if storage == "shared" and path is None and "path" not in sec:
        v.problem("uploads.path", "missing (storage: shared)",
                  "set it to the directory every web host mounts from the shared storage, e.g. /mnt/athlete-uploads")
    if storage != "shared" and path is not None:
        v.problem("uploads.path", f"is only used with storage: shared (storage is {storage})",
                  "remove it, or set uploads.storage: shared")
        path = None
    if storage == "volume" and len(web_hosts) > 1:
        v.problem("uploads.storage", f"{', '.join(web_hosts)} would each keep their own uploads volume (a file "
                                     "uploaded through one is never served by the others, nor backed up)",
                  "set uploads.storage: shared and uploads.path: a directory every web host mounts from the same "
                  "storage (NFS, EFS, ...), or storage: object when the app keeps uploads in object storage")
    return UploadsSettings(storage=storage, path=path if storage == "shared" else None)


def volume_name(app: str) -> str:
    """The per-host Docker volume of the ``volume`` layout."""
    return f"{app}-uploads"


def mount_source(env) -> str:
    """What the web containers (and the uploads backup/restore containers) mount at the uploads
    directory: the shared directory, or the per-host volume."""
    if env.uploads.shared:
        return env.uploads.path
    return volume_name(env.app)


# ---------------------------------------------------------------- on the web hosts


def refuse_object_storage(env) -> None:
    """``backup.uploads`` / ``restore.uploads`` have nothing to act on when the app keeps its uploads
    in object storage itself."""
    if env.uploads.storage == "object":
        raise ConfigError(f"{env.path.name} says uploads.storage: object: the app keeps its uploads in object "
                          "storage itself, so there are none on the web hosts to back up or restore",
                          hint="back up and version that bucket with the storage provider's tools")


def _inspect_volume_argv(name: str) -> tuple[str, ...]:
    return ("docker", "volume", "inspect", "--format", "{{.Mountpoint}}|{{index .Options \"device\"}}", name)


def bind_volume_argv(name: str, path: str) -> tuple[str, ...]:
    """A named volume whose data is ``path`` (the local driver's bind): what the web containers mount."""
    return ("docker", "volume", "create", "--driver", "local", "--opt", "type=none", "--opt", "o=bind",
            "--opt", f"device={path}", "--label", "ops.uploads=shared", name)


def ensure_volume(gw, host) -> str:
    """Make sure ``host`` mounts the environment's uploads where the layout says; return what it is.

    ``volume``: the per-host Docker volume (created when missing). ``shared``: the same named volume,
    whose data must be ``uploads.path`` (a bind of it, or the share mounted at the volume's own
    directory); created as a bind when missing; a per-host volume there is REFUSED (its files are
    not the shared set, and a backup of the shared path would silently miss them)."""
    env = gw.env
    name = volume_name(env.app)
    res = gw.query(host, _inspect_volume_argv(name), check=False)
    if not env.uploads.shared:
        if not res.ok:
            gw.run(host, ("docker", "volume", "create", "--label", f"ops.app={env.app}", name))
        return name
    path = env.uploads.path
    if not res.ok:
        if not gw.query(host, ("test", "-d", path), check=False).ok:
            raise HostError(f"uploads.path {path} does not exist on {host.name}: the shared storage is not mounted "
                            "there", host=host.name,
                            hint=f"mount the share at {path} on every web host (NFS, EFS, ...), then run this again")
        # NOTE: a share mounted at the volume's own directory (the sandbox does that) needs a plain
        # volume: Docker finds its data there already.
        own_dir = path.endswith(f"/volumes/{name}/_data")
        gw.run(host, ("docker", "volume", "create", name) if own_dir else bind_volume_argv(name, path))
        return path
    mountpoint, _, device = res.stdout.strip().partition("|")
    if path in (mountpoint, device):
        return path
    raise HostError(f"{host.name}: volume {name} holds this host's own files ({mountpoint}), not the shared "
                    f"uploads.path {path}: the web hosts' uploads are not one set", host=host.name,
                    hint=f"on {host.name}: copy its files into {path}, remove the app containers using it and "
                         f"`docker volume rm {name}`; then `inv backup.uploads` creates it as a bind of {path} "
                         "(before the next deploy starts a container on it)")
