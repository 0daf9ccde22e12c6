"""``inv backup.db``: ``pg_dump -Fc`` next to the database, streamed over SSH into S3.

What happens, in order (every step under the environment lock):

1. the release serving on the first web host is read (for the manifest);
2. a psycopg session to the Postgres accessory (through an SSH forward via its
   host) opens a ``REPEATABLE READ READ ONLY`` transaction and exports its
   snapshot; in that snapshot it reads the server version and the newest applied
   Prisma migration;
3. ``docker exec <accessory> pg_dump -Fc --snapshot=<that snapshot>`` runs inside
   the accessory container (local trust auth: no password anywhere in argv); while
   it runs, the same session counts each table's rows (and sums a per-row hash,
   unless ``--no-checksums``) in that same snapshot, so the manifest describes
   exactly the data that was dumped;
4. its stdout is read off the SSH channel straight into ``upload_stream`` (S3
   multipart, SHA-256 while streaming): no temp file on either side, memory bounded
   by the part size;
5. the multipart upload only completes once pg_dump has exited 0 (the reader
   checks the exit status at EOF, *inside* the upload): any failure — pg_dump
   error, SSH cut, S3 error, Ctrl-C — aborts the multipart upload, terminates the
   remote dump, and no manifest is written;
6. the manifest is written last. A backup without a manifest does not exist.

Only the Postgres accessory is supported as the source: an external database
(no ``postgres`` accessory in the inventory) is refused with a clear error.
"""

from __future__ import annotations

import contextlib

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from ops import __version__, audit
from ops.background import Background
from ops.backup import crypto, manifest, second_copy
from ops.backup.command_upload import stream_to_s3
from ops.backup.context import BackupContext, BackupFailed
from ops.commands import Argv, docker, render
from ops.deploy.release import current_release_id
from ops.operation import Operation
from ops.postgres import (
    PgTarget,
    conninfo_value,
    open_snapshot,
    pg_target,
    session,
    table_stats,
    terminate_argv,
)
from ops.remote import Gateway
from ops.table import human_bytes

APPLICATION_PREFIX = "ops-backup-"


def pg_dump_argv(target: PgTarget, *, snapshot: str | None, application_name: str) -> Argv:
    """``pg_dump -Fc`` inside the accessory container, as POSTGRES_USER over the local socket.

    ``application_name`` tags the session so a failed backup can terminate it by name.
    """
    conninfo = f"dbname={conninfo_value(target.dbname)} application_name={conninfo_value(application_name)}"
    return docker.exec_argv(target.container, "pg_dump", "--format=custom", "--no-password",
                            f"--username={target.user}", *((f"--snapshot={snapshot}",) if snapshot else ()),
                            f"--dbname={conninfo}")


# ---------------------------------------------------------------- backup.db


def plan_db(ctx: BackupContext, *, checksums: bool) -> list[str]:
    """What ``backup.db`` would do (``--dry-run``): nothing is contacted."""
    env = ctx.env
    target = pg_target(env, ctx.app_values())
    started = audit.utcnow()
    backup_id = manifest.new_backup_id("db", started)
    encrypted = bool(ctx.passphrase())
    key = manifest.data_key(env, "db", backup_id, started, manifest.extension("db", encrypted=encrypted))
    dump = render(pg_dump_argv(target, snapshot="<exported snapshot>",
                               application_name=APPLICATION_PREFIX + backup_id))
    return [
        f"lock environment {env.name} on {', '.join(env.hosts)} (backup.db)",
        f"{target.host.name}: read the release on {env.with_roles('web')[0].name if env.with_roles('web') else '-'}",
        f"{target.host.name}: open a REPEATABLE READ snapshot of {target.dbname} (via an SSH forward); read the "
        f"server version, the newest Prisma migration, row counts{' and checksums' if checksums else ''} per table",
        f"{target.host.name}$ {ctx.masker(dump)}",
        f"  stdout -> s3://{ctx.bucket}/{key} (multipart, sha256 while streaming"
        f"{', client-side encrypted' if encrypted else ''})",
        f"  then s3://{ctx.bucket}/{manifest.manifest_key(key)} (written last)",
        *([f"  {second_copy.describe(ctx)}"] if env.s3.copy else []),
        f"audit line on {', '.join(env.hosts)}",
    ]


def _copy_outcome(ctx: BackupContext, copied) -> str:
    if ctx.env.s3.copy is None:
        return ""
    return f"; copy in s3://{copied.bucket}" if copied else "; SECOND COPY FAILED"


