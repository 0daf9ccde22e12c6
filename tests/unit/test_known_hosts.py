"""ops/known_hosts.py and ops/hostkeys.py: fingerprints, patterns, safe rewrites, trust plans."""

from __future__ import annotations

import base64
import shutil
import stat
import subprocess

import paramiko
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ops.hostkeys import TrustChange, plan_trust, write_trust
from ops.inventory import Target, resolve_target
from ops.known_hosts import KeyEntry, entries_for, fingerprint, host_pattern, read_entries, replace_host


def pkey_from_openssh(line: bytes | str) -> paramiko.PKey:
    key_type, b64 = (line.decode() if isinstance(line, bytes) else line).split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))


def new_key(kind: str = "ed25519") -> paramiko.PKey:
    private = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return pkey_from_openssh(public)


# -- fingerprint ---------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa"])
def test_fingerprint_matches_ssh_keygen(tmp_path, key_type):
    key_file = tmp_path / f"id_{key_type}"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "test", "-f", str(key_file)],
                   check=True, capture_output=True, timeout=30)
    pub_line = (tmp_path / f"id_{key_type}.pub").read_text()
    listed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(key_file) + ".pub"],
                            check=True, capture_output=True, text=True, timeout=30).stdout
    expected = listed.split()[1]
    assert expected.startswith("SHA256:")

    key = pkey_from_openssh(pub_line)
    assert fingerprint(key) == expected
    assert KeyEntry.from_key("host", key).fingerprint == expected


def test_fingerprint_is_unpadded_base64_sha256_of_the_key_blob():
    key = new_key()
    fp = fingerprint(key)
    assert fp.startswith("SHA256:")
    assert not fp.endswith("=")
    assert len(fp) == len("SHA256:") + 43
    assert KeyEntry.from_key("h", key).fingerprint == fp
    assert fingerprint(new_key()) != fp


# -- host_pattern ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "port", "pattern"),
    [
        ("203.0.113.11", 22, "203.0.113.11"),
        ("web1.example.com", 22, "web1.example.com"),
        ("127.0.0.1", 22101, "[127.0.0.1]:22101"),
        ("web1.example.com", 2222, "[web1.example.com]:2222"),
        ("2001:db8::1", 2222, "[2001:db8::1]:2222"),
    ],
)
def test_host_pattern_brackets_only_non_standard_ports(address, port, pattern):
    assert host_pattern(address, port) == pattern


# -- reading and rewriting ---------------------------------------------------------


K1, K2, K3, K4 = (new_key() for _ in range(4))


def line(pattern: str, key: paramiko.PKey) -> str:
    return f"{pattern} {key.get_name()} {key.get_base64()}"


