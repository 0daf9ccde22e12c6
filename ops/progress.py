"""How long operations report how far they have got, without printing anything.

The library reports through a ``Progress`` it is handed (``NO_PROGRESS`` by default,
which does nothing): ``progress.transfer(label, total=...)`` for bytes moving (an image
pull, a dump streamed to S3) and ``progress.step(host, state)`` for where each host is
in a deploy. What the operator sees (a live bar on a terminal, plain lines in a cron
mail, nothing in a test) is decided on the task side (``ops.render``).

Plugging byte counts into a transfer loop takes one line around the reader or the
chunks, e.g.::

    with progress.transfer(f"backup {key}", total=estimate) as t:
        upload_stream(client, bucket, key, counting_reader(reader, t))
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

# Per-host step states, in the order a deploy goes through them (the image is built on
# the operator's machine first: its line is BUILD_LINE, not a host).
BUILDING = "building"
BUILT = "built"
PULLING = "pulling"
MIGRATING = "migrating"
STARTING = "starting"
HEALTH_CHECKING = "health-checking"
READY = "ready"
SWITCHING = "switching"
SERVING = "serving"
ROLLING_BACK = "rolling back"
ROLLED_BACK = "rolled back"
FAILED = "failed"
EXCLUDED = "excluded"

OK, WARNING, FAILURE, RUNNING = "ok", "warning", "failed", "running"

# How a state reads at a glance: done and fine, done but not as asked, broken, under way.
LEVELS = {BUILT: OK, SERVING: OK, READY: OK, ROLLED_BACK: WARNING, EXCLUDED: WARNING, FAILED: FAILURE}


def level_of(state: str) -> str:
    return LEVELS.get(state, RUNNING)


class Transfer:
    """Bytes of one transfer. This base class ignores everything (the no-op default).

    ``advance(n)`` adds bytes; ``update(done, total)`` sets the count outright (for
    sources that report their own totals, like docker). Use as a context manager:
    leaving it ends the transfer, as failed when an exception escapes.
    """

    def advance(self, n: int) -> None:
        """``n`` more bytes moved."""

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` bytes moved so far, of ``total`` when known."""

    def finish(self, ok: bool = True) -> None:
        """The transfer ended (``ok=False``: it failed or was interrupted)."""

    def __enter__(self) -> Transfer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(ok=exc_type is None)


class Progress:
    """Where a long operation is. This base class ignores everything (the no-op default).

    Implementations must be thread-safe: hosts report from ``Gateway.map`` threads.
    """

    def transfer(self, label: str, *, total: int | None = None, host: str | None = None) -> Transfer:
        """A new transfer named ``label`` (``host``: where it runs, when it is one host's)."""
        return Transfer()

    def step(self, host: str, state: str, detail: str = "") -> None:
        """``host`` is now in ``state`` (one of the constants above); ``detail`` says of what."""


NO_PROGRESS = Progress()


class CountingReader(io.RawIOBase):
    """A binary reader that reports every byte read to a ``Transfer``."""

    def __init__(self, raw: BinaryIO, transfer: Transfer):
        super().__init__()
        self.raw = raw
        self.transfer = transfer

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if hasattr(self.raw, "readinto"):
            n = self.raw.readinto(buffer) or 0
        else:
            data = self.raw.read(len(buffer)) or b""
            n = len(data)
            buffer[:n] = data
        if n:
            self.transfer.advance(n)
        return n

    def read(self, size: int = -1) -> bytes:
        # NOTE: readers like boto3's StreamingBody have no readinto; read() keeps their chunking.
        data = self.raw.read() if size is None or size < 0 else self.raw.read(size)
        if data:
            self.transfer.advance(len(data))
        return data


def counting_reader(raw: BinaryIO, transfer: Transfer) -> CountingReader:
    """``raw``, with every byte read counted on ``transfer``."""
    return CountingReader(raw, transfer)


def counted(chunks: Iterable[bytes], transfer: Transfer) -> Iterator[bytes]:
    """``chunks`` unchanged, each one's length counted on ``transfer``."""
    for chunk in chunks:
        transfer.advance(len(chunk))
        yield chunk


def count_stream(stream: BinaryIO, counts, transfer: Transfer, chunk_size: int = 65536) -> None:
    """Read ``stream`` to its end through ``counts`` (a parser of a tool's own output with
    ``feed(bytes) -> changed``, ``done`` and ``total``); ``transfer`` follows its figures."""
    while chunk := stream.read(chunk_size):
        if counts.feed(chunk):
            transfer.update(counts.done, counts.total)


@contextmanager
def in_step(progress: Progress, host: str, state: str, detail: str = "", *, then: str | None = None,
            then_detail: str = "") -> Iterator[None]:
    """``host`` is in ``state`` for the ``with`` body: then in ``then``, or FAILED if it raised."""
    progress.step(host, state, detail)
    try:
        yield
    except BaseException as exc:
        progress.step(host, FAILED, "interrupted" if isinstance(exc, KeyboardInterrupt) else _first_line(exc))
        raise
    if then:
        progress.step(host, then, then_detail)


def _first_line(exc: BaseException, limit: int = 100) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
