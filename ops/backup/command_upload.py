"""A remote command's stdout streamed over SSH into an S3 multipart upload, completed only once the
command exited 0 (``backup.db``'s pg_dump, ``backup.uploads``' tar): any failure aborts the upload."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from ops.backup.context import BackupContext, BackupFailed
from ops.backup.stream_upload import upload_stream
from ops.errors import OpsError
from ops.inventory import Host
from ops.masking import Masker
from ops.progress import counting_reader
from ops.remote import Gateway, RemoteStream


class ExitCheckedStream(io.RawIOBase):
    """A remote command's stdout that, at EOF, waits for its exit status and raises if non-zero.

    Read by ``upload_stream``: a failed pg_dump raises *inside* the upload, which then
    aborts instead of completing a truncated object.
    """

    def __init__(self, stream: RemoteStream):
        super().__init__()
        self.stream = stream
        self.finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.stream.readinto(buffer)
        if n == 0 and not self.finished:
            self.finished = True
            self.stream.finish()
        return n


def failure_message(what: str, exc: BaseException, stderr: str, masker: Masker) -> str:
    """One line (or two): what failed, why, and the command's last stderr line if not already said."""
    reason = masker(str(exc)) if isinstance(exc, OpsError) else masker(f"{type(exc).__name__}: {exc}")
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if last and last not in reason:
        reason = f"{reason}; stderr: {last}"
    return f"{what} failed: {reason}"


def stream_to_s3(ctx: BackupContext, gw: Gateway, host: Host, command, key: str, *, what: str,
                 expected_size: int | None = None, part_size: int | None = None,
                 encryptor=None, on_failure: Callable[[], None] | None = None):
    """Run ``command`` on ``host`` and upload its stdout to ``key``; complete only on exit 0.

    Returns (UploadResult, stderr). On any failure the multipart upload is aborted (by
    ``upload_stream``), ``on_failure`` runs (best effort), and ``BackupFailed`` is raised
    with the command's stderr.
    """
    stream = gw.stream(host, command)
    try:
        # NOTE: ``expected_size`` is an estimate (the database's size): the bar's total, not a check.
        with ctx.progress.transfer(f"{what} -> s3 {key.rsplit('/', 1)[-1]}", total=expected_size,
                                   host=host.name) as moved:
            result = upload_stream(ctx.client, ctx.bucket, key, counting_reader(ExitCheckedStream(stream), moved),
                                   part_size=part_size, expected_size=expected_size, sse=ctx.env.s3.sse,
                                   encryptor=encryptor)
    except BaseException as exc:
        stream.channel.close()
        if on_failure is not None:
            with contextlib.suppress(Exception):
                on_failure()
        stream._drain.join(timeout=2)  # noqa: SLF001 - the stderr tail, for the message
        if isinstance(exc, KeyboardInterrupt):
            raise
        if isinstance(exc, OpsError | BotoCoreError | ClientError | OSError):
            prefix = "S3 upload" if isinstance(exc, BotoCoreError | ClientError) else what
            raise BackupFailed(failure_message(prefix, exc, stream.stderr, ctx.masker),
                               host=None if isinstance(exc, OpsError) else host.name,
                               hint="the multipart upload was aborted and no manifest written: "
                                    "nothing of this attempt is kept") from None
        raise
    return result, stream.stderr
