"""The release image: version from git, build, push, pull on every host."""

from __future__ import annotations

import codecs
import filecmp
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ops import local, local_pty, registry
from ops.commands import docker, shell
from ops.deploy.build_steps import BuildSteps
from ops.deploy.release import VERSION_RE
from ops.errors import ConfigError, HostUnreachable, LocalToolError, OpsError, RemoteCommandFailed
from ops.inventory import Environment, Host
from ops.opsenv import operator_value
from ops.progress import BUILDING, BUILT, FAILED, NO_PROGRESS, PULLING, Progress, count_stream
from ops.remote import Gateway

# The operator's CA bundle (build.ca_bundle) goes into the build context under this
# fixed name for one build, and the Dockerfile learns it from this build arg. The app's
# Dockerfile copies it into a throwaway stage only (see examples/nextjs/Dockerfile).
CA_BUNDLE_NAME = ".ops-ca-bundle.pem"
CA_BUNDLE_ARG = "OPS_CA_BUNDLE"


@dataclass(frozen=True)
class Source:
    path: Path
    sha: str
    dirty: tuple[str, ...]


def git_source(path: Path | None) -> Source:
    if path is None:
        raise ConfigError("no build.source in the inventory: nothing to build",
                          hint="set build.source to the app's git checkout, or deploy a pushed image with --version TAG")
    if not path.is_dir():
        raise ConfigError(f"build.source {path} does not exist", hint="point build.source at the app's git checkout")
    try:
        sha = local.run(("git", "-C", str(path), "rev-parse", "HEAD"), timeout=30).stdout.decode().strip()
        status = local.run(("git", "-C", str(path), "status", "--porcelain", "--", "."), timeout=60)
    except LocalToolError as exc:
        raise ConfigError(f"build.source {path} is not a git checkout with a commit ({exc.message})",
                          hint="commit the app, or deploy a pushed image with --version TAG") from None
    dirty = tuple(line[3:] for line in status.stdout.decode().splitlines() if line.strip())
    return Source(path, sha, dirty)


def version_for(source: Source, *, allow_dirty: bool) -> str:
    """Tag = the commit SHA (12 hex). A dirty tree is refused: the tag would lie about the code."""
    tag = source.sha[:12]
    if source.dirty:
        if not allow_dirty:
            shown = ", ".join(source.dirty[:5]) + (f" (+{len(source.dirty) - 5} more)" if len(source.dirty) > 5 else "")
            raise ConfigError(f"uncommitted changes in {source.path}: {shown}",
                              hint="commit or stash them, or pass --allow-dirty (the tag gets a -dirty suffix)")
        tag = f"{tag}-dirty-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    return tag


def check_version(version: str) -> str:
    if not VERSION_RE.match(version):
        raise ConfigError(f"--version {version!r} is not a valid image tag",
                          hint="use letters, digits, '_', '.', '-' (max 128), e.g. a git SHA")
    return version


def build_argv(env: Environment, source: Source, tag: str) -> tuple[str, ...]:
    ref, _ = registry.app_refs(env, tag)
    argv = ["docker", "build", "--file", str(source.path / env.build.dockerfile), "--tag", ref,
            "--label", f"ops.app={env.app}", "--label", f"org.opencontainers.image.revision={source.sha}"]
    for name, value in sorted(env.build.args.items()):
        argv += ["--build-arg", f"{name}={value}"]
    if env.build.ca_bundle is not None:
        argv += ["--build-arg", f"{CA_BUNDLE_ARG}={CA_BUNDLE_NAME}"]
    argv.append(str(source.path))
    return tuple(argv)


@contextmanager
def ca_bundle_in_context(bundle: Path | None, context: Path) -> Iterator[Path | None]:
    """Place the operator's CA bundle in the build context for the ``with`` body only.

    Removed on every exit path (failure and Ctrl-C included). A file of that name that
    is not a leftover copy of the same bundle is never overwritten.
    """
    if bundle is None:
        yield None
        return
    target = context / CA_BUNDLE_NAME
    if target.resolve() == bundle.resolve():
        raise ConfigError(f"build.ca_bundle {bundle} is the file the deploy writes and removes",
                          hint=f"keep the CA bundle outside the build context, not as {CA_BUNDLE_NAME}")
    if target.exists() and not (target.is_file() and filecmp.cmp(bundle, target, shallow=False)):
        raise ConfigError(f"{target} already exists and is not a copy of build.ca_bundle {bundle}",
                          hint=f"remove it: the deploy places the CA bundle there for the build ({CA_BUNDLE_NAME})")
    try:
        shutil.copyfile(bundle, target)
        target.chmod(0o644)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise ConfigError(f"cannot copy build.ca_bundle {bundle} into {context}: {exc.strerror or exc}",
                          hint="check that the file is readable and the build context writable") from None
    try:
        yield target
    finally:
        target.unlink(missing_ok=True)


# The line the image build's steps show on (it runs on the operator's machine, not a host).
BUILD_LINE = "image"


