"""The local stack: a real Kafka broker and a real PostgreSQL, started without Docker.

``Devstack.up()`` writes the addresses it started to ``DATA_DIR/devstack.json``;
:func:`resolve_addresses` gives every command the addresses to use: the
environment's when set, otherwise the devstack's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ragstream.devstack.kafka import DevstackError, LocalKafka
from ragstream.devstack.postgres import LocalPostgres
from ragstream.settings import Settings

__all__ = ["Addresses", "Devstack", "DevstackError", "resolve_addresses"]


@dataclass(frozen=True)
class Addresses:
    kafka_bootstrap: str
    database_url: str


class Devstack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kafka = LocalKafka(settings.data_dir, settings.cache_dir)
        self.postgres = LocalPostgres(settings.data_dir)

    def up(self) -> Addresses:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        database_url = self.postgres.start()
        bootstrap = self.kafka.start()
        addresses = Addresses(kafka_bootstrap=bootstrap, database_url=database_url)
        self.settings.state_file.write_text(json.dumps(asdict(addresses), indent=2))
        return addresses

    def down(self) -> None:
        self.kafka.stop()
        self.postgres.stop()

    def status(self) -> dict[str, Any]:
        kafka, pg = self.kafka.status(), self.postgres.status()
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
    return settings.model_copy(
        update={
            "kafka_bootstrap": settings.kafka_bootstrap or saved["kafka_bootstrap"],
            "database_url": settings.database_url or saved["database_url"],
        }
    )
