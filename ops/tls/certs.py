"""Certificates and keys as bytes: parse, check, describe. Pure (no host, no network).

Every problem is a ``ConfigError`` of one line naming the file and what to do: the operator
gave a key that does not match, an expired certificate, a name the certificate lacks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ops.errors import ConfigError


@dataclass(frozen=True)
class CertInfo:
    """What matters about a leaf certificate."""

    names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    issuer: str
    serial: str
    sha256: str

    def days_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def to_dict(self, now: dt.datetime) -> dict:
        return {"names": list(self.names), "not_before": self.not_before.isoformat(),
                "not_after": self.not_after.isoformat(), "days_left": round(self.days_left(now), 2),
                "issuer": self.issuer, "serial": self.serial, "sha256": self.sha256}


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_chain(pem: bytes, where: str) -> list[x509.Certificate]:
    """The certificates of a PEM chain, leaf first."""
    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError:
        chain = []
    if not chain:
        raise ConfigError(f"{where} holds no PEM certificate",
                          hint="give the certificate chain in PEM (-----BEGIN CERTIFICATE-----), leaf first")
    return chain


def load_key(pem: bytes, where: str):
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ConfigError(f"{where} is encrypted (passphrase)",
                          hint="nginx cannot ask for a passphrase: give an unencrypted key (0600)") from None
    except ValueError:
        raise ConfigError(f"{where} holds no PEM private key",
                          hint="give the private key in PEM (-----BEGIN PRIVATE KEY-----)") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ConfigError(f"{where}: unsupported key type {type(key).__name__}", hint="use an RSA or ECDSA key")
    return key


def info(cert: x509.Certificate) -> CertInfo:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return CertInfo(names=names, not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                    issuer=cert.issuer.rfc4514_string(), serial=format(cert.serial_number, "x"),
                    sha256=cert.fingerprint(hashes.SHA256()).hex())


def info_from_der(der: bytes) -> CertInfo:
    return info(x509.load_der_x509_certificate(der))


def covers(names: tuple[str, ...], domain: str) -> bool:
    """``domain`` is one of ``names``, or matches a wildcard name one label deep."""
    domain = domain.lower()
    for name in (n.lower() for n in names):
        if name == domain:
            return True
        if name.startswith("*.") and domain.count(".") >= 2 and domain.split(".", 1)[1] == name[2:]:
            return True
    return False


def check_pair(chain_pem: bytes, key_pem: bytes, *, domains: tuple[str, ...], now: dt.datetime,
               cert_where: str, key_where: str) -> CertInfo:
    """The chain's leaf is current, names every domain, and ``key_pem`` is its key."""
    leaf = load_chain(chain_pem, cert_where)[0]
    key = load_key(key_pem, key_where)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, spki)
            != leaf.public_key().public_bytes(serialization.Encoding.DER, spki)):
        raise ConfigError(f"{key_where} is not the key of the certificate in {cert_where}",
                          hint="give the private key the certificate was issued for")
    meta = info(leaf)
    if meta.not_after <= now:
        raise ConfigError(f"the certificate in {cert_where} expired on {meta.not_after:%Y-%m-%d %H:%M}Z",
                          hint="get a current certificate (or use certificate: acme)")
    if meta.not_before > now:
        raise ConfigError(f"the certificate in {cert_where} is not valid before {meta.not_before:%Y-%m-%d %H:%M}Z",
                          hint="check this machine's clock, or wait")
    missing = [d for d in domains if not covers(meta.names, d)]
    if missing:
        raise ConfigError(f"the certificate in {cert_where} does not name {', '.join(missing)} "
                          f"(it names {', '.join(meta.names) or 'no DNS name'})",
                          hint="use a certificate for every name in proxy.tls.domains")
    return meta


def new_key_pem() -> bytes:
    """A fresh ECDSA P-256 key (PKCS#8 PEM) for a certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
