"""inv smoke's TLS checks against a real TLS server on 127.0.0.1 (a test CA, a certificate for
smoke.test): certificate validity and days left, HSTS over TLS, http -> https."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ops.inventory import SmokeSettings
from ops.smoke import Site, check_site

NAME = "smoke.test"
HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
           "Content-Security-Policy": "default-src 'self'", "Strict-Transport-Security": "max-age=31536000"}


def _cert(subject: str, issuer_key, issuer_name, key, days: int, *, ca: bool = False):
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("ops smoke test CA", ca_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ops smoke test CA")]),
               ca_key, 30, ca=True)
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(days: int, name: str = NAME):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(name, ca_key, ca.subject, key, days)
        path = d / f"{name}-{days}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return path

    return d / "ca.pem", leaf


def _serve(handler, ctx=None):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if ctx is not None:
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


def site_with(headers: dict):
    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    class Redirect(Page):
        def do_GET(self):  # noqa: N802
            self.send_response(301)
            self.send_header("Location", f"https://{NAME}/")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Page, Redirect


@pytest.fixture
def serve(pki):
    servers = []

    def start(cert_days: int = 90, headers: dict = HEADERS, name: str = NAME) -> Site:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki[1](cert_days, name))
        page, redirect = site_with(headers)
        https, http = _serve(page, ctx), _serve(redirect)
        servers.extend([https, http])
        return Site("local", "https", "127.0.0.1", https.server_address[1], NAME, NAME, http.server_address[1])

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def settings(pki, **kw) -> SmokeSettings:
    return dataclasses.replace(SmokeSettings(socketio_path="", ca_file=pki[0]), **kw)


def by_name(report) -> dict:
    return {c.name: c for c in report.checks}


def test_a_valid_certificate_hsts_and_a_redirect_pass(pki, serve):
    report = check_site(serve(), settings(pki))
    assert report.ok, report.summary()
    got = by_name(report)
    assert got["certificate"].detail.startswith(f"valid for {NAME}, ") and got["certificate"].detail.endswith(" days left")
    assert got["http -> https"].detail == f"301 https://{NAME}/"


def test_a_certificate_expiring_within_cert_min_days_fails(pki, serve):
    report = check_site(serve(cert_days=5), settings(pki, cert_min_days=14))
    cert = by_name(report)["certificate"]
    assert not cert.ok and "(fewer than smoke.cert_min_days=14)" in cert.detail


def test_a_certificate_for_another_name_fails_verification(pki, serve):
    report = check_site(serve(name="other.test"), settings(pki))
    cert = by_name(report)["certificate"]
    assert not cert.ok and cert.detail.startswith("certificate not valid:")
    assert not by_name(report)["page /"].ok


def test_hsts_is_required_over_tls(pki, serve):
    report = check_site(serve(headers={k: v for k, v in HEADERS.items() if k != "Strict-Transport-Security"}),
                        settings(pki))
    hsts = by_name(report)["header Strict-Transport-Security"]
    assert not hsts.ok and hsts.detail == "missing over TLS"
