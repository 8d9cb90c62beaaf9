"""The faust worker application, top to bottom: topics, the batch agent, sinks, web pages.

Wiring only: decoding, validation and detection live in :mod:`agentwatch.streams.processor`
(pure); storage in :mod:`agentwatch.storage`. Delivery is at-least-once: a batch's Kafka
offsets are acknowledged only after its events, dead letters and anomalies are written;
while ClickHouse or Kafka is down the agent retries with backoff and consumes nothing new.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from faust.web import Request, Response, View

from agentwatch.config import Settings
from agentwatch.models.engine import DetectionEngine
from agentwatch.schemas.anomaly import encode_anomaly
from agentwatch.schemas.decode import Limits
from agentwatch.storage.client import connect
from agentwatch.storage.writer import DeadLetterRow, EventStore
from agentwatch.streams.processor import BatchOutput, BatchProcessor, InMessage
from agentwatch.streams.stats import WorkerStats

log = logging.getLogger("agentwatch.worker")

T = TypeVar("T")

REASON_HEADER = "agentwatch.reason"
DETAIL_HEADER = "agentwatch.detail"


def broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip())


async def retry_forever(
    what: str, call: Callable[[], Awaitable[T]], on_retry: Callable[[], None]
) -> T:
    """Run ``call`` until it succeeds, backing off to 10 s; never drops the batch."""
    delay = 0.2
    while True:
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is retried, nothing is lost
            on_retry()
            log.warning("%s failed (%s); retrying in %.1fs", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def dead_letter_rows(out: BatchOutput) -> list[DeadLetterRow]:
    """The ClickHouse record of each dead letter: where and why, never the payload."""
    now = datetime.now(UTC)
    return [
        DeadLetterRow(
            ts=now,
            topic=dead.source.topic,
            partition=dead.source.partition,
            offset=dead.source.offset,
            key=(dead.source.key or b"").decode("utf-8", "replace")[:256],
            reason=dead.reject.reason,
            detail=dead.reject.detail[:1000],
            size_bytes=len(dead.reject.raw),
        )
        for dead in out.dead_letters
    ]


class Worker:
    """State shared by the agent and the web pages of one worker process."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.stats = WorkerStats()
        limits = settings.limits
        self.processor = BatchProcessor(
            Limits(
                max_event_bytes=limits.max_event_bytes,
                max_message_bytes=limits.max_message_bytes,
                max_future_s=limits.max_future_s,
                max_age_s=limits.max_age_s,
            ),
            DetectionEngine(settings.detect),
            settings.worker.dedup_window,
        )
        self._store: EventStore | None = None
        self.positions: dict[tuple[str, int], int] = {}
        self.app = self._build_app(bootstrap)

    @property
    def store(self) -> EventStore:
        if self._store is None:
            client = connect(self.settings.storage_dsn)
            self._store = EventStore.from_settings(client, self.settings.storage)
        return self._store

    # -- application ---------------------------------------------------------------------

    def _build_app(self, bootstrap: str) -> faust.App:
        settings = self.settings
        kafka = settings.kafka
        app = faust.App(
            settings.worker.app_id,
            broker=broker_url(bootstrap),
            key_serializer="raw",
            value_serializer="raw",
            broker_session_timeout=kafka.session_timeout_ms / 1000,
            broker_heartbeat_interval=kafka.heartbeat_interval_ms / 1000,
            broker_max_poll_records=settings.worker.batch_max_messages,
            consumer_auto_offset_reset="earliest",
            producer_max_request_size=max(2 * settings.limits.max_message_bytes, 1_048_576),
            topic_partitions=kafka.partitions,
            topic_replication_factor=kafka.replication_factor,
            topic_allow_declare=False,
            store="memory://",
            table_standby_replicas=0,
            web_enabled=True,
            web_host=settings.worker.web_host,
            web_port=settings.worker.web_port,
            web_bind=settings.worker.web_host,
            datadir=str(settings.data_dir / "faust"),
        )
        events_topic = app.topic(
            kafka.topics.events, key_type=bytes, value_type=bytes, value_serializer="raw"
        )

        @app.agent(events_topic, name="ingest")
        async def ingest(stream: Any) -> None:
            async for batch in stream.take_events(
                settings.worker.batch_max_messages, within=settings.worker.batch_within_s
            ):
                messages = [
                    InMessage(
                        value=event.message.value,
                        key=event.message.key,
                        topic=event.message.topic,
                        partition=event.message.partition,
                        offset=event.message.offset,
                    )
                    for event in batch
                ]
                await self.handle(messages)

        worker = self

        @app.page("/agentwatch/stats/")
        class StatsView(View):
            async def get(self, request: Request) -> Response:
                data = worker.stats.as_dict()
                data.update(await worker.progress())
                return self.json(data)

        @app.page("/metrics/")
        class MetricsView(View):
            async def get(self, request: Request) -> Response:
                return self.text(worker.stats.prometheus())

        self.ingest_agent = ingest
        return app

    async def progress(self) -> dict[str, Any]:
        """Assigned partitions and consumer lag, counted from what this worker processed.

        The end offsets come from the broker (ListOffsets); on the embedded broker they can
        trail the true end by up to one batch, so lag there may be under-reported.
        """
        consumer = self.app.consumer
        events_topic = self.settings.kafka.topics.events
        assigned = [tp for tp in consumer.assignment() if tp.topic == events_topic]
        lag = 0
        if assigned:
            try:
                ends = await consumer.highwaters(*assigned)
            except Exception:  # noqa: BLE001 - stats must answer while Kafka is away
                return {"partitions": len(assigned), "lag": None}
            committed = getattr(consumer, "_committed_offset", {})
            for tp in assigned:
                done = self.positions.get((tp.topic, tp.partition))
                if done is None:
                    done = committed.get(tp) or 0
                lag += max(0, int(ends.get(tp, 0) or 0) - done)
        return {"partitions": len(assigned), "lag": lag}

    # -- one batch -----------------------------------------------------------------------

    async def handle(self, messages: list[InMessage]) -> BatchOutput:
        started = time.perf_counter()
        out = self.processor.process(messages, datetime.now(UTC))
        stats = self.stats
        if out.events:
            await retry_forever(
                "storing events",
                lambda: asyncio.to_thread(self.store.insert_events, out.events),
                self._count_storage_retry,
            )
        if out.dead_letters:
            await retry_forever(
                "dead-lettering", lambda: self._dead_letter(out), self._count_kafka_retry
            )
            await retry_forever(
                "storing dead letters",
                lambda: asyncio.to_thread(self.store.insert_dead_letters, dead_letter_rows(out)),
                self._count_storage_retry,
            )
        if out.anomalies:
            await retry_forever(
                "storing anomalies",
                lambda: asyncio.to_thread(self.store.insert_anomalies, out.anomalies),
                self._count_storage_retry,
            )
            await retry_forever(
                "publishing anomalies",
                lambda: self._publish_anomalies(out),
                self._count_kafka_retry,
            )
        for message in messages:
            position = (message.topic, message.partition)
            self.positions[position] = max(self.positions.get(position, 0), message.offset + 1)
        stats.messages += len(messages)
        stats.events_valid += len(out.events) + out.duplicates
        stats.events_stored += len(out.events)
        stats.duplicates_dropped += out.duplicates
        for dead in out.dead_letters:
            stats.dead_letters[dead.reject.reason] += 1
        stats.record_anomalies(out.anomalies)
        stats.batches += 1
        stats.agents = len(self.processor.engine.agent_ids())
        stats.last_batch_ms = (time.perf_counter() - started) * 1000
        return out

    def _count_storage_retry(self) -> None:
        self.stats.storage_retries += 1

    def _count_kafka_retry(self) -> None:
        self.stats.kafka_retries += 1

    async def _send_all(self, sends: list[tuple[str, bytes | None, bytes, Any]]) -> None:
        producer = self.app.producer
        futures = [
            await producer.send(topic, key, value, None, None, headers)
            for topic, key, value, headers in sends
        ]
        await asyncio.gather(*futures)

    async def _dead_letter(self, out: BatchOutput) -> None:
        topic = self.settings.kafka.topics.dlq
        sends = []
        for dead in out.dead_letters:
            source = dead.source
            headers = [
                (REASON_HEADER, dead.reject.reason.encode()),
                (DETAIL_HEADER, dead.reject.detail[:1000].encode()),
                ("agentwatch.source.topic", source.topic.encode()),
                ("agentwatch.source.partition", str(source.partition).encode()),
                ("agentwatch.source.offset", str(source.offset).encode()),
            ]
            sends.append((topic, source.key, dead.reject.raw, headers))
        await self._send_all(sends)

    async def _publish_anomalies(self, out: BatchOutput) -> None:
        topic = self.settings.kafka.topics.anomalies
        await self._send_all(
            [(topic, a.agent_id.encode(), encode_anomaly(a), None) for a in out.anomalies]
        )
