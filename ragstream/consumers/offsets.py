"""The offset book: what a stage may store, per partition, and nothing past an unfinished message.

A message is *begun* when its batch is taken up and *finished* once its
writes have committed and its output (or its dead letter) is acknowledged.
The offset to store for a partition is the one after the longest run of
finished messages from the start of what was begun: a message begun and not
finished (abandoned on a stop, given up on a crash) holds its partition back,
however many messages behind it finish.
"""

from __future__ import annotations

from collections.abc import Iterable

Partition = tuple[str, int]
Position = tuple[str, int, int]  # topic, partition, offset


class OffsetBook:
    def __init__(self) -> None:
        # Per partition, the begun offsets not yet released, each with whether it finished.
        self._open: dict[Partition, dict[int, bool]] = {}

    def begin(self, messages: Iterable[Position]) -> None:
        for topic, partition, offset in messages:
            self._open.setdefault((topic, partition), {}).setdefault(offset, False)

    def finish(self, messages: Iterable[Position]) -> None:
        for topic, partition, offset in messages:
            book = self._open.get((topic, partition))
            if book is not None and offset in book:  # else forgotten: another's now
                book[offset] = True

    def take(self) -> dict[Partition, int]:
        """The offsets to store now (next offset to read), releasing the finished prefix."""
        storable: dict[Partition, int] = {}
        for key, book in list(self._open.items()):
            done = -1
            for offset in sorted(book):
                if not book[offset]:
                    break
                done = offset
                del book[offset]
            if done >= 0:
                storable[key] = done + 1
            if not book:
                del self._open[key]
        return storable

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Partitions this consumer no longer owns: their messages are another's now."""
        for key in partitions:
            self._open.pop(key, None)

    def unfinished(self) -> dict[Partition, int]:
        """The first unfinished offset per partition (what holds it back)."""
        return {
            key: min(o for o, done in book.items() if not done)
            for key, book in self._open.items()
            if not all(book.values())
        }
