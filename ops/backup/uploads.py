"""``inv backup.uploads``: the app's uploads volume as a tar.gz stream to S3.

On the first web host, a one-off container (``--rm``, no network, log driver
``none`` so the stream is not copied into a json log on the host) mounts the
uploads volume read-only and writes ``tar -czf - .`` to stdout; the bytes go over
SSH straight into the multipart upload, exactly like ``backup.db`` (exit status
checked before the upload completes; any failure aborts it; manifest last).

The image is the one the current release runs (it is on the host, and has tar,
find and awk, like any Debian-based image); with no release yet, the proxy image.
After the archive, the same container counts the volume's regular files and their
bytes (``find -printf``) and prints one line on stderr; those go into the manifest.
NOTE: the count is taken right after the tar, in the same run: a file written in
between shows in one and not the other; tar's archive is the truth for restores.

Where the uploads live is the inventory's ``uploads:`` layout (``ops/uploads_layout.py``): one
web host's own volume, or, with several web hosts, one shared directory every web host mounts
(the volume ``<app>-uploads`` is its bind): the set is archived once, through the first web host,
after checking that host's volume is the shared directory (a per-host volume there is refused).
"""

from __future__ import annotations

import contextlib
import re
import secrets

from botocore.exceptions import BotoCoreError, ClientError

from ops import __version__, audit, uploads_layout
from ops.backup import crypto, manifest, second_copy
from ops.backup.command_upload import stream_to_s3
from ops.backup.context import BackupContext, BackupFailed
from ops.commands import Argv, docker, render
from ops.deploy.release import current_release
from ops.errors import ConfigError, HostError
from ops.inventory import Environment, Host
from ops.operation import Operation
from ops.registry import service_ref
from ops.remote import Gateway

DATA = "/data"
STATS_RE = re.compile(r"^ops-uploads-stats files=(\d+) bytes=(\d+)$", re.MULTILINE)
# tar, then the stats line on stderr. GNU tar exits 1 for "file changed as we read it"
# (a live volume: the archive is still valid, the warning stays in stderr) and 2 for a
# fatal error, which fails the backup.
# The work dirs of `inv restore.uploads` (.restore-*, .before-restore-*) are not uploads.
SCRIPT = (f"cd {DATA} || exit 2; "
          "tar --exclude='./.restore-*' --exclude='./.before-restore-*' -czf - .; rc=$?; "
          "[ $rc -le 1 ] || exit $rc; "
          "find . \\( -path './.restore-*' -o -path './.before-restore-*' \\) -prune -o -type f -printf '%s\\n' "
          "| awk '{n++; b+=$1} END {printf \"ops-uploads-stats files=%d bytes=%d\\n\", n, b}' >&2")


def volume_name(env: Environment) -> str:
    """The named volume the web containers mount at FILE_UPLOAD_DIR (see ops/deploy/switch.py); with
    shared uploads (``uploads.storage: shared``) it is a bind of ``uploads.path``."""
    return uploads_layout.volume_name(env.app)


def web_host(env: Environment) -> Host:
    uploads_layout.refuse_object_storage(env)
    webs = env.with_roles("web")
    if not webs:
        raise ConfigError(f"{env.path.name} has no web host: the uploads volume lives on the web hosts",
                          hint="give a host the web role")
    return webs[0]


def tar_argv(env: Environment, image: str, *, name: str | None = None) -> Argv:
    return docker.run_argv(name or f"{env.app}-backup-uploads-{secrets.token_hex(3)}", image,
                           network="none", volumes=[(volume_name(env), DATA, "ro")],
                           labels={"ops.app": env.app, "ops.role": "backup"}, restart=None, detach=False,
                           remove=True, entrypoint="sh", command=["-c", SCRIPT],
                           log_driver="none", log_opts=None)


def parse_stats(stderr: str) -> tuple[int, int]:
    """(file count, bytes) from the container's stderr; the last stats line wins."""
    found = STATS_RE.findall(stderr)
    if not found:
        raise BackupFailed("the uploads archive finished but the file count line is missing from its stderr",
                           hint="is find/awk missing from the image? " + (stderr.strip()[-200:] or "no stderr"))
    files, size = found[-1]
    return int(files), int(size)


