"""ops/backup/stream_upload.py against a real (in-process) moto S3 server."""

from __future__ import annotations

import hashlib
import io
import random
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from ops.backup import crypto, stream_upload
from ops.backup.manifest import Manifest
from ops.backup.stream_upload import (
    MAX_PARTS,
    MiB,
    TiB,
    check_object,
    download_stream,
    part_size_for,
    sha256_of_object,
    upload_stream,
)
from ops.errors import OpsError

PART = 5 * MiB  # S3's minimum part size


@pytest.fixture
def bucket(fresh_bucket):
    """A fresh bucket and a client configured exactly like ops/s3.py makes them."""
    env, client = fresh_bucket("upload-test")
    return client, env.s3.bucket


@pytest.fixture(autouse=True)
def small_parts(monkeypatch):
    monkeypatch.setattr(stream_upload, "_min_part_size", PART)


class GenReader(io.RawIOBase):
    """``total`` deterministic pseudo-random bytes from a generator, in short uneven reads (like SSH).

    ``fail_at``: raise ``error`` once that many bytes have been handed out.
    """

    def __init__(self, total: int, *, seed: int = 1, fail_at: int | None = None,
                 error: BaseException | None = None, on_read=None):
        super().__init__()
        self.total = total
        self.given = 0
        self.fail_at = fail_at
        self.error = error
        self.on_read = on_read
        self._rng = random.Random(seed)
        self._gen = generate(total, seed)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.fail_at is not None and self.given >= self.fail_at:
            raise self.error
        if not self._left:
            self._left = next(self._gen, b"")
        n = min(len(buffer), len(self._left), self._rng.randint(1, 300_000))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        self.given += n
        if self.on_read:
            self.on_read(self.given)
        return n


def generate(total: int, seed: int = 1):
    rng = random.Random(seed)
    left = total
    while left:
        n = min(left, 256 * 1024)
        yield rng.randbytes(n)
        left -= n


def expected_sha(total: int, seed: int = 1) -> str:
    digest = hashlib.sha256()
    for chunk in generate(total, seed):
        digest.update(chunk)
    return digest.hexdigest()


def stored(client, name: str, key: str) -> bytes | None:
    try:
        return client.get_object(Bucket=name, Key=key)["Body"].read()
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in ("NoSuchKey", "404")
        return None


def assert_nothing_left(client, name: str, key: str) -> None:
    assert client.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    assert stored(client, name, key) is None


class Wrapped:
    """The boto3 client with hooks around chosen calls (runs upload_part in the uploader's thread)."""

    def __init__(self, client, **hooks):
        self._client = client
        self._hooks = hooks
        self.calls: list[str] = []

    def __getattr__(self, name):
        real = getattr(self._client, name)
        hook = self._hooks.get(name)

        def call(**kwargs):
            self.calls.append(name)
            if hook:
                return hook(real, **kwargs)
            return real(**kwargs)

        return call


def test_multipart_upload_of_40_mib_has_the_right_sha256_and_size(bucket):
    client, name = bucket
    total = 40 * MiB
    result = upload_stream(client, name, "b/big.dump", GenReader(total), part_size=PART)
    assert result.size == result.source_size == total
    assert result.parts == 8 and result.part_size == PART
    assert result.sha256 == expected_sha(total)
    body = stored(client, name, "b/big.dump")
    assert len(body) == total and hashlib.sha256(body).hexdigest() == result.sha256
    parts = client.head_object(Bucket=name, Key="b/big.dump", PartNumber=1)
    assert parts["PartsCount"] == 8
    assert client.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    assert sha256_of_object(client, name, "b/big.dump") == result.sha256


def test_memory_stays_bounded_to_two_parts(bucket):
    """Bytes taken from the reader but not yet acknowledged by S3 never exceed two parts."""
    client, name = bucket
    lock = threading.Lock()
    uploaded = [0]
    worst = [0]

    def upload_part(real, **kwargs):
        response = real(**kwargs)
        with lock:
            uploaded[0] += kwargs["ContentLength"]
        return response

    def on_read(given):
        with lock:
            worst[0] = max(worst[0], given - uploaded[0])

    wrapped = Wrapped(client, upload_part=upload_part)
    total = 48 * MiB + 123
    result = upload_stream(wrapped, name, "b/bounded.dump", GenReader(total, seed=7, on_read=on_read), part_size=PART)
    assert result.size == total and result.parts == 10
    assert uploaded[0] == total
    assert PART <= worst[0] <= 2 * PART, worst[0]


def test_part_bodies_are_not_copied_into_one_buffer():
    """The body of a part is the chunks as read; reading it back yields the same bytes, seekable for retries."""
    chunks = [b"abc", b"defgh", b"", b"ij"]
    body = stream_upload._PartBody(chunks)
    assert len(body) == 10 and body.read(4) == b"abcd" and body.read() == b"efghij"
    body.seek(2)
    assert body.read(5) == b"cdefg" and body.tell() == 7
    body.seek(0)
    assert b"".join(iter(lambda: body.read(3), b"")) == b"abcdefghij"


