"""The alert dispatcher, top to bottom: Kafka in, pipeline, outbox, delivery, records, API.

::

    agentwatch.anomalies.v1 ──(group agentwatch-alerts)──▶ route → silence → group
        ──▶ agentwatch.alerts.outbox.v1 ──▶ alerts rows (ClickHouse) ──▶ commit anomalies
    agentwatch.alerts.outbox.v1 ──(group agentwatch-alerts-delivery)──▶ deliver per receiver
        (retry, rate limit, circuit, fallback) ──▶ alert_notifications / alert_dead_letters
        ──▶ commit outbox

A notification is delivered as soon as Kafka has acknowledged it on the outbox, when its
partition is this process's (:meth:`Dispatcher._dispatch_written`); the outbox consumer
skips it when it reads it back, and delivers everything else (records of an earlier run, of
another dispatcher, or left to it while too many deliveries are in flight).

Nothing is lost when the process dies:

* an anomaly's offset is committed only once every anomaly up to it is either dropped by
  design (no route, silenced, a redelivery) or part of a notification written to the
  outbox (acknowledged by Kafka) whose alert state is stored; anomalies waiting in a group
  are consumed again after a restart;
* an alert's state (firing, counts, acknowledgement, the anomalies it listed) is stored
  after its notification is on the outbox, in one insert with the others of the last
  ``storage.alert_flush_interval``; firing alerts are loaded at start, so they still
  resolve. Anomalies whose notification is on the outbox but whose state is not stored
  yet are consumed again after a restart and notified again (the same notification id
  when the alert's earlier state was stored; a new alert with the same dedup key when
  the notification was the alert's first);
* an outbox offset is committed only once every notification up to it has a final
  outcome stored; after a restart the notifications without one are delivered again
  (with the same notification id and dedup key — receivers can drop the duplicate).

The CLI reaches a running dispatcher through its HTTP API (:mod:`agentwatch.alerts.api`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeAlias, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from agentwatch.alerts.config import AlertSettings
from agentwatch.alerts.delivery import DeliveryService, ReceiverRunner
from agentwatch.alerts.grouping import AlertState, Flush, utc
from agentwatch.alerts.model import Notification, decode_notification, encode_notification
from agentwatch.alerts.outbox import OffsetTracker, ensure_topic
from agentwatch.alerts.pipeline import AlertPipeline, notifications_for
from agentwatch.alerts.receivers import DisabledNotifier, build_notifier
from agentwatch.alerts.silences import Silence, Silencer, new_silence
from agentwatch.alerts.store import AlertStore, AsyncAlertStore, BufferedRecorder
from agentwatch.config import KafkaSettings
from agentwatch.schemas.anomaly import decode_anomaly
from agentwatch.streams.partitioning import partition_of

__all__ = ["Dispatcher", "DispatcherStats"]

log = logging.getLogger("agentwatch.alerts")

T = TypeVar("T")


#: What a notification delivered at write time may wait for: the consumer reading up to a
#: partition's first record written by this process, or reading one record.
Gate: TypeAlias = "TopicPartition | tuple[TopicPartition, int]"


def _gate_partition(gate: Gate) -> TopicPartition:
    return gate if isinstance(gate, TopicPartition) else gate[0]


class NotFound(LookupError):
    pass


@dataclass(slots=True)
class DispatcherStats:
    started_at: float = 0.0
    anomalies_consumed: int = 0
    anomalies_invalid: int = 0
    notifications_written: int = 0
    notifications_started_at_write: int = 0
    notifications_replayed_skipped: int = 0
    notifications_invalid: int = 0
    deliveries_in_flight: int = 0
    storage_retries: int = 0
    kafka_retries: int = 0
    commits: int = 0
    alert_inserts: int = 0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        on_revoked: Callable[[set[TopicPartition]], Awaitable[None]],
        on_assigned: Callable[[set[TopicPartition]], None] | None = None,
    ) -> None:
        self.on_revoked = on_revoked
        self.on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.on_assigned is not None:
            self.on_assigned(set(assigned))


class Dispatcher:
    """One alert dispatcher process (see the module docs)."""

    def __init__(
        self,
        settings: AlertSettings,
        kafka: KafkaSettings,
        bootstrap: str,
        store: AlertStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.kafka = kafka
        self.bootstrap = bootstrap
        self.clock = clock
        self.store = AsyncAlertStore(store)
        self.recorder = BufferedRecorder(self.store, interval_s=settings.storage.flush_interval)
        self.silencer = Silencer()
        self.pipeline = AlertPipeline(settings, self.silencer)
        self.stats = DispatcherStats()
        self.runners: dict[str, ReceiverRunner] = {}
        for config in settings.receivers:
            notifier, integration = build_notifier(config, settings)
            if isinstance(notifier, DisabledNotifier):
                log.warning(
                    "receiver %s (%s) is disabled: no credential configured; its notifications "
                    "are recorded as skipped",
                    config.name,
                    config.type,
                )
            self.runners[config.name] = ReceiverRunner(
                notifier,
                settings.policy_for(config),
                self.recorder,
                rate_per_s=integration.rate_per_s,
                burst=integration.burst,
                fallback=config.fallback,
            )
        self.delivery = DeliveryService(self.runners, self.recorder)
        self.anomaly_offsets = OffsetTracker()
        self.outbox_offsets = OffsetTracker()
        # Outbox records written before a partition was assigned to this process may have
        # been delivered already (by an earlier run): their outcome is looked up first.
        # By record time, not by end offset: the embedded broker's ListOffsets can trail.
        self._assigned_ms: dict[TopicPartition, int] = {}
        # Delivery straight after the outbox write (see _dispatch_written): per assigned
        # outbox partition, the offsets delivered that way (the consumer skips them), the
        # first offset this process wrote since the assignment and whether the consumer
        # has read up to it; per dedup key, the latest notification left to the consumer;
        # notifications waiting for a gate (a partition, or a record left to the consumer).
        self._own: dict[TopicPartition, set[int]] = {}
        self._first_written: dict[TopicPartition, int] = {}
        self._caught_up: set[TopicPartition] = set()
        self._left: dict[str, tuple[TopicPartition, int]] = {}
        self._waiting: dict[Gate, list[tuple[TopicPartition, int, Notification]]] = {}
        self._waiting_count = 0
        self._writing: asyncio.Future[None] | None = None  # the outbox write under way
        self._partitions: dict[tuple[bytes, int], int] = {}
        self._flush_lock = asyncio.Lock()
        # Alert states written to the outbox and not stored yet, with the anomaly positions
        # they release once stored (see _store_loop); emits and stores are numbered.
        self._unstored: list[tuple[AlertState, tuple[Any, ...]]] = []
        self._emitted = 0
        self._stored = 0
        self._store_wake = asyncio.Event()
        self._store_lock = asyncio.Lock()
        self._idle = asyncio.Event()  # no emit under way
        self._idle.set()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._anomaly_consumer: AIOKafkaConsumer | None = None
        self._outbox_consumer: AIOKafkaConsumer | None = None
        self._committed: dict[str, dict[TopicPartition, int]] = {"anomalies": {}, "outbox": {}}
        self.ready = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def start(self) -> None:
        """Load state, connect to Kafka; returns when both consumers are running."""
        self.stats.started_at = self.clock()
        await self._load_state()
        await asyncio.to_thread(
            ensure_topic, self.bootstrap, self.kafka, self.settings.kafka.outbox_topic
        )
        self.recorder.start()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id="agentwatch-alerts",
            acks="all",
            linger_ms=1,
            enable_idempotence=False,
        )
        await self._producer.start()
        common: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": self.kafka.session_timeout_ms,
            "heartbeat_interval_ms": self.kafka.heartbeat_interval_ms,
            "fetch_max_wait_ms": int(self.settings.kafka.fetch_max_wait * 1000),
            "max_poll_interval_ms": 600_000,
        }
        self._anomaly_consumer = AIOKafkaConsumer(
            group_id=self.settings.kafka.group_id,
            client_id="agentwatch-alerts",
            **common,
        )
        self._anomaly_consumer.subscribe(
            [self.kafka.topics.anomalies],
            listener=_Listener(self._anomalies_revoked),
        )
        self._outbox_consumer = AIOKafkaConsumer(
            group_id=self.settings.kafka.delivery_group_id,
            client_id="agentwatch-alerts-delivery",
            **common,
        )
        self._outbox_consumer.subscribe(
            [self.settings.kafka.outbox_topic],
            listener=_Listener(self._outbox_revoked, self._outbox_assigned),
        )
        await asyncio.gather(self._anomaly_consumer.start(), self._outbox_consumer.start())
        self.ready.set()

    async def run(self) -> None:
        """Run until :meth:`stop`; then stop cleanly (in-flight deliveries finish)."""
        await self.start()
        tasks = [
            asyncio.create_task(self._anomaly_loop(), name="alerts-anomalies"),
            asyncio.create_task(self._timer_loop(), name="alerts-timers"),
            asyncio.create_task(self._store_loop(), name="alerts-store"),
            asyncio.create_task(self._delivery_loop(), name="alerts-delivery"),
            asyncio.create_task(self._commit_loop(), name="alerts-commits"),
        ]
        stop = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            stop.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()

    async def close(self, drain_s: float = 10.0) -> None:
        if self._deliveries:
            await asyncio.wait(list(self._deliveries), timeout=drain_s)
        for task in list(self._deliveries):
            task.cancel()
        await self.recorder.aclose()
        await self._store_pending()
        await self._commit(final=True)
        for consumer in (self._anomaly_consumer, self._outbox_consumer):
            if consumer is not None:
                await consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        self._anomaly_consumer = self._outbox_consumer = None
        self._producer = None
        await self.delivery.aclose()
        self.store.close()

    async def _load_state(self) -> None:
        store = self.store.store
        silences = await self._storage("loading silences", lambda: self.store.run(store.silences))
        for silence in silences:
            self.silencer.put(silence)
        firing = await self._storage(
            "loading firing alerts", lambda: self.store.run(store.firing_alerts)
        )
        restored = 0
        for state in firing:
            route = self.pipeline.router.get(state.route)
            if route is None:
                log.warning(
                    "alert %s: route %s is no longer configured; it is not resumed",
                    state.alert_id,
                    state.route,
                )
                continue
            self.pipeline.grouper.restore(state, route)
            self.pipeline.remember([item.anomaly_id for item in state.recent])
            restored += 1
        keys = list({n for s in firing for n in self._dedup_keys(s)})
        refs = await self._storage(
            "loading thread references", lambda: self.store.run(store.thread_refs, keys)
        )
        for (receiver, key), ref in refs.items():
            runner = self.runners.get(receiver)
            if runner is not None:
                runner.refs[key] = ref
        log.info("state loaded: %d silences, %d firing alerts resumed", len(silences), restored)

    @staticmethod
    def _dedup_keys(state: AlertState) -> list[str]:
        from agentwatch.alerts.dedup import dedup_key

        return [dedup_key(state.route, r, state.group_key) for r in state.receivers]

    # -- retries ------------------------------------------------------------------------

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]], counter: str) -> T:
        delay = 0.2
        while True:
            try:
                return await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried until it works; nothing dropped
                setattr(self.stats, counter, getattr(self.stats, counter) + 1)
                log.warning("%s failed (%s); retrying in %.1fs", what, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _storage(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        return await self._retry(what, call, "storage_retries")

    # -- anomalies → groups → outbox ------------------------------------------------------

    async def _anomaly_loop(self) -> None:
        consumer = self._anomaly_consumer
        assert consumer is not None
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not batches:
                continue
            now = self.clock()
            for tp, records in batches.items():
                for record in records:
                    self.stats.anomalies_consumed += 1
                    try:
                        anomaly = decode_anomaly(record.value)
                    except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
                        self.stats.anomalies_invalid += 1
                        log.warning(
                            "invalid anomaly at %s[%d]@%d skipped: %s",
                            tp.topic,
                            tp.partition,
                            record.offset,
                            str(exc)[:200],
                        )
                        self.anomaly_offsets.done(tp, record.offset)
                        continue
                    joined = self.pipeline.ingest(anomaly, now, (tp, record.offset))
                    if joined:
                        self.anomaly_offsets.track(tp, record.offset, joined)
                    else:
                        self.anomaly_offsets.done(tp, record.offset)
            self._wake.set()  # the timer loop emits what fell due
            # Fetch on while an emit is under way, but at most one batch ahead of it (and
            # none further while storage or Kafka writes are failing).
            await self._idle.wait()

    async def _timer_loop(self) -> None:
        tick = self.settings.tick
        while True:
            deadline = self.pipeline.next_deadline()
            wait = tick if deadline is None else min(tick, max(0.0, deadline - self.clock()))
            self._wake.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
            await self.flush_due()

    async def flush_due(self) -> None:
        async with self._flush_lock:
            flushes = self.pipeline.due(self.clock())
            if flushes:
                await self._emit(flushes)

    async def _emit(self, flushes: list[Flush]) -> None:
        """Write the flushes' notifications to the outbox, start delivering them, queue their
        alerts' state for storing (the anomalies they list are released once it is)."""
        self._idle.clear()
        try:
            await self._emit_now(flushes)
        finally:
            self._idle.set()

    async def _emit_now(self, flushes: list[Flush]) -> None:
        now = datetime.now(UTC)
        notifications = [n for f in flushes for n in notifications_for(f, now=now)]
        if notifications:
            # The consumer may read these records before the write returns: it waits for
            # this write to be dispatched (see _consume_outbox), so it knows they are ours.
            writing = self._writing = asyncio.get_running_loop().create_future()
            try:
                written = await self._retry(
                    "writing the outbox", lambda: self._write_outbox(notifications), "kafka_retries"
                )
                self._dispatch_written(notifications, written)
            finally:
                self._writing = None
                writing.set_result(None)
        self._unstored.extend((f.state, f.positions) for f in flushes)
        self._emitted += 1
        self._store_wake.set()
        if len(self._unstored) >= self.settings.kafka.max_in_flight:
            await self._wait_stored(self._emitted)  # storage is slow or failing: hold on

    # -- alert states -------------------------------------------------------------------

    async def _store_loop(self) -> None:
        """Store the states of what was emitted, at most every ``alert_flush_interval``."""
        interval = self.settings.storage.alert_flush_interval
        last = 0.0
        while True:
            await self._store_wake.wait()
            self._store_wake.clear()
            pause = last + interval - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            last = time.monotonic()
            await self._store_pending()

    async def _store_pending(self) -> None:
        """Store the alert states emitted so far (one insert, the latest state of each
        alert), then release the anomalies their notifications listed."""
        async with self._store_lock:
            if not self._unstored:
                return
            batch, self._unstored = self._unstored, []
            upto = self._emitted
            latest = {state.alert_id: state for state, _ in batch}
            states = list(latest.values())
            store = self.store.store
            try:
                await self._storage(
                    "storing alerts", lambda: self.store.run(store.upsert_alerts, states)
                )
            except asyncio.CancelledError:
                self._unstored[:0] = batch  # stored on close, or consumed again after a restart
                raise
            self.stats.alert_inserts += 1
            for _, positions in batch:
                for position in positions:
                    if isinstance(position, tuple):
                        self.anomaly_offsets.release(position[0], int(position[1]))
            self._stored = upto

    async def _wait_stored(self, emitted: int) -> None:
        """Return once the states of emit number ``emitted`` are stored (storing them now)."""
        if self._stored < emitted:
            await self._store_pending()

    def _partition_for(self, key: bytes, partitions: list[int]) -> int:
        """The outbox partition of ``key``: Kafka's default partitioner (murmur2), cached —
        an alert's notifications all have its dedup key."""
        count = len(partitions)
        index = self._partitions.get((key, count))
        if index is None:
            if len(self._partitions) >= 100_000:
                self._partitions.clear()
            index = self._partitions[(key, count)] = partition_of(key, count)
        return partitions[index]

    async def _write_outbox(
        self, notifications: list[Notification]
    ) -> list[tuple[TopicPartition, int]]:
        """Write ``notifications`` to the outbox; where each landed, once Kafka has them."""
        producer = self._producer
        assert producer is not None
        topic = self.settings.kafka.outbox_topic
        partitions = sorted(await producer.partitions_for(topic))
        futures = []
        for n in notifications:
            key = n.dedup_key.encode()
            partition = self._partition_for(key, partitions) if partitions else None
            futures.append(
                await producer.send(topic, encode_notification(n), key=key, partition=partition)
            )
        metadata = await asyncio.gather(*futures)
        self.stats.notifications_written += len(notifications)
        return [(TopicPartition(topic, m.partition), int(m.offset)) for m in metadata]

    def _dispatch_written(
        self, notifications: list[Notification], written: list[tuple[TopicPartition, int]]
    ) -> None:
        """Deliver the notifications just written without waiting to read them back.

        Only those on outbox partitions assigned to this process; the consumer skips them
        when it reads them. Their offsets are tracked at once, so the outbox commit waits
        for their outcome as for any other. Each alert's notifications to a receiver stay
        in order: a notification waits (in memory) until the consumer has read the records
        it must follow — on a partition, everything before this process's first write
        since the assignment (notifications of an earlier run); for its dedup key, an
        earlier notification that was left to the consumer. With ``max_in_flight``
        deliveries in flight, notifications are left to the consumer, as before.
        """
        consumer = self._outbox_consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        limit = self.settings.kafka.max_in_flight
        for notification, (tp, offset) in zip(notifications, written, strict=True):
            if tp not in assigned:
                continue  # another dispatcher's partition: its consumer delivers it
            first = self._first_written.setdefault(tp, offset)
            position = self.outbox_offsets.position(tp)
            if position is not None and position > first:
                self._open_gate(tp)
            if position is not None and offset < position:
                continue  # already read back (and delivered) by the consumer
            key = notification.dedup_key
            if len(self._deliveries) + self._waiting_count >= limit:
                self._left[key] = (tp, offset)
                continue
            self._own.setdefault(tp, set()).add(offset)
            self.outbox_offsets.track(tp, offset, advance=False)
            self.stats.notifications_started_at_write += 1
            gate: Gate | None = self._left.get(key) or (None if tp in self._caught_up else tp)
            if gate is None:
                self._start_delivery(tp, offset, notification)
            else:
                self._waiting.setdefault(gate, []).append((tp, offset, notification))
                self._waiting_count += 1

    def _open_gate(self, gate: Gate) -> None:
        """The consumer has read the records ``gate`` stands for: start what waited."""
        if isinstance(gate, TopicPartition):
            self._caught_up.add(gate)
        waiting = self._waiting.pop(gate, None)
        if waiting:
            self._waiting_count -= len(waiting)
            for tp, offset, notification in waiting:
                self._start_delivery(tp, offset, notification)

    def _start_delivery(self, tp: TopicPartition, offset: int, notification: Notification) -> None:
        task = asyncio.create_task(self._deliver(tp, offset, notification))
        self._deliveries.add(task)
        task.add_done_callback(self._delivery_done)

    async def _anomalies_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._commit_consumer("anomalies", only=revoked)
        self.anomaly_offsets.forget(revoked)

    # -- outbox → receivers ---------------------------------------------------------------

    async def _delivery_loop(self) -> None:
        consumer = self._outbox_consumer
        assert consumer is not None
        limit = self.settings.kafka.max_in_flight
        while True:
            if len(self._deliveries) >= limit:
                self._room.clear()
                await self._room.wait()
                continue
            batches = await consumer.getmany(
                timeout_ms=200, max_records=min(1000, limit - len(self._deliveries))
            )
            writing = self._writing
            if batches and writing is not None:
                await asyncio.shield(writing)
            for tp, records in batches.items():
                await self._consume_outbox(tp, records)
            self.stats.deliveries_in_flight = len(self._deliveries)

    async def _consume_outbox(self, tp: TopicPartition, records: list[Any]) -> None:
        """Deliver what the consumer read, in order; skip what was delivered at write time."""
        assigned_ms = self._assigned_ms.get(tp, int(time.time() * 1000))
        own_before = self._own.get(tp, ())
        entries: list[tuple[int, str, Notification | None]] = []
        replayed: list[str] = []
        for record in records:
            key = record.key.decode("utf-8", "replace") if record.key else ""
            if record.offset in own_before:
                entries.append((record.offset, key, None))
                continue
            try:
                notification = decode_notification(record.value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.stats.notifications_invalid += 1
                log.warning("invalid outbox record skipped: %s", str(exc)[:200])
                entries.append((record.offset, key, None))
                continue
            if record.timestamp is None or record.timestamp <= assigned_ms:
                replayed.append(notification.notification_id)
            entries.append((record.offset, key, notification))
        # Written before this process had the partition: maybe delivered already.
        finished = await self._finished(replayed) if replayed else set()
        first = self._first_written.get(tp)
        own = self._own.setdefault(tp, set())  # (more may have been written meanwhile)
        for offset, key, read in entries:
            if first is not None and offset >= first and tp not in self._caught_up:
                self._open_gate(tp)  # every record before this process's writes is read
            if offset in own:
                own.discard(offset)  # delivered since it was written
            elif read is None:
                pass  # invalid
            elif read.notification_id in finished:
                self.stats.notifications_replayed_skipped += 1
            else:
                self.outbox_offsets.track(tp, offset)
                self._start_delivery(tp, offset, read)
            self.outbox_offsets.done(tp, offset)
            if self._left.get(key) == (tp, offset):
                del self._left[key]
            self._open_gate((tp, offset))

    async def _finished(self, notification_ids: list[str]) -> set[str]:
        store = self.store.store
        return await self._storage(
            "reading delivery records", lambda: self.store.run(store.finished, notification_ids)
        )

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        self._deliveries.discard(task)
        self.stats.deliveries_in_flight = len(self._deliveries)
        self._room.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())

    async def _deliver(self, tp: TopicPartition, offset: int, notification: Notification) -> None:
        await self.delivery.deliver(notification)
        await self.recorder.flush()
        self.outbox_offsets.release(tp, offset)

    def _outbox_assigned(self, assigned: set[TopicPartition]) -> None:
        now_ms = int(time.time() * 1000)
        for tp in assigned:
            self._assigned_ms[tp] = now_ms
        self._forget_written(assigned)

    def _forget_written(self, partitions: set[TopicPartition]) -> None:
        """Partitions assigned or revoked: what was written to them before is the
        consumer's (this process's, if they come back to it, or another dispatcher's)."""
        for tp in partitions:
            self._own.pop(tp, None)
            self._first_written.pop(tp, None)
            self._caught_up.discard(tp)
        if any(tp in partitions for tp, _ in self._left.values()):
            self._left = {k: v for k, v in self._left.items() if v[0] not in partitions}
        for gate in [g for g in self._waiting if _gate_partition(g) in partitions]:
            self._waiting_count -= len(self._waiting.pop(gate))

    async def _outbox_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._commit_consumer("outbox", only=revoked)
        self.outbox_offsets.forget(revoked)
        self._forget_written(revoked)
        for tp in revoked:
            self._assigned_ms.pop(tp, None)

    # -- commits --------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.kafka.commit_interval)
            await self._commit()

    async def _commit(self, final: bool = False) -> None:
        await self._commit_consumer("anomalies")
        await self._commit_consumer("outbox")

    async def _commit_consumer(self, which: str, only: set[TopicPartition] | None = None) -> None:
        consumer = self._anomaly_consumer if which == "anomalies" else self._outbox_consumer
        tracker = self.anomaly_offsets if which == "anomalies" else self.outbox_offsets
        if consumer is None:
            return
        committed = self._committed[which]
        offsets = {
            tp: offset
            for tp, offset in tracker.committable().items()
            if isinstance(tp, TopicPartition)
            and (only is None or tp in only)
            and committed.get(tp) != offset
        }
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - a later commit covers it
            log.warning("committing %s offsets failed: %s", which, type(exc).__name__)
            return
        committed.update(offsets)
        self.stats.commits += 1

    # -- operations for the API -------------------------------------------------------------

    def _now(self) -> float:
        return self.clock()

    async def acknowledge(self, alert_id: str, by: str, comment: str) -> AlertState:
        """Acknowledge an alert: no more repeats; receivers that support it are told."""
        async with self._flush_lock:
            now = self._now()
            live = self.pipeline.grouper.state_of(alert_id, now)
            if live is None and len(alert_id) >= 4:
                matches = [
                    s for s in self.pipeline.grouper.states(now) if s.alert_id.startswith(alert_id)
                ]
                if len(matches) == 1:
                    live = matches[0]
            if live is not None:
                flush = self.pipeline.grouper.acknowledge(live.alert_id, by, comment, now)
                state = self.pipeline.grouper.state_of(live.alert_id, now)
                assert state is not None
                if flush is None:
                    return state
                await self._emit([flush])
                emitted = self._emitted
            else:
                return await self._acknowledge_stored(alert_id, by, comment, now)
        await self._wait_stored(emitted)  # (not holding up other notifications meanwhile)
        return state

    async def _acknowledge_stored(
        self, alert_id: str, by: str, comment: str, now: float
    ) -> AlertState:
        """Acknowledge an alert the dispatcher no longer holds (resolved, or not resumed)."""
        await self._wait_stored(self._emitted)  # its latest state may be on its way
        store = self.store.store
        stored = await self.store.run(store.get_alert, alert_id)
        if stored is None:
            raise NotFound(alert_id)
        acked = replace(
            stored, acked_by=by, acked_at=utc(now), ack_comment=comment, updated_at=utc(now)
        )
        await self.store.run(store.upsert_alerts, [acked])
        return acked

    async def alerts(self, status: str | None, limit: int) -> list[tuple[AlertState, bool]]:
        """Alerts, newest first; live state where the dispatcher holds it."""
        await self._wait_stored(self._emitted)
        now = self._now()
        live = {s.alert_id: s for s in self.pipeline.grouper.states(now)}
        store = self.store.store
        stored = await self.store.run(store.list_alerts, status, limit)
        out: list[tuple[AlertState, bool]] = []
        seen = set()
        for state in stored:
            current = live.get(state.alert_id)
            if current is not None:
                out.append((current, True))
            else:
                out.append((state, False))
            seen.add(state.alert_id)
        if status in (None, "", "firing"):
            out.extend((s, True) for a, s in live.items() if a not in seen)
        out.sort(key=lambda pair: pair[0].last_anomaly_at, reverse=True)
        return out[:limit]

    async def alert(self, alert_id: str) -> tuple[AlertState, list[dict[str, Any]]]:
        now = self._now()
        state = self.pipeline.grouper.state_of(alert_id, now)
        store = self.store.store
        if state is None:
            await self._wait_stored(self._emitted)
            state = await self.store.run(store.get_alert, alert_id)
        if state is None:
            raise NotFound(alert_id)
        live = self.pipeline.grouper.state_of(state.alert_id, now)
        notifications = await self.store.run(store.notifications_of, state.alert_id)
        return live or state, notifications

    async def add_silence(
        self,
        matchers: list[str],
        *,
        created_by: str,
        comment: str,
        duration_s: float | None = None,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
    ) -> Silence:
        silence = new_silence(
            matchers,
            created_by=created_by,
            comment=comment,
            now=utc(self._now()),
            duration_s=duration_s,
            starts_at=starts_at,
            ends_at=ends_at,
        )
        store = self.store.store
        await self.store.run(store.put_silences, [silence])
        self.silencer.put(silence)
        log.info(
            "silence %s created by %s until %s: %s",
            silence.silence_id,
            silence.created_by,
            silence.ends_at.isoformat(),
            ", ".join(map(str, silence.matchers)),
        )
        return silence

    async def expire_silence(self, silence_id: str) -> Silence:
        silence = self.silencer.get(silence_id)
        if silence is None:
            raise NotFound(silence_id)
        expired = silence.expired(utc(self._now()))
        store = self.store.store
        await self.store.run(store.put_silences, [expired])
        self.silencer.put(expired)
        log.info("silence %s expired", silence_id)
        return expired

    async def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        store = self.store.store
        return await self.store.run(store.dead_letters, limit)

    def status(self) -> dict[str, Any]:
        p = self.pipeline.stats
        receivers = {
            name: {
                "integration": runner.notifier.integration,
                "circuit": runner.breaker.state,
                "circuit_opened": runner.breaker.opened,
                "outcomes": dict(runner.stats),
                "fallback": runner.fallback,
            }
            for name, runner in self.runners.items()
        }
        return {
            "uptime_s": round(self.clock() - self.stats.started_at, 1),
            "ready": self.ready.is_set(),
            "anomalies": {
                "consumed": self.stats.anomalies_consumed,
                "invalid": self.stats.anomalies_invalid,
                "duplicates": p.duplicates,
                "unrouted": p.unrouted,
                "silenced": p.silenced,
                "grouped": p.grouped,
                "folded": self.pipeline.grouper.folded_total,
                "by_route": dict(p.by_route),
            },
            "groups": len(self.pipeline.grouper),
            "notifications": {
                "written": self.stats.notifications_written,
                "started_at_write": self.stats.notifications_started_at_write,
                "in_flight": len(self._deliveries),
                "replayed_skipped": self.stats.notifications_replayed_skipped,
                "invalid": self.stats.notifications_invalid,
            },
            "receivers": receivers,
            "storage_retries": self.stats.storage_retries + self.recorder.retries,
            "storage_inserts": {
                "alerts": self.stats.alert_inserts,
                "notifications": self.recorder.inserts,
            },
            "kafka_retries": self.stats.kafka_retries,
            "silences_active": sum(1 for s in self.silencer.all() if s.active(utc(self._now()))),
        }
