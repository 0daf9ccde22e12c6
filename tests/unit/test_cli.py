"""The shared CLI contract: typed flags, one JSON envelope, exit codes, Invoke's --dry, confirmation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ops import cli
from ops.errors import ConfigError, HostError

ROOT = Path(__file__).resolve().parents[2]


def inv(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "inv"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_number_accepts_numbers_and_names_the_flag_when_not():
    assert cli.number("3", "--batch", integer=True) == 3
    assert cli.number(2.5, "--lock-wait") == 2.5
    with pytest.raises(ConfigError, match=r"--batch 'abc' is not a whole number"):
        cli.number("abc", "--batch", integer=True)
    with pytest.raises(ConfigError, match="must be 0 or more"):
        cli.number(-1, "--lock-wait")
    with pytest.raises(ConfigError):
        cli.number("nan", "--lock-wait")


def test_host_list_splits_commas_and_refuses_shell_syntax():
    assert cli.host_list("web2, web3") == ["web2", "web3"]
    assert cli.host_list("") == []
    with pytest.raises(ConfigError, match="not a host name"):
        cli.host_list("web2;reboot")


def test_confirm_needs_the_environment_name_typed():
    cli.confirm("prod", "Go?", ask=lambda _q: "prod", interactive=lambda: True)
    with pytest.raises(ConfigError, match="not confirmed"):
        cli.confirm("prod", "Go?", ask=lambda _q: "yes", interactive=lambda: True)
    with pytest.raises(ConfigError, match="no terminal"):
        cli.confirm("prod", "Go?", interactive=lambda: False)
    cli.confirm("prod", "Go?", yes=True, interactive=lambda: False)


def test_exit_codes_separate_usage_from_failure():
    assert cli.exit_code(ConfigError("bad flag")) == 2
    assert cli.exit_code(HostError("down", host="web1")) == 1
    assert cli.exit_code(KeyboardInterrupt()) == 130


def test_envelope_has_one_shape_for_success_and_error():
    out = cli.Output(json=True)
    out.result({"a": 1})
    out.warnings.append("w")
    ok = out.envelope()
    err = HostError("gone", host="web2", hint="inv doctor")
    err.also("lock not released on web2")
    failed = cli.Output(json=True).envelope(err)
    assert set(ok) == set(failed) == {"ok", "data", "warnings", "error"}
    assert ok["ok"] is True and ok["data"] == {"a": 1} and ok["error"] is None
    assert failed["ok"] is False and failed["error"]["host"] == "web2" and failed["error"]["also"]


def test_a_non_number_for_a_typed_flag_is_one_line_and_exit_2():
    proc = inv("deploy", "--host", "sandbox", "--batch", "abc")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: --batch 'abc' is not a whole number"


def test_a_config_error_under_json_prints_the_envelope_and_exits_2():
    proc = inv("releases", "--host", "nosuchenv", "--json")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and "nosuchenv" in doc["error"]["message"] and doc["data"] is None


def test_invoke_dry_is_refused_by_a_mutating_task_without_a_dry_run():
    proc = inv("lock.release", "--host", "sandbox", "--dry")
    assert proc.returncode == 2
    assert "--dry is Invoke's own flag" in proc.stderr and "Traceback" not in proc.stderr


def test_invoke_dry_becomes_dry_run_where_the_task_has_one():
    proc = inv("backup.db", "--host", "sandbox", "--dry")
    assert "taken as --dry-run" in proc.stderr and "Traceback" not in proc.stderr
    # on a machine without the sandbox's env file the dry run stops at that (exit 2), else it prints its plan
    assert (proc.returncode == 0 and "dry-run" in proc.stdout) or (proc.returncode == 2 and "env file" in proc.stderr)


def test_negative_lock_wait_is_a_usage_error():
    proc = inv("rollback", "--host", "sandbox", "--lock-wait", "-5")
    assert proc.returncode == 2 and "--lock-wait" in proc.stderr and "Traceback" not in proc.stderr
