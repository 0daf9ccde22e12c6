"""proxy.tls in an inventory: what it accepts, its defaults, and one line per problem."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ops.errors import InventoryError
from ops.inventory import LETS_ENCRYPT, load_environment

BASE = {
    "app": "shop",
    "image": "registry.example.com/team/shop",
    "registry": {"url": "registry.example.com"},
    "ssh": {"user": "ops", "known_hosts": "inventory/prod.known_hosts"},
    "hosts": {"web1": {"address": "10.0.0.11", "roles": ["web"]}},
}


def load(tmp_path: Path, tls) -> object:
    data = copy.deepcopy(BASE)
    data["proxy"] = {"port": 80, "tls": tls}
    (tmp_path / "inventory").mkdir(exist_ok=True)
    (tmp_path / "inventory" / "prod.yml").write_text(yaml.safe_dump(data))
    return load_environment("prod", tmp_path / "inventory")


def problems(tmp_path: Path, tls) -> list[str]:
    with pytest.raises(InventoryError) as excinfo:
        load(tmp_path, tls)
    for line in excinfo.value.problems:
        assert "\n" not in line and "prod.yml: proxy.tls" in line, line
    return [line.split("prod.yml: ", 1)[1] for line in excinfo.value.problems]


def test_no_tls_section_means_plain_http(tmp_path):
    assert load(tmp_path, None).proxy.tls is None


def test_acme_defaults_to_lets_encrypt_production_30_days_and_port_443(tmp_path):
    tls = load(tmp_path, {"domains": ["example.org", "www.example.org"], "certificate": "acme",
                          "email": "ops@example.org", "account_key": "secrets/acme.key"}).proxy.tls
    assert tls.domains == ("example.org", "www.example.org")
    assert tls.directory == LETS_ENCRYPT
    assert tls.renew_before_days == 30 and tls.https_port == 443
    assert tls.account_key == tmp_path / "secrets" / "acme.key"  # relative: to the repository root


def test_files_mode_reads_existing_files(tmp_path):
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    tls = load(tmp_path, {"domains": ["example.org"], "certificate": "files",
                          "cert_file": str(tmp_path / "c.pem"), "key_file": str(tmp_path / "k.pem")}).proxy.tls
    assert tls.certificate == "files" and tls.cert_file == tmp_path / "c.pem"


def test_a_missing_key_file_is_one_problem_naming_the_key(tmp_path):
    (tmp_path / "c.pem").write_text("x")
    found = problems(tmp_path, {"domains": ["example.org"], "certificate": "files",
                                "cert_file": str(tmp_path / "c.pem"), "key_file": str(tmp_path / "nope.pem")})
    assert found == [f"proxy.tls.key_file: {tmp_path / 'nope.pem'} does not exist — point it at the PEM file on "
                     "this machine"]


@pytest.mark.parametrize(("tls", "expect"), [
    ({"domains": [], "certificate": "acme", "account_key": "a"}, "proxy.tls.domains: must be a non-empty list"),
    ({"domains": ["*.example.org"], "certificate": "acme", "account_key": "a"}, "proxy.tls.domains:"),
    ({"domains": ["Example.org;"], "certificate": "acme", "account_key": "a"}, "proxy.tls.domains:"),
    ({"domains": ["example.org"], "certificate": "self", "account_key": "a"}, "proxy.tls.certificate: 'self'"),
    ({"domains": ["example.org"], "certificate": "acme"}, "proxy.tls.account_key: missing"),
    ({"domains": ["example.org"], "certificate": "files"}, "proxy.tls.cert_file: missing"),
    ({"domains": ["example.org"], "certificate": "acme", "account_key": "a", "directory": "http://x/dir"},
     "proxy.tls.directory:"),
    ({"domains": ["example.org"], "certificate": "acme", "account_key": "a", "email": "nobody"},
     "proxy.tls.email:"),
    ({"domains": ["example.org"], "certificate": "acme", "account_key": "a", "https_port": 80},
     "proxy.tls.https_port: 80 is also proxy.port"),
    ({"domains": ["example.org"], "certificate": "acme", "account_key": "a", "renew_before_days": 0},
     "proxy.tls.renew_before_days:"),
    ({"domains": ["example.org"], "certificate": "acme", "account_key": "a", "cert_file": "c.pem"},
     "proxy.tls.cert_file: is for certificate: files"),
    ({"domains": ["example.org"], "certificate": "acme", "account_key": "a", "colour": "red"},
     "proxy.tls.colour: unknown key"),
])
def test_bad_tls_settings_are_named_one_line_each(tmp_path, tls, expect):
    found = problems(tmp_path, tls)
    assert any(line.startswith(expect) for line in found), found
