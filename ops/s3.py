"""S3 client for the environment's bucket (backups, central audit and release records).

Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the operator env file
(``ops_env_file``) or the process environment, else boto3's usual chain (~/.aws,
instance role). The sandbox's moto endpoint accepts any key, so it gets a dummy one.
"""

from __future__ import annotations

import json

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from ops.errors import ConfigError, OpsError
from ops.inventory import Environment
from ops.opsenv import operator_value

KEY_ID, SECRET = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"


class S3CredentialsMissing(ConfigError):
    """No (or half of the) AWS credentials: nothing was sent to S3."""


def credentials_missing(env: Environment | None, detail: str = "") -> S3CredentialsMissing:
    """The one message for absent S3 credentials, naming where to put them (and which variables:
    a copy target (``s3.copy``) names its own)."""
    key_id, secret = (env.s3.key_var, env.s3.secret_var) if env is not None and env.s3 is not None else (KEY_ID,
                                                                                                       SECRET)
    if env is not None and env.ops_env_file is not None:
        where = f"{env.ops_env_file.name} (ops_env_file in {env.path.name}) or the environment"
    elif env is not None:
        where = f"the environment, or in a 0600 file named by ops_env_file in {env.path.name}"
    else:
        where = "the ops env file (ops_env_file) or the environment"
    return S3CredentialsMissing(
        f"S3 credentials missing{f' ({detail})' if detail else ''}: set {key_id} and {secret} in {where}",
        hint="or give boto3 its usual credentials (~/.aws/credentials, AWS_PROFILE, an instance role)")


_CLIENT_ERROR_HINTS = {
    "NoSuchBucket": "create bucket {bucket} or fix s3.bucket in the inventory",
    "AccessDenied": "check the AWS credentials (ops env file or boto3 chain) and the bucket policy",
    "InvalidAccessKeyId": f"check {KEY_ID} in the ops env file",
    "SignatureDoesNotMatch": f"check {SECRET} in the ops env file",
}


def s3_error(exc: Exception, action: str, bucket: str, env: Environment | None = None) -> OpsError:
    """A one-line ``OpsError`` for a boto3/botocore failure, naming its real cause.

    Call it wherever an S3 call fails (``except (ClientError, BotoCoreError)``); it
    never includes credentials. NOTE: missing credentials are botocore errors raised
    before any request: blaming the endpoint or the network for them misleads.
    """
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        detail = str(exc) if isinstance(exc, PartialCredentialsError) else ""
        return credentials_missing(env, detail)
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "?")
        text = exc.response.get("Error", {}).get("Message", "") or code
        hint = _CLIENT_ERROR_HINTS.get(code, "check s3 settings in the inventory and the credentials")
        return OpsError(f"S3 {action} in bucket {bucket} failed: {code}: {text}", hint=hint.format(bucket=bucket))
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return OpsError(f"S3 {action} in bucket {bucket} failed: {exc}",
                        hint="check s3.endpoint_url / region and the network")
    return OpsError(f"S3 {action} in bucket {bucket} failed: {exc}",
                    hint="check s3.endpoint_url / region, the credentials and the network")


def _explicit_credentials(env: Environment, values: dict[str, str]) -> dict[str, str]:
    key_var, secret_var = env.s3.key_var, env.s3.secret_var
    key_id = values.get(key_var) or operator_value(env, key_var)
    secret = values.get(secret_var) or operator_value(env, secret_var)
    if key_id and secret:
        return {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    if env.sandbox is not None:
        return {"aws_access_key_id": "sandbox", "aws_secret_access_key": "sandbox"}
    if key_id or secret:
        raise credentials_missing(env, f"{secret_var if key_id else key_var} is not set, "
                                       f"{key_var if key_id else secret_var} is")
    if (key_var, secret_var) != (KEY_ID, SECRET):
        # NOTE: a target with its own variables (a copy elsewhere) must not silently fall back to
        # the primary's credentials from boto3's chain.
        raise credentials_missing(env)
    return {}


def _chain_session(env: Environment) -> boto3.session.Session:
    """boto3's own credential chain, checked now rather than at the first request.

    NOTE: botocore resolves the chain when it builds a client anyway; asking first
    turns "no credentials" into one clear error before a backup or deploy starts.
    """
    session = boto3.session.Session()
    try:
        found = session.get_credentials()
    except PartialCredentialsError as exc:
        raise credentials_missing(env, str(exc)) from None
    if found is None:
        raise credentials_missing(env)
    return session


def client(env: Environment, env_values: dict[str, str] | None = None):
    if env.s3 is None:
        raise ConfigError(f"no s3 section in {env.path.name}", hint="add s3: {bucket: ..., region: ...}")
    s3 = env.s3
    kwargs = _explicit_credentials(env, env_values or {})
    session = boto3 if kwargs else _chain_session(env)
    config = Config(
        s3={"addressing_style": "path" if s3.path_style else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10, read_timeout=60,
        # NOTE: botocore >= 1.36 adds CRC32 checksums by default, which many
        # S3-compatible stores reject; only send them where the API requires.
        **({"request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required"} if s3.endpoint_url else {}),
    )
    return session.client("s3", region_name=s3.region, endpoint_url=s3.endpoint_url, config=config, **kwargs)


def key(env: Environment, *parts: str) -> str:
    return (env.s3.prefix if env.s3 else "") + "/".join(parts)


def put_json(env: Environment, object_key: str, data, env_values: dict[str, str] | None = None) -> None:
    extra = {"ServerSideEncryption": env.s3.sse} if env.s3 and env.s3.sse else {}
    s3 = client(env, env_values)
    try:
        s3.put_object(Bucket=env.s3.bucket, Key=object_key, Body=json.dumps(data, sort_keys=True, indent=1).encode(),
                      ContentType="application/json", **extra)
    except (ClientError, BotoCoreError) as exc:
        raise s3_error(exc, f"writing {object_key}", env.s3.bucket, env) from None
