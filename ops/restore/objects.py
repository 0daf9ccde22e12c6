"""Reading a backup object from S3: hashed on the way, decrypted when the manifest says so,
checked against its manifest before anything is changed and again after it was streamed."""

from __future__ import annotations

import contextlib
import hashlib
import time

from botocore.exceptions import BotoCoreError, ClientError

from ops.backup.context import BackupContext
from ops.backup.manifest import Manifest
from ops.backup.stream_upload import download_stream
from ops.errors import ConfigError, OpsError
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


def check_object(ctx: BackupContext, m: Manifest) -> float:
    """Stream the whole object and hash it: refuse unless its size and SHA-256 are the manifest's.

    Returns the seconds it took. Runs before anything is changed (and in --dry-run).
    """
    t0 = time.monotonic()
    body, size = download_stream(ctx.client, ctx.bucket, m.object_key)
    reader = HashingReader(body)
    try:
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
    return time.monotonic() - t0


def plain_reader(ctx: BackupContext, m: Manifest, stored):
    """The backup's bytes as written by pg_dump / tar: decrypted when the manifest says so."""
    if not m.encrypted:
        return stored
    from ops.backup import crypto

    passphrase = ctx.passphrase()
    if not passphrase:
        raise ConfigError(f"backup {m.id} is encrypted ({m.encryption.get('scheme')}) and no passphrase is "
                          "configured", hint="set backup.encryption_key_var and put the passphrase in the ops env file")
    return crypto.decrypt_stream(stored, passphrase)


@contextlib.contextmanager
def object_stream(ctx: BackupContext, m: Manifest):
    """(hashing reader of the stored bytes, reader of the plain bytes); the S3 body closed after."""
    body, _ = download_stream(ctx.client, ctx.bucket, m.object_key)
    hashed = HashingReader(body)
    try:
        yield hashed, plain_reader(ctx, m, hashed)
    except (BotoCoreError, ClientError) as exc:
        raise _s3_read_error(m, exc) from None
    finally:
        body.close()


def check_streamed(m: Manifest, hashed: HashingReader) -> None:
    if hashed.size != m.size or hashed.sha256 != m.sha256:
        raise RestoreFailed(f"the bytes streamed from S3 ({hashed.size} bytes, sha256 {hashed.sha256[:16]}...) are not "
                            f"backup {m.id}'s ({m.size} bytes, {m.sha256[:16]}...): the object changed during the restore")
