"""Object storage outside PostgreSQL: the S3 client every S3 user builds here.

The client is boto3 with the addressing style of the settings (path-style for
S3Proxy and most S3-compatible servers); credentials come from the settings,
else from boto3's usual chain (``AWS_ACCESS_KEY_ID``, profiles, roles).
"""

from __future__ import annotations

from typing import Any

from ragstream.settings import Settings


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); a ValueError for anything else."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the settings' endpoint, credentials and addressing style."""
    import boto3
    from botocore.config import Config

    secret = settings.s3_secret_access_key
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        region_name=settings.s3_region or "us-east-1",
        config=Config(
            s3={"addressing_style": settings.s3_addressing_style},
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )
