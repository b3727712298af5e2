"""An idempotent producer whose every delivery report is checked.

``send`` queues; ``wait`` blocks until every queued message is acknowledged
and raises if any was not. Callers store offsets or answer 202 only after
``wait`` returns, so nothing is reported done before the broker has it.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ragstream.errors import DependencyUnavailable
from ragstream.kafka import producer_config
from ragstream.schemas.outgoing import document_spread
from ragstream.settings import Settings

Headers = list[tuple[str, str | bytes | None]]

__all__ = ["DeliveryFailed", "EventProducer", "Headers", "document_spread"]


class DeliveryFailed(DependencyUnavailable):
    """At least one message was not acknowledged; it may or may not be written."""


class EventProducer:
    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self._producer = Producer(producer_config(settings, **overrides))
        self._errors: list[str] = []
        self._partitions: dict[str, int] = {}

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err.str()}")

    def send(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        headers: Headers | None = None,
        *,
        spread: int | None = None,
    ) -> None:
        """Queue a message; with ``spread``, on partition ``spread`` mod the topic's count."""
        partition = -1 if spread is None else spread % self.partition_count(topic)  # -1: by key
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    partition=partition,
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.1)

    def partition_count(self, topic: str) -> int:
        """The topic's partitions, asked once per producer (a topic can only gain some)."""
        count = self._partitions.get(topic)
        if count is None:
            try:
                metadata = self._producer.list_topics(topic, timeout=10)
            except KafkaException as exc:
                raise DependencyUnavailable(f"no metadata for {topic}: {exc}") from exc
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise DependencyUnavailable(f"no partitions known for {topic}")
            count = self._partitions[topic] = len(found.partitions)
        return count

    def wait(self, timeout_s: float = 150.0) -> None:
        """Block until every queued message is acknowledged; raise if any was not.

        The default outlasts ``delivery.timeout.ms``, so every message has its
        report by then: acknowledged, or failed and maybe written.
        """
        left = self._producer.flush(timeout_s)
        errors, self._errors = self._errors, []
        if left:
            raise DeliveryFailed(f"{left} message(s) not acknowledged within {timeout_s:.0f}s")
        if errors:
            raise DeliveryFailed(f"delivery failed: {'; '.join(errors[:5])}")

    def close(self, timeout_s: float = 30.0) -> None:
        self._producer.flush(timeout_s)
