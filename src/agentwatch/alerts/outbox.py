"""The outbox: notifications are written to a Kafka topic before they are attempted.

``agentwatch.alerts.outbox.v1``, key = dedup key (so the notifications of one alert keep
their order), value = a :class:`~agentwatch.alerts.model.Notification` as JSON. The
dispatcher's delivery loop consumes it in its own consumer group and commits an offset
only when every notification before it has a final outcome recorded in ClickHouse, so a
dispatcher killed mid-delivery delivers the rest after its restart. (The dispatcher
delivers its own notifications as soon as Kafka has them; the consumer then skips them.)

:class:`OffsetTracker` (pure) computes what may be committed: per partition, the lowest
offset still in work, or one past the highest seen.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Hashable, Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from agentwatch.config import KafkaSettings

__all__ = ["OffsetTracker", "ensure_topic"]


class OffsetTracker:
    """Offsets in work per partition; :meth:`committable` is what a commit may say.

    A partition's commit is the lowest offset still in work, and never more than one past
    the highest offset its consumer has seen (:meth:`track`, :meth:`done`). Offsets may
    also be put in work ahead of the consumer (``advance=False``: a notification delivered
    as soon as the outbox acknowledged it, before the consumer reads it back); they hold
    the commit like any other, and do not move it forward.

    >>> t = OffsetTracker()
    >>> for offset in (5, 6, 7): t.track("p0", offset)
    >>> t.release("p0", 6); t.committable()
    {'p0': 5}
    >>> t.release("p0", 5); t.committable()
    {'p0': 7}
    >>> t.release("p0", 7); t.committable()
    {'p0': 8}
    >>> t.track("p0", 9, advance=False); t.committable()  # the consumer is at 8
    {'p0': 8}
    >>> t.done("p0", 8); t.done("p0", 9); t.committable()  # 9 is still in work
    {'p0': 9}
    """

    def __init__(self) -> None:
        self._open: dict[Hashable, Counter[int]] = {}
        self._order: dict[Hashable, list[int]] = {}  # heap of the open offsets
        self._next: dict[Hashable, int] = {}

    def track(self, partition: Hashable, offset: int, count: int = 1, advance: bool = True) -> None:
        """``offset`` is in work ``count`` times (released as many times).

        ``advance``: the consumer has seen ``offset`` (else it is in work ahead of it).
        """
        opened = self._open.setdefault(partition, Counter())
        if offset not in opened:
            heapq.heappush(self._order.setdefault(partition, []), offset)
        opened[offset] += count
        if advance:
            self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def done(self, partition: Hashable, offset: int) -> None:
        """``offset`` was seen and needs no (more) work from the consumer."""
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def position(self, partition: Hashable) -> int | None:
        """One past the highest offset the consumer has seen (``None``: none yet)."""
        return self._next.get(partition)

    def release(self, partition: Hashable, offset: int) -> None:
        opened = self._open.get(partition)
        if opened is None or offset not in opened:
            return
        opened[offset] -= 1
        if opened[offset] <= 0:
            del opened[offset]

    def in_work(self) -> int:
        return sum(len(c) for c in self._open.values())

    def committable(self) -> dict[Hashable, int]:
        out: dict[Hashable, int] = {}
        for partition, nxt in self._next.items():
            order = self._order.get(partition)
            opened = self._open.get(partition)
            while order and (opened is None or order[0] not in opened):
                heapq.heappop(order)
            out[partition] = min(order[0], nxt) if order else nxt
        return out

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Stop tracking ``partitions`` (revoked)."""
        for partition in partitions:
            self._open.pop(partition, None)
            self._order.pop(partition, None)
            self._next.pop(partition, None)


def ensure_topic(bootstrap: str, kafka: KafkaSettings, name: str) -> bool:
    """Create topic ``name`` with explicit configs if it is missing; whether it was created."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="agentwatch-alerts-admin", request_timeout_ms=15000
    )
    try:
        if name in set(admin.list_topics()):
            return False
        spec = NewTopic(
            name=name,
            num_partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
            topic_configs={"retention.ms": str(kafka.retention_ms), "cleanup.policy": "delete"},
        )
        try:
            admin.create_topics([spec])
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        admin.close()
