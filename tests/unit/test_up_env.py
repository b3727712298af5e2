"""What ``ragstream up`` tells the processes it starts: every address it resolved,
the devstack's S3 server and its credentials included (the workers read s3:// objects)."""

from __future__ import annotations

from pydantic import SecretStr

from ragstream.cli.stack import worker_env
from ragstream.settings import Settings

BASE = {"kafka_bootstrap": "127.0.0.1:9092", "database_url": "postgresql+psycopg://x@h/db"}


def test_the_s3_endpoint_and_its_credentials_reach_the_workers() -> None:
    resolved = Settings(
        **BASE,
        s3_endpoint_url="http://127.0.0.1:9000",
        s3_access_key_id="ragstream",
        s3_secret_access_key=SecretStr("s3cret"),
    )
    env = worker_env(resolved)
    assert env["RAGSTREAM_S3_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert env["RAGSTREAM_S3_ACCESS_KEY_ID"] == "ragstream"
    assert env["RAGSTREAM_S3_SECRET_ACCESS_KEY"] == "s3cret"
    assert env["RAGSTREAM_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"


def test_without_s3_no_s3_setting_is_passed() -> None:
    assert not [k for k in worker_env(Settings(**BASE)) if "_S3_" in k]
