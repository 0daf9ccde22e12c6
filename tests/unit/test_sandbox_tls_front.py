"""The sandbox S3 endpoint's TLS front (stunnel + a CA made here) for pgBackRest: pure builders."""

from __future__ import annotations

import dataclasses

import pytest

from ops.errors import ConfigError
from ops.inventory import load_environment
from ops.sandbox import services


def test_the_front_listens_on_the_sandbox_gateway_and_forwards_to_moto():
    env = load_environment("sandbox")
    assert services.gateway_address(env) == "172.31.250.1"
    assert services.tls_front_listen(env) == ("172.31.250.1", 9443)
    svc = services.services(env)["s3-tls"]
    assert svc.argv == ("stunnel4", str(services.tls_dir(env) / "stunnel.conf"))
    assert svc.probe_url == "https://172.31.250.1:9443/" and svc.probe_ca == services.tls_dir(env) / "ca.pem"


def test_a_repository_endpoint_off_the_gateway_is_refused_with_the_right_address():
    env = load_environment("sandbox")
    repo = dataclasses.replace(env.pitr.repos[0], endpoint="10.9.9.9")
    bad = dataclasses.replace(env, pitr=dataclasses.replace(env.pitr, repos=(repo,)))
    with pytest.raises(ConfigError, match=r"'10.9.9.9' is not the sandbox network's gateway 172.31.250.1"):
        services.tls_front_listen(bad)


def test_without_pitr_there_is_no_front():
    env = dataclasses.replace(load_environment("sandbox"), pitr=None)
    assert services.tls_front_listen(env) is None and "s3-tls" not in services.services(env)
    assert services.write_tls_front(env) == ""


def test_stunnel_config_and_certificate_san():
    text = services.stunnel_config_text("/d", "172.31.250.1", 9443, ("127.0.0.1", 9000))
    assert "accept = 172.31.250.1:9443\nconnect = 127.0.0.1:9000\n" in text
    assert "foreground = yes" in text and "cert = /d/server.pem" in text and "sslVersionMin = TLSv1.2" in text
    # pgBackRest 2.45 matches DNS-type SANs only: the address must be there as a DNS name.
    assert services.server_ext_text("172.31.250.1").startswith("subjectAltName = DNS:172.31.250.1, IP:172.31.250.1")
    assert services.ca_argv("/d")[:3] == ("openssl", "req", "-x509")
