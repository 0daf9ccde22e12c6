"""What each web host serves on its https port, read the way a client sees it.

``certificate_status(gw, host)`` is what ``inv status``/``inv tls.status``/``inv tls.renew``
read: a TLS handshake (SNI = the first domain) through an SSH forward to the host's
published https port. Verification is off on purpose: this reports what is served, even
an expired or wrong certificate; ``inv smoke`` is the check that verifies the chain.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from ops.errors import OpsError
from ops.inventory import Host
from ops.remote import Gateway
from ops.tls import certs

HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True)
class CertificateStatus:
    host: str
    # proxy.tls is set in the inventory.
    configured: bool
    # The host's https port completed a handshake and served a certificate.
    tls_on: bool
    cert: certs.CertInfo | None = None
    detail: str = ""

    @property
    def not_after(self):
        return self.cert.not_after if self.cert else None

    def days_left(self, now=None) -> float | None:
        return self.cert.days_left(now or certs.now_utc()) if self.cert else None

    def to_dict(self) -> dict:
        now = certs.now_utc()
        return {"host": self.host, "configured": self.configured, "tls_on": self.tls_on,
                "not_after": self.not_after.isoformat() if self.not_after else None,
                "days_left": round(self.days_left(now), 2) if self.cert else None,
                "certificate": self.cert.to_dict(now) if self.cert else None, "detail": self.detail}


def served_certificate_der(port: int, server_name: str, *, timeout: float = HANDSHAKE_TIMEOUT) -> bytes:
    """The leaf certificate a TLS server on 127.0.0.1:``port`` presents for ``server_name``."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("no certificate presented")
    return der


def certificate_status(gw: Gateway, host: Host) -> CertificateStatus:
    """Whether ``host`` serves TLS, and the served certificate (notAfter, days left, names)."""
    tls = gw.env.proxy.tls
    if tls is None:
        return CertificateStatus(host.name, configured=False, tls_on=False, detail="TLS off (no proxy.tls)")
    try:
        with gw.forward_local(host, remote_host="127.0.0.1", remote_port=tls.https_port) as port:
            der = served_certificate_der(port, tls.domains[0] if tls.domains else "")
    except OpsError as exc:
        return CertificateStatus(host.name, configured=True, tls_on=False, detail=str(exc).splitlines()[0])
    except (OSError, ssl.SSLError) as exc:
        return CertificateStatus(host.name, configured=True, tls_on=False,
                                 detail=f"nothing served on https port {tls.https_port} ({exc or type(exc).__name__})")
    cert = certs.info_from_der(der)
    missing = [d for d in tls.domains if not certs.covers(cert.names, d)]
    detail = f"does not name {', '.join(missing)}" if missing else ""
    return CertificateStatus(host.name, configured=True, tls_on=True, cert=cert, detail=detail)
