"""The worker's batch stage, without I/O: raw Kafka messages in, what to write out.

decode + validate → drop redelivered event ids → detectors (event time order per agent)
→ :class:`BatchOutput` (valid events to store, rejects to dead-letter, anomalies to emit).
The faust app (:mod:`agentwatch.streams.app`) does the I/O around it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agentwatch.models.engine import DetectionEngine, Notice
from agentwatch.schemas.anomaly import Anomaly
from agentwatch.schemas.decode import Limits, Reject, decode_message
from agentwatch.schemas.events import Event


@dataclass(frozen=True, slots=True)
class InMessage:
    """One consumed Kafka message and where it came from."""

    value: bytes | None
    key: bytes | None
    topic: str = ""
    partition: int = -1
    offset: int = -1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reject: Reject
    source: InMessage


@dataclass(slots=True)
class BatchOutput:
    events: list[Event] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    duplicates: int = 0


class RecentIds:
    """The last ``capacity`` event ids, to drop redeliveries before they reach a model."""

    __slots__ = ("_ids", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen_before(self, event_id: str) -> bool:
        if self.capacity == 0:
            return False
        if event_id in self._ids:
            return True
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return False


class BatchProcessor:
    def __init__(self, limits: Limits, engine: DetectionEngine, dedup_window: int) -> None:
        self.limits = limits
        self.engine = engine
        self.recent = RecentIds(dedup_window)

    def process(self, messages: Sequence[InMessage], now: datetime) -> BatchOutput:
        out = BatchOutput()
        for message in messages:
            if message.value is None:
                out.dead_letters.append(
                    DeadLetter(Reject("not_an_event", "empty message value", b""), message)
                )
                continue
            decoded = decode_message(message.value, key=message.key, limits=self.limits, now=now)
            out.dead_letters.extend(DeadLetter(r, message) for r in decoded.rejects)
            for event in decoded.events:
                if self.recent.seen_before(event.event_id):
                    out.duplicates += 1
                    continue
                out.events.append(event)
                result = self.engine.process(event)
                out.anomalies.extend(result.anomalies)
                out.notices.extend(result.notices)
        return out

    def advance(self, watermark: datetime) -> BatchOutput:
        """Close windows up to ``watermark`` when no event moved event time forward."""
        result = self.engine.advance(watermark)
        return BatchOutput(anomalies=result.anomalies, notices=result.notices)
