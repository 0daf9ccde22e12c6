"""``inv restore.uploads``: the archive extracted beside the live files in the uploads volume, its file
count checked, then swapped in by renames (the previous files kept in ``.before-restore-<ts>/``)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ops import uploads_layout
from ops.backup import uploads as backup_uploads
from ops.backup.context import BackupContext
from ops.commands import docker
from ops.errors import OpsError
from ops.interrupts import shielded_from_ctrl_c
from ops.inventory import Environment, Host
from ops.operation import Operation
from ops.remote import Gateway, pipe_into
from ops.restore.errors import RestoreFailed
from ops.restore.objects import check_streamed, object_stream
from ops.restore.plan import UploadsPlan

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# -- uploads ----------------------------------------------------------------------------
UPLOADS_DATA = "/data"
STATS_RE = re.compile(r"^ops-restore-stats files=(\d+)$", re.MULTILINE)
ASIDE_RE = re.compile(r"^ops-restore-aside (.+)$", re.MULTILINE)
# Extract into a hidden directory of the volume (the app lists no dot-names); count the files.
# NOTE: `cat` drains what tar leaves unread after its end-of-archive blocks (record padding),
# so the stream is always read to its end and an early exit means a failure.
EXTRACT_SCRIPT = (
    'set -eu; tmp=/data/.restore-"$1"; rm -rf "$tmp"; mkdir "$tmp"; '
    'tar -xzf - -C "$tmp" --numeric-owner; cat >/dev/null; '
    'printf "ops-restore-stats files=%s\\n" "$(find "$tmp" -type f | wc -l)"')
# Move the current entries into .before-restore-<ts>, the restored ones in; renames on one
# filesystem. Half way through a failure puts everything back where it was.
SWAP_SCRIPT = (
    'set -eu; tmp=/data/.restore-"$1"; old=/data/.before-restore-"$1"; test -d "$tmp"; mkdir "$old"; '
    # Name every live file the backup does not have: it moves aside (kept), it is never dropped silently.
    "(cd /data && find . \\( -path './.restore-*' -o -path './.before-restore-*' \\) -prune -o -type f -print) "
    '| while IFS= read -r f; do [ -e "$tmp/$f" ] || printf "ops-restore-aside %s\\n" "${f#./}"; done; '
    "mvall() { find \"$1\" -mindepth 1 -maxdepth 1 ! -name '.restore-*' ! -name '.before-restore-*' "
    "-exec sh -c 'd=$0; for e; do mv -- \"$e\" \"$d/\" || exit 1; done' \"$2\" {} + ; }; "
    'if mvall /data "$old" && mvall "$tmp" /data; then rm -rf "$tmp"; echo ops-restore-swapped; exit 0; fi; '
    'mvall /data "$tmp" || true; mvall "$old" /data || true; rmdir "$old" || true; exit 1')
CLEANUP_SCRIPT = 'rm -rf /data/.restore-"$1"'


def uploads_argv(env: Environment, image: str, script: str, ts: str, *, stdin: bool = False,
                 name: str | None = None) -> tuple[str, ...]:
    """A one-off root container (owners kept) with the uploads volume at /data, no network."""
    argv = docker.run_argv(name or f"{env.app}-restore-uploads-{ts.replace('_', '-')}", image, network="none",
                           volumes=[(backup_uploads.volume_name(env), UPLOADS_DATA, "")],
                           labels={"ops.app": env.app, "ops.role": "restore"}, restart=None, detach=False,
                           remove=True, entrypoint="sh", user="0", command=["-c", script, "sh", ts],
                           log_driver="none", log_opts=None)
    return (*argv[:2], "-i", *argv[2:]) if stdin else argv


@dataclass
class UploadsResult:
    backup: str
    hosts: list[str]
    files: int
    kept: str
    seconds: float
    cleanup_hint: str
    # per host: live files the backup did not have (moved aside into ``kept``, not deleted)
    aside: dict[str, list[str]] = field(default_factory=dict)


def restore_uploads(ctx: BackupContext, gw: Gateway, plan: UploadsPlan, *, say: Say = _quiet,
                    lock_wait: float = 0.0) -> UploadsResult:
    env, m = ctx.env, plan.manifest
    t0 = time.monotonic()
    files, image = 0, ""
    aside: dict[str, list[str]] = {}
    with Operation(gw, "restore.uploads", list(env.hosts.values()), say=say, version=m.id, lock_wait=lock_wait,
                   scope="exclusive", detail=f"{m.id} on {', '.join(h.name for h in plan.hosts)}") as op:
        for host in plan.hosts:
            say(f"{host.name}: extracting {m.id} into {backup_uploads.volume_name(env)}/.restore-{plan.ts}/")
            files, image, aside[host.name] = _restore_uploads_on(ctx, gw, host, plan)
            say(f"{host.name}: {files} files in place; previous ones in .before-restore-{plan.ts}/")
            if aside[host.name]:
                say(f"{host.name}: {len(aside[host.name])} file(s) were only in the live uploads, not in the "
                    f"backup: moved aside into .before-restore-{plan.ts}/, not deleted: "
                    + ", ".join(aside[host.name][:10]) + (" ..." if len(aside[host.name]) > 10 else ""))
        op.outcome = f"{m.id}: {files} files; previous kept in .before-restore-{plan.ts}"
    for warning in op.warnings:
        say(f"warning: {warning}")
    hint = (f"on {', '.join(h.name for h in plan.hosts)}: docker run --rm -v {backup_uploads.volume_name(env)}:/data "
            f"--user 0 --entrypoint rm {image} -rf /data/.before-restore-{plan.ts}")
    return UploadsResult(m.id, [h.name for h in plan.hosts], files, f".before-restore-{plan.ts}",
                         time.monotonic() - t0, hint, {h: a for h, a in aside.items() if a})


def _restore_uploads_on(ctx: BackupContext, gw: Gateway, host: Host, plan: UploadsPlan) -> tuple[int, str, list[str]]:
    env, m, ts = ctx.env, plan.manifest, plan.ts
    # The volume where the layout says (the per-host one created when missing; with shared uploads the
    # bind of uploads.path, a per-host volume refused): the restore must land in the set the app serves.
    uploads_layout.ensure_volume(gw, host)
    image = backup_uploads.tar_image(gw, host)
    name = f"{env.app}-restore-uploads-{ts.replace('_', '-')}"

    def cleanup() -> None:
        gw.run(host, docker.rm_argv(name, force=True), check=False)
        gw.run(host, uploads_argv(env, image, CLEANUP_SCRIPT, ts, name=name + "-rm"), check=False, timeout=600)

    try:
        with object_stream(ctx, m, plan.checked) as (hashed, plain):
            out = pipe_into(gw, host, uploads_argv(env, image, EXTRACT_SCRIPT, ts, stdin=True, name=name), plain)
        check_streamed(m, hashed)
        found = STATS_RE.findall(out.stdout)
        files = int(found[-1]) if found else None
        if files is None or (m.file_count is not None and files != m.file_count):
            raise RestoreFailed(f"{files if files is not None else 'an unknown number of'} files extracted, the "
                                f"manifest says {m.file_count}", host=host.name)
    except BaseException as exc:
        with shielded_from_ctrl_c(_quiet):
            cleanup()
        if isinstance(exc, OpsError):
            raise RestoreFailed(f"uploads restore of {m.id} failed before anything was switched: {exc} — the "
                                "live files were not touched", host=host.name) from None
        raise
    res = gw.run(host, uploads_argv(env, image, SWAP_SCRIPT, ts, name=name), check=False, timeout=600)
    if not res.ok or "ops-restore-swapped" not in res.stdout:
        with shielded_from_ctrl_c(_quiet):
            cleanup()
        raise RestoreFailed(f"moving the restored files into place failed ({res.stderr.strip()[-200:]}); the "
                            "previous files were put back", host=host.name)
    return files, image, ASIDE_RE.findall(res.stdout)
