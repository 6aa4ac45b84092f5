"""moto's S3 API server on a free loopback port, named by the standard AWS environment variables.

Shared by the model store's tests (tests/models) and the flows' (tests/flows): pyarrow (the lake, the
lease, the model store), s3fs (Prefect's cached results) and boto3 all read the endpoint and the keys from
the environment, as they would on a real deployment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def s3_server(*buckets: str) -> Iterator[str]:
    """Start the server, create ``buckets`` and yield its endpoint URL; the environment is restored after."""
    import boto3
    from moto.server import ThreadedMotoServer

    requests_log = logging.getLogger("werkzeug")
    level = requests_log.level
    requests_log.setLevel(logging.WARNING)  # else a log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_ENDPOINT_URL", endpoint)
            env.setenv("AWS_ACCESS_KEY_ID", "triage-test")
            env.setenv("AWS_SECRET_ACCESS_KEY", "triage-test-secret")
            env.setenv("AWS_DEFAULT_REGION", "us-east-1")
            env.setenv("AWS_EC2_METADATA_DISABLED", "true")
            for bucket in buckets:
                boto3.client("s3").create_bucket(Bucket=bucket)
            yield endpoint
    finally:
        server.stop()
        requests_log.setLevel(level)