def test_read_entries_skips_comments_and_splits_comma_patterns(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text(
        "# managed by inv hosts.trust\n"
        f"web1,10.0.0.11 {K1.get_name()} {K1.get_base64()} comment here\n"
        "\n"
        "garbage\n"
        f"{line('[127.0.0.1]:22101', K2)}\n"
    )
    assert read_entries(path) == [
        KeyEntry("web1", "ssh-ed25519", K1.get_base64()),
        KeyEntry("10.0.0.11", "ssh-ed25519", K1.get_base64()),
        KeyEntry("[127.0.0.1]:22101", "ssh-ed25519", K2.get_base64()),
    ]
    assert entries_for(path, "10.0.0.11") == [KeyEntry("10.0.0.11", "ssh-ed25519", K1.get_base64())]
    assert entries_for(path, "10.0.0.12") == []


def test_read_entries_of_a_missing_file_is_empty(tmp_path):
    assert read_entries(tmp_path / "nope") == []


def test_replace_host_keeps_other_hosts_and_replaces_only_that_pattern(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text(
        f"{line('10.0.0.11', K1)}\n"
        f"{line('[10.0.0.11]:2222', K2)}\n"
        f"{line('10.0.0.12', K3)}\n"
        f"{line('10.0.0.11', K2)}\n"
    )
    new = [KeyEntry.from_key("10.0.0.11", K4)]

    replace_host(path, "10.0.0.11", new)

    # The port-2222 entry for the same address is another host pattern: untouched.
    assert path.read_text() == (
        f"{line('[10.0.0.11]:2222', K2)}\n"
        f"{line('10.0.0.12', K3)}\n"
        f"{line('10.0.0.11', K4)}\n"
    )


def test_replace_host_with_no_keys_removes_the_host(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text(f"{line('web1', K1)}\n{line('web2', K2)}\n")
    replace_host(path, "web1", [])
    assert path.read_text() == f"{line('web2', K2)}\n"


def test_replace_host_creates_the_file_and_its_directory(tmp_path):
    path = tmp_path / ".sandbox" / "known_hosts"
    replace_host(path, "[127.0.0.1]:22101", [KeyEntry.from_key("[127.0.0.1]:22101", K1)])

    assert path.read_text() == f"{line('[127.0.0.1]:22101', K1)}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["known_hosts"]  # no temp file left


def test_replaced_file_is_what_paramiko_loads(tmp_path):
    path = tmp_path / "known_hosts"
    replace_host(path, "[127.0.0.1]:22101", [KeyEntry.from_key("[127.0.0.1]:22101", K1)])
    replace_host(path, "10.0.0.5", [KeyEntry.from_key("10.0.0.5", K2)])

    loaded = paramiko.HostKeys(str(path))
    assert loaded.lookup("[127.0.0.1]:22101")["ssh-ed25519"] == K1
    assert loaded.lookup("10.0.0.5")["ssh-ed25519"] == K2
    assert loaded.lookup("127.0.0.1") is None


def test_replace_host_keeps_marker_lines_of_other_hosts(tmp_path):
    path = tmp_path / "known_hosts"
    revoked = f"@revoked * {K3.get_name()} {K3.get_base64()}"
    path.write_text(f"{revoked}\n{line('web1', K1)}\n")
    replace_host(path, "web1", [KeyEntry.from_key("web1", K2)])
    assert revoked in path.read_text().splitlines()


# -- plan_trust / write_trust ---------------------------------------------------------


@pytest.fixture
def target(tmp_path):
    data = {
        "app": "shop",
        "image": "shop/web",
        "registry": {"url": "registry.example.com"},
        "ssh": {"known_hosts": "inventory/prod.known_hosts", "connect_timeout": 7},
        "hosts": {
            "web1": {"address": "10.0.0.11", "roles": ["web"]},
            "web2": {"address": "10.0.0.12", "port": 2222, "roles": ["web"]},
            "db1": {"address": "10.0.0.21", "roles": ["db"]},
        },
        "uploads": {"storage": "shared", "path": "/mnt/shop-uploads"},  # two web hosts: one set of uploads
    }
    inv = tmp_path / "inventory"
    inv.mkdir()
    (inv / "prod.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    return resolve_target("prod", inv)


class FakeFetch:
    """Stands in for fetch_host_keys: hands back keys per host name, records calls."""

    def __init__(self, keys: dict[str, list[paramiko.PKey]]):
        self.keys = keys
        self.calls: list[tuple[str, float]] = []

    def __call__(self, host, *, timeout):
        self.calls.append((host.name, timeout))
        return self.keys[host.name]


def test_plan_trust_reports_new_trusted_and_changed(target):
    known_hosts = target.env.ssh.known_hosts
    known_hosts.write_text(f"{line('10.0.0.11', K1)}\n{line('[10.0.0.12]:2222', K2)}\n")
    fetch = FakeFetch({"web1": [K1], "web2": [K3], "db1": [K4]})

    changes = plan_trust(target, fetch=fetch)

    assert fetch.calls == [("web1", 7), ("web2", 7), ("db1", 7)]
    by_host = {c.host.name: c for c in changes}
    assert [c.host.name for c in changes] == ["web1", "web2", "db1"]
    assert [c.pattern for c in changes] == ["10.0.0.11", "[10.0.0.12]:2222", "10.0.0.21"]

    web1, web2, db1 = by_host["web1"], by_host["web2"], by_host["db1"]
    assert (web1.needs_write, web1.is_replacement) == (False, False)
    assert (web2.needs_write, web2.is_replacement) == (True, True)
    assert (db1.needs_write, db1.is_replacement) == (True, False)

    assert web1.describe() == f"web1 (10.0.0.11): trusted\n  ssh-ed25519 {fingerprint(K1)}"
    assert web2.describe() == f"web2 ([10.0.0.12]:2222): CHANGED\n  ssh-ed25519 {fingerprint(K3)}"
    assert db1.describe() == f"db1 (10.0.0.21): new\n  ssh-ed25519 {fingerprint(K4)}"
    assert web2.on_file == [KeyEntry.from_key("[10.0.0.12]:2222", K2)]


def test_an_added_key_type_is_new_not_changed(target):
    ecdsa = new_key("ecdsa")
    target.env.ssh.known_hosts.write_text(f"{line('10.0.0.11', K1)}\n")
    web1_only = Target(target.env, (target.env.hosts["web1"],))

    (change,) = plan_trust(web1_only, fetch=FakeFetch({"web1": [K1, ecdsa]}))

    assert change.needs_write is True
    assert change.is_replacement is False
    assert change.describe() == (f"web1 (10.0.0.11): new\n  ssh-ed25519 {fingerprint(K1)}\n"
                                 f"  ecdsa-sha2-nistp256 {fingerprint(ecdsa)}")


def test_keys_offered_in_another_order_are_still_trusted(target):
    ecdsa = new_key("ecdsa")
    target.env.ssh.known_hosts.write_text(f"{line('10.0.0.11', ecdsa)}\n{line('10.0.0.11', K1)}\n")
    web1_only = Target(target.env, (target.env.hosts["web1"],))
    (change,) = plan_trust(web1_only, fetch=FakeFetch({"web1": [K1, ecdsa]}))
    assert change.needs_write is False


def test_plan_trust_without_a_known_hosts_file_marks_everything_new(target):
    assert not target.env.ssh.known_hosts.exists()
    changes = plan_trust(target, fetch=FakeFetch({"web1": [K1], "web2": [K2], "db1": [K3]}))
    assert [(c.needs_write, c.is_replacement) for c in changes] == [(True, False)] * 3
    assert not target.env.ssh.known_hosts.exists()  # planning writes nothing


def test_write_trust_then_plan_again_is_all_trusted(target):
    known_hosts = target.env.ssh.known_hosts
    known_hosts.write_text(f"{line('[10.0.0.12]:2222', K2)}\n{line('10.9.9.9', K4)}\n")
    fetch = FakeFetch({"web1": [K1], "web2": [K3], "db1": [K4]})

    write_trust(known_hosts, plan_trust(target, fetch=fetch))

    assert known_hosts.read_text() == (
        f"{line('10.9.9.9', K4)}\n"
        f"{line('10.0.0.11', K1)}\n"
        f"{line('[10.0.0.12]:2222', K3)}\n"
        f"{line('10.0.0.21', K4)}\n"
    )
    again = plan_trust(target, fetch=fetch)
    assert [c.describe().splitlines()[0] for c in again] == [
        "web1 (10.0.0.11): trusted", "web2 ([10.0.0.12]:2222): trusted", "db1 (10.0.0.21): trusted"]


def test_trust_change_compares_key_type_and_blob():
    host = None
    same = TrustChange(host, "h", [KeyEntry("h", "ssh-ed25519", "AAA")], [KeyEntry("h", "ssh-ed25519", "AAA")])
    other_type = TrustChange(host, "h", [KeyEntry("h", "ecdsa-sha2-nistp256", "AAA")],
                             [KeyEntry("h", "ssh-ed25519", "AAA")])
    assert (same.needs_write, same.is_replacement) == (False, False)
    assert (other_type.needs_write, other_type.is_replacement) == (True, False)


def test_openssh_public_key_file_round_trips(tmp_path):
    # KeyEntry.line is the OpenSSH known_hosts format: pattern, type, base64.
    entry = KeyEntry.from_key("[127.0.0.1]:22101", K1)
    assert entry.line == f"[127.0.0.1]:22101 ssh-ed25519 {K1.get_base64()}"
    assert pkey_from_openssh(entry.line.split(" ", 1)[1]) == K1

