"""Every secret file (app env file, accessory variables, ops_env_file) is read by ONE
reader, ops.appenv.load_env_file: same quoting and ${...} rules everywhere, and a file
that group or others may read or write is refused with the chmod that fixes it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ops import accessory, opsenv
from ops.appenv import load_env_file
from ops.errors import ConfigError
from ops.inventory import load_environment

# A password holding text that looks like a reference: '...' keeps it literal.
HOSTILE = "POSTGRES_USER=athlete\nPOSTGRES_PASSWORD='pw${HOME}x'\nPOSTGRES_DB=athlete\n"


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def sandbox(tmp_path):
    env = load_environment("sandbox")
    path = secret_file(tmp_path / "app.env", HOSTILE)
    return dataclasses.replace(env, env_file=path, ops_env_file=path)


@pytest.fixture(autouse=True)
def fresh_ops_env_cache():
    opsenv._file_values.cache_clear()
    yield
    opsenv._file_values.cache_clear()


def test_a_single_quoted_dollar_brace_value_reads_the_same_for_the_app_and_the_accessory(sandbox, monkeypatch):
    monkeypatch.setenv("HOME", "/home/operator")
    pg = sandbox.accessories["postgres"]
    app_view = load_env_file(sandbox.env_file)["POSTGRES_PASSWORD"]
    accessory_view = accessory.read_env(sandbox, pg)["POSTGRES_PASSWORD"]
    assert app_view == accessory_view == "pw${HOME}x"


def test_the_ops_env_file_reads_the_same_value_too(sandbox, monkeypatch):
    monkeypatch.setenv("HOME", "/home/operator")
    assert opsenv.operator_value(sandbox, "POSTGRES_PASSWORD") == "pw${HOME}x"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_accessory_variables_from_a_file_others_may_read_or_write_are_refused(sandbox, mode):
    sandbox.env_file.chmod(mode)
    with pytest.raises(ConfigError) as excinfo:
        accessory.read_env(sandbox, sandbox.accessories["postgres"])
    text = str(excinfo.value)
    assert "\n" not in text
    assert f"env file {sandbox.env_file} is accessible by group or others (mode {mode:04o})" in text
    assert text.endswith(f"chmod 600 {sandbox.env_file}")


def test_an_ops_env_file_others_may_read_is_refused_with_the_fix(sandbox):
    sandbox.ops_env_file.chmod(0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {sandbox.ops_env_file}$"):
        opsenv.operator_value(sandbox, "AWS_ACCESS_KEY_ID")


def test_a_0600_secret_file_is_accepted_by_every_path(sandbox):
    assert load_env_file(sandbox.env_file)["POSTGRES_DB"] == "athlete"
    assert accessory.read_env(sandbox, sandbox.accessories["postgres"])["POSTGRES_USER"] == "athlete"
    assert opsenv.operator_value(sandbox, "POSTGRES_DB") == "athlete"


def test_an_undefined_reference_fails_the_accessory_as_it_fails_the_app(sandbox):
    secret_file(sandbox.env_file, "POSTGRES_USER=a\nPOSTGRES_PASSWORD=pw${NOPE}x\nPOSTGRES_DB=a\n")
    with pytest.raises(ConfigError, match="references"):
        accessory.read_env(sandbox, sandbox.accessories["postgres"])


def test_the_sandbox_writes_its_env_file_0600(tmp_path):
    from ops.sandbox import app_env

    env = dataclasses.replace(load_environment("sandbox"), env_file=tmp_path / "state" / "app.env")
    app_env.ensure(env)
    assert env.env_file.stat().st_mode & 0o777 == 0o600
    load_env_file(env.env_file)  # accepted by the one reader
