"""What the API holds for its lifetime: made once at start-up, closed at shutdown."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine

from ragstream import tracing
from ragstream.api.keys import load_keys
from ragstream.context import StageContext
from ragstream.db.engine import make_engine
from ragstream.db.migrate import require_head
from ragstream.kafka import admin_client
from ragstream.llamaparse.poller import Poller
from ragstream.producers.producer import EventProducer
from ragstream.producers.submit import Submitter
from ragstream.schemas.codec import Codec, make_codec
from ragstream.search import QueryEmbedders
from ragstream.settings import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    codec: Codec
    producer: EventProducer
    submitter: Submitter
    embedders: QueryEmbedders
    ctx: StageContext
    keys: dict[str, str]
    admin: AdminClient
    poller: Poller | None = None
    # EventProducer.wait() reports on every message queued so far, from any thread; one
    # publisher at a time keeps each request's answer about its own messages.
    publish_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, settings: Settings, *, poller: bool = True) -> Services:
        """Refuses a database that is not at the migration head, like the workers."""
        engine = make_engine(settings, pool_size=10)
        tracing.instrument_engine(engine)  # its statements: child spans of the request's
        require_head(engine)
        codec = make_codec(settings)
        # An upload waits for the broker's ack this long, then answers 503 (not 2 minutes).
        timeout_ms = int(settings.api_publish_timeout_s * 1000)
        producer = EventProducer(settings, **{"delivery.timeout.ms": timeout_ms})
        ctx = StageContext(settings=settings, engine=engine, codec=codec)
        services = cls(
            settings=settings,
            engine=engine,
            codec=codec,
            producer=producer,
            submitter=Submitter(settings, engine, producer, codec),
            embedders=QueryEmbedders(settings, engine),
            ctx=ctx,
            keys=load_keys(settings),
            admin=admin_client(settings),
        )
        if poller:
            services.poller = Poller(ctx, EventProducer(settings))
            services.poller.start()
        return services

    def close(self) -> None:
        if self.poller is not None:
            self.poller.stop()
            self.poller.producer.close(timeout_s=10)
        self.producer.close(timeout_s=10)
        self.embedders.close()
        self.engine.dispose()
