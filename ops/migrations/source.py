"""The migrations a release carries: ``<migrate.path>/<name>/migration.sql``.

Read from a directory (the build context, before the image exists: what ``docker
build`` will copy) or from an image without running it: ``docker create`` (no process
starts) + ``docker cp`` of the migrations directory + ``docker rm``, on the operator's
machine, before any host pulls the image.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from ops import local
from ops.errors import LocalToolError, OpsError

TIMEOUT = 300.0


class MigrationsNotFound(OpsError):
    """The configured migrations directory is not where ``migrate.path`` says."""


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str
    checksum: str       # sha256 hex of the file, as Prisma records it
    path: Path          # where it was read (for linters)


def read_dir(root: Path) -> list[Migration]:
    """Every ``<root>/<name>/migration.sql``, in name order (Prisma's order)."""
    if not root.is_dir():
        raise MigrationsNotFound(f"no migrations directory {root}",
                                 hint="set migrate.path to where the app keeps its Prisma migrations "
                                      "(default prisma/migrations), or 'migrate: false'")
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        file = sub / "migration.sql"
        if file.is_file():
            data = file.read_bytes()
            out.append(Migration(sub.name, data.decode("utf-8", errors="replace"), hashlib.sha256(data).hexdigest(),
                                 file))
    return out


def image_path(workdir: str, path: str) -> str:
    """``migrate.path`` inside the image: relative paths start at the image's WORKDIR."""
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(workdir or "/", path))


@contextlib.contextmanager
def from_image(image: str, path: str):
    """Yield the image's migrations, copied into a temporary directory for as long as the
    ``with`` lasts (squawk reads the files there)."""
    workdir = local.run(("docker", "image", "inspect", "--format", "{{.Config.WorkingDir}}", image),
                        timeout=60, check=False)
    if workdir.returncode != 0:
        # Not here yet: docker create pulls it (from the registry the image name names).
        local.run(("docker", "pull", image), timeout=TIMEOUT)
        workdir = local.run(("docker", "image", "inspect", "--format", "{{.Config.WorkingDir}}", image), timeout=60)
    where = image_path(workdir.stdout.decode().strip(), path)
    name = f"ops-migrations-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="ops-migrations-") as tmp:
        local.run(("docker", "create", "--name", name, image), timeout=TIMEOUT)
        try:
            proc = local.run(("docker", "cp", f"{name}:{where}", f"{tmp}/migrations"), timeout=TIMEOUT, check=False)
        finally:
            with contextlib.suppress(LocalToolError):
                local.run(("docker", "rm", "--force", name), timeout=60)
        if proc.returncode != 0:
            raise MigrationsNotFound(f"{image} has no {where} ({local.tail(proc.stderr)})",
                                     hint="set migrate.path to the migrations directory inside the image "
                                          "(relative to its WORKDIR; default prisma/migrations), or 'migrate: false'")
        yield read_dir(Path(tmp) / "migrations")
