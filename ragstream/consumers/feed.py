"""The partition feed: a stage's consumer, what it has read ahead, and its paused partitions.

It polls batches, prefetches the next batch while one runs (then pauses the
partitions), backs off while staying in the group, forgets what it read and
paused of partitions taken away, and rebuilds a consumer that stopped reading.
It never stores an offset: the runner does, from its offset book.

Pausing is the application's own flag in librdkafka: a revoke clears only the
library's flag, so a partition paused here and taken away would still be
paused when it is assigned back (and starve while the other partitions keep
the consumer busy). So the feed remembers what it paused, resumes a partition
as it is revoked or lost, and resumes again what comes back still marked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ragstream.consumers import metrics
from ragstream.kafka import consumer_config
from ragstream.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

Partition = tuple[str, int]
RebalanceCallback = Callable[[Consumer, list[TopicPartition]], None]

PAUSE_AFTER_S = 1.0
"""A batch running longer than this has its partitions paused while the consumer is polled."""


def _keys(partitions: list[TopicPartition]) -> set[Partition]:
    return {(p.topic, p.partition) for p in partitions}


def _partitions(keys: set[Partition]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition) for topic, partition in sorted(keys)]


class PartitionFeed:
    """The consumer of one stage runner, with its prefetch and its pause state."""

    def __init__(
        self,
        settings: Settings,
        *,
        stage: str,
        topic: str,
        group_id: str,
        batch_size: int,
        on_assign: RebalanceCallback,
        on_revoke: RebalanceCallback,
        on_lost: RebalanceCallback,
        beat: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.topic = topic
        self.group_id = group_id
        self.batch_size = batch_size
        self._callbacks = (on_assign, on_revoke, on_lost)
        self._beat = beat
        self.prefetched: list[Message] = []
        self.assigned: set[Partition] = set()
        self.revoked_during_batch: set[Partition] = set()
        self.paused: set[Partition] = set()
        self._resume_when_assigned: set[Partition] = set()
        self.rebuilds = 0
        self.last_read = self._stall_checked = time.monotonic()
        self.consumer = self._new_consumer()

    def _new_consumer(self) -> Consumer:
        return Consumer(
            consumer_config(
                self.settings, self.group_id, **{"client.id": f"ragstream-{self.stage}"}
            )
        )

    def subscribe(self) -> None:
        on_assign, on_revoke, on_lost = self._callbacks
        self.consumer.subscribe(
            [self.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost
        )

    def close(self) -> None:
        self.consumer.close()  # commits the stored offsets and leaves the group

    # --- rebalance -------------------------------------------------------
    def assigned_partitions(self, partitions: list[TopicPartition]) -> None:
        keys = _keys(partitions)
        self.assigned |= keys
        # Still marked paused from before it was taken away: resume once it is ours again.
        self._resume_when_assigned |= keys & self.paused
        self.paused -= keys

    def taken_away(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Revoked or lost: forget what was read ahead and resume what we paused."""
        gone = _keys(partitions)
        self.assigned -= gone
        self.revoked_during_batch |= gone
        self.prefetched = [m for m in self.prefetched if (m.topic(), m.partition()) not in gone]
        ours = gone & self.paused
        if ours:
            try:
                consumer.resume(_partitions(ours))
                self.paused -= ours
            except KafkaException as exc:  # resumed once it is assigned back
                log.info("resume_on_revoke_failed", stage=self.stage, error=str(exc)[:300])

    def _resume_returned(self) -> None:
        if not self._resume_when_assigned:
            return
        ready = self._resume_when_assigned & _keys(self.consumer.assignment())
        if ready:
            self.consumer.resume(_partitions(ready))
            self._resume_when_assigned -= ready

    def _pause(self) -> None:
        assignment = self.consumer.assignment()
        self.consumer.pause(assignment)
        self.paused |= _keys(assignment)

    def _resume(self) -> None:
        """Resume what this feed paused and still holds."""
        mine = self.paused & _keys(self.consumer.assignment())
        if mine:
            self.consumer.resume(_partitions(mine))
        self.paused -= mine  # what is left was taken away still paused: see assigned_partitions

    # --- polling ---------------------------------------------------------
    def next_batch(self) -> list[Message]:
        """The first message as soon as it arrives, then whatever is already fetched.

        No waiting to fill a batch by default: under load, messages that arrive
        while a batch is processed form the next one (``max_batch_wait_s`` adds
        a linger for backends that want fuller batches).
        """
        self._resume_returned()
        limit = self.batch_size
        batch, self.prefetched = self.prefetched[:limit], self.prefetched[limit:]
        if not batch:
            first = self.consumer.poll(self.settings.poll_timeout_s)
            if first is None:
                return []
            error = first.error()
            if error is not None:
                self._on_error(error)
                return []
            batch.append(first)
        linger_until = time.monotonic() + self.settings.max_batch_wait_s
        timeout = 0.0
        while len(batch) < limit:
            messages = self.consumer.consume(limit - len(batch), timeout)
            for msg in messages:
                error = msg.error()
                if error is not None:
                    self._on_error(error)
                    continue
                batch.append(msg)
            timeout = linger_until - time.monotonic()
            if not messages and timeout <= 0:
                break
            timeout = max(timeout, 0.0)
        self.last_read = time.monotonic()
        return batch

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer_error", stage=self.stage, error=error.str())

    def _take(self, messages: list[Message]) -> None:
        """Keep ``messages`` for the next batch (errors are reported, not kept)."""
        for msg in messages:
            error = msg.error()
            if error is not None:
                self._on_error(error)
            else:
                self.prefetched.append(msg)

    def keep_alive_until(self, future: Future[T]) -> T:
        """Poll the consumer until ``future`` is done, reading the next batch meanwhile.

        A short batch just runs: the fetcher keeps prefetching the next one. A
        batch still running after ``PAUSE_AFTER_S`` has the consumer polled
        (rebalances, max.poll.interval) until it ends, taking the next batch
        meanwhile: up to a batch of messages is read ahead, then the
        partitions are paused, so the next batch starts the moment this one
        ends. Pausing every batch, or resuming with nothing in hand, would cost
        each batch up to a second: the fetcher notices a resume only on its
        next wake-up.
        """
        if wait([future], timeout=PAUSE_AFTER_S).done:
            self._beat()
            return future.result()
        paused = False
        try:
            # Wake on the future, not on a poll timeout: the batch's end is not delayed.
            while not wait([future], timeout=0.05).done:
                self._beat()
                room = self.batch_size - len(self.prefetched)
                if room > 0 and not paused:
                    self._take(self.consumer.consume(room, 0))
                    continue
                if not paused:
                    self._pause()
                    paused = True
                msg = self.consumer.poll(0)
                if msg is not None:
                    self._take([msg])
            return future.result()
        finally:
            if paused:
                self._resume()

    def sleep(self, seconds: float, stopping: threading.Event) -> bool:
        """Back off while staying in the group; True if asked to stop meanwhile."""
        deadline = time.monotonic() + seconds
        self._pause()
        try:
            while time.monotonic() < deadline:
                if stopping.is_set():
                    return True
                msg = self.consumer.poll(min(0.1, max(deadline - time.monotonic(), 0.0)))
                self._beat()
                if msg is not None:
                    self._take([msg])
        finally:
            self._resume()
        return stopping.is_set()

    # --- a consumer that stopped reading ---------------------------------
    def rebuild_if_stalled(self) -> bool:
        """Rebuild a consumer that reads nothing while its partitions hold unread messages.

        After a broker restart the client can keep its assignment yet never fetch
        again (it heartbeats, so the group sees a healthy member). Closing it
        commits what was finished; a new one joins and reads from there.
        """
        now = time.monotonic()
        stall = self.settings.consumer_stall_s
        if now - self.last_read < stall or now - self._stall_checked < stall:
            return False
        self._stall_checked = now
        unread = self.unread()
        if not unread:
            return False
        log.warning(
            "consumer_stalled",
            stage=self.stage,
            idle_s=round(now - self.last_read, 1),
            unread=unread,
        )
        metrics.CONSUMER_REBUILDS.labels(self.stage).inc()
        self.rebuilds += 1
        self.prefetched = []
        try:
            self.consumer.close()
        except KafkaException as exc:
            log.warning("close_failed", stage=self.stage, error=str(exc))
        self.assigned = set()
        self.paused = set()
        self._resume_when_assigned = set()
        self.consumer = self._new_consumer()
        self.subscribe()
        self.last_read = time.monotonic()
        return True

    def unread(self) -> dict[int, int]:
        """Unread messages per assigned partition, from the broker (not the client's cache)."""
        assignment = self.consumer.assignment()
        if not assignment:
            return {}
        try:
            committed = self.consumer.committed(assignment, timeout=10)
            positions = {tp.partition: tp.offset for tp in self.consumer.position(assignment)}
            unread = {}
            for tp in committed:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)
                read = max(positions.get(tp.partition, -1), tp.offset)
                read = read if read >= 0 else low
                if high > read:
                    unread[tp.partition] = high - read
        except KafkaException as exc:  # the broker is away: nothing to conclude yet
            log.info("stall_check_failed", stage=self.stage, error=str(exc)[:300])
            return {}
        return unread

    def store(self, offsets: dict[Partition, int]) -> None:
        """Store ``offsets`` (next offset to read) of the partitions still ours."""
        kept = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in offsets.items()
            if (topic, partition) in self.assigned
            and (topic, partition) not in self.revoked_during_batch
        ]
        if kept:
            self.consumer.store_offsets(offsets=kept)