@pytest.mark.parametrize("total", [0, 1, 1000, PART - 1])
def test_streams_smaller_than_a_part_are_one_put(bucket, total):
    client, name = bucket
    wrapped = Wrapped(client)
    result = upload_stream(wrapped, name, "b/small", GenReader(total), part_size=PART)
    assert (result.size, result.parts, result.sha256) == (total, 1, expected_sha(total))
    assert "create_multipart_upload" not in wrapped.calls and "put_object" in wrapped.calls
    assert hashlib.sha256(stored(client, name, "b/small")).hexdigest() == expected_sha(total)


def test_exactly_one_part_and_a_part_plus_one_byte(bucket):
    client, name = bucket
    one = upload_stream(client, name, "b/one", GenReader(PART), part_size=PART)
    assert (one.parts, one.size, one.sha256) == (1, PART, expected_sha(PART))
    more = upload_stream(client, name, "b/more", GenReader(PART + 1), part_size=PART)
    assert (more.parts, more.size, more.sha256) == (2, PART + 1, expected_sha(PART + 1))
    assert len(stored(client, name, "b/more")) == PART + 1


def test_reader_error_mid_stream_aborts_and_leaves_nothing(bucket):
    client, name = bucket
    reader = GenReader(40 * MiB, fail_at=12 * MiB, error=OSError("SSH stream lost during pg_dump"))
    with pytest.raises(OSError, match="SSH stream lost"):
        upload_stream(client, name, "b/cut.dump", reader, part_size=PART)
    assert reader.given >= 12 * MiB
    assert_nothing_left(client, name, "b/cut.dump")


def test_reader_error_in_first_part_leaves_nothing(bucket):
    client, name = bucket
    wrapped = Wrapped(client)
    reader = GenReader(40 * MiB, fail_at=1 * MiB, error=OpsError("pg_dump: error: connection refused"))
    with pytest.raises(OpsError, match="pg_dump"):
        upload_stream(wrapped, name, "b/early.dump", reader, part_size=PART)
    assert "create_multipart_upload" not in wrapped.calls
    assert_nothing_left(client, name, "b/early.dump")


def test_s3_error_on_third_part_aborts_and_leaves_nothing(bucket):
    client, name = bucket

    def upload_part(real, **kwargs):
        if kwargs["PartNumber"] == 3:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}},
                              "UploadPart")
        return real(**kwargs)

    wrapped = Wrapped(client, upload_part=upload_part)
    with pytest.raises(ClientError, match="InternalError"):
        upload_stream(wrapped, name, "b/s3fail.dump", GenReader(40 * MiB), part_size=PART)
    assert "abort_multipart_upload" in wrapped.calls and "complete_multipart_upload" not in wrapped.calls
    assert_nothing_left(client, name, "b/s3fail.dump")


def test_failure_to_complete_aborts(bucket):
    client, name = bucket

    def complete(real, **kwargs):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate"}},
                          "CompleteMultipartUpload")

    wrapped = Wrapped(client, complete_multipart_upload=complete)
    with pytest.raises(ClientError, match="SlowDown"):
        upload_stream(wrapped, name, "b/nocomplete.dump", GenReader(12 * MiB), part_size=PART)
    assert_nothing_left(client, name, "b/nocomplete.dump")


def test_keyboard_interrupt_while_reading_aborts(bucket):
    client, name = bucket
    reader = GenReader(40 * MiB, fail_at=17 * MiB, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        upload_stream(client, name, "b/ctrlc.dump", reader, part_size=PART)
    assert_nothing_left(client, name, "b/ctrlc.dump")


def test_keyboard_interrupt_during_a_part_upload_aborts(bucket):
    client, name = bucket

    def upload_part(real, **kwargs):
        if kwargs["PartNumber"] == 2:
            raise KeyboardInterrupt
        return real(**kwargs)

    with pytest.raises(KeyboardInterrupt):
        upload_stream(Wrapped(client, upload_part=upload_part), name, "b/ctrlc2.dump", GenReader(30 * MiB),
                      part_size=PART)
    assert_nothing_left(client, name, "b/ctrlc2.dump")


def test_a_failed_abort_is_explained_on_the_original_error(bucket):
    client, name = bucket

    def abort(real, **kwargs):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "AbortMultipartUpload")

    wrapped = Wrapped(client, abort_multipart_upload=abort)
    reader = GenReader(20 * MiB, fail_at=11 * MiB, error=OSError("cut"))
    with pytest.raises(OSError, match="cut") as info:  # the original error, not the abort's
        upload_stream(wrapped, name, "b/noabort", reader, part_size=PART)
    assert wrapped.calls.count("abort_multipart_upload") == 3  # retried
    (upload,) = client.list_multipart_uploads(Bucket=name)["Uploads"]
    note = " ".join(getattr(info.value, "__notes__", []))
    assert f"multipart upload {upload['UploadId']} of s3://{name}/b/noabort could not be aborted" in note
    assert f"aws s3api abort-multipart-upload --bucket {name} --key b/noabort --upload-id {upload['UploadId']}" in note
    client.abort_multipart_upload(Bucket=name, Key="b/noabort", UploadId=upload["UploadId"])


