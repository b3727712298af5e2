"""The local stack: a real Kafka broker and a real PostgreSQL, started without Docker.

``Devstack.up()`` writes the addresses it started to ``DATA_DIR/devstack.json``;
:func:`resolve_addresses` gives every command the addresses to use: the
environment's when set, otherwise the devstack's.

``RAGSTREAM_DEVSTACK_BROKERS=3`` (``ragstream up --brokers 3``) runs Kafka as a
KRaft controller and three brokers instead of one node (``cluster.py``); the
state file remembers the count, so later commands find the same Kafka and
create topics replicated 3 ways with 2 in sync.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import SecretStr

from ragstream.devstack.cluster import KafkaCluster
from ragstream.devstack.kafka import DevstackError, LocalKafka
from ragstream.devstack.postgres import LocalPostgres
from ragstream.devstack.s3proxy import LocalS3Proxy
from ragstream.settings import Settings

__all__ = [
    "Addresses",
    "Devstack",
    "DevstackError",
    "KafkaCluster",
    "LocalKafka",
    "resolve_addresses",
    "with_brokers",
]


@dataclass(frozen=True)
class Addresses:
    kafka_bootstrap: str
    database_url: str
    kafka_brokers: int = 1
    s3_endpoint_url: str | None = None


class Devstack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings = _with_saved_brokers(settings)
        self.brokers = settings.devstack_brokers
        self.kafka: LocalKafka | KafkaCluster = (
            LocalKafka(settings.data_dir, settings.cache_dir)
            if self.brokers == 1
            else KafkaCluster(settings.data_dir, settings.cache_dir, self.brokers)
        )
        self.postgres = LocalPostgres(settings.data_dir)
        self.s3 = LocalS3Proxy(settings.data_dir, settings.cache_dir)

    def up(self) -> Addresses:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        database_url = self.postgres.start()
        bootstrap = self.kafka.start()
        s3 = self.s3.start().url if self.settings.devstack_s3 else None
        addresses = Addresses(
            kafka_bootstrap=bootstrap,
            database_url=database_url,
            kafka_brokers=self.brokers,
            s3_endpoint_url=s3,
        )
        self.settings.state_file.write_text(json.dumps(asdict(addresses), indent=2))
        return addresses

    def down(self) -> None:
        self.kafka.stop()
        self.postgres.stop()
        self.s3.stop()

    def status(self) -> dict[str, Any]:
        kafka, pg, s3 = self.kafka.status(), self.postgres.status(), self.s3.status()
        # S3Proxy is optional (RAGSTREAM_DEVSTACK_S3): shown when asked for or running.
        shown = self.settings.devstack_s3 or s3.pid is not None
        optional = {
            "s3": {
                "healthy": s3.running,
                "address": s3.endpoint.url if s3.endpoint else None,
                "access_key_id": s3.endpoint.access_key_id if s3.endpoint else None,
                "secret_access_key": s3.endpoint.secret_access_key if s3.endpoint else None,
                "version": s3.version,
                "pid": s3.pid,
            }
        }
        return {
            "kafka": {
                "healthy": kafka.running,
                "address": kafka.bootstrap,
                "version": f"Apache Kafka {kafka.version}",
                "mode": kafka.mode,
                "pid": kafka.pid,
            },
            "postgres": {
                "healthy": pg.running,
                "address": pg.url,
                "version": f"PostgreSQL {pg.version}" if pg.version else None,
                "pgvector": pg.pgvector,
                "pid": pg.pid,
            },
            **(optional if shown else {}),
        }


def resolve_addresses(settings: Settings) -> Settings:
    """Environment first, then the devstack's state file; a clear error when neither has them."""
    if settings.kafka_bootstrap is not None and settings.database_url is not None:
        return settings
    try:
        saved = json.loads(settings.state_file.read_text())
    except FileNotFoundError:
        raise DevstackError(
            "no Kafka/PostgreSQL address: set RAGSTREAM_KAFKA_BOOTSTRAP and "
            "RAGSTREAM_DATABASE_URL, or start the local stack with `ragstream devstack up`"
        ) from None
    return _with_saved_brokers(settings, saved).model_copy(
        update={
            "kafka_bootstrap": settings.kafka_bootstrap or saved["kafka_bootstrap"],
            "database_url": settings.database_url or saved["database_url"],
            **_saved_s3(settings, saved),
        }
    )


def _saved_s3(settings: Settings, saved: dict[str, Any]) -> dict[str, Any]:
    """The devstack's S3Proxy and its credentials, when it runs and no endpoint is set."""
    if settings.s3_endpoint_url is not None or not saved.get("s3_endpoint_url"):
        return {}
    endpoint = LocalS3Proxy(settings.data_dir, settings.cache_dir).endpoint()
    return {
        "s3_endpoint_url": saved["s3_endpoint_url"],
        "s3_access_key_id": endpoint.access_key_id,
        "s3_secret_access_key": SecretStr(endpoint.secret_access_key),
    }


def with_brokers(settings: Settings, brokers: int) -> Settings:
    """``settings`` for a Kafka of ``brokers`` brokers: replication settings not set
    explicitly follow the new count (RF 3 and min ISR 2 from three brokers on)."""
    derived = {"replication_factor", "min_insync_replicas"} - settings.model_fields_set
    data = settings.model_dump(exclude=derived)
    data["devstack_brokers"] = brokers
    return Settings.model_validate(data)


def _with_saved_brokers(settings: Settings, saved: dict[str, Any] | None = None) -> Settings:
    """The broker count of the devstack in DATA_DIR, unless the settings name one."""
    if "devstack_brokers" in settings.model_fields_set:
        return settings
    if saved is None:
        try:
            saved = json.loads(settings.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return settings
    brokers = int(saved.get("kafka_brokers", 1))
    return settings if brokers == settings.devstack_brokers else with_brokers(settings, brokers)
