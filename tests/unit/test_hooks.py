"""Deploy hooks: local executables with the release in their environment."""

from __future__ import annotations

import dataclasses

import pytest

from ops.errors import ConfigError
from ops.hooks import run_hook
from ops.inventory import load_environment


@pytest.fixture
def env(tmp_path):
    return dataclasses.replace(load_environment("sandbox"), hooks_dir=tmp_path)


def write_hook(env, name, body):
    path = env.hooks_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_missing_hook_is_skipped(env):
    assert run_hook(env, "pre-deploy", version="v1", release="r1", hosts=["web1"], actor="me") is False


def test_hook_gets_the_release_in_its_environment(env, tmp_path):
    out = tmp_path / "seen"
    write_hook(env, "post-deploy", f'echo "$OPS_ENV $OPS_VERSION $OPS_RELEASE $OPS_HOSTS $OPS_ACTOR $OPS_HOOK" > {out}\n')
    assert run_hook(env, "post-deploy", version="abc", release="20260101T000000Z-abc", hosts=["web1", "web2"],
                    actor="alice@laptop") is True
    assert out.read_text() == "sandbox abc 20260101T000000Z-abc web1,web2 alice@laptop post-deploy\n"


def test_failing_hook_is_a_config_error_naming_it(env):
    path = write_hook(env, "pre-deploy", 'echo "no deploys on Friday" >&2; exit 1\n')
    with pytest.raises(ConfigError) as err:
        run_hook(env, "pre-deploy", version="v1", release="r1", hosts=["web1"], actor="me")
    assert "pre-deploy hook failed" in str(err.value)
    assert "no deploys on Friday" in str(err.value)
    assert str(path) in str(err.value)


def test_hook_that_is_not_executable_is_refused(env):
    path = write_hook(env, "pre-deploy", "exit 0\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="is not executable"):
        run_hook(env, "pre-deploy", version="v1", release="r1", hosts=["web1"], actor="me")