def build(env: Environment, source: Source, tag: str, progress: Progress = NO_PROGRESS) -> None:
    """``docker build`` of the release image, with the CA bundle in the context when set.

    With a progress sink the step docker is on shows as it goes ("step 7/12: RUN npm run build").
    """
    with ca_bundle_in_context(env.build.ca_bundle, source.path):
        if progress is NO_PROGRESS:
            local.run(build_argv(env, source, tag), timeout=1800)
            return
        steps = BuildSteps()
        progress.step(BUILD_LINE, BUILDING, tag)

        def feed(data: bytes) -> None:
            if steps.feed(data):
                progress.step(BUILD_LINE, BUILDING, steps.current or tag)

        try:
            local_pty.run(build_argv(env, source, tag), feed, timeout=1800)
        except BaseException as exc:
            said = steps.last_lines(1)
            progress.step(BUILD_LINE, FAILED, "interrupted" if isinstance(exc, KeyboardInterrupt)
                          else (said[0][:100] if said else "docker build failed"))
            raise
        progress.step(BUILD_LINE, BUILT, f"{tag} ({steps.steps_seen} steps)")


def build_and_push(env: Environment, source: Source, tag: str, say, masker,
                   progress: Progress = NO_PROGRESS) -> str:
    """Build and push the app image; return its registry digest (sha256:...)."""
    ref, _ = registry.app_refs(env, tag)
    say(f"building {ref} from {source.path} ({source.sha[:12]})"
        + (f" with the CA bundle {env.build.ca_bundle}" if env.build.ca_bundle else ""))
    login_local(env, masker)
    build(env, source, tag, progress)
    say(f"pushing {ref}")
    push(ref, progress)
    return local_digest(ref)


def push(ref: str, progress: Progress = NO_PROGRESS) -> None:
    """``docker push``; with a progress sink, docker's own byte counts go to it as they come."""
    if progress is NO_PROGRESS:
        local.run(docker.push_argv(ref), timeout=1800)
        return
    counts = DockerProgress("push")
    with progress.transfer(f"push {ref}") as transfer:
        def feed(data: bytes) -> None:
            if counts.feed(data):
                transfer.update(counts.done, counts.total)

        local_pty.run(docker.push_argv(ref), feed, timeout=1800)


def local_digest(ref: str) -> str:
    out = local.run(("docker", "image", "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", ref),
                    timeout=60).stdout.decode()
    repo = ref.rsplit(":", 1)[0]
    for line in out.split():
        name, _, digest = line.partition("@")
        if name == repo:
            return digest
    return ""


def registry_credentials(env: Environment) -> tuple[str, str] | None:
    """REGISTRY_USERNAME / REGISTRY_PASSWORD from the operator env file or environment.

    NOTE: not from the app's env file: that file is uploaded to every web host and
    handed to the app's containers, which have no business holding registry creds.
    """
    user, password = operator_value(env, "REGISTRY_USERNAME"), operator_value(env, "REGISTRY_PASSWORD")
    return (user, password) if user and password else None


def login_argv(env: Environment, user: str) -> tuple[str, ...]:
    """``docker login`` reading the password on stdin (never argv)."""
    return ("docker", "login", "--username", user, "--password-stdin", env.registry.url)


def login_local(env: Environment, masker) -> None:
    creds = registry_credentials(env)
    if creds is None or env.registry.tunnel:
        return
    masker.add(creds[1])
    local.run(login_argv(env, creds[0]), input=creds[1].encode(), timeout=60)


def login_host(gw: Gateway, host: Host) -> None:
    creds = registry_credentials(gw.env)
    if creds is None or gw.env.registry.tunnel:
        return
    gw.mask.add(creds[1])
    gw.run(host, login_argv(gw.env, creds[0]), stdin=creds[1])


def image_present(gw: Gateway, host: Host, ref: str) -> bool:
    return gw.query(host, docker.inspect_argv(ref, kind="image", fmt="{{.Id}}"), check=False).ok


def pull(gw: Gateway, host: Host, ref: str, progress: Progress = NO_PROGRESS) -> str:
    """Pull ``ref`` on ``host`` unless it is already there; return the host's repo digest.

    With a progress sink the host's docker reports its byte counts to it as they come.
    """
    if not image_present(gw, host, ref):
        login_host(gw, host)
        with registry.registry_access(gw, host):
            try:
                if progress is NO_PROGRESS or gw.dry_run:
                    gw.run(host, ("docker", "pull", "--quiet", ref), timeout=1800)
                else:
                    _pull_reporting(gw, host, ref, progress)
            except OpsError as exc:
                raise registry.unreachable_error(gw.env, host, ref, exc) or exc from None
    res = gw.query(host, ("docker", "image", "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", ref),
                   check=False)
    return next((line.partition("@")[2] for line in res.stdout.split() if "@" in line), "")


def pull_in_pty(ref: str):
    """``docker pull ref`` on a host, under a pseudo-terminal made there by ``script``.

    NOTE: docker prints byte counts only to a terminal, and the gateway's streams have
    none; ``script`` (util-linux, in every Debian) gives it one. ``-e``: docker's exit
    status is script's; ``-f``: output flushed as it comes.
    """
    return shell("script -qfec {command} /dev/null", command=shlex.join(("docker", "pull", ref)))


