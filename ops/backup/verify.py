"""``inv backup.verify``: a restore drill for one backup.

db backups: the manifest is authenticated first (``ops.backup.authenticity``; a forged or
unauthenticated one is refused and never marked). Then the object streams from S3 through
the operator's machine (SHA-256 computed on the way) into ``pg_restore`` inside the
Postgres accessory, running as the powerless restore role (``ops.restore.role``), restoring
into a scratch database ``ops_verify_<id>_<rand>`` that role owns. No unchecked byte reaches
pg_restore: an encrypted object is authenticated chunk by chunk (bound to the backup id)
before its plaintext is handed on; an unencrypted one is hashed in full first and then read
again only if it is still that object (``If-Match``).
Then the scratch database's per-table row counts (and checksums, when the manifest
has them) and its newest Prisma migration are compared with the manifest. The
scratch database is dropped whatever happens. The outcome is written into the
manifest (``verified: {at, ok, detail}``); a checksum mismatch is never marked ok.

uploads backups: the object streams from S3 and is read as a tar.gz here (nothing
written to disk, no host touched); its SHA-256, file count and bytes are compared.

The drill never touches the app's database (only the scratch one), so it takes
no environment lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import secrets
import tarfile
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from ops import audit
from ops.backup import authenticity, catalog, crypto, second_copy
from ops.backup.authenticity import Authenticity
from ops.backup.catalog import Entry
from ops.backup.context import BackupContext
from ops.backup.manifest import Manifest
from ops.backup.stream_upload import ObjectChanged, download_object
from ops.commands import Argv, docker
from ops.errors import OpsError
from ops.postgres import CHECKSUM_SCHEME, PgTarget, migration_head, pg_target, session, table_stats
from ops.remote import Gateway, pipe_into
from ops.restore.role import RESTORE_ROLE, ensure_restore_role

CHUNK = 1024 * 1024


class VerifyFailed(OpsError):
    """The drill found a difference (or could not complete)."""


@dataclass
class VerifyResult:
    entry: Entry
    ok: bool
    problems: list[str] = field(default_factory=list)
    tables: int = 0
    rows: int = 0
    seconds: float = 0.0

    @property
    def detail(self) -> str:
        if self.ok:
            kind = self.entry.manifest.kind
            if kind == "db":
                return f"restored into a scratch database: {self.tables} tables, {self.rows} rows, sha256 and " \
                       f"migration head match"
            return f"sha256 matches; {self.rows} files listed from the archive"
        return "; ".join(self.problems)


# ---------------------------------------------------------------- pure comparisons


def scratch_name(backup_id: str) -> str:
    """``ops_verify_<id, lowercased, [a-z0-9_] only>_<4 hex>``: unique per run, < 63 bytes."""
    base = re.sub(r"[^a-z0-9]+", "_", backup_id.lower()).strip("_")[:40]
    return f"ops_verify_{base}_{secrets.token_hex(2)}"


def compare(m: Manifest, counts: dict[str, int], checksums: dict[str, str], head: str | None) -> list[str]:
    """Every difference between the manifest and what was restored, one line each."""
    problems = []
    for table in sorted(set(m.table_counts) | set(counts)):
        want, got = m.table_counts.get(table), counts.get(table)
        if want is None:
            problems.append(f"table {table}: restored with {got} rows but not in the manifest")
        elif got is None:
            problems.append(f"table {table}: {want} rows in the manifest but missing after restore")
        elif want != got:
            problems.append(f"table {table}: {want} rows in the manifest, {got} restored")
    for table in sorted(m.table_checksums):
        want = m.table_checksums[table]
        if not want.startswith(CHECKSUM_SCHEME + ":") or table not in counts:
            continue
        if checksums.get(table) != want and m.table_counts.get(table) == counts.get(table):
            problems.append(f"table {table}: row checksum differs from the manifest's (same row count)")
    if (m.newest_migration or None) != (head or None):
        problems.append(f"migration head: {m.newest_migration or 'none'} in the manifest, {head or 'none'} restored")
    return problems


# ---------------------------------------------------------------- streaming


class HashingReader(io.RawIOBase):
    """Passes bytes through, SHA-256 and byte count on the way."""

    def __init__(self, raw):
        super().__init__()
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        if not data:
            return 0
        n = len(data)
        buffer[:n] = data
        self.sha.update(data)
        self.size += n
        return n

    def drain(self) -> None:
        """Read what is left (so the digest covers the whole object)."""
        while self.read(CHUNK):
            pass


def createdb_argv(target: PgTarget, name: str, owner: str = RESTORE_ROLE) -> Argv:
    return docker.exec_argv(target.container, "createdb", "--no-password", f"--username={target.user}",
                            "--template=template0", f"--owner={owner}", name)


def dropdb_argv(target: PgTarget, name: str) -> Argv:
    # --force (PostgreSQL 13+) ends sessions still connected to it.
    return docker.exec_argv(target.container, "dropdb", "--no-password", f"--username={target.user}",
                            "--if-exists", "--force", name)


def pg_restore_argv(target: PgTarget, name: str, role: str = RESTORE_ROLE) -> Argv:
    # --exit-on-error: a drill that "mostly" restored is a failed drill. As the restore role, never
    # the superuser: the archive is SQL that pg_restore runs (see ops/restore/role.py).
    return docker.exec_argv(target.container, "pg_restore", "--no-password", f"--username={role}",
                            f"--dbname={name}", "--no-owner", "--exit-on-error", interactive=True)


# ---------------------------------------------------------------- the drill


def authenticate(ctx: BackupContext, entry: Entry, *, trust_unauthenticated: bool = False) -> Authenticity:
    """Refuse (NotAuthentic, nothing marked) a backup whose manifest cannot be shown to be ours."""
    return authenticity.check(entry.manifest, ctx.manifest_key(), env_name=ctx.env.name,
                              trust_unauthenticated=trust_unauthenticated)


def choose(ctx: BackupContext, backup_id: str | None) -> Entry:
    """The backup to drill: ``backup_id``, or the newest db backup with a usable manifest."""
    entries = catalog.list_backups(ctx.env, ctx.client)
    # NOTE: a skipped (unreadable) manifest is never chosen; say so, or "the newest" could
    # silently be an older backup than the operator thinks.
    for skipped in entries.skipped:
        ctx.say(f"warning: {skipped.warning}")
    if backup_id:
        return catalog.get(entries, backup_id)
    entry = catalog.newest(entries, "db")
    if entry is None:
        raise catalog.BackupNotFound("no db backups to verify",
                                     hint=f"take one first: inv backup.db --host {ctx.env.name}")
    return entry


def choose_source(ctx: BackupContext, backup_id: str | None, source: str = "") -> tuple[BackupContext, Entry]:
    """(the context to read from, the backup): ``source`` (primary or copy) when given; else the
    primary, and the second copy (``s3.copy``) when the primary does not hold it, saying so."""
    if source:
        src = second_copy.source_context(ctx, source)
        return src, choose(src, backup_id)
    try:
        return ctx, choose(ctx, backup_id)
    except catalog.BackupNotFound as exc:
        cc = ctx.copy_context()
        if cc is None:
            raise
        try:
            entry = choose(cc, backup_id)
        except OpsError:
            raise exc from None
        ctx.say(f"warning: {exc.message} in the primary s3://{ctx.bucket}: reading {entry.id} from the second copy, "
                f"s3://{cc.bucket}")
        return cc, entry


def _open(ctx: BackupContext, entry: Entry, auth: Authenticity, *, if_match: str | None = None
          ) -> tuple[HashingReader, object]:
    """(hashing reader over the stored bytes, plaintext reader); an encrypted object's first chunk is
    authenticated before this returns (DecryptError otherwise)."""
    try:
        body, _size, _etag = download_object(ctx.client, ctx.bucket, entry.data_key, if_match=if_match)
    except (BotoCoreError, ClientError) as exc:
        raise catalog.s3_error(exc, f"reading {entry.data_key}", ctx.bucket) from None
    hashing = HashingReader(body)
    if entry.manifest.encrypted:
        passphrase = ctx.passphrase()
        if not passphrase:
            body.close()
            raise VerifyFailed(f"backup {entry.id} is encrypted but backup.encryption_key_var is not set",
                               hint="set it (and the passphrase in the ops env file) to verify this backup")
        try:
            return hashing, crypto.decrypt_stream(io.BufferedReader(hashing, CHUNK), passphrase,
                                                  bound_to=auth.bound_to)
        except BaseException:
            body.close()
            raise
    return hashing, hashing


def _prehash(ctx: BackupContext, entry: Entry) -> tuple[list[str], str]:
    """(checksum problems, ETag): the whole object hashed before a byte of it goes anywhere."""
    body, _size, etag = download_object(ctx.client, ctx.bucket, entry.data_key)
    hashing = HashingReader(body)
    try:
        hashing.drain()
    finally:
        with contextlib.suppress(Exception):
            body.close()
    return _checksum_problems(entry.manifest, hashing), etag


def _checksum_problems(m: Manifest, hashing: HashingReader) -> list[str]:
    problems = []
    if hashing.size != m.size:
        problems.append(f"object is {hashing.size} bytes, manifest says {m.size}")
    if hashing.sha.hexdigest() != m.sha256:
        problems.append(f"sha256 mismatch: object {hashing.sha.hexdigest()[:16]}..., manifest {m.sha256[:16]}...")
    return problems


def verify_db(ctx: BackupContext, gw: Gateway, entry: Entry, auth: Authenticity | None = None) -> VerifyResult:
    m = entry.manifest
    auth = auth or authenticate(ctx, entry)
    target = pg_target(ctx.env, ctx.app_values())
    name = scratch_name(m.id)
    result = VerifyResult(entry, ok=False)
    etag = None
    if not m.encrypted:
        # NOTE: nothing authenticates plaintext chunk by chunk: check the whole object first.
        problems, etag = _prehash(ctx, entry)
        if problems:
            result.problems = problems
            return result
    ensure_restore_role(gw, target)
    ctx.say(f"{target.host.name}: restoring {m.id} ({m.size} bytes) into scratch database {name} as {RESTORE_ROLE}")
    gw.run(target.host, createdb_argv(target, name))
    try:
        try:
            hashing, plain = _open(ctx, entry, auth, if_match=etag)
        except crypto.DecryptError as exc:  # another backup's object, tampered, or a wrong passphrase
            result.problems = [f"cannot decrypt {m.id}: {exc}"]
            return result
        except ObjectChanged as exc:
            result.problems = [exc.message]
            return result
        restore_error: OpsError | None = None
        try:
            pipe_into(gw, target.host, pg_restore_argv(target, name), plain, chunk_size=CHUNK)
        except crypto.DecryptError as exc:  # tampered or truncated ciphertext
            restore_error = VerifyFailed(f"cannot decrypt {m.id}: {exc}")
        except OpsError as exc:
            restore_error = exc
        with contextlib.suppress(OSError, OpsError):
            hashing.drain()  # the digest must cover the whole object, even after a failure
        problems = _checksum_problems(m, hashing)
        if problems:  # the root cause when both happen: a damaged object fails pg_restore too
            result.problems = problems
            return result
        if restore_error is not None:
            result.problems = [f"pg_restore failed: {restore_error}"]
            return result
        # NOTE: counts (and hashes) whole tables: the long bound, as backup.db's own counting session.
        with session(gw, target, dbname=name, statement_timeout=gw.env.ssh.command_timeout) as conn:
            counts, sums = table_stats(conn, checksums=bool(m.table_checksums))
            head = migration_head(conn)
        result.tables, result.rows = len(counts), sum(counts.values())
        result.problems = compare(m, counts, sums, head)
        result.ok = not result.problems
        return result
    finally:
        if "hashing" in locals():
            with contextlib.suppress(Exception):
                hashing.raw.close()
        try:
            gw.run(target.host, dropdb_argv(target, name), timeout=120)
        except OpsError as exc:
            ctx.say(f"warning: scratch database {name} not dropped: {exc} — drop it by hand: "
                    f"docker exec {target.container} dropdb -U {target.user} {name}")


def verify_uploads(ctx: BackupContext, entry: Entry, auth: Authenticity | None = None) -> VerifyResult:
    m = entry.manifest
    auth = auth or authenticate(ctx, entry)
    result = VerifyResult(entry, ok=False)
    try:
        hashing, plain = _open(ctx, entry, auth)
    except crypto.DecryptError as exc:
        result.problems = [f"cannot decrypt: {exc}"]
        return result
    files = size = 0
    try:
        with tarfile.open(fileobj=plain, mode="r|gz") as tar:
            for member in tar:
                if member.isfile():
                    files += 1
                    size += member.size
    except crypto.DecryptError as exc:
        result.problems.append(f"cannot decrypt: {exc}")
    except (tarfile.TarError, OSError, EOFError) as exc:
        result.problems.append(f"not a readable tar.gz: {exc}")
    with contextlib.suppress(OSError, OpsError):
        hashing.drain()
    with contextlib.suppress(Exception):
        hashing.raw.close()
    checksum = _checksum_problems(m, hashing)
    if checksum:
        result.problems = checksum
        return result
    if not result.problems:
        if m.file_count is not None and files != m.file_count:
            result.problems.append(f"archive has {files} files, manifest says {m.file_count}")
        if m.source_bytes is not None and size != m.source_bytes:
            result.problems.append(f"archive has {size} bytes of files, manifest says {m.source_bytes}")
    result.rows = files
    result.ok = not result.problems
    return result


def verify(ctx: BackupContext, gw: Gateway, backup_id: str | None = None, *,
           trust_unauthenticated: bool = False, source: str = "") -> VerifyResult:
    """Run the drill, record the outcome in the manifest, audit it; raise VerifyFailed when not ok.

    ``source``: primary or copy (``s3.copy``); default the primary, the copy when the primary does
    not hold the backup. The outcome is recorded in both targets' manifests (where both hold it).
    A backup that is not authentic (``NotAuthentic``) is refused before the drill and NOT marked:
    marking rewrites (and signs) the manifest, which must never launder a forged one."""
    primary = ctx
    ctx, entry = choose_source(ctx, backup_id, source)
    auth = authenticate(ctx, entry, trust_unauthenticated=trust_unauthenticated)
    started = audit.utcnow()
    result = (verify_db(ctx, gw, entry, auth) if entry.manifest.kind == "db"
              else verify_uploads(ctx, entry, auth))
    result.seconds = (audit.utcnow() - started).total_seconds()
    entry.manifest.mark_verified(result.ok, result.detail, audit.utcnow())
    ctx.put_manifest(entry.manifest)
    primary.audit(gw, "backup.verify", "ok" if result.ok else "failed",
                  f"{entry.id}{'' if ctx is primary else ' (read from the second copy)'}: {result.detail}")
    if not result.ok:
        raise VerifyFailed(f"backup {entry.id} failed verification: {result.detail}",
                           hint="do not rely on this backup; take a new one and investigate "
                                f"(inv backup.db --host {ctx.env.name})")
    return result


__all__ = ["VerifyFailed", "VerifyResult", "compare", "scratch_name", "verify"]