def test_too_many_parts_is_refused_and_aborted(bucket, monkeypatch):
    client, name = bucket
    monkeypatch.setattr(stream_upload, "MAX_PARTS", 3)
    with pytest.raises(OpsError, match="exceeds 3 parts of 5 MiB"):
        upload_stream(client, name, "b/huge", GenReader(16 * MiB), part_size=PART)
    assert_nothing_left(client, name, "b/huge")


def test_server_side_encryption_is_requested(bucket):
    client, name = bucket
    upload_stream(client, name, "b/sse-big", GenReader(11 * MiB), part_size=PART, sse="AES256")
    upload_stream(client, name, "b/sse-small", GenReader(10), part_size=PART, sse="AES256")
    for key in ("b/sse-big", "b/sse-small"):
        assert client.head_object(Bucket=name, Key=key)["ServerSideEncryption"] == "AES256"


def test_encrypted_upload_hashes_the_stored_ciphertext(bucket):
    client, name = bucket
    total = 12 * MiB + 5
    enc = crypto.Encryptor("correct horse", "db-20261124T030000Z-a1b2c3", log_n=10)
    result = upload_stream(client, name, "b/enc.dump.enc", GenReader(total), part_size=PART, encryptor=enc)
    data = stored(client, name, "b/enc.dump.enc")
    assert result.source_size == total and result.size == len(data) > total
    assert result.sha256 == hashlib.sha256(data).hexdigest() != expected_sha(total)
    body, size = download_stream(client, name, "b/enc.dump.enc")
    assert size == result.size
    plain = crypto.decrypt_stream(body, "correct horse", bound_to="db-20261124T030000Z-a1b2c3")
    digest = hashlib.sha256()
    while chunk := plain.read(1 * MiB):
        digest.update(chunk)
    assert digest.hexdigest() == expected_sha(total)


def test_check_object_catches_damage_and_missing_data(bucket):
    client, name = bucket
    key = "b/backups/sandbox/db/2026/11/24/db-20261124T030000Z-a1b2c3.dump"
    result = upload_stream(client, name, key, GenReader(1000), part_size=PART)
    started = datetime(2026, 11, 24, 3, tzinfo=UTC)
    m = Manifest(id="db-20261124T030000Z-a1b2c3", kind="db", env="sandbox", object_key=key, size=result.size,
                 sha256=result.sha256, started_at=started, finished_at=started + timedelta(minutes=1))
    check_object(client, name, m)
    with pytest.raises(OpsError, match="SHA-256 .* does not match the manifest's .* \\(damaged\\)"):
        check_object(client, name, replace(m, sha256="0" * 64))
    with pytest.raises(OpsError, match="object is 1000 bytes, manifest says 999"):
        check_object(client, name, replace(m, size=999))
    client.delete_object(Bucket=name, Key=key)
    with pytest.raises(OpsError, match="data object .* is missing"):
        check_object(client, name, m)
    with pytest.raises(OpsError, match="does not exist"):
        download_stream(client, name, key)


def test_abort_stale_uploads(bucket):
    client, name = bucket
    client.create_multipart_upload(Bucket=name, Key="b/backups/killed.dump")
    client.create_multipart_upload(Bucket=name, Key="other/x")
    # moto reports a fixed "Initiated" time: measure from it.
    (initiated,) = {u["Initiated"] for u in client.list_multipart_uploads(Bucket=name)["Uploads"]}
    now = initiated + timedelta(minutes=30)
    assert stream_upload.abort_stale_uploads(client, name, "b/backups/", older_than=timedelta(hours=1),
                                             now=now) == []
    assert stream_upload.abort_stale_uploads(client, name, "b/backups/", older_than=timedelta(hours=1),
                                             now=now + timedelta(hours=1)) == ["b/backups/killed.dump"]
    assert [u["Key"] for u in client.list_multipart_uploads(Bucket=name)["Uploads"]] == ["other/x"]


def test_part_size_below_the_minimum_is_refused(bucket, monkeypatch):
    client, name = bucket
    monkeypatch.setattr(stream_upload, "_min_part_size", stream_upload.MIN_PART_SIZE)
    with pytest.raises(ValueError, match="below the minimum"):
        upload_stream(client, name, "b/x", GenReader(10), part_size=PART)


def test_part_size_follows_the_expected_size_and_stays_within_the_memory_budget():
    assert part_size_for(0) == part_size_for(1024**3) == 8 * MiB  # a 1 GiB database: 8 MiB parts, 16 MiB held
    assert part_size_for() == 48 * MiB  # unknown size: the cap (~470 GiB per object)
    for size in (50 * 1024**3, 200 * 1024**3):
        ps = part_size_for(size)
        assert ps * MAX_PARTS >= 2 * size and ps % MiB == 0 and 8 * MiB <= ps <= 48 * MiB
    big = part_size_for(TiB)  # beyond what the cap holds: bigger parts rather than a failed backup
    assert big * MAX_PARTS >= 2 * TiB and big > 48 * MiB
    with pytest.raises(ValueError):
        part_size_for(-1)
