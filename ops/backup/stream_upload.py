"""Stream bytes of unknown length into S3 with bounded memory; SHA-256 while streaming.

``upload_stream`` reads a binary file-like (e.g. pg_dump's stdout over SSH) in
part-size pieces and uploads them as a multipart upload. One part is uploaded in
a background thread while the next one is read, so the source never waits for a
whole part's upload and at most two parts are held in memory. The SHA-256 and size
are of the bytes STORED (after the optional client-side encryption).

On ANY exception — the reader failing (pg_dump error, SSH cut), S3 failing, a
Ctrl-C — the in-flight part is waited for, the multipart upload is aborted, and the
exception is re-raised: no object, no open multipart upload is left behind. A
stream shorter than one part is sent with a single PUT (nothing to abort).

Part size: S3 allows 10,000 parts and the operator's memory must stay small (two parts
are in memory: the one uploading and the one filling). So the part size follows the
data: the smallest whole MiB (>= 8 MiB) with which 10,000 parts hold TWICE the expected
size (a dump is rarely bigger than the database, and never twice), capped at 48 MiB
(~470 GiB per object; two parts + the interpreter stay under 150 MB). An unknown size
gets the cap. Only a stream that the cap cannot hold (an expected size above ~235 GiB)
gets bigger parts, and more memory. Buffers are the chunks read, not preallocated, and
never joined into a third copy (``_PartBody`` serves reads from the chunks).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from ops.backup.timeparse import as_utc
from ops.errors import OpsError

MiB = 1024 * 1024
TiB = 1024 ** 4
MAX_PARTS = 10_000
S3_MIN_PART_SIZE = 5 * MiB  # every part but the last must be at least this
MIN_PART_SIZE = 8 * MiB
MAX_MEMORY_PART_SIZE = 48 * MiB  # two of these + the interpreter: the operator's 150 MB budget
HEADROOM = 2  # parts cover twice the expected size
READ_CHUNK = 1 * MiB  # bytes asked of the reader per call

# Tests may lower this to exercise many parts with little data (S3 still wants 5 MiB).
_min_part_size = MIN_PART_SIZE


class Encryptor(Protocol):
    """A streaming transform (see ``ops.backup.crypto.encryptor``)."""

    def update(self, data: bytes) -> bytes: ...

    def finalize(self) -> bytes: ...


@dataclass(frozen=True)
class UploadResult:
    size: int  # bytes stored
    sha256: str  # hex SHA-256 of the bytes stored
    parts: int  # multipart parts (1 for a stream sent with a single PUT)
    source_size: int = 0  # bytes read from the reader (before encryption)
    part_size: int = 0
    etag: str = ""


def part_size_for(expected_size: int | None = None) -> int:
    """The part size for a stream of about ``expected_size`` bytes (None: unknown); see the module doc."""
    if expected_size is not None and expected_size < 0:
        raise ValueError(f"expected_size must be >= 0, got {expected_size}")
    if expected_size is None:
        return MAX_MEMORY_PART_SIZE
    needed = -(-(expected_size * HEADROOM) // (MAX_PARTS * MiB)) * MiB  # integer ceil, whole MiB
    if needed > MAX_MEMORY_PART_SIZE:
        return needed  # NOTE: the object could not be stored otherwise; memory follows
    return max(MIN_PART_SIZE, needed)


class _PartBody(io.RawIOBase):
    """A seekable read-only file over a list of byte chunks: a part without joining it."""

    def __init__(self, chunks: list[bytes]):
        super().__init__()
        self._chunks = chunks
        self._starts: list[int] = []
        total = 0
        for chunk in chunks:
            self._starts.append(total)
            total += len(chunk)
        self._len = total
        self._pos = 0

    def __len__(self) -> int:
        return self._len

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._len}[whence]
        self._pos = max(0, min(self._len, base + offset))
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._len - self._pos
        out = []
        want = min(size, self._len - self._pos)
        while want > 0:
            i = self._index(self._pos)
            chunk = self._chunks[i]
            offset = self._pos - self._starts[i]
            piece = chunk[offset:offset + want] if (offset or want < len(chunk)) else chunk
            out.append(piece)
            self._pos += len(piece)
            want -= len(piece)
        return out[0] if len(out) == 1 else b"".join(out)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _index(self, pos: int) -> int:
        # Sequential reads dominate: a bisect is still cheap for ~100 chunks.
        lo, hi = 0, len(self._starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._starts[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo


class _Source:
    """Fills parts from the reader (through the encryptor), hashing what will be stored."""

    def __init__(self, reader: BinaryIO, encryptor: Encryptor | None):
        self.reader = reader
        self.encryptor = encryptor
        self.sha256 = hashlib.sha256()
        self.stored = 0
        self.read_bytes = 0
        self.eof = False
        self._pending = b""  # encrypted bytes not yet placed in a part

    def _next(self, limit: int) -> bytes:
        """The next piece of stored bytes (at most ``limit``); b"" only at the end."""
        while True:
            if self._pending:
                piece, self._pending = self._pending[:limit], self._pending[limit:]
                return piece
            if self.eof:
                return b""
            data = self.reader.read(min(limit, READ_CHUNK) if self.encryptor is None else READ_CHUNK)
            if data is None:
                raise OpsError("the backup source returned no data in non-blocking mode",
                               hint="pass a blocking file-like reader")
            if not data:
                self.eof = True
                if self.encryptor is not None:
                    self._pending = self.encryptor.finalize()
                continue
            self.read_bytes += len(data)
            if self.encryptor is None:
                return bytes(data)
            self._pending = self.encryptor.update(bytes(data))

    def part(self, size: int) -> list[bytes]:
        """Up to ``size`` bytes as chunks; fewer only at the end of the stream."""
        chunks: list[bytes] = []
        have = 0
        while have < size:
            piece = self._next(size - have)
            if not piece:
                break
            chunks.append(piece)
            have += len(piece)
            self.sha256.update(piece)
        self.stored += have
        return chunks

    @property
    def done(self) -> bool:
        return self.eof and not self._pending


def upload_stream(client, bucket: str, key: str, reader: BinaryIO, *, part_size: int | None = None,
                  expected_size: int | None = None, sse: str | None = None,
                  encryptor: Encryptor | None = None) -> UploadResult:
    """Upload everything ``reader`` yields to s3://bucket/key; abort cleanly on any failure."""
    if part_size is None:
        part_size = part_size_for(expected_size)
    if part_size < _min_part_size:
        raise ValueError(f"part_size {part_size} is below the minimum {_min_part_size}")
    extra = {"ServerSideEncryption": sse} if sse else {}
    source = _Source(reader, encryptor)

    first = source.part(part_size)
    if source.done:
        # Whole stream fits in one part: a single PUT, nothing to abort on failure.
        body = _PartBody(first)
        try:
            response = client.put_object(Bucket=bucket, Key=key, Body=body, ContentLength=len(body),
                                         ContentType="application/octet-stream", **extra)
        except (ClientError, BotoCoreError) as exc:
            exc.add_note(f"uploading s3://{bucket}/{key} ({len(body)} bytes, single PUT)")
            raise
        result = UploadResult(source.stored, source.sha256.hexdigest(), 1, source.read_bytes, part_size,
                              response.get("ETag", ""))
        _check_size(client, bucket, key, result.size)
        return result

    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/octet-stream",
                                               **extra)["UploadId"]
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-part")
    inflight: Future | None = None
    completed: list[dict] = []
    number = 0
    try:
        chunks = first
        while chunks:
            number += 1
            if number > MAX_PARTS:
                raise OpsError(f"upload of s3://{bucket}/{key} exceeds {MAX_PARTS} parts of {part_size // MiB} MiB",
                               hint="pass a larger expected_size so the part size grows")
            body = _PartBody(chunks)
            if inflight is not None:
                completed.append(inflight.result())
            inflight = pool.submit(_upload_part, client, bucket, key, upload_id, number, body)
            del body
            chunks = source.part(part_size) if not source.done else []
        if inflight is not None:
            completed.append(inflight.result())
            inflight = None
        response = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                    MultipartUpload={"Parts": completed})
    except BaseException as exc:
        _abort(client, bucket, key, upload_id, pool, inflight, exc)
        raise
    pool.shutdown(wait=True)
    result = UploadResult(source.stored, source.sha256.hexdigest(), number, source.read_bytes, part_size,
                          response.get("ETag", ""))
    _check_size(client, bucket, key, result.size)
    return result


