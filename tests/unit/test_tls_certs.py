"""ops/tls/certs.py and the renewal decision: a pair is checked before anything is uploaded."""

from __future__ import annotations

import datetime as dt

import pytest

from ops.errors import ConfigError
from ops.inventory import TlsSettings
from ops.tls import certs
from ops.tls.run import due_reason
from ops.tls.status import CertificateStatus
from tests.support.pebble import make_ca, make_leaf

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def ca():
    return make_ca()


def check(cert, key, domains=("example.org",)):
    return certs.check_pair(cert, key, domains=domains, now=NOW, cert_where="site.crt", key_where="site.key")


def test_a_good_pair_is_described(ca):
    cert, key = make_leaf(ca, ["example.org", "www.example.org"], days=60)
    meta = check(cert, key, ("example.org", "www.example.org"))
    assert meta.names == ("example.org", "www.example.org")
    assert 59.9 < meta.days_left(NOW) < 60.1
    assert "operator" not in meta.issuer and "ops test CA" in meta.issuer


def test_a_key_of_another_certificate_is_refused(ca):
    cert, _ = make_leaf(ca, ["example.org"])
    _, other = make_leaf(ca, ["example.org"])
    with pytest.raises(ConfigError, match=r"^site.key is not the key of the certificate in site.crt"):
        check(cert, other)


def test_an_expired_certificate_is_refused(ca):
    cert, key = make_leaf(ca, ["example.org"], days=-1)
    with pytest.raises(ConfigError, match=r"the certificate in site.crt expired on"):
        check(cert, key)


def test_a_certificate_without_every_domain_is_refused(ca):
    cert, key = make_leaf(ca, ["example.org"])
    with pytest.raises(ConfigError, match=r"does not name www.example.org \(it names example.org\)"):
        check(cert, key, ("example.org", "www.example.org"))


def test_a_wildcard_covers_one_label_only():
    assert certs.covers(("*.example.org",), "www.example.org")
    assert not certs.covers(("*.example.org",), "example.org")
    assert not certs.covers(("*.example.org",), "a.b.example.org")


@pytest.mark.parametrize("pem", [b"", b"not a pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_garbage_is_a_one_line_error(pem, ca):
    _, key = make_leaf(ca, ["example.org"])
    with pytest.raises(ConfigError) as excinfo:
        check(pem, key)
    assert "\n" not in str(excinfo.value)


def test_a_certificate_given_as_key_is_refused(ca):
    cert, _ = make_leaf(ca, ["example.org"])
    with pytest.raises(ConfigError, match="site.key holds no PEM private key"):
        check(cert, cert)


def test_new_keys_are_unencrypted_pkcs8_and_unique():
    a, b = certs.new_key_pem(), certs.new_key_pem()
    assert a.startswith(b"-----BEGIN PRIVATE KEY-----") and a != b


TLS = TlsSettings(domains=("example.org",), certificate="acme", renew_before_days=30)


def status(days: float | None, *, detail: str = "") -> CertificateStatus:
    if days is None:
        return CertificateStatus("web1", configured=True, tls_on=False, detail="connection refused")
    info = certs.CertInfo(names=("example.org",), not_before=NOW - dt.timedelta(days=1),
                          not_after=NOW + dt.timedelta(days=days), issuer="CN=x", serial="1", sha256="0")
    return CertificateStatus("web1", configured=True, tls_on=True, cert=info, detail=detail)


def test_renewal_is_due_within_renew_before_days_and_not_before():
    assert due_reason(status(60), TLS) == ""
    assert due_reason(status(31), TLS) == ""
    assert due_reason(status(29), TLS).startswith("expires in 29.0 days")
    assert due_reason(status(-1), TLS).startswith("expires in -1.0 days")


def test_renewal_is_due_when_nothing_or_the_wrong_name_is_served():
    assert due_reason(status(None), TLS) == "serves no certificate (connection refused)"
    assert due_reason(status(60, detail="does not name example.org"), TLS) == "does not name example.org"
