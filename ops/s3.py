"""S3 client for the environment's bucket (backups, central audit and release records).

Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the operator env file
(``ops_env_file``) or the process environment, else boto3's usual chain (~/.aws,
instance role). The sandbox's moto endpoint accepts any key, so it gets a dummy one.
"""

from __future__ import annotations

import json

import boto3
from botocore.config import Config

from ops.errors import ConfigError
from ops.inventory import Environment
from ops.opsenv import operator_value


def client(env: Environment, env_values: dict[str, str] | None = None):
    if env.s3 is None:
        raise ConfigError(f"no s3 section in {env.path.name}", hint="add s3: {bucket: ..., region: ...}")
    s3 = env.s3
    kwargs = {}
    values = env_values or {}
    key_id = values.get("AWS_ACCESS_KEY_ID") or operator_value(env, "AWS_ACCESS_KEY_ID")
    secret = values.get("AWS_SECRET_ACCESS_KEY") or operator_value(env, "AWS_SECRET_ACCESS_KEY")
    if key_id and secret:
        kwargs = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    elif env.sandbox is not None:
        kwargs = {"aws_access_key_id": "sandbox", "aws_secret_access_key": "sandbox"}
    config = Config(
        s3={"addressing_style": "path" if s3.path_style else "auto"},
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10, read_timeout=60,
        # NOTE: botocore >= 1.36 adds CRC32 checksums by default, which many
        # S3-compatible stores reject; only send them where the API requires.
        **({"request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required"} if s3.endpoint_url else {}),
    )
    return boto3.client("s3", region_name=s3.region, endpoint_url=s3.endpoint_url, config=config, **kwargs)


def key(env: Environment, *parts: str) -> str:
    return (env.s3.prefix if env.s3 else "") + "/".join(parts)


def put_json(env: Environment, object_key: str, data, env_values: dict[str, str] | None = None) -> None:
    extra = {"ServerSideEncryption": env.s3.sse} if env.s3 and env.s3.sse else {}
    client(env, env_values).put_object(Bucket=env.s3.bucket, Key=object_key,
                                       Body=json.dumps(data, sort_keys=True, indent=1).encode(),
                                       ContentType="application/json", **extra)
