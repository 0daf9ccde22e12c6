"""ops/remote.py pipe_into: bytes into a remote command's stdin, against a scripted fake channel."""

from __future__ import annotations

import io
import queue
import threading
from types import SimpleNamespace

import pytest

from ops import remote
from ops.errors import HostUnreachable, RemoteCommandFailed
from ops.inventory import Host
from ops.masking import Masker
from ops.restore.objects import HashingReader

HOST = Host("db1", "127.0.0.1", roles=("db",))


class FakeChannel:
    """A remote command: swallows stdin; exits with ``status`` at EOF, or fails after ``fail_after`` bytes."""

    def __init__(self, *, status: int = 0, stderr: bytes = b"", fail_after: int | None = None,
                 lose_connection_after: int | None = None):
        self.status_value, self.stderr, self.fail_after = status, stderr, fail_after
        self.lose_after = lose_connection_after
        self.received = bytearray()
        self.eof = False
        self.closed = False
        self.status = -1
        self.status_event = threading.Event()
        self._out: queue.Queue[bytes] = queue.Queue()
        self._err: queue.Queue[bytes] = queue.Queue()
        self.command = ""

    def settimeout(self, _t):
        pass

    def exec_command(self, text):
        self.command = text

    def _end(self, status: int, stderr: bytes = b"") -> None:
        if stderr:
            self._err.put(stderr)
        self._err.put(b"")
        self._out.put(b"")
        self.status = status
        self.status_event.set()

    def sendall(self, data):
        if self.status_event.is_set():
            raise OSError("Socket is closed")
        self.received += data
        if self.fail_after is not None and len(self.received) >= self.fail_after:
            self._end(1, b"pg_restore: error: could not execute query: ERROR: boom\n")
        if self.lose_after is not None and len(self.received) >= self.lose_after:
            self.closed = True
            self._end(-1)

    def shutdown_write(self):
        self.eof = True
        self._end(self.status_value, self.stderr)

    def recv(self, _n):
        return self._out.get()

    def recv_stderr(self, _n):
        return self._err.get()

    def exit_status_ready(self):
        return self.closed or self.status_event.is_set()

    def recv_exit_status(self):
        self.status_event.wait()
        return self.status

    def close(self):
        self.closed = True
        if not self.status_event.is_set():
            self._end(-1)


class FakeGateway:
    def __init__(self, channel):
        self.env = SimpleNamespace(ssh=SimpleNamespace(command_timeout=5.0, connect_timeout=5.0))
        self.mask = Masker()
        transport = SimpleNamespace(open_session=lambda timeout: channel)
        self._conn = SimpleNamespace(client=SimpleNamespace(get_transport=lambda: transport))

    def connection(self, host):
        return self._conn


ARGV = ("docker", "exec", "-i", "pg", "pg_restore", "--dbname=x")


def test_every_byte_reaches_stdin_then_eof_and_exit_zero():
    data = bytes(range(256)) * 5000
    ch = FakeChannel()
    res = remote.pipe_into(FakeGateway(ch), HOST, ARGV, io.BytesIO(data), chunk_size=4096)
    assert bytes(ch.received) == data and res.sent == len(data)
    assert ch.eof and ch.closed
    assert ch.command == "docker exec -i pg pg_restore --dbname=x"


def test_a_command_that_fails_after_its_input_reports_its_stderr():
    ch = FakeChannel(status=1, stderr=b"pg_restore: error: relation exists\n")
    with pytest.raises(RemoteCommandFailed, match="exit 1: .*relation exists") as info:
        remote.pipe_into(FakeGateway(ch), HOST, ARGV, io.BytesIO(b"x" * 10))
    assert info.value.exit_code == 1 and info.value.host == "db1"


def test_a_command_that_dies_half_way_stops_the_stream_and_says_so():
    ch = FakeChannel(fail_after=8192)
    with pytest.raises(RemoteCommandFailed, match="exit 1 before reading all its input.*boom"):
        remote.pipe_into(FakeGateway(ch), HOST, ARGV, io.BytesIO(b"y" * 100_000), chunk_size=4096)
    assert len(ch.received) < 100_000 and not ch.eof and ch.closed


def test_a_failing_reader_closes_the_channel_and_its_error_propagates():
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 2:
                raise ValueError("S3 went away")
            return b"z" * 10

    ch = FakeChannel()
    with pytest.raises(ValueError, match="S3 went away"):
        remote.pipe_into(FakeGateway(ch), HOST, ARGV, Broken())
    assert ch.closed and not ch.eof


def test_a_lost_connection_is_host_unreachable_not_success():
    ch = FakeChannel(lose_connection_after=4096)
    with pytest.raises(HostUnreachable, match="db1: SSH stream lost"):
        remote.pipe_into(FakeGateway(ch), HOST, ARGV, io.BytesIO(b"q" * 50_000), chunk_size=4096)


def test_hashing_reader_counts_and_hashes_what_passes_through():
    import hashlib

    r = HashingReader(io.BytesIO(b"hello world"))
    assert r.read(5) + r.read(100) + r.read(100) == b"hello world"
    assert r.size == 11 and r.sha256 == hashlib.sha256(b"hello world").hexdigest()
