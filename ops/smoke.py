"""``inv smoke``: the seed's success criteria, checked against the live site.

- the home page and every ``smoke.paths`` entry answer (2xx/3xx) within ``page_max_seconds`` (3 s);
- the Socket.io handshake (Engine.IO long-polling open packet) and a WebSocket upgrade
  of its endpoint complete within ``websocket_max_seconds`` (1 s);
- the security headers are on the home page (X-Content-Type-Options, X-Frame-Options,
  Referrer-Policy, Content-Security-Policy); HSTS is required over TLS, and sent over
  plain HTTP it is reported (browsers ignore it there);
- over https: plain http redirects to https, and the certificate is valid for the host
  name and not expiring within ``cert_min_days``.

Where: ``--url`` or ``smoke.url`` (the public site), else each web host's nginx,
reached through the SSH gateway (a local forward to the proxy port on that host): the
same requests a browser sends, through the real proxy, without a public address.

Times are measured here with a monotonic clock around real requests: the request
starts when the connection is opened and ends when the whole body has arrived.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import os
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from ops.errors import ConfigError
from ops.inventory import Environment, Host, SmokeSettings
from ops.remote import Gateway

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A page slower than its threshold is still read to the end, within this bound.
READ_LIMIT_SECONDS = 30.0
BODY_LIMIT = 16 * 1024 * 1024


@dataclass
class Check:
    target: str   # web1, or the URL's host
    name: str     # "page /", "header X-Frame-Options", "socket.io handshake", ...
    ok: bool
    detail: str
    seconds: float | None = None


@dataclass
class SmokeReport:
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks], "warnings": self.warnings}

    def summary(self) -> str:
        if self.ok:
            return f"smoke: all {len(self.checks)} checks passed"
        return f"smoke: {len(self.failed)} of {len(self.checks)} checks failed: " + "; ".join(
            f"{c.target} {c.name}: {c.detail}" for c in self.failed[:6])


@dataclass(frozen=True)
class Site:
    """Where requests go (``connect_host:connect_port``) and what they name (``host_header``)."""

    label: str
    scheme: str
    connect_host: str
    connect_port: int
    host_header: str
    # The name TLS is verified against (SNI too) when it is not the one connected to: a web host
    # reached through an SSH forward serves the site's domain. "": the Host header's name.
    tls_name: str = ""
    # Where plain http for the same site listens (the redirect check); None: port 80.
    plain_port: int | None = None

    @classmethod
    def from_url(cls, url: str) -> Site:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--url {url!r} is not an http(s) URL", hint="e.g. --url https://example.org")
        if parts.path not in ("", "/") or parts.query:
            raise ConfigError(f"--url {url!r} has a path or query", hint="give the site's base URL; paths are in "
                                                                         "smoke.paths")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default = (parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)
        return cls(parts.hostname, parts.scheme, parts.hostname, port,
                   parts.hostname if default else f"{parts.hostname}:{port}")

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def server_name(self) -> str:
        return self.tls_name or self.host_header.split(":")[0]


# -- requests ------------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    seconds: float


def tls_context(settings: SmokeSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    return ctx


class _NamedTLSConnection(http.client.HTTPSConnection):
    """HTTPS to one address, verifying (and sending SNI for) another name: the site's domain
    served by a web host reached through an SSH forward on 127.0.0.1."""

    def __init__(self, host: str, port: int, *, server_name: str, context: ssl.SSLContext, timeout: float):
        super().__init__(host, port, timeout=timeout, context=context)
        self.server_name = server_name
        self.tls_context = context

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self.tls_context.wrap_socket(raw, server_hostname=self.server_name)


def _connection(site: Site, timeout: float, ctx: ssl.SSLContext | None) -> http.client.HTTPConnection:
    if site.tls:
        return _NamedTLSConnection(site.connect_host, site.connect_port, server_name=site.server_name,
                                   context=ctx or ssl.create_default_context(), timeout=timeout)
    return http.client.HTTPConnection(site.connect_host, site.connect_port, timeout=timeout)


def fetch(site: Site, path: str, *, ctx: ssl.SSLContext | None = None, timeout: float = READ_LIMIT_SECONDS) -> Answer:
    """GET ``path`` (redirects not followed), the whole body read; seconds from connect to last byte."""
    started = time.monotonic()
    conn = _connection(site, timeout, ctx)
    try:
        conn.request("GET", path, headers={"Host": site.host_header, "User-Agent": "ops-smoke",
                                           "Accept": "text/html,*/*"})
        resp = conn.getresponse()
        body = resp.read(BODY_LIMIT)
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return Answer(resp.status, headers, body, time.monotonic() - started)
    finally:
        conn.close()


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not valid: {exc.verify_message or exc.reason}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def check_pages(site: Site, settings: SmokeSettings, ctx) -> tuple[list[Check], Answer | None]:
    checks, home = [], None
    paths = ["/", *[p for p in settings.paths if p != "/"]]
    limit = settings.page_max_seconds
    for path in paths:
        try:
            ans = fetch(site, path, ctx=ctx)
        except (OSError, http.client.HTTPException) as exc:
            checks.append(Check(site.label, f"page {path}", False, _why(exc)))
            continue
        if path == "/":
            home = ans
        fast = ans.seconds <= limit
        good = 200 <= ans.status < 400
        detail = f"{ans.status} in {ans.seconds:.2f} s"
        if not good:
            detail += " (an error status)"
        if not fast:
            detail += f" (slower than {limit:g} s)"
        checks.append(Check(site.label, f"page {path}", good and fast, detail, ans.seconds))
    return checks, home


def check_headers(site: Site, settings: SmokeSettings, home: Answer | None) -> tuple[list[Check], list[str]]:
    if home is None:
        return [Check(site.label, "security headers", False, "the home page did not answer")], []
    checks, warnings = [], []
    for name in settings.headers:
        value = home.headers.get(name.lower())
        checks.append(Check(site.label, f"header {name}", bool(value), value or "missing on the home page"))
    hsts = home.headers.get("strict-transport-security")
    if site.tls:
        checks.append(Check(site.label, "header Strict-Transport-Security", bool(hsts),
                            hsts or "missing over TLS"))
    elif hsts:
        warnings.append(f"{site.label}: Strict-Transport-Security is sent over plain HTTP, where browsers ignore it "
                        "(it belongs on the TLS site only)")
    return checks, warnings


def check_redirect(site: Site, ctx) -> Check:
    """Plain http to the same host must redirect to https."""
    plain = Site(site.label, "http", site.connect_host, site.plain_port or 80, site.server_name)
    try:
        ans = fetch(plain, "/", timeout=10)
    except (OSError, http.client.HTTPException) as exc:
        return Check(site.label, "http -> https", False, f"http://{site.server_name}/: {_why(exc)}")
    location = ans.headers.get("location", "")
    ok = ans.status in (301, 302, 307, 308) and location.startswith("https://")
    return Check(site.label, "http -> https", ok, f"{ans.status} {location or '(no Location)'}")


def certificate_days_left(site: Site, ctx: ssl.SSLContext, *, now: datetime | None = None) -> int:
    """Days until the verified certificate of ``site`` expires (raises ssl errors when it does not verify)."""
    with socket.create_connection((site.connect_host, site.connect_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=site.server_name) as tls:
        cert = tls.getpeercert()
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC)
    return (expires - (now or datetime.now(UTC))).days


def check_certificate(site: Site, settings: SmokeSettings, ctx) -> Check:
    try:
        days = certificate_days_left(site, ctx)
    except (OSError, ssl.SSLError) as exc:
        return Check(site.label, "certificate", False, _why(exc))
    ok = days >= settings.cert_min_days
    return Check(site.label, "certificate", ok, f"valid for {site.server_name}, {days} days left"
                 + ("" if ok else f" (fewer than smoke.cert_min_days={settings.cert_min_days})"))


def check_polling(site: Site, settings: SmokeSettings, ctx) -> Check:
    """The Engine.IO v4 handshake over long-polling: ``0{"sid": ...}``."""
    path = f"{settings.socketio_path}?EIO=4&transport=polling"
    limit = settings.websocket_max_seconds
    try:
        ans = fetch(site, path, ctx=ctx, timeout=max(5.0, limit * 3))
    except (OSError, http.client.HTTPException) as exc:
        return Check(site.label, "socket.io handshake", False, _why(exc))
    opened = ans.status == 200 and ans.body.startswith(b"0{") and b'"sid"' in ans.body
    fast = ans.seconds <= limit
    detail = f"{ans.status} in {ans.seconds:.3f} s"
    if not opened:
        detail += f" (no Engine.IO open packet: {ans.body[:60]!r})"
    if not fast:
        detail += f" (slower than {limit:g} s)"
    return Check(site.label, "socket.io handshake", opened and fast, detail, ans.seconds)


def websocket_upgrade(site: Site, path: str, ctx, *, timeout: float) -> tuple[int, float, str]:
    """(status, seconds, why) of a WebSocket upgrade of ``path``; the connection is closed cleanly after."""
    key = base64.b64encode(os.urandom(16)).decode()
    want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    request = (f"GET {path} HTTP/1.1\r\nHost: {site.host_header}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: ops-smoke\r\n\r\n").encode()
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection((site.connect_host, site.connect_port), timeout=timeout))
        if site.tls:
            sock = stack.enter_context(ctx.wrap_socket(sock, server_hostname=site.server_name))
        sock.settimeout(timeout)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        seconds = time.monotonic() - started
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        why = ""
        if status == 101 and headers.get("sec-websocket-accept") != want:
            why = "wrong Sec-WebSocket-Accept"
        if status == 101:
            # A masked close frame (1000): the server ends the session at once.
            mask = os.urandom(4)
            payload = (1000).to_bytes(2, "big")
            with contextlib.suppress(OSError):
                sock.sendall(bytes([0x88, 0x80 | len(payload)]) + mask
                             + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return status, seconds, why


def check_websocket(site: Site, settings: SmokeSettings, ctx) -> Check:
    path = f"{settings.socketio_path}?EIO=4&transport=websocket"
    limit = settings.websocket_max_seconds
    try:
        status, seconds, why = websocket_upgrade(site, path, ctx, timeout=max(5.0, limit * 3))
    except (OSError, ssl.SSLError) as exc:
        return Check(site.label, "websocket upgrade", False, _why(exc))
    ok = status == 101 and not why and seconds <= limit
    detail = f"{status or 'no answer'} in {seconds:.3f} s"
    if status != 101:
        detail += " (not upgraded)"
    if why:
        detail += f" ({why})"
    if seconds > limit:
        detail += f" (slower than {limit:g} s)"
    return Check(site.label, "websocket upgrade", ok, detail, seconds)


def check_site(site: Site, settings: SmokeSettings) -> SmokeReport:
    report = SmokeReport()
    ctx = tls_context(settings) if site.tls else None
    pages, home = check_pages(site, settings, ctx)
    report.checks += pages
    headers, warnings = check_headers(site, settings, home)
    report.checks += headers
    report.warnings += warnings
    if site.tls:
        report.checks.append(check_redirect(site, ctx))
        report.checks.append(check_certificate(site, settings, ctx))
    if settings.socketio_path:
        if settings.polling_handshake:
            report.checks.append(check_polling(site, settings, ctx))
        report.checks.append(check_websocket(site, settings, ctx))
    return report


def _merge(into: SmokeReport, part: SmokeReport) -> None:
    into.checks += part.checks
    into.warnings += part.warnings


def run(env: Environment, *, url: str | None = None, gw: Gateway | None = None,
        hosts: list[Host] | None = None) -> SmokeReport:
    """Check ``url`` (or ``smoke.url``); without either, each web host's nginx through ``gw``."""
    settings = env.smoke
    url = url or settings.url
    if url:
        return check_site(Site.from_url(url), settings)
    if gw is None:
        raise ConfigError("no URL to check", hint=f"pass --url https://..., or set smoke.url in {env.path.name}")
    report = SmokeReport()
    webs = [h for h in (hosts or env.hosts.values()) if "web" in h.roles]
    if not webs:
        raise ConfigError("no web host selected: the smoke check is about the site",
                          hint=f"use --host {env.name} or {env.name}:<web host>, or --url")
    tls = env.proxy.tls
    for host in webs:
        try:
            with contextlib.ExitStack() as stack:
                port = stack.enter_context(gw.forward_local(host, remote_host="127.0.0.1", remote_port=env.proxy.port))
                if tls is None:
                    site = Site(host.name, "http", "127.0.0.1", port, "127.0.0.1")
                else:
                    # TLS on: the site as its domain, over the host's https port; plain http must redirect.
                    https = stack.enter_context(gw.forward_local(host, remote_host="127.0.0.1",
                                                                 remote_port=tls.https_port))
                    site = Site(host.name, "https", "127.0.0.1", https, tls.domains[0], tls.domains[0], port)
                _merge(report, check_site(site, settings))
        except Exception as exc:  # noqa: BLE001 - an unreachable host is a failed check, others still report
            report.checks.append(Check(host.name, "reach nginx", False, gw.mask(str(exc))))
    return report


__all__ = ["Check", "Site", "SmokeReport", "certificate_days_left", "check_site", "fetch", "run", "websocket_upgrade"]
