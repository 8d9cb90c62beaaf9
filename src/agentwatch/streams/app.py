"""The faust worker application, top to bottom: topics, the batch agent, the control agent,
rebalance and shutdown hooks, the snapshot timer, sinks, web pages.

Wiring only: decoding, validation and detection live in :mod:`agentwatch.streams.processor`
(pure); model snapshots, restores and feedback in :mod:`agentwatch.streams.control`;
storage in :mod:`agentwatch.storage`. Delivery is at-least-once: a batch's Kafka offsets
are acknowledged only after its events, dead letters and anomalies are written; while
ClickHouse or Kafka is down the agent retries with backoff and consumes nothing new.

Model state: each batch runs inside :meth:`ModelState.batch` (no snapshot is taken while
a batch is between scoring and storing). Partitions revoked → their changed agents are
snapshotted; partitions assigned → their agents' newest snapshots are restored and caught
up from Kafka to the committed offset before the next batch is scored; every
``worker.snapshot_interval_s`` the changed agents are snapshotted; a last snapshot at
shutdown. Control messages (``agentwatch.feedback.v1``) are applied by the ``control``
agent; a bad one is rejected and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from faust.web import Request, Response, View

from agentwatch.config import Settings
from agentwatch.models.engine import DetectionEngine
from agentwatch.schemas.anomaly import encode_anomaly
from agentwatch.schemas.decode import Limits
from agentwatch.storage.client import Client, connect, redact_error
from agentwatch.storage.snapshots import ModelStore
from agentwatch.storage.writer import DeadLetterRow, EventStore
from agentwatch.streams.admin import register_admin_pages
from agentwatch.streams.control import ControlResult, KafkaEventSource, ModelState
from agentwatch.streams.processor import BatchOutput, BatchProcessor, InMessage
from agentwatch.streams.stats import WorkerStats

log = logging.getLogger("agentwatch.worker")

T = TypeVar("T")

REASON_HEADER = "agentwatch.reason"
DETAIL_HEADER = "agentwatch.detail"

# How often the snapshot timer looks whether a periodic snapshot is due (at most).
SNAPSHOT_TICK_S = 1.0
# Longest wait for the last snapshot at shutdown (a batch stuck retrying holds the models).
SHUTDOWN_SNAPSHOT_TIMEOUT_S = 20.0
# A batch is scored in slices of about this many message bytes, yielding to the event loop
# in between (web pages answer while a large batch or a restore's backlog is scored).
SCORE_SLICE_BYTES = 256 * 1024


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


def in_time_order(messages: Sequence[Any]) -> list[InMessage]:
    """A batch of faust messages as :class:`InMessage`, the partitions merged by message
    timestamp (each partition's own order kept).

    faust hands a batch over round-robin, one message per partition in turn; with a backlog
    (after a restart) a partition whose messages each cover more event time would run
    ahead, and the engine's watermark, shared by all agents, would make the other
    partitions' events late.
    """
    by_partition: dict[tuple[str, int], list[tuple[float, InMessage]]] = {}
    for m in messages:
        by_partition.setdefault((m.topic, m.partition), []).append(
            (float(m.timestamp or 0.0), InMessage(m.value, m.key, m.topic, m.partition, m.offset))
        )
    merged = heapq.merge(*by_partition.values(), key=lambda item: item[0])
    return [message for _, message in merged]


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
        decode_limits = Limits(
            max_event_bytes=limits.max_event_bytes,
            max_message_bytes=limits.max_message_bytes,
            max_future_s=limits.max_future_s,
            max_age_s=limits.max_age_s,
        )
        engine = DetectionEngine(settings.detect)
        self.processor = BatchProcessor(decode_limits, engine, settings.worker.dedup_window)
        kafka = settings.kafka
        self.models = ModelState(
            engine,
            self._open_model_store,
            partitions=kafka.partitions,
            interval_s=settings.worker.snapshot_interval_s,
            topic=kafka.topics.events,
            source=KafkaEventSource(bootstrap, kafka.topics.events, settings.worker.app_id),
            limits=decode_limits,
        )
        self._client: Client | None = None
        self._client_lock = threading.Lock()  # admin pages open storage from a thread
        self._store: EventStore | None = None
        self._restore: asyncio.Future[None] | None = None
        self._snapshot_retry_at = 0.0
        self._snapshot_delay = 0.0
        self.positions: dict[tuple[str, int], int] = {}
        self.app = self._build_app(bootstrap)

    @property
    def client(self) -> Client:
        """One storage client for the process (chDB: one engine per process and data dir)."""
        with self._client_lock:
            if self._client is None:
                self._client = connect(self.settings.storage_dsn)
            return self._client

    @property
    def store(self) -> EventStore:
        if self._store is None:
            self._store = EventStore.from_settings(self.client, self.settings.storage)
        return self._store

    def _open_model_store(self) -> ModelStore:
        return ModelStore.from_settings(self.client, self.settings.storage)

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
                await self.handle(in_time_order([event.message for event in batch]))

        feedback_topic = app.topic(
            kafka.topics.feedback, key_type=bytes, value_type=bytes, value_serializer="raw"
        )

        @app.agent(feedback_topic, name="control")
        async def control(stream: Any) -> None:
            async for event in stream.events():
                await self.apply_control(event.message.value, event.message.partition)

        @app.on_partitions_revoked.connect
        async def on_partitions_revoked(
            sender: Any, /, *args: Any, signal: Any, **kwargs: Any
        ) -> None:
            await self.on_revoked(args[0])  # the revoked TopicPartitions

        @app.on_partitions_assigned.connect
        async def on_partitions_assigned(
            sender: Any, /, *args: Any, signal: Any, **kwargs: Any
        ) -> None:
            self.on_assigned(args[0])  # the whole new assignment

        @app.on_before_shutdown.connect
        async def on_before_shutdown(
            sender: Any, /, *args: Any, signal: Any, **kwargs: Any
        ) -> None:
            await self.on_shutdown()

        @app.timer(  # type: ignore[untyped-decorator]  # faust's timer is @no_type_check
            interval=min(SNAPSHOT_TICK_S, settings.worker.snapshot_interval_s),
            name="agentwatch.snapshots",
        )
        async def snapshots() -> None:
            await self.periodic_snapshot()

        worker = self

        @app.page("/agentwatch/stats/")
        class StatsView(View):
            async def get(self, request: Request) -> Response:
                data = worker.stats.as_dict()
                data.update(await worker.progress())
                data["models"] = worker.models.summary()
                return self.json(data)

        @app.page("/metrics/")
        class MetricsView(View):
            async def get(self, request: Request) -> Response:
                return self.text(worker.stats.prometheus(worker.models.summary()))

        register_admin_pages(app, self.models)
        self.ingest_agent = ingest
        self.control_agent = control
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
        """One batch from faust: waits for a pending restore, skips what the restored
        models hold already, then the whole batch stage."""
        started = time.perf_counter()
        async with self.models.batch(messages) as fresh:
            out = await self._score(fresh)
            self.models.observe(messages, out)
            await self._write(out)
        self._account(messages, out, started, consumed=True)
        return out

    async def process_backlog(self, messages: list[InMessage]) -> None:
        """The batch stage for the backlog a restore processes (the restore holds the
        models; faust delivers these messages again afterwards and they are skipped)."""
        started = time.perf_counter()
        out = await self._score(messages)
        self.models.observe(messages, out)
        await self._write(out)
        self._account(messages, out, started, consumed=False)

    async def _score(self, messages: list[InMessage]) -> BatchOutput:
        """The batch stage over ``messages``, in slices of about ``SCORE_SLICE_BYTES``
        with a yield to the event loop between them (same result as in one go)."""
        now = datetime.now(UTC)
        out = BatchOutput()
        start, size = 0, 0
        for end, message in enumerate(messages, 1):
            size += len(message.value or b"")
            if size < SCORE_SLICE_BYTES and end < len(messages):
                continue
            part = self.processor.process(messages[start:end], now)
            out.events += part.events
            out.dead_letters += part.dead_letters
            out.anomalies += part.anomalies
            out.notices += part.notices
            out.duplicates += part.duplicates
            start, size = end, 0
            if end < len(messages):
                await asyncio.sleep(0)
        return out  # counted when faust delivers

    def _account(
        self, messages: list[InMessage], out: BatchOutput, started: float, *, consumed: bool
    ) -> None:
        for message in messages:
            position = (message.topic, message.partition)
            self.positions[position] = max(self.positions.get(position, 0), message.offset + 1)
        stats = self.stats
        if consumed:
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

    async def _write(self, out: BatchOutput) -> None:
        """Store and publish what a batch produced, retrying until it is done."""
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
        if out.notices:
            await retry_forever(
                "recording baseline changes",
                lambda: self.models.record_notices(out.notices),
                self._count_storage_retry,
            )

    # -- model state ---------------------------------------------------------------------

    def _events_partitions(self, tps: Any) -> set[int]:
        events_topic = self.settings.kafka.topics.events
        return {int(tp.partition) for tp in tps if tp.topic == events_topic}

    async def apply_control(self, raw: bytes | None, partition: int) -> ControlResult:
        """Apply one control message; storage trouble is retried, anything else about the
        message rejects it (counted in ``feedback_rejected``), never the worker."""
        return await retry_forever(
            "applying a control message",
            lambda: self.models.apply_raw(raw, partition),
            self._count_storage_retry,
        )

    async def on_revoked(self, revoked: Any) -> None:
        """Snapshot the changed agents of the revoked events partitions (bounded in time:
        whatever is not written is caught up from Kafka by the next owner)."""
        partitions = self._events_partitions(revoked)
        if not partitions:
            return
        if self._restore is not None and not self._restore.done():
            self._restore.cancel()  # half restored: nothing to snapshot; the next owner
            self.models.disown(partitions)  # (this worker too) restores again
            return
        timeout = max(2.0, 0.5 * self.settings.kafka.session_timeout_ms / 1000)
        try:
            written = await asyncio.wait_for(self.models.on_revoked(partitions), timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a rebalance must go on
            self.models.stats.snapshot_errors += 1
            log.warning(
                "snapshot of revoked partitions %s failed (%s: %s); their next owner "
                "catches up from Kafka",
                sorted(partitions),
                type(exc).__name__,
                redact_error(exc),
            )
            return
        log.info("partitions %s revoked: %d snapshots written", sorted(partitions), written)

    def on_assigned(self, assigned: Any) -> None:
        """Block scoring, then restore the assigned partitions' models in the background
        (retried until it succeeds or the next assignment replaces it)."""
        partitions = self._events_partitions(assigned)
        if self._restore is not None and not self._restore.done():
            self._restore.cancel()
        self.models.expect_restore()
        self._restore = asyncio.ensure_future(self._restore_until_done(partitions))

    async def _restore_until_done(self, partitions: set[int]) -> None:
        stats = self.models.stats
        caught_up, backlog = stats.caught_up_events, stats.backlog_messages
        delay = 0.5
        while True:
            try:
                restored = await self.models.restore_partitions(partitions, self.process_backlog)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried; scoring waits meanwhile
                self.models.stats.restore_errors += 1
                log.warning(
                    "restoring the models of partitions %s failed (%s: %s); retrying in %.1fs",
                    sorted(partitions),
                    type(exc).__name__,
                    redact_error(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            log.info(
                "partitions %s assigned: %d agents restored, %d events caught up, %d backlog "
                "messages processed (%.0f ms)",
                sorted(partitions),
                restored,
                stats.caught_up_events - caught_up,
                stats.backlog_messages - backlog,
                stats.last_restore_ms,
            )
            return

    async def periodic_snapshot(self) -> None:
        """The timer's tick: snapshot the changed agents when due; failures back off."""
        now = time.monotonic()
        if not self.models.ready or now < self._snapshot_retry_at:
            return
        try:
            await self.models.maybe_snapshot()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the next tick tries again
            self.models.stats.snapshot_errors += 1
            self._snapshot_delay = min(max(2 * self._snapshot_delay, 1.0), 30.0)
            self._snapshot_retry_at = now + self._snapshot_delay
            log.warning(
                "periodic snapshot failed (%s: %s); retrying in %.0fs",
                type(exc).__name__,
                redact_error(exc),
                self._snapshot_delay,
            )
        else:
            self._snapshot_delay = 0.0

    async def on_shutdown(self) -> None:
        """The last snapshot of every changed agent (skipped while a restore is pending)."""
        if self._restore is not None and not self._restore.done():
            self._restore.cancel()
            return
        if not self.models.ready:
            return
        try:
            written = await asyncio.wait_for(
                self.models.snapshot_dirty("shutdown"), SHUTDOWN_SNAPSHOT_TIMEOUT_S
            )
        except Exception as exc:  # noqa: BLE001 - shutting down regardless
            log.warning(
                "shutdown snapshot failed (%s: %s); the next start catches up from Kafka",
                type(exc).__name__,
                redact_error(exc),
            )
            return
        log.info("shutdown: %d snapshots written", written)

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
