"""Hostile or wrong input: a changed host key, Invoke's --dry, shell metacharacters in the
inventory and in the env file. Nothing runs that should not; the operator is told why.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.faults import helpers as h


def _port_of(name: str, env) -> str:
    host = env.hosts[name]
    return f"[{host.address}]:{host.port}"


def test_changed_host_key_is_refused_naming_the_fingerprint_and_the_trust_command(fleet, tmp_path):
    env = fleet.env
    real = env.ssh.known_hosts.read_bytes()
    lines = real.decode().splitlines()
    web1, web2 = _port_of("web1", env), _port_of("web2", env)
    # web1's entries get web2's keys: a valid key, just not web1's (as after a rebuild or a MITM).
    others = [ln.split(" ", 1)[1] for ln in lines if ln.split(" ", 1)[0] == web2]
    assert others, f"no entry for {web2} in {env.ssh.known_hosts}"
    forged = [ln for ln in lines if ln.split(" ", 1)[0] != web1] + [f"{web1} {rest}" for rest in others]
    copy = tmp_path / "known_hosts"
    copy.write_text("\n".join(forged) + "\n")
    old = h.assert_one_version()
    with h.inventory_copy(env, ssh={"known_hosts": str(copy)}) as name:
        out = h.run_inv("deploy", "--host", name, "--version", fleet.other(old))
    h.assert_one_clear_error(out, 1, "web1", "SHA256:", "hosts.trust", "--replace")
    assert env.ssh.known_hosts.read_bytes() == real, "the project's known_hosts was changed"
    h.assert_one_version({old})
    h.assert_lock_free()


@pytest.mark.parametrize("argv", [
    ("deploy", "--host", "sandbox", "--version", "{new}", "--dry"),
    ("--dry", "deploy", "--host", "sandbox", "--version", "{new}"),
], ids=["after-the-task", "before-the-task"])
def test_invokes_dry_flag_never_deploys(fleet, argv):
    old = h.assert_one_version()
    history = h.releases_json()
    out = h.run_inv(*(a.format(new=fleet.other(old)) for a in argv))
    assert "Traceback" not in out.output, str(out)
    assert out.code in (0, 2), str(out)
    if out.code == 0:
        assert "dry-run" in out.output.lower(), f"--dry ran as something other than --dry-run:\n{out}"
    else:
        assert "--dry" in out.output, str(out)
    h.assert_one_version({old})
    assert h.releases_json() == history
    h.assert_lock_free()


def _pwned_anywhere(marker: str) -> list[str]:
    where = [name for name in h.HOSTS if h.host_has_file(name, marker)]
    return where + (["operator"] if os.path.exists(marker) else [])


def test_hostile_app_dir_in_the_inventory_is_refused_or_quoted_never_executed(fleet):
    marker = f"/tmp/pwned-{h.nonce()}"
    old = h.assert_one_version()
    hostile = f"/srv/athlete-platform$(touch {marker});touch {marker}"
    with h.inventory_copy(fleet.env, app_dir=hostile) as name:
        outs = [h.run_inv("lock.status", "--host", name),
                h.run_inv("doctor", "--host", name),
                h.run_inv("deploy", "--host", name, "--version", fleet.other(old))]
    assert _pwned_anywhere(marker) == []
    for out in outs:
        # Refused by validation (exit 2, naming the key) or quoted (then it ran harmlessly).
        assert "Traceback" not in out.output, str(out)
        if out.code == 2:
            assert "app_dir" in out.output, str(out)
    h.assert_one_version({old})


def test_hostile_accessory_name_in_the_inventory_is_refused_never_executed(fleet):
    marker = f"/tmp/pwned-{h.nonce()}"
    raw_accessory = {"host": "db1", "image": "sandbox/postgres:15", "from_registry": True, "port": 5432,
                     "data_path": "/var/lib/postgresql/data", "env": ["POSTGRES_USER", "POSTGRES_PASSWORD",
                                                                       "POSTGRES_DB"]}
    hostile = f"pg;touch {marker}"
    with h.inventory_copy(fleet.env, accessories={hostile: raw_accessory}) as name:
        outs = [h.run_inv("accessory.status", "--host", name, hostile),
                h.run_inv("accessory.status", "--host", name, "postgres")]
    assert _pwned_anywhere(marker) == []
    for out in outs:
        # Refused by validation (exit 2, naming the key) or quoted (then it ran harmlessly).
        assert "Traceback" not in out.output, str(out)
        if out.code == 2:
            assert "accessories" in out.output, str(out)


def test_hostile_env_file_value_deploys_literally_and_executes_nothing(fleet, tmp_path):
    marker = f"/tmp/pwned-{h.nonce()}"
    value = f"x'; touch {marker}; '"
    env = fleet.env
    lines = [ln for ln in env.env_file.read_text().splitlines() if not ln.startswith("SMTP_USER=")]
    env_file = tmp_path / "app.env"
    env_file.write_text("\n".join([*lines, f"SMTP_USER={value}"]) + "\n")
    os.chmod(env_file, 0o600)
    old = h.assert_one_version()
    new = fleet.other(old)
    with h.inventory_copy(env, env_file=str(env_file)) as name:
        out = h.run_inv("deploy", "--host", name, "--version", new)
        assert out.code == 0 and "Traceback" not in out.output, str(out)
        shown = h.run_inv("app.exec", "--host", name, "--", "node", "-e",
                          "console.log(JSON.stringify(process.env.SMTP_USER))")
    assert _pwned_anywhere(marker) == []
    assert shown.code == 0, str(shown)

    assert json.loads(shown.stdout.strip().splitlines()[-1]) == value
    h.assert_one_version({new})
    h.assert_lock_free()
