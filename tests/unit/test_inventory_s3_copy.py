"""``s3.copy`` in the inventory: a second target for logical and uploads backups, validated one line per
problem; its own credential variables, never the primary's by accident."""

from __future__ import annotations

import dataclasses

import pytest

from ops import opsenv, s3
from ops.inventory import load_environment
from tests.unit.test_inventory import only_problem, valid, write
from tests.unit.test_secrets_s3_credentials import no_credentials_anywhere  # noqa: F401 - fixture


@pytest.fixture
def inv(tmp_path):
    return tmp_path / "inventory"


S3 = {"bucket": "shop-backups", "prefix": "prod/", "region": "eu-west-1"}


def test_a_copy_in_another_region_keeps_the_primary_prefix_and_names_its_own_variables(inv):
    write(inv, "prod", valid(s3={**S3, "copy": {"bucket": "shop-backups-dr", "region": "eu-central-1",
                                                "key_var": "DR_AWS_ACCESS_KEY_ID",
                                                "secret_var": "DR_AWS_SECRET_ACCESS_KEY"}}))
    env = load_environment("prod", inv)
    assert env.s3.copy == dataclasses.replace(
        env.s3.copy, bucket="shop-backups-dr", region="eu-central-1", prefix="prod/", endpoint_url=None,
        key_var="DR_AWS_ACCESS_KEY_ID", secret_var="DR_AWS_SECRET_ACCESS_KEY", copy=None)
    assert env.s3.key_var == "AWS_ACCESS_KEY_ID" and env.s3.copy.copy is None


def test_without_a_copy_there_is_none(inv):
    write(inv, "prod", valid(s3=S3))
    assert load_environment("prod", inv).s3.copy is None


@pytest.mark.parametrize(("copy", "problem"), [
    ({"region": "eu-central-1"}, "s3.copy.bucket: missing — set s3.copy.bucket to an S3 bucket name"),
    ({"bucket": "shop-backups", "region": "eu-west-1"},
     "s3.copy.bucket: 'shop-backups' on the same endpoint is the primary bucket itself"),
    ({"bucket": "shop-dr", "key_var": "dr key"}, "s3.copy.key_var: 'dr key' is not valid"),
    ({"bucket": "shop-dr", "prefix": "other/"}, "s3.copy.prefix: unknown key"),
    ({"bucket": "shop-dr", "endpoint_url": "s3.example.net"}, "s3.copy.endpoint_url: 's3.example.net' is not valid"),
])
def test_a_wrong_copy_is_one_line_naming_the_key(inv, copy, problem):
    assert only_problem(inv, "prod", valid(s3={**S3, "copy": copy})).startswith(problem)


def test_a_copy_with_its_own_variables_unset_never_falls_back_to_the_primary_credentials(
        tmp_path, s3_endpoint, no_credentials_anywhere, monkeypatch):  # noqa: F811 - fixture
    ops_env = tmp_path / ".env.ops"
    ops_env.write_text("AWS_ACCESS_KEY_ID=primary\nAWS_SECRET_ACCESS_KEY=primary-secret\n")
    ops_env.chmod(0o600)
    env = load_environment("sandbox")
    copy = dataclasses.replace(env.s3, bucket="dr", endpoint_url=s3_endpoint, key_var="DR_AWS_ACCESS_KEY_ID",
                               secret_var="DR_AWS_SECRET_ACCESS_KEY")
    env = dataclasses.replace(env, sandbox=None, ops_env_file=ops_env,
                              s3=dataclasses.replace(env.s3, endpoint_url=s3_endpoint, copy=copy))
    s3.client(env)  # the primary's own variables are there
    with pytest.raises(s3.S3CredentialsMissing, match="set DR_AWS_ACCESS_KEY_ID and DR_AWS_SECRET_ACCESS_KEY"):
        s3.client(dataclasses.replace(env, s3=copy))
    monkeypatch.setenv("DR_AWS_ACCESS_KEY_ID", "dr")
    monkeypatch.setenv("DR_AWS_SECRET_ACCESS_KEY", "dr-secret")
    opsenv._file_values.cache_clear()
    assert s3.client(dataclasses.replace(env, s3=copy)) is not None
