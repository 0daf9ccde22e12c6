"""A small HTTP proxy on 127.0.0.1 in front of a web host's real nginx, with one fault injected.

For the smoke tests: the answers are the real app's through the real nginx, except that
the proxy can drop a response header (``drop_header``) or really wait before answering
one path (``delay``: a sleep, not a mocked clock). WebSocket upgrades are passed through
byte for byte.
"""

from __future__ import annotations

import http.client
import socket
import socketserver
import threading
import time
from contextlib import contextmanager


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            head += chunk
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        path = request_line.split(" ")[1]
        if b"upgrade: websocket" in head.lower():
            self._splice(head)
            return
        delay = self.server.delays.get(path.split("?")[0])
        if delay:
            time.sleep(delay)
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": "127.0.0.1"})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        lines = [f"HTTP/1.1 {resp.status} {resp.reason}"]
        for name, value in resp.getheaders():
            if name.lower() in ("connection", "transfer-encoding", "content-length", "keep-alive"):
                continue
            if name.lower() == (self.server.drop_header or "").lower():
                continue
            lines.append(f"{name}: {value}")
        lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        self.request.sendall("\r\n".join(lines).encode("latin-1") + body)

    def _splice(self, head: bytes) -> None:
        with socket.create_connection(("127.0.0.1", self.server.upstream), timeout=10) as up:
            up.sendall(head)
            self.request.settimeout(5)
            up.settimeout(5)
            try:
                answer = up.recv(65536)
                self.request.sendall(answer)
                # The client closes after the upgrade answer (smoke sends a close frame).
                data = self.request.recv(65536)
                if data:
                    up.sendall(data)
            except OSError:
                pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: int, drop_header: str | None, delays: dict[str, float]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.drop_header = drop_header
        self.delays = delays


@contextmanager
def faulty_proxy(upstream_port: int, *, drop_header: str | None = None, delay: dict[str, float] | None = None):
    """Yields the base URL of the proxy (``http://127.0.0.1:PORT``)."""
    server = _Server(upstream_port, drop_header, delay or {})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
