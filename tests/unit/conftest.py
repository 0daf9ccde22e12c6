"""Shared fixtures for unit tests that talk to an in-process moto S3 server (127.0.0.1)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from moto.server import ThreadedMotoServer

from ops import s3
from ops.inventory import Environment, load_environment

_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def fresh_bucket(s3_endpoint):
    """``make(prefix)`` -> (env, client): a new bucket and a client made exactly like ops/s3.py makes it."""

    def make(prefix: str) -> tuple[Environment, object]:
        env = load_environment("sandbox")
        env = replace(env, s3=replace(env.s3, endpoint_url=s3_endpoint, bucket=f"{prefix}-{next(_buckets)}"))
        client = s3.client(env)
        client.create_bucket(Bucket=env.s3.bucket)
        return env, client

    return make
