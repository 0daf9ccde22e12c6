"""Pure parts of ``inv setup`` (ops/setup.py): firewall rules per role, root commands, keys."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

import paramiko
import pytest

from ops import setup
from ops.errors import ConfigError, InventoryError
from ops.inventory import load_environment


@pytest.fixture
def env():
    return load_environment("sandbox")


def rule_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def test_a_web_host_opens_ssh_and_the_proxy_port_and_drops_every_other_published_port(env):
    lines = rule_lines(setup.render_firewall(env, env.hosts["web1"]))
    assert "type filter hook input priority filter; policy drop;" in lines
    assert "tcp dport 22 accept" in lines
    assert "tcp dport { 80 } accept" in lines
    assert "ct status dnat meta l4proto tcp ct original proto-dst { 80 } accept" in lines
    assert lines.index("ct status dnat meta l4proto tcp ct original proto-dst { 80 } accept") < lines.index("ct status dnat drop")
    assert not any("5432" in line for line in lines)


def test_a_db_host_opens_its_accessory_port_to_the_web_hosts_only(env):
    lines = rule_lines(setup.render_firewall(env, env.hosts["db1"]))
    web = ", ".join(sorted(h.private_address for h in env.with_roles("web")))
    assert f"ip saddr {{ {web} }} tcp dport 5432 accept" in lines
    assert f"ct status dnat ip saddr {{ {web} }} meta l4proto tcp ct original proto-dst 5432 accept" in lines
    assert not any("dport { 80 }" in line for line in lines)


def test_allow_from_and_open_ports_come_from_the_inventory(env):
    env = dataclasses.replace(env, setup=dataclasses.replace(env.setup, open_ports=(8443,), allow_from=("10.9.0.0/24",),
                                                            ssh_port=2222))
    web = rule_lines(setup.render_firewall(env, env.hosts["web1"]))
    assert "tcp dport 2222 accept" in web and "tcp dport { 80, 8443 } accept" in web
    db = rule_lines(setup.render_firewall(env, env.hosts["db1"]))
    assert any("10.9.0.0/24" in line and "5432" in line for line in db)


def test_the_ruleset_replaces_only_our_own_table(env):
    text = setup.render_firewall(env, env.hosts["web1"])
    assert "flush ruleset" not in text
    assert text.splitlines()[1:3] == ["table inet ops_firewall {}", "delete table inet ops_firewall"]


def test_root_commands_are_quoted_whole_and_go_through_sudo_for_another_admin(env):
    assert setup.root_command(env, "echo 'a b'; id") == "sh -c 'echo '\"'\"'a b'\"'\"'; id'"
    other = dataclasses.replace(env, setup=dataclasses.replace(env.setup, admin_user="admin"))
    assert setup.root_command(other, "id").startswith("sudo -n sh -c ")


def test_as_admin_changes_the_login_user_of_every_host_only(env):
    admin = setup.as_admin(env)
    assert {h.user for h in admin.hosts.values()} == {"root"}
    assert admin.ssh.key == env.ssh.key and admin.ssh.known_hosts == env.ssh.known_hosts


def test_public_key_line_is_the_private_keys_public_half(tmp_path):
    path = tmp_path / "id"
    pk = paramiko.RSAKey.generate(1024)
    pk.write_private_key_file(str(path))
    assert setup.public_key_line(str(path)) == f"ssh-rsa {pk.get_base64()} ops-deploy"


def test_an_unreadable_key_is_a_config_error_naming_it(tmp_path):
    bad = tmp_path / "nokey"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match="nokey"):
        setup.public_key_line(str(bad))


def test_bootstrap_script_quotes_values_and_keeps_the_key_out_of_argv_positions(env, tmp_path):
    key = tmp_path / "id"
    paramiko.RSAKey.generate(1024).write_private_key_file(str(key))
    env = dataclasses.replace(env, ssh=dataclasses.replace(env.ssh, key=key))
    plan = setup.HostSetup(env.hosts["web1"], os="debian")
    text = setup.bootstrap_script(env, env, plan)
    assert "install -d -m 0750 -o deploy -g deploy /srv/athlete-platform" in text
    assert "usermod -aG docker deploy" in text
    assert "'log-driver'" not in text and '"log-driver": "json-file"' in text


def test_inventory_setup_section_rejects_bad_values(tmp_path):
    import yaml

    from ops.inventory import load_environment as load

    raw = yaml.safe_load(load_environment("sandbox").path.read_text())
    raw["setup"] = {"open_ports": ["x"], "allow_from": ["nope"], "admin_user": "Bad User", "extra": 1}
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "t.yml").write_text(yaml.safe_dump(raw))
    with pytest.raises(InventoryError) as err:
        load("t", tmp_path / "inventory")
    text = str(err.value)
    for where in ("setup.open_ports", "setup.allow_from", "setup.admin_user", "setup.extra"):
        assert where in text, text


@pytest.mark.skipif(not shutil.which("nft") or os.geteuid() != 0, reason="needs nft and root for `nft -c`")
@pytest.mark.parametrize("host", ["web1", "db1"])
def test_the_rendered_ruleset_passes_nfts_own_check(env, host, tmp_path):
    path = tmp_path / "fw.nft"
    path.write_text(setup.render_firewall(env, env.hosts[host]))
    proc = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