def tar_image(gw: Gateway, host: Host) -> str:
    release = current_release(gw, host)
    if release is not None:
        return release.image
    return service_ref(gw.env, gw.env.proxy.image)


def check_volume(gw: Gateway, host: Host) -> None:
    name = volume_name(gw.env)
    if gw.env.uploads.shared:
        uploads_layout.ensure_volume(gw, host)  # the shared directory, or a refusal naming the fix
        return
    if not gw.query(host, docker.volume_inspect_argv(name), check=False).ok:
        raise HostError(f"no volume {name} on {host.name}: nothing to back up",
                        host=host.name, hint=f"deploy the app first: inv deploy --host {gw.env.name}")


def plan_uploads(ctx: BackupContext) -> list[str]:
    env = ctx.env
    host = web_host(env)
    started = audit.utcnow()
    backup_id = manifest.new_backup_id("uploads", started)
    encrypted = bool(ctx.passphrase())
    key = manifest.data_key(env, "uploads", backup_id, started, manifest.extension("uploads", encrypted=encrypted))
    return [
        f"lock environment {env.name} on {', '.join(env.hosts)} (backup.uploads)",
        *([f"{host.name}: check that volume {volume_name(env)} is the shared uploads.path {env.uploads.path} "
           "(every web host's uploads: one set)"] if env.uploads.shared else []),
        f"{host.name}$ {render(tar_argv(env, 'release-image')).replace('release-image', '<image of the current release>')}",
        f"  stdout -> s3://{ctx.bucket}/{key} (multipart, sha256 while streaming"
        f"{', client-side encrypted' if encrypted else ''})",
        f"  then s3://{ctx.bucket}/{manifest.manifest_key(key)} (written last)",
        *([f"  {second_copy.describe(ctx)}"] if env.s3.copy else []),
    ]


def backup_uploads(ctx: BackupContext, gw: Gateway, *, part_size: int | None = None,
                   lock_wait: float = 0.0) -> manifest.Manifest:
    env = ctx.env
    host = web_host(env)
    passphrase = ctx.passphrase()
    started = audit.utcnow()
    backup_id = manifest.new_backup_id("uploads", started)
    key = manifest.data_key(env, "uploads", backup_id, started,
                            manifest.extension("uploads", encrypted=bool(passphrase)))
    hosts = list(env.hosts.values())
    with Operation(gw, "backup.uploads", hosts, say=ctx.say, version=backup_id, lock_wait=lock_wait,
                   detail=f"{backup_id} -> {key}", scope="backup") as op:
        check_volume(gw, host)
        image = tar_image(gw, host)
        name = f"{env.app}-backup-{backup_id}"
        ctx.say(f"{host.name}: tar -czf of volume {volume_name(env)} -> s3://{ctx.bucket}/{key}")
        encryptor = crypto.encryptor(passphrase, backup_id) if passphrase else None
        result, stderr = stream_to_s3(
            ctx, gw, host, tar_argv(env, image, name=name), key, what="tar of the uploads volume",
            part_size=part_size, encryptor=encryptor,
            on_failure=lambda: gw.run(host, docker.rm_argv(name, force=True), check=False, timeout=60))
        try:
            files, size = parse_stats(stderr)
        except BackupFailed:
            with contextlib.suppress(BotoCoreError, ClientError):
                ctx.client.delete_object(Bucket=ctx.bucket, Key=key)
            raise
        m = manifest.Manifest(
            id=backup_id, kind="uploads", env=env.name, object_key=key, size=result.size,
            sha256=result.sha256, started_at=started, finished_at=audit.utcnow(), tool_version=__version__,
            encryption=encryptor.info if encryptor is not None else None,
            file_count=files, source_bytes=size)
        ctx.put_manifest(m, new_backup=True)
        copied = second_copy.replicate_or_warn(ctx, m)
        op.outcome = f"{backup_id} {m.file_count} files {m.size} bytes key {key}" + (
            "" if env.s3.copy is None else f"; copy in s3://{copied.bucket}" if copied else "; SECOND COPY FAILED")
    for warning in op.warnings:
        ctx.say(f"warning: {warning}")
    return m
