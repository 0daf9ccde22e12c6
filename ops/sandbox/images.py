"""The sandbox's two images: a Debian base made locally, and the host image on top.

Base ``ops-sandbox/debian:bookworm``: a local ``debian:bookworm`` if present, else a
(short) pull, else ``debootstrap --variant=minbase`` into a temp dir, cached as a
tarball under ``~/.cache/ops-sandbox/`` and ``docker import``-ed.

Host ``ops-sandbox/host:<hash>``: ``host.Dockerfile`` built on the base; the tag is a
hash of the Dockerfile text and the base image id, so it rebuilds only when one changes.

Service images (the proxy and the accessories the inventory pulls ``from_registry``):
``docker/<name>/`` built on the base as ``ops-sandbox/<name>:<hash of the build context>``,
then tagged and pushed to the sandbox registry under the inventory's reference (e.g.
``127.0.0.1:5000/sandbox/postgres:15``) unless the registry already holds that image.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ops import local
from ops.errors import LocalToolError
from ops.inventory import Environment, ImageRef

LABEL = "ops.sandbox=1"
REPO_PREFIX = "ops-sandbox/"
BASE_IMAGE = "ops-sandbox/debian:bookworm"
UPSTREAM_IMAGE = "debian:bookworm"
HOST_REPO = "ops-sandbox/host"
DOCKERFILE = Path(__file__).with_name("host.Dockerfile")
SERVICES_DIR = Path(__file__).with_name("docker")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ops-sandbox"
ROOTFS_TARBALL = CACHE_DIR / f"debian-{SUITE}-minbase.tar"

PULL_TIMEOUT = 20.0
PUSH_TIMEOUT = 300.0
DEBOOTSTRAP_TIMEOUT = 600.0
BUILD_TIMEOUT = 900.0
# The legacy builder: works with the engine here and needs no buildx plugin.
BUILD_ENV = {"DOCKER_BUILDKIT": "0"}

Say = Callable[[str], None]


# -- pure builders ---------------------------------------------------------------------
def debootstrap_argv(target: Path | str, suite: str = SUITE, mirror: str = MIRROR) -> tuple[str, ...]:
    return ("debootstrap", "--variant=minbase", suite, str(target), mirror)


def tar_argv(rootfs: Path | str, tarball: Path | str) -> tuple[str, ...]:
    return ("tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), ".")


def import_argv(tarball: Path | str, tag: str = BASE_IMAGE) -> tuple[str, ...]:
    return ("docker", "import", "--change", f"LABEL {LABEL}", "--change", 'CMD ["/bin/bash"]',
            str(tarball), tag)


def host_image_tag(dockerfile_text: str, base_id: str) -> str:
    digest = hashlib.sha256(f"{base_id}\n{dockerfile_text}".encode()).hexdigest()[:12]
    return f"{HOST_REPO}:{digest}"


def build_argv(tag: str, base: str = BASE_IMAGE) -> tuple[str, ...]:
    """``docker build`` reading the Dockerfile from stdin (no build context needed)."""
    return ("docker", "build", "--pull=false", "--build-arg", f"BASE={base}", "--label", LABEL,
            "-t", tag, "-")


def context_hash(context: Path, base_id: str) -> str:
    """Hash of every file in a build context (names and bytes) and the base image id."""
    digest = hashlib.sha256(base_id.encode() + b"\0")
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(path.relative_to(context).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def service_build_argv(tag: str, context: Path | str, base: str = BASE_IMAGE) -> tuple[str, ...]:
    return ("docker", "build", "--pull=false", "--build-arg", f"BASE_IMAGE={base}", "--label", LABEL,
            "-t", tag, str(context))


@dataclass(frozen=True)
class ServiceImage:
    name: str          # the build context's directory name: docker/<name>/
    context: Path
    push_ref: str      # where the operator pushes it: <registry.url>/<inventory path>:<tag>

    @property
    def repo(self) -> str:
        return f"{REPO_PREFIX}{self.name}"


def service_images(env: Environment, services_dir: Path = SERVICES_DIR) -> list[ServiceImage]:
    """The proxy and accessory images the inventory pulls from our registry and we can build.

    ``sandbox/postgres:15`` is built from ``docker/postgres/``: the last path component
    of the reference names the build context.
    """
    refs: list[ImageRef] = [env.proxy.image, *(a.image for a in env.accessories.values())]
    out: dict[str, ServiceImage] = {}
    for ref in refs:
        if not ref.from_registry:
            continue
        name = ref.image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
        context = services_dir / name
        if (context / "Dockerfile").is_file():
            out.setdefault(ref.image, ServiceImage(name, context, f"{env.registry.url}/{ref.image}"))
    return list(out.values())


# -- docker queries -------------------------------------------------------------------
def image_id(ref: str) -> str | None:
    proc = local.run(("docker", "image", "inspect", "--format", "{{.Id}}", ref), check=False, timeout=30)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip() or None


def sandbox_images() -> list[str]:
    """Every ``ops-sandbox/*`` image reference present locally."""
    proc = local.run(("docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                      "--filter", f"reference={REPO_PREFIX}*"), timeout=30)
    return sorted({line for line in proc.stdout.decode().split() if line and "<none>" not in line})


# -- ensure ---------------------------------------------------------------------------
def ensure_base(say: Say = lambda _: None) -> str:
    """Make sure ``BASE_IMAGE`` exists; return how it was obtained."""
    if image_id(BASE_IMAGE):
        return "cached"
    if image_id(UPSTREAM_IMAGE):
        local.run(("docker", "tag", UPSTREAM_IMAGE, BASE_IMAGE), timeout=30)
        return f"tagged local {UPSTREAM_IMAGE}"
    say(f"pulling {UPSTREAM_IMAGE} (timeout {PULL_TIMEOUT:g}s)")
    try:
        local.run(("docker", "pull", UPSTREAM_IMAGE), timeout=PULL_TIMEOUT)
    except LocalToolError as exc:
        say(f"pull failed, building the base with debootstrap instead ({exc.message[:120]})")
    else:
        local.run(("docker", "tag", UPSTREAM_IMAGE, BASE_IMAGE), timeout=30)
        return f"pulled {UPSTREAM_IMAGE}"
    how = "imported cached rootfs"
    if not ROOTFS_TARBALL.exists():
        _debootstrap_tarball(say)
        how = "debootstrapped"
    say(f"importing {ROOTFS_TARBALL} as {BASE_IMAGE}")
    local.run(import_argv(ROOTFS_TARBALL), timeout=300)
    return how


def _debootstrap_tarball(say: Say) -> None:
    if os.geteuid() != 0:
        raise LocalToolError(f"no {BASE_IMAGE} image and debootstrap needs root",
                             hint=f"run once as root, or `docker load` a {UPSTREAM_IMAGE} image")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ops-sandbox-rootfs-"))
    rootfs = tmp / "rootfs"
    partial = ROOTFS_TARBALL.with_suffix(".tar.partial")
    try:
        say(f"debootstrap {SUITE} (minbase) from {MIRROR}, about a minute")
        local.run(debootstrap_argv(rootfs), timeout=DEBOOTSTRAP_TIMEOUT)
        local.run(tar_argv(rootfs, partial), timeout=300)
        partial.replace(ROOTFS_TARBALL)
    finally:
        partial.unlink(missing_ok=True)
        # --one-file-system: never descend into anything debootstrap left mounted.
        local.run(("rm", "-rf", "--one-file-system", str(tmp)), timeout=120, check=False)


def ensure_host_image(say: Say = lambda _: None) -> tuple[str, str]:
    """Make sure the host image for the current Dockerfile exists; return (tag, how)."""
    base_how = ensure_base(say)
    base_id = image_id(BASE_IMAGE)
    if not base_id:
        raise LocalToolError(f"base image {BASE_IMAGE} missing right after it was made")
    text = DOCKERFILE.read_text()
    tag = host_image_tag(text, base_id)
    if image_id(tag):
        return tag, f"cached (base {base_how})"
    say(f"building {tag} from {DOCKERFILE.name}, about a minute")
    local.run(build_argv(tag), input=text.encode(), timeout=BUILD_TIMEOUT, env=BUILD_ENV)
    _drop_old_host_tags(keep=tag)
    return tag, f"built (base {base_how})"


def _drop_old_host_tags(keep: str, repo: str = HOST_REPO) -> None:
    """Untag outdated images of ``repo``; an image still used by a container stays (rmi fails)."""
    for ref in sandbox_images():
        if ref.startswith(repo + ":") and ref != keep:
            local.run(("docker", "image", "rm", ref), check=False, timeout=60)


def registry_image_id(push_ref: str, timeout: float = 5.0) -> str | None:
    """The image id (config digest) the registry holds under ``push_ref``, or None.

    NOTE: for a schema 2 manifest the config digest is the image id ``docker image
    inspect`` shows, so equality means the registry has exactly the local image.
    """
    registry, _, rest = push_ref.partition("/")
    path, _, tag = rest.rpartition(":")
    request = urllib.request.Request(f"http://{registry}/v2/{path}/manifests/{tag}", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # loopback: never a proxy
    try:
        with opener.open(request, timeout=timeout) as resp:
            return json.load(resp).get("config", {}).get("digest")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def ensure_service_image(image: ServiceImage, say: Say = lambda _: None) -> str:
    """Build ``image`` unless its context is unchanged, push it unless the registry has it."""
    base_id = image_id(BASE_IMAGE)
    if not base_id:
        raise LocalToolError(f"base image {BASE_IMAGE} missing", hint="run `inv sandbox.up` again")
    tag = f"{image.repo}:{context_hash(image.context, base_id)}"
    how = "cached"
    if not image_id(tag):
        say(f"building {tag} from {image.context.relative_to(image.context.parents[2])}/")
        local.run(service_build_argv(tag, image.context), timeout=BUILD_TIMEOUT, env=BUILD_ENV)
        _drop_old_host_tags(keep=tag, repo=image.repo)
        how = "built"
    local_id = image_id(tag)
    if registry_image_id(image.push_ref) == local_id:
        return f"{how}, in registry"
    say(f"pushing {image.push_ref}")
    local.run(("docker", "tag", tag, image.push_ref), timeout=30)
    local.run(("docker", "push", image.push_ref), timeout=PUSH_TIMEOUT)
    return f"{how}, pushed"


def ensure_service_images(env: Environment, say: Say = lambda _: None) -> list[tuple[str, str]]:
    """(push ref, what happened) for every service image the sandbox builds."""
    return [(image.push_ref, ensure_service_image(image, say)) for image in service_images(env)]


def remove_images() -> list[str]:
    """``purge``: remove every ops-sandbox image (cached rootfs tarball stays).

    Includes the registry tags of service images (``127.0.0.1:5000/sandbox/...``): they
    carry our label like everything we build.
    """
    proc = local.run(("docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                      "--filter", f"label={LABEL}"), timeout=30)
    labelled = {line for line in proc.stdout.decode().split() if line and "<none>" not in line}
    refs = sorted(labelled | set(sandbox_images()))
    for ref in refs:
        local.run(("docker", "image", "rm", "--force", ref), check=False, timeout=120)
    return refs
