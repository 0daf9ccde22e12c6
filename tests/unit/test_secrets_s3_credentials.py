"""Missing S3 credentials are named as such (where to set them), never blamed on the
endpoint, region or network; ops.s3.s3_error is the one translation of boto3 errors."""

from __future__ import annotations

import dataclasses

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, PartialCredentialsError

from ops import opsenv, s3
from ops.errors import ConfigError, OpsError
from ops.inventory import load_environment

AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")


@pytest.fixture
def no_credentials_anywhere(tmp_path, monkeypatch):
    """An operator machine where boto3's chain finds nothing (and asks no metadata service)."""
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    opsenv._file_values.cache_clear()
    yield
    opsenv._file_values.cache_clear()


@pytest.fixture
def prod_like(tmp_path, s3_endpoint, no_credentials_anywhere):
    """The sandbox inventory without its dummy keys, with an ops env file holding no AWS keys."""
    ops_env = tmp_path / ".env.ops"
    ops_env.write_text("REGISTRY_USERNAME=ci\n")
    ops_env.chmod(0o600)
    env = load_environment("sandbox")
    return dataclasses.replace(env, sandbox=None, ops_env_file=ops_env,
                               s3=dataclasses.replace(env.s3, endpoint_url=s3_endpoint, bucket="creds-test"))


def test_client_without_any_credentials_says_where_to_set_them(prod_like):
    with pytest.raises(s3.S3CredentialsMissing) as excinfo:
        s3.client(prod_like)
    err = excinfo.value
    assert isinstance(err, ConfigError)
    assert err.message == ("S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in "
                           ".env.ops (ops_env_file in sandbox.yml) or the environment")
    assert "endpoint" not in str(err) and "network" not in str(err)


def test_without_an_ops_env_file_the_message_says_how_to_add_one(prod_like):
    env = dataclasses.replace(prod_like, ops_env_file=None)
    with pytest.raises(s3.S3CredentialsMissing, match="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in "
                                                      "the environment, or in a 0600 file named by ops_env_file"):
        s3.client(env)


def test_half_of_the_credentials_names_the_missing_half(prod_like, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    with pytest.raises(s3.S3CredentialsMissing, match=r"\(AWS_SECRET_ACCESS_KEY is not set, AWS_ACCESS_KEY_ID is\)"):
        s3.client(prod_like)


def test_writing_a_record_without_credentials_is_the_same_one_line_error(prod_like):
    with pytest.raises(s3.S3CredentialsMissing) as excinfo:
        s3.put_json(prod_like, "releases/x.json", {"a": 1})
    assert "\n" not in str(excinfo.value)


def test_credentials_in_the_ops_env_file_are_used(prod_like):
    prod_like.ops_env_file.write_text("AWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY=example-secret-key-123\n")
    client = s3.client(prod_like)
    client.create_bucket(Bucket="creds-test")
    s3.put_json(prod_like, "releases/x.json", {"a": 1})
    assert client.get_object(Bucket="creds-test", Key="releases/x.json")["Body"].read() == b'{\n "a": 1\n}'


def test_a_failed_write_names_the_object_bucket_and_fix(prod_like):
    prod_like.ops_env_file.write_text("AWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY=example-secret-key-123\n")
    env = dataclasses.replace(prod_like, s3=dataclasses.replace(prod_like.s3, bucket="no-such-bucket-here"))
    with pytest.raises(OpsError) as excinfo:
        s3.put_json(env, "releases/x.json", {"a": 1})
    assert excinfo.value.message.startswith("S3 writing releases/x.json in bucket no-such-bucket-here failed: "
                                            "NoSuchBucket")
    assert excinfo.value.hint == "create bucket no-such-bucket-here or fix s3.bucket in the inventory"


@pytest.mark.parametrize("exc", [NoCredentialsError(),
                                 PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY")])
def test_s3_error_translates_credential_errors_to_credentials_missing_not_network(exc, prod_like):
    err = s3.s3_error(exc, "listing backups/", "bucket", prod_like)
    assert isinstance(err, s3.S3CredentialsMissing)
    assert err.message.startswith("S3 credentials missing")
    assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in .env.ops" in err.message
    assert "endpoint" not in str(err)


def test_s3_error_still_blames_the_endpoint_when_it_is_unreachable():
    err = s3.s3_error(EndpointConnectionError(endpoint_url="http://10.0.0.9:9000"), "listing x/", "b")
    assert err.message == 'S3 listing x/ in bucket b failed: Could not connect to the endpoint URL: "http://10.0.0.9:9000"'
    assert err.hint == "check s3.endpoint_url / region and the network"


def test_s3_error_maps_access_denied_to_the_credentials_and_policy():
    exc = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")
    err = s3.s3_error(exc, "reading k", "b")
    assert err.message == "S3 reading k in bucket b failed: AccessDenied: Access Denied"
    assert "bucket policy" in err.hint
