"""Faults of the TLS paths (``inv tls.issue`` / ``tls.renew``) on the sandbox fleet.

Each ends with the site served as before (plain http, or the certificate it had), no ACME
token left on any host, the lock free, and one clear error line.
"""

from __future__ import annotations

import os

import pytest
from cryptography import x509

from ops.inventory import load_environment
from ops.remote import Gateway
from ops.tls.status import certificate_status
from tests.support.deployed import deployed_app  # noqa: F401 - fixture
from tests.support.pebble import free_port, make_ca, make_leaf, running_pebble
from tests.support.tls_fleet import (
    DOMAIN,
    installed_digests,
    plain_http_again,
    remove_inventory,
    tokens_left,
    write_inventory,
)

from . import helpers as h


@pytest.fixture
def clean_tls(sandbox_env, deployed_app):  # noqa: F811 - the fixture
    names: list[str] = []
    yield names
    for name in names:
        remove_inventory(name)
    plain_http_again(sandbox_env)


def test_a_validation_the_ca_cannot_complete_fails_clearly_and_leaves_plain_http_and_no_token(
        sandbox_env, clean_tls, tmp_path):
    # pebble validates against a port where nothing listens: our own pre-check through each
    # proxy passes, the CA's fetch fails, the order is invalid.
    with running_pebble(tmp_path / "pebble", http_port=free_port()) as pebble:
        name = write_inventory(sandbox_env, {
            "domains": [DOMAIN], "certificate": "acme", "directory": pebble.directory,
            "ca_file": str(pebble.ca_file), "account_key": str(tmp_path / "account.key")}, prefix="faults-tls")
        clean_tls.append(name)
        out = h.run_inv("tls.issue", "--host", name, timeout=300)
    h.assert_one_clear_error(out, 1, "ACME order", "validation failed", DOMAIN)
    assert len(h.error_lines(out)) == 1, str(out)
    env = load_environment(name)
    assert tokens_left(env) == {"web1": [], "web2": []}
    assert installed_digests(env) == {"web1": None, "web2": None}
    h.assert_lock_free()
    for status, _ in h.served().values():
        assert status == 200  # still plain http, serving


def test_a_renewal_against_an_unreachable_acme_server_keeps_the_certificate_being_served(
        sandbox_env, clean_tls, tmp_path):
    ca = make_ca("operator test CA")
    cert, key = make_leaf(ca, [DOMAIN], days=10)
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    os.chmod(tmp_path / "k.pem", 0o600)
    files = write_inventory(sandbox_env, {"domains": [DOMAIN], "certificate": "files",
                                          "cert_file": str(tmp_path / "c.pem"), "key_file": str(tmp_path / "k.pem")},
                            prefix="faults-tls")
    clean_tls.append(files)
    out = h.run_inv("tls.issue", "--host", files, timeout=300)
    assert out.code == 0, str(out)
    acme = write_inventory(sandbox_env, {
        "domains": [DOMAIN], "certificate": "acme", "directory": f"https://127.0.0.1:{free_port()}/dir",
        "account_key": str(tmp_path / "account.key")}, prefix="faults-tls")
    clean_tls.append(acme)
    # 10 days left < renew_before_days (30): due, and the CA does not answer.
    out = h.run_inv("tls.renew", "--host", acme, timeout=300)
    h.assert_one_clear_error(out, 1, "ACME order", "failed")
    assert "expires in" in out.stdout, str(out)
    h.assert_lock_free()
    env = load_environment(acme)
    want = x509.load_pem_x509_certificate(cert).serial_number
    with Gateway(env) as gw:
        for host in env.with_roles("web"):
            st = certificate_status(gw, host)
            assert st.tls_on and int(st.cert.serial, 16) == want, host.name


def test_a_pair_nginx_refuses_is_put_back_and_the_previous_certificate_keeps_being_served(sandbox_env, clean_tls,
                                                                                          tmp_path):
    # A 1024-bit RSA key passes our checks (it matches, it is current) but Debian's OpenSSL
    # (security level 2) refuses it: `nginx -t` fails after the upload.
    ca = make_ca("operator test CA")
    good, good_key = make_leaf(ca, [DOMAIN], days=60)
    weak, weak_key = make_leaf(ca, [DOMAIN], days=60, rsa_bits=1024)
    for stem, cert, key in (("good", good, good_key), ("weak", weak, weak_key)):
        (tmp_path / f"{stem}.crt").write_bytes(cert)
        (tmp_path / f"{stem}.key").write_bytes(key)
        os.chmod(tmp_path / f"{stem}.key", 0o600)
    first = write_inventory(sandbox_env, {"domains": [DOMAIN], "certificate": "files",
                                          "cert_file": str(tmp_path / "good.crt"),
                                          "key_file": str(tmp_path / "good.key")}, prefix="faults-tls")
    clean_tls.append(first)
    out = h.run_inv("tls.issue", "--host", first, timeout=300)
    assert out.code == 0, str(out)
    before = installed_digests(load_environment(first))
    second = write_inventory(sandbox_env, {"domains": [DOMAIN], "certificate": "files",
                                           "cert_file": str(tmp_path / "weak.crt"),
                                           "key_file": str(tmp_path / "weak.key")}, prefix="faults-tls")
    clean_tls.append(second)
    out = h.run_inv("tls.issue", "--host", second, timeout=300)
    h.assert_one_clear_error(out, 1, "nginx rejected")
    h.assert_lock_free()
    env = load_environment(second)
    assert installed_digests(env) == before
    want = x509.load_pem_x509_certificate(good).serial_number
    with Gateway(env) as gw:
        for host in env.with_roles("web"):
            st = certificate_status(gw, host)
            assert st.tls_on and int(st.cert.serial, 16) == want, host.name
