"""Reading a backup object from S3, in an order where no unchecked byte reaches pg_restore or tar:

1. the manifest is authenticated (``ops.backup.authenticity``: HMAC keyed from the passphrase);
   with a key configured, an unauthenticated manifest or an unencrypted object is refused;
2. the whole object is streamed and hashed: its size and SHA-256 must be the (authenticated)
   manifest's; its ETag is kept;
3. the restore reads it again only with ``If-Match: <that ETag>`` (a swap in between is refused
   by S3 itself), hashed again on the way; an encrypted object is decrypted chunk by chunk, each
   chunk authenticated (and bound to the backup id) before its bytes are handed on, the first
   one before the consumer is even started.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from ops.backup import authenticity
from ops.backup.authenticity import Authenticity
from ops.backup.context import BackupContext
from ops.backup.manifest import Manifest
from ops.backup.stream_upload import ObjectChanged, download_object
from ops.errors import ConfigError, OpsError
from ops.progress import counting_reader
from ops.restore.errors import RestoreFailed, RestoreRefused

CHUNK = 1024 * 1024


class HashingReader:
    """Passes reads through, counting and hashing the bytes (the bytes stored in S3)."""

    def __init__(self, raw):
        self.raw = raw
        self.size = 0
        self._sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.size += len(data)
        self._sha.update(data)
        return data

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def _s3_read_error(m: Manifest, exc: Exception) -> OpsError:
    return OpsError(f"reading backup {m.id} from S3 failed: {exc}", hint="check the S3 endpoint and re-run")


@dataclass(frozen=True)
class CheckedObject:
    """A backup object that passed the checks before any change: what the restore may read, and
    where it was checked (the primary target or the second copy, ``s3.copy``): the restore reads
    exactly there."""

    seconds: float
    etag: str
    authenticity: Authenticity
    bucket: str = ""
    source: str = "primary"
    client: object = field(default=None, repr=False, compare=False)


def authenticate(ctx: BackupContext, m: Manifest, *, trust_unauthenticated: bool = False) -> Authenticity:
    """Step 1 (see the module doc); RestoreRefused when the backup cannot be shown to be ours."""
    try:
        return authenticity.check(m, ctx.manifest_key(), env_name=ctx.env.name,
                                  trust_unauthenticated=trust_unauthenticated)
    except authenticity.NotAuthentic as exc:
        raise RestoreRefused(exc.message, hint=exc.hint) from None


def check_object(ctx: BackupContext, m: Manifest, *, trust_unauthenticated: bool = False) -> CheckedObject:
    """Steps 1 and 2: refuse unless the manifest is authentic and the object has its size and SHA-256.

    Runs before anything is changed (and in --dry-run).
    """
    t0 = time.monotonic()
    auth = authenticate(ctx, m, trust_unauthenticated=trust_unauthenticated)
    body, size, etag = download_object(ctx.client, ctx.bucket, m.object_key)
    try:
        with ctx.progress.transfer(f"check {m.id} (s3 -> sha256)", total=size) as moved:
            reader = HashingReader(counting_reader(body, moved))
            if size == m.size:
                while reader.read(CHUNK):
                    pass
    except (BotoCoreError, ClientError, OSError) as exc:
        raise _s3_read_error(m, exc) from None
    finally:
        body.close()
    if size != m.size:
        raise RestoreRefused(f"backup {m.id}: the object is {size} bytes, its manifest says {m.size}: damaged or "
                             "replaced; refusing to restore it (nothing was changed)",
                             hint="pick another backup: inv backup.list --host " + ctx.env.name)
    if reader.sha256 != m.sha256:
        raise RestoreRefused(f"backup {m.id}: the object's SHA-256 is {reader.sha256[:16]}..., its manifest says "
                             f"{m.sha256[:16]}...: damaged or replaced; refusing to restore it (nothing was changed)",
                             hint="pick another backup: inv backup.list --host " + ctx.env.name)
    return CheckedObject(time.monotonic() - t0, etag, auth, ctx.bucket, ctx.target, ctx.client)


def plain_reader(ctx: BackupContext, m: Manifest, stored, bound_to: str | None):
    """The backup's bytes as written by pg_dump / tar: decrypted when the manifest says so, the first
    chunk authenticated before this returns."""
    if not m.encrypted:
        return stored
    from ops.backup import crypto

    passphrase = ctx.passphrase()
    if not passphrase:
        raise ConfigError(f"backup {m.id} is encrypted ({m.encryption.get('scheme')}) and no passphrase is "
                          "configured", hint="set backup.encryption_key_var and put the passphrase in the ops env file")
    try:
        return crypto.decrypt_stream(stored, passphrase, bound_to=bound_to)
    except crypto.DecryptError as exc:
        raise RestoreRefused(f"backup {m.id}: {exc.message}; refusing it (nothing of it was restored)",
                             hint=exc.hint) from None


@contextlib.contextmanager
def object_stream(ctx: BackupContext, m: Manifest, checked: CheckedObject):
    """(hashing reader of the stored bytes, reader of the plain bytes) of exactly the object that was
    checked (``If-Match``); the S3 body closed after."""
    try:
        body, _, _ = download_object(checked.client or ctx.client, checked.bucket or ctx.bucket, m.object_key,
                                     if_match=checked.etag or None)
    except ObjectChanged as exc:
        raise RestoreRefused(f"backup {m.id}: {exc.message}; refusing it (nothing of it was restored)",
                             hint=exc.hint) from None
    try:
        with ctx.progress.transfer(f"restore {m.id} (s3 -> host)", total=m.size) as moved:
            hashed = HashingReader(counting_reader(body, moved))
            yield hashed, plain_reader(ctx, m, hashed, checked.authenticity.bound_to)
    except (BotoCoreError, ClientError) as exc:
        raise _s3_read_error(m, exc) from None
    finally:
        body.close()


def check_streamed(m: Manifest, hashed: HashingReader) -> None:
    if hashed.size != m.size or hashed.sha256 != m.sha256:
        raise RestoreFailed(f"the bytes streamed from S3 ({hashed.size} bytes, sha256 {hashed.sha256[:16]}...) are not "
                            f"backup {m.id}'s ({m.size} bytes, {m.sha256[:16]}...): the object changed during the restore")