def _upload_part(client, bucket: str, key: str, upload_id: str, number: int, body: _PartBody) -> dict:
    try:
        response = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                      Body=body, ContentLength=len(body))
    except (ClientError, BotoCoreError) as exc:
        exc.add_note(f"uploading part {number} of s3://{bucket}/{key}")
        raise
    return {"PartNumber": number, "ETag": response["ETag"]}


def _abort(client, bucket: str, key: str, upload_id: str, pool: ThreadPoolExecutor,
           inflight: Future | None, exc: BaseException) -> None:
    # A part still uploading could land after the abort and keep storage alive: let
    # it finish (or fail) first. A second Ctrl-C here skips the wait.
    try:
        if inflight is not None:
            inflight.cancel()
            try:
                inflight.exception()
            except BaseException:  # cancelled, failed or interrupted: abort anyway
                pass
        pool.shutdown(wait=False, cancel_futures=True)
    finally:
        problem = None
        for _ in range(3):
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    problem = err
                    continue
            except BotoCoreError as err:
                problem = err
                continue
            problem = None
            try:
                left = client.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
            except (ClientError, BotoCoreError):
                break
            if not any(u.get("UploadId") == upload_id for u in left):
                break
        if problem is not None:
            exc.add_note(f"multipart upload {upload_id} of s3://{bucket}/{key} could not be aborted ({problem}); "
                         f"remove it with `aws s3api abort-multipart-upload --bucket {bucket} --key {key} "
                         f"--upload-id {upload_id}` or a lifecycle rule AbortIncompleteMultipartUpload")