def _pull_reporting(gw: Gateway, host: Host, ref: str, progress: Progress) -> None:
    counts = DockerProgress("pull")
    progress.step(host.name, PULLING, ref.rsplit("/", 1)[-1])
    with progress.transfer(f"pull {ref.rsplit('/', 1)[-1]}", host=host.name) as transfer:
        stream = gw.stream(host, pull_in_pty(ref))
        try:
            with stream:
                count_stream(stream, counts, transfer)
        except RemoteCommandFailed as exc:
            # Under a pty docker's errors arrive on stdout: they are the message.
            said = [gw.mask(line) for line in counts.last_lines()]
            raise RemoteCommandFailed(f"exit {exc.exit_code}: docker pull {ref}" + (f": {said[-1]}" if said else ""),
                                      host=host.name, exit_code=exc.exit_code, stderr="\n".join(said)) from None
        except HostUnreachable as exc:
            # NOTE: a refused connection at the operator's end of the registry tunnel ends the
            # whole SSH session (the forwarder raises in paramiko's thread). ``gw.run`` reports
            # that as exit -1, which ``registry.unreachable_error`` knows: say it the same way.
            raise RemoteCommandFailed(f"the SSH session ended during docker pull {ref}: {exc.message}",
                                      host=host.name, exit_code=-1) from None


# One progress line of docker push/pull on a terminal, once cursor moves are gone:
#   "4f4fb700ef54: Downloading  12.35MB/45.67MB" ("[==>   ] " before the counts on wide terminals)
_LAYER_LINE = re.compile(r"^([0-9a-f]{12}): (.*?)\s*(?:\[[^\]]*\]\s*)?"
                         r"(?:([0-9.e+]+\s?[kMGTP]?B)(?:/([0-9.e+]+\s?[kMGTP]?B))?)?\s*$")
_SIZE = re.compile(r"^([0-9.e+]+)\s?([kMGTP]?)B$")
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_MOVING = {"pull": "Downloading", "push": "Pushing"}
_DONE = {"pull": ("Download complete", "Verifying Checksum", "Extracting", "Pull complete"), "push": ("Pushed",)}
_SKIPPED = {"pull": ("Already exists",), "push": ("Layer already exists", "Mounted from")}


def docker_size(text: str) -> int | None:
    """docker's human sizes (decimal units, 4 significant digits) back to bytes: ``1.536kB`` -> 1536."""
    m = _SIZE.match(text.strip())
    if not m:
        return None
    try:
        return int(float(m.group(1)) * _DECIMAL[m.group(2)])
    except ValueError:
        return None


@dataclass
class DockerProgress:
    """Bytes moved by a ``docker pull`` / ``docker push`` from its terminal output.

    ``done``: bytes downloaded (pull) or uploaded (push) over every layer that moves;
    ``total``: the sum of the sizes docker has announced so far (None before any). Layers
    the other side already has are not counted.
    """

    kind: str  # "pull" or "push"
    layers: dict[str, list] = field(default_factory=dict)  # id -> [done, total or None]
    _pending: str = ""
    _lines: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def done(self) -> int:
        return sum(d for d, _ in self.layers.values())

    @property
    def total(self) -> int | None:
        if all(t is None for _, t in self.layers.values()):
            return None
        # A layer docker gives no size for counts as what it has moved so far.
        return sum(d if t is None else t for d, t in self.layers.values())

    def last_lines(self, n: int = 5) -> list[str]:
        """The last lines that were not layer progress (docker's messages, errors among them)."""
        return self._lines[-n:]

    def feed(self, data: bytes) -> bool:
        """Take more output; True when the byte counts changed."""
        text = (self._pending + self._decoder.decode(data)).replace("\r", "\n")
        # A line still being written (or an escape sequence cut in two) waits for the rest.
        *complete, self._pending = text.split("\n")
        if len(self._pending) > 4096:  # no line is this long: not docker progress; drop it
            self._pending = ""
        before = (self.done, self.total)
        for line in complete:
            line = local_pty.plain_text(line).strip()
            if line:
                self._line(line)
        return (self.done, self.total) != before

    def _line(self, line: str) -> None:
        m = _LAYER_LINE.match(line)
        if not m:
            self._lines = [*self._lines[-19:], line]
            return
        layer, status, current, total = m.groups()
        if status.startswith(_SKIPPED[self.kind]):
            self.layers.pop(layer, None)
            return
        entry = self.layers.setdefault(layer, [0, None])
        if status == _MOVING[self.kind] and current:
            size = docker_size(total) if total else None
            entry[1] = size if size is not None else entry[1]
            # NOTE: small layers overshoot their announced size in docker's own count.
            entry[0] = min(max(entry[0], docker_size(current) or 0), entry[1] or float("inf"))
        elif status.startswith(_DONE[self.kind]) and entry[1] is not None:
            entry[0] = entry[1]