def backup_db(ctx: BackupContext, gw: Gateway, *, checksums: bool = True, part_size: int | None = None,
              lock_wait: float = 0.0, lock: bool = True, extra: dict | None = None) -> manifest.Manifest:
    """Dump the Postgres accessory to S3; return the manifest (written last), then copy it to the
    second target (``s3.copy``; a failure there is a warning on ``ctx``: the backup is good).

    ``lock=False``: the caller already holds the environment lock (a restore's
    safety backup runs under the restore's own lock). ``extra``: manifest keys written with it
    (e.g. a safety backup's reason), so no rewrite is needed after.
    """
    env = ctx.env
    target = pg_target(env, ctx.app_values())
    passphrase = ctx.passphrase()
    started = audit.utcnow()
    backup_id = manifest.new_backup_id("db", started)
    key = manifest.data_key(env, "db", backup_id, started, manifest.extension("db", encrypted=bool(passphrase)))
    appname = APPLICATION_PREFIX + backup_id
    webs = env.with_roles("web")
    hosts = list(env.hosts.values())
    # NOTE: the backup lock scope: a deploy or rollback may run meanwhile; a restore may not.
    with Operation(gw, "backup.db", hosts, say=ctx.say, version=backup_id, lock_wait=lock_wait, lock=lock,
                   detail=f"{backup_id} -> {key}", scope="backup") as op:
        release = current_release_id(gw, webs[0]) if webs else None
        ctx.say(f"{target.host.name}: snapshot of {target.dbname}: reading versions and row counts")
        # NOTE: this session counts (and hashes) whole tables, one statement each: the long timeout,
        # the same bound as the wait for its result below.
        with session(gw, target, statement_timeout=ctx.env.ssh.command_timeout) as conn:
            conn.execute(sql.SQL("SET application_name = {}").format(sql.Literal(appname)))
            snap = open_snapshot(conn)
            # NOTE: right after the snapshot was taken, by the server's clock: a commit is in this
            # backup only if it happened before (what `restore --at` chooses by).
            snapshot_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
            ctx.say(f"{target.host.name}: pg_dump -Fc {target.dbname} ({human_bytes(snap.database_bytes)} on disk) "
                    f"-> s3://{ctx.bucket}/{key}; row counts{' and checksums' if checksums else ''} meanwhile")
            encryptor = crypto.encryptor(passphrase, backup_id) if passphrase else None
            # NOTE: counts (and checksums) read the same snapshot as pg_dump, in parallel with it:
            # the backup takes max(dump, counts), not their sum.
            stats = Background(table_stats, conn, checksums=checksums)
            try:
                result, _ = stream_to_s3(
                    ctx, gw, target.host, pg_dump_argv(target, snapshot=snap.id, application_name=appname),
                    key, what="pg_dump", expected_size=snap.database_bytes, part_size=part_size,
                    encryptor=encryptor,
                    on_failure=lambda: gw.run(target.host, terminate_argv(target, appname), check=False,
                                              timeout=30))
            except BaseException:
                # on_failure terminated every session named appname, the counting one included:
                # it ends at once instead of scanning on for nothing.
                stats.join(timeout=30)
                raise
            try:
                counts, sums = stats.result(timeout=ctx.env.ssh.command_timeout)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                with contextlib.suppress(BotoCoreError, ClientError):
                    ctx.client.delete_object(Bucket=ctx.bucket, Key=key)
                reason = ctx.masker(str(exc) or type(exc).__name__).strip().splitlines()[-1]
                raise BackupFailed(f"reading row counts in the backup's snapshot failed: {reason}",
                                   host=target.host.name,
                                   hint="the dumped object was removed; no manifest written") from None
            conn.execute("COMMIT")
        m = manifest.Manifest(
            id=backup_id, kind="db", env=env.name, object_key=key, size=result.size, sha256=result.sha256,
            started_at=started, finished_at=audit.utcnow(), tool_version=__version__,
            encryption=encryptor.info if encryptor is not None else None, snapshot_at=snapshot_at,
            database=target.dbname, server_version=snap.server_version, newest_migration=snap.migration,
            app_release=release, table_counts=counts, table_checksums=sums, extra=dict(extra or {}),
        )
        ctx.put_manifest(m, new_backup=True)
        copied = second_copy.replicate_or_warn(ctx, m)
        op.outcome = (f"{backup_id} {m.size} bytes sha256 {m.sha256[:12]} key {key} (release {release or '-'})"
                      + _copy_outcome(ctx, copied))
    for warning in op.warnings:
        ctx.say(f"warning: {warning}")
    return m