def _check_size(client, bucket: str, key: str, size: int) -> None:
    """The stored object must have exactly the bytes we sent; otherwise delete it and fail."""
    try:
        stored = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    except (ClientError, BotoCoreError) as exc:
        exc.add_note(f"checking s3://{bucket}/{key} after upload")
        raise
    if stored != size:
        client.delete_object(Bucket=bucket, Key=key)
        raise OpsError(f"s3://{bucket}/{key} holds {stored} bytes after upload, {size} were sent; deleted it",
                       hint="the S3 endpoint lost data: retry the backup and check the endpoint")


class ObjectChanged(OpsError):
    """The object is no longer the one that was checked (its ETag differs)."""


def download_object(client, bucket: str, key: str, *, if_match: str | None = None) -> tuple[BinaryIO, int, str]:
    """(readable body, size, ETag) of an object, streamed (``body.read(n)``); close it when done.

    ``if_match``: only the object with exactly this ETag (the one checked before); anything
    else raises ObjectChanged instead of returning other bytes."""
    extra = {"IfMatch": if_match} if if_match else {}
    try:
        response = client.get_object(Bucket=bucket, Key=key, **extra)
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
        if code in ("NoSuchKey", "404"):
            raise OpsError(f"s3://{bucket}/{key} does not exist",
                           hint="the backup was deleted; pick another from `inv backup.list --host ENV`") from None
        if code in ("PreconditionFailed", "412"):
            raise ObjectChanged(f"s3://{bucket}/{key} was replaced after it was checked (its ETag is no longer "
                                f"{if_match})", hint="someone is writing to the bucket: investigate, then re-run") \
                from None
        raise OpsError(f"cannot read s3://{bucket}/{key}: {exc}",
                       hint="check the S3 endpoint and credentials") from None
    return response["Body"], response["ContentLength"], response.get("ETag", "")


def download_stream(client, bucket: str, key: str) -> tuple[BinaryIO, int]:
    """(readable body, size) of an object, streamed (``body.read(n)``); close it when done."""
    body, size, _ = download_object(client, bucket, key)
    return body, size


def sha256_of_object(client, bucket: str, key: str, *, progress: Callable[[int], None] | None = None,
                     chunk_size: int = 4 * MiB) -> str:
    """Hex SHA-256 of an object's bytes, streamed (constant memory)."""
    body, _ = download_stream(client, bucket, key)
    digest = hashlib.sha256()
    done = 0
    try:
        while data := body.read(chunk_size):
            digest.update(data)
            done += len(data)
            if progress:
                progress(done)
    except (ClientError, BotoCoreError) as exc:
        raise OpsError(f"reading s3://{bucket}/{key} failed after {done} bytes: {exc}",
                       hint="retry; check the S3 endpoint") from None
    finally:
        body.close()
    return digest.hexdigest()


def check_object(client, bucket: str, manifest) -> None:
    """Raise OpsError unless the stored object has the manifest's size and SHA-256."""
    try:
        size = client.head_object(Bucket=bucket, Key=manifest.object_key)["ContentLength"]
    except (ClientError, BotoCoreError):
        size = None
    if size is None:
        raise OpsError(f"backup {manifest.id}: data object {manifest.object_key} is missing",
                       hint="pick another backup from `inv backup.list --host ENV`")
    if size != manifest.size:
        raise OpsError(f"backup {manifest.id}: object is {size} bytes, manifest says {manifest.size} (damaged)",
                       hint="pick another backup from `inv backup.list --host ENV`")
    actual = sha256_of_object(client, bucket, manifest.object_key)
    if actual != manifest.sha256:
        raise OpsError(f"backup {manifest.id}: SHA-256 {actual[:12]}… does not match the manifest's "
                       f"{manifest.sha256[:12]}… (damaged)", hint="pick another backup from `inv backup.list --host ENV`")


def abort_stale_uploads(client, bucket: str, prefix: str, *, older_than: timedelta, now: datetime) -> list[str]:
    """Abort multipart uploads under ``prefix`` started before now - older_than (killed backups); their keys."""
    cutoff = as_utc(now) - older_than
    aborted = []
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            if as_utc(upload["Initiated"]) < cutoff:
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted.append(upload["Key"])
    return aborted
