"""The worker's model state around the detection engine: snapshots, restores, feedback.

Free of faust (the app wires it, see :mod:`agentwatch.streams.app`); storage and Kafka
calls run in a thread, engine calls on the event loop, so they never interleave with a
batch.

* **Which agents changed.** :meth:`ModelState.observe` is told about every processed batch:
  it records each agent's partition, the offset processed per partition and the agents'
  latest event times, and marks the agents dirty. Only dirty agents are snapshotted.
* **Snapshots.** Periodically (:meth:`ModelState.maybe_snapshot`, every ``interval_s``),
  when partitions are revoked (:meth:`ModelState.on_revoked`), at shutdown and after each
  feedback, the dirty agents' states (``DetectionEngine.snapshot``, all taken in one go)
  go to ClickHouse in batched inserts, each with the offset of its partition the state is
  complete up to; a round that covered every changed agent of a partition also records
  that offset as the partition's checkpoint.
* **Restores.** When partitions are assigned (and so when the worker starts),
  :meth:`ModelState.restore_partitions` loads the newest snapshot of every agent of those
  partitions whose state this worker does not already hold, then *catches up*: it reads
  the partition from its checkpoint to the consumer group's committed offset (where
  consumption resumes) and feeds each agent's events after its own snapshot offset to the
  engine — without storing or publishing anything again, that was done before. Given the
  worker's batch stage, it then processes the backlog from the committed offsets to the
  partitions' ends, all partitions merged in event time (see :meth:`ModelState.
  restore_partitions`); Kafka's redelivery of it is skipped. The model continues where it
  stopped, open sessions included (the previous tool and the secrets
  read of each), so a restart neither forgets baselines nor floods false positives. One
  gap: windows still open at the snapshot are not carried (see
  ``DetectionEngine.snapshot``), so the first window after a restore holds the events
  after the snapshot only. Until the restore is done :meth:`ModelState.wait_ready` blocks
  the batch path (and control messages), so no event is scored on a half-restored model.
* **Revokes.** The changed agents of revoked partitions are snapshotted, then given up
  (:meth:`ModelState.disown`): an agent whose snapshot failed is not written later, when
  its next owner may have written newer ones, and is reloaded if it comes back.
* **Interrupted batches.** A batch interrupted between scoring and storing (a crash, a
  cancel at shutdown) leaves the models ahead of storage: :attr:`ModelState.interrupted`
  is set and nothing is snapshotted any more, so no snapshot claims unstored messages.
* **Feedback.** :meth:`ModelState.apply_control` applies a control message from
  ``agentwatch.feedback.v1``: ``benign`` adds the accepted keys to the agent's baseline
  (``DetectionEngine.accept``), ``revert`` loads a stored snapshot; either is recorded (who,
  why) in ``feedback`` and ``baseline_changes`` and snapshotted at once.
* **Notices.** :meth:`ModelState.record_notices` stores the engine's notices (a new
  ``agent_version`` started a new baseline) in ``baseline_changes``.

Without an :class:`EventSource` (or when the topic no longer holds the messages) a restore
loses the learning since the agent's last snapshot, at most ``interval_s`` of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import secrets
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from agentwatch.models.engine import SNAPSHOT_FORMAT, DetectionEngine, Notice
from agentwatch.schemas.decode import Limits, decode_message
from agentwatch.schemas.events import Event
from agentwatch.schemas.feedback import FeedbackMessage, decode_feedback
from agentwatch.storage.client import StorageError
from agentwatch.storage.snapshots import (
    EPOCH,
    BaselineChange,
    FeedbackRow,
    ModelStore,
    Snapshot,
)
from agentwatch.streams.partitioning import partition_for
from agentwatch.streams.processor import BatchOutput, InMessage, RecentIds

__all__ = [
    "BacklogProcess",
    "ControlResult",
    "EventSource",
    "KafkaEventSource",
    "ModelState",
    "ModelStats",
    "new_snapshot_id",
]

log = logging.getLogger("agentwatch.models")

# Agents per snapshot insert (bounds the size of one insert).
WRITE_CHUNK = 2000
# Results of control messages remembered for the worker's HTTP API.
RECENT_RESULTS = 1000
# Agents serialised or loaded between two yields to the event loop.
YIELD_EVERY = 1000
# Messages per read while catching up.
CATCH_UP_CHUNK = 5000
# Longest time spent finding the true end of the partitions (see KafkaEventSource.ends).
END_PROBE_S = 2.0
# Event ids remembered while catching up (drops a producer's retried duplicates).
CATCH_UP_DEDUP = 200_000
# Messages, and events, of the backlog handed to the worker's batch stage at a time.
BACKLOG_CHUNK = 2000
BACKLOG_CHUNK_EVENTS = 5000
# Events replayed between two yields to the event loop (web pages, heartbeats go on).
YIELD_EVENTS = 1000

# The worker's whole batch stage for messages past the committed offset: decode, score,
# store, publish (``ModelState.observe`` included); supplied by the app.
BacklogProcess = Callable[[list[InMessage]], Awaitable[None]]


class EventSource(Protocol):
    """The events topic, for catching up after a restore."""

    async def committed(self, partitions: set[int]) -> dict[int, int]:
        """The consumer group's committed offset of each partition that has one."""
        ...

    async def ends(self, partitions: set[int]) -> dict[int, int]:
        """The end offset of each partition (the offset the next message will get)."""
        ...

    async def read(self, partition: int, start: int, end: int) -> list[InMessage]:
        """Messages of ``partition`` from ``start`` (or the oldest kept) up to ``end``
        (exclusive), in offset order, at most a chunk; ``[]`` when there are no more."""
        ...


class KafkaEventSource:
    """:class:`EventSource` on Kafka: the consumer group's committed offsets and plain reads
    of a partition (kafka-python, no group membership; blocking calls run in a thread)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group_id: str,
        *,
        chunk: int = CATCH_UP_CHUNK,
        timeout_s: float = 60.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.chunk = chunk
        self.timeout_s = timeout_s

    async def committed(self, partitions: set[int]) -> dict[int, int]:
        return await asyncio.to_thread(self._committed, partitions)

    async def ends(self, partitions: set[int]) -> dict[int, int]:
        return await asyncio.to_thread(self._ends, partitions)

    async def read(self, partition: int, start: int, end: int) -> list[InMessage]:
        return await asyncio.to_thread(self._read, partition, start, end)

    def _ends(self, partitions: set[int]) -> dict[int, int]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id="agentwatch-catch-up",
        )
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            if not tps:
                return {}
            ends = {tp: int(offset) for tp, offset in consumer.end_offsets(tps).items()}
            # Some brokers (the embedded Tansu) answer the first offset of a partition's
            # last record batch + 1: read on from there to the end, briefly (the end moves
            # on while producers write; what comes later is consumed live).
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, ends[tp])
            deadline = time.monotonic() + END_PROBE_S
            wait_ms = 1000
            while time.monotonic() < deadline:
                found = consumer.poll(timeout_ms=wait_ms)
                if not found:
                    break
                for tp, records in found.items():
                    ends[tp] = max(ends[tp], int(records[-1].offset) + 1)
                wait_ms = 200
            return {tp.partition: offset for tp, offset in ends.items()}
        finally:
            consumer.close(autocommit=False)

    def _committed(self, partitions: set[int]) -> dict[int, int]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            client_id="agentwatch-catch-up",
        )
        try:
            found: dict[int, int] = {}
            for partition in sorted(partitions):
                offset = consumer.committed(TopicPartition(self.topic, partition))
                if offset is not None and offset >= 0:
                    found[partition] = int(offset)
            return found
        finally:
            consumer.close(autocommit=False)

    def _read(self, partition: int, start: int, end: int) -> list[InMessage]:
        from kafka import KafkaConsumer, TopicPartition

        tp = TopicPartition(self.topic, partition)
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id="agentwatch-catch-up",
        )
        try:
            consumer.assign([tp])
            first = int(consumer.beginning_offsets([tp])[tp])
            consumer.seek(tp, max(start, first))
            found: list[InMessage] = []
            deadline = time.monotonic() + self.timeout_s
            while len(found) < self.chunk and consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"reading {self.topic}[{partition}] {start}..{end} took over "
                        f"{self.timeout_s:.0f}s"
                    )
                records = consumer.poll(timeout_ms=500, max_records=self.chunk - len(found))
                for record in records.get(tp, ()):
                    if record.offset >= end:
                        break
                    found.append(
                        InMessage(
                            value=record.value,
                            key=record.key,
                            topic=self.topic,
                            partition=partition,
                            offset=int(record.offset),
                        )
                    )
            return found
        finally:
            consumer.close(autocommit=False)


def new_snapshot_id(now: datetime) -> str:
    """Sortable by time and unique per agent: ``20261124-091503-1a2b3c4d``."""
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


@dataclass
class ModelStats:
    snapshots_written: int = 0
    snapshot_bytes: int = 0
    last_snapshot_ms: float = 0.0
    agents_restored: int = 0
    restore_bytes: int = 0
    last_restore_ms: float = 0.0
    caught_up_events: int = 0
    backlog_messages: int = 0
    redelivered_skipped: int = 0
    feedback_applied: int = 0
    feedback_rejected: int = 0
    baseline_changes: int = 0
    snapshot_errors: int = 0
    restore_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshots_written": self.snapshots_written,
            "snapshot_bytes": self.snapshot_bytes,
            "last_snapshot_ms": round(self.last_snapshot_ms, 1),
            "agents_restored": self.agents_restored,
            "restore_bytes": self.restore_bytes,
            "last_restore_ms": round(self.last_restore_ms, 1),
            "caught_up_events": self.caught_up_events,
            "backlog_messages": self.backlog_messages,
            "redelivered_skipped": self.redelivered_skipped,
            "feedback_applied": self.feedback_applied,
            "feedback_rejected": self.feedback_rejected,
            "baseline_changes": self.baseline_changes,
            "snapshot_errors": self.snapshot_errors,
            "restore_errors": self.restore_errors,
        }


@dataclass(frozen=True, slots=True)
class ControlResult:
    """What became of one control message."""

    status: str  # applied | rejected
    detail: str
    feedback_id: str = ""
    agent_id: str = ""
    action: str = ""
    keys: tuple[str, ...] = ()
    snapshot_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "detail": self.detail,
            "feedback_id": self.feedback_id,
            "agent_id": self.agent_id,
            "action": self.action,
            "keys": list(self.keys),
            "snapshot_id": self.snapshot_id,
        }


class ModelState:
    """Snapshot bookkeeping for the engine of one worker.

    ``store_factory`` opens the :class:`ModelStore` on first use (the worker's storage
    client is lazy). ``partitions`` is the partition count of the events topic ``topic``,
    used for agents no keyed message was seen of; ``interval_s`` the periodic snapshot
    interval. ``source`` reads the events topic to catch up after a restore (decoding with
    ``limits``, as the batch path does); without it a restore stops at the snapshots.

    The batch path runs each batch inside :meth:`batch`, from scoring until its events and
    anomalies are stored: snapshots are only taken between batches, so a snapshot's offset
    says exactly which messages its state has seen and stored.
    """

    def __init__(
        self,
        engine: DetectionEngine,
        store_factory: Callable[[], ModelStore],
        *,
        partitions: int,
        interval_s: float = 60.0,
        topic: str = "agentwatch.events.v1",
        source: EventSource | None = None,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if partitions < 1 or interval_s <= 0:
            raise ValueError("partitions must be >= 1 and interval_s > 0")
        self.engine = engine
        self.partitions = partitions
        self.interval_s = interval_s
        self.topic = topic
        self.source = source
        self.limits = limits or Limits()
        self.stats = ModelStats()
        self.owned: set[int] = set()
        self._store_factory = store_factory
        self._store: ModelStore | None = None
        self._clock = clock
        self._last_periodic = clock()
        self._partition_of: dict[str, int] = {}
        # events-topic partition -> next offset not yet in the engine
        self._positions: dict[int, int] = {}
        # agent -> (partition, offset): messages below it are in the restored state already
        self._floors: dict[str, tuple[int, int]] = {}
        # partition -> offset: its backlog below it was processed during the restore
        self._drained: dict[int, int] = {}
        self._event_ts: dict[str, datetime] = {}
        self._dirty: set[str] = set()
        # agent -> id of the snapshot its in-memory state was last written as or loaded from
        self._held: dict[str, str] = {}
        self._results: OrderedDict[str, ControlResult] = OrderedDict()
        self._ready = asyncio.Event()
        self._ready.set()
        self._lock = asyncio.Lock()  # held by a batch in flight and while snapshots are taken
        # Set when a batch was interrupted between scoring and storing (a crash, a cancel at
        # shutdown): the models are ahead of storage, so nothing is snapshotted any more;
        # the next worker restores the last good snapshots and catches up from Kafka.
        self.interrupted = False

    @property
    def store(self) -> ModelStore:
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    # -- the batch path ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def batch(self, messages: Sequence[InMessage]) -> AsyncIterator[list[InMessage]]:
        """Run one batch: waits for a restore in progress, keeps snapshots out until the
        batch is done, and yields the messages the models have not seen (a redelivery of
        what a restored snapshot holds already is dropped: it was stored and its anomalies
        published the first time)."""
        await self.wait_ready()
        async with self._lock:
            try:
                yield self.unseen(messages)
            except BaseException:
                # The engine may have seen messages whose events were never stored: a
                # snapshot from now on could claim them, and a restart would skip them.
                self.interrupted = True
                raise

    def unseen(self, messages: Sequence[InMessage]) -> list[InMessage]:
        """``messages`` without those already in a restored agent's state (or processed
        with the backlog during the restore)."""
        if not self._floors and not self._drained:
            return list(messages)
        fresh: list[InMessage] = []
        drained = self._drained
        for message in messages:
            if message.offset < drained.get(message.partition, -1):
                self.stats.redelivered_skipped += 1
                continue
            floor = (
                self._floors.get(message.key.decode("utf-8", "replace")) if message.key else None
            )
            if floor is not None and floor[0] == message.partition and message.offset < floor[1]:
                self.stats.redelivered_skipped += 1
                continue
            fresh.append(message)
        return fresh

    def observe(self, messages: Iterable[InMessage], out: BatchOutput) -> None:
        """Record a processed batch (right after the engine saw it): the agents'
        partitions, the offsets processed, latest event times, dirtiness."""
        positions = self._positions
        for message in messages:
            partition = message.partition
            if partition < 0:
                continue
            if message.key:
                self._partition_of[message.key.decode("utf-8", "replace")] = partition
            if message.offset >= 0 and message.offset >= positions.get(partition, 0):
                positions[partition] = message.offset + 1
        for event in out.events:
            agent = event.agent_id
            self._dirty.add(agent)
            latest = self._event_ts.get(agent)
            if latest is None or event.ts > latest:
                self._event_ts[agent] = event.ts
        for anomaly in out.anomalies:  # windows closed by the watermark alone
            self._dirty.add(anomaly.agent_id)

    def mark(self, agent_id: str) -> None:
        """``agent_id``'s model changed outside a batch."""
        self._dirty.add(agent_id)

    def dirty(self, partitions: Iterable[int] | None = None) -> list[str]:
        """The changed agents (of ``partitions`` only, if given), sorted."""
        if partitions is None:
            return sorted(self._dirty)
        wanted = set(partitions)
        return sorted(a for a in self._dirty if self.partition_of(a) in wanted)

    def partition_of(self, agent_id: str) -> int:
        """The events-topic partition of ``agent_id``: where its messages came from, else
        where Kafka's default partitioner puts its key."""
        known = self._partition_of.get(agent_id)
        return known if known is not None else partition_for(agent_id, self.partitions)

    def held(self, agent_id: str) -> str | None:
        """The snapshot the agent's in-memory state was last written as or loaded from."""
        return self._held.get(agent_id)

    def position(self, partition: int) -> int | None:
        """The next offset of ``partition`` the engine has not seen (None: not known)."""
        return self._positions.get(partition)

    # -- snapshots ------------------------------------------------------------------------

    def due(self, now: float) -> bool:
        """Whether a periodic snapshot is due at ``now`` (of the state's clock)."""
        return now - self._last_periodic >= self.interval_s

    async def maybe_snapshot(self, now: float | None = None) -> int:
        """The periodic snapshot, when due: every dirty agent. Rows written."""
        now = self._clock() if now is None else now
        if not self.due(now):
            return 0
        written = await self.snapshot_dirty("periodic")
        self._last_periodic = now
        return written

    async def snapshot_dirty(self, reason: str, partitions: Iterable[int] | None = None) -> int:
        """Snapshot every dirty agent (of ``partitions``, if given), then checkpoint those
        partitions (of the ones this worker owns). Rows written."""
        wanted = set(partitions) if partitions is not None else None
        async with self._lock:
            checkpoint = {
                p: offset
                for p, offset in self._positions.items()
                if p in self.owned and (wanted is None or p in wanted)
            }
            snapshots = await self._take_all(self.dirty(wanted), reason)
        return await self._write(snapshots, checkpoint)

    async def snapshot_agents(self, agent_ids: Iterable[str], reason: str) -> int:
        """Snapshot each of ``agent_ids`` (taken between batches). Rows written."""
        async with self._lock:
            snapshots = await self._take_all(agent_ids, reason)
        return await self._write(snapshots, None)

    async def _take_all(self, agent_ids: Iterable[str], reason: str) -> list[Snapshot]:
        """Snapshots of ``agent_ids``, taken under the batch lock (the caller holds it);
        the agents are clean afterwards. Yields to the loop now and then, so Kafka
        heartbeats go on while a large fleet is serialised."""
        agents = list(dict.fromkeys(agent_ids))
        now = datetime.now(UTC)
        snapshots = []
        for n, agent in enumerate(agents, 1):
            snapshots.append(self._take(agent, reason, now))
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        self._dirty.difference_update(agents)
        return snapshots

    async def _write(self, snapshots: list[Snapshot], checkpoint: Mapping[int, int] | None) -> int:
        """Write ``snapshots`` in batches, then the ``checkpoint`` offsets. If a write
        fails the agents are dirty again and the error propagates (the caller retries)."""
        if self.interrupted:
            if snapshots or checkpoint:
                log.warning(
                    "not writing %d snapshots: a batch was interrupted, the models are "
                    "ahead of storage (the next start restores the last good ones)",
                    len(snapshots),
                )
            return 0
        started = time.perf_counter()
        try:
            for start in range(0, len(snapshots), WRITE_CHUNK):
                chunk = snapshots[start : start + WRITE_CHUNK]
                await asyncio.to_thread(self.store.write_snapshots, chunk)
                for snapshot in chunk:
                    self._held[snapshot.agent_id] = snapshot.snapshot_id
            if checkpoint:
                await asyncio.to_thread(
                    self.store.write_checkpoints, self.topic, dict(checkpoint), datetime.now(UTC)
                )
        except BaseException:
            self._dirty.update(s.agent_id for s in snapshots)
            raise
        if snapshots:
            self.stats.snapshots_written += len(snapshots)
            self.stats.snapshot_bytes += sum(s.size_bytes for s in snapshots)
            self.stats.last_snapshot_ms = (time.perf_counter() - started) * 1000
            log.debug("wrote %d %s snapshots", len(snapshots), snapshots[0].reason)
        return len(snapshots)

    def _take(self, agent_id: str, reason: str, now: datetime) -> Snapshot:
        partition = self.partition_of(agent_id)
        return Snapshot(
            agent_id=agent_id,
            snapshot_id=new_snapshot_id(now),
            ts=now,
            event_ts=self._event_ts.get(agent_id, EPOCH),
            partition=partition,
            reason=reason,
            events=self.engine.sessions.events_of(agent_id),
            format=SNAPSHOT_FORMAT,
            state=self.engine.snapshot(agent_id),
            offset=self._offset_of(agent_id, partition),
        )

    def _offset_of(self, agent_id: str, partition: int) -> int:
        """The offset of ``partition`` the agent's state is complete up to."""
        position = self._positions.get(partition, -1)
        floor = self._floors.get(agent_id)
        if floor is not None and floor[0] == partition:
            return max(position, floor[1])
        return position

    # -- restores -------------------------------------------------------------------------

    async def wait_ready(self) -> None:
        """Return once no restore is in progress (the batch path calls this first)."""
        await self._ready.wait()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def expect_restore(self) -> None:
        """Block the batch path now, until the next :meth:`restore_partitions` succeeds
        (call it when partitions are assigned, before the restore is scheduled)."""
        self._ready.clear()

    async def restore_partitions(
        self, partitions: Iterable[int], backlog: BacklogProcess | None = None
    ) -> int:
        """Own ``partitions`` (of the events topic): load the newest snapshot of each of
        their agents unless this worker holds exactly that state, then catch up from the
        topic to the committed offsets. Agents restored.

        With ``backlog`` (the worker's batch stage), the messages past the committed
        offsets, up to the partitions' ends, are processed too — stored, published and
        learned — before the batch path resumes, all partitions merged in event time (the
        batch path then skips them when Kafka delivers them). Consumed as faust hands
        them over (round-robin, a message per partition in turn), a backlog would put the
        partitions whose messages cover more event time ahead, and the engine's
        watermark, shared by all agents, would make the other partitions' events late.

        Blocks :meth:`wait_ready` until it succeeds; a storage or Kafka error propagates
        (the caller retries) and leaves it blocked, so nothing is scored on a
        half-restored model.
        """
        wanted = set(partitions)
        self._ready.clear()
        started = time.perf_counter()
        restored: set[str] = set()
        async with self._lock:  # no snapshot round while states are replaced
            for partition in wanted:
                # Consumption resumes at the committed offset; where this worker stood is moot.
                self._positions.pop(partition, None)
                self._drained.pop(partition, None)
            if wanted:
                refs = await asyncio.to_thread(self.store.latest_refs, partitions=wanted)
                needed = {
                    agent: ref.snapshot_id
                    for agent, ref in refs.items()
                    if self._held.get(agent) != ref.snapshot_id or agent in self._dirty
                }
                snapshots = (
                    await asyncio.to_thread(self.store.load_states, needed) if needed else []
                )
                for n, snapshot in enumerate(snapshots, 1):
                    if self._load(snapshot):
                        restored.add(snapshot.agent_id)
                    if n % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                for agent, ref in refs.items():
                    if self._held.get(agent) != ref.snapshot_id:
                        continue  # not loadable: starts over
                    if ref.offset >= 0:
                        self._floors[agent] = (ref.partition, ref.offset)
                    else:
                        self._floors.pop(agent, None)
                if self.source is not None:
                    await self._catch_up(wanted, backlog)
            self.owned = wanted
        self.stats.agents_restored += len(restored)
        self.stats.last_restore_ms = (time.perf_counter() - started) * 1000
        self._ready.set()
        if restored:
            log.info(
                "restored %d agents of partitions %s in %.0f ms",
                len(restored),
                sorted(wanted),
                self.stats.last_restore_ms,
            )
        return len(restored)

    async def _catch_up(self, partitions: set[int], backlog: BacklogProcess | None) -> None:
        """Feed the engine each agent's events between its snapshot and the committed
        offset (nothing is stored or published: that was done when they came first); with
        ``backlog``, process the messages from there to the partitions' ends."""
        assert self.source is not None
        committed = await self.source.committed(partitions)
        ends = await self.source.ends(partitions) if backlog is not None else {}
        checkpoints = (
            await asyncio.to_thread(self.store.checkpoints, self.topic, set(committed))
            if committed
            else {}
        )
        ranges: dict[int, list[int]] = {}  # partition -> [next offset, end]
        for partition in sorted(partitions):
            done = committed.get(partition)
            if done is None and backlog is None:
                continue  # nothing committed: consumption starts at the oldest message
            end = ends.get(partition, done or 0) if backlog is not None else done or 0
            if done is None:
                start = 0  # from the oldest message kept
            else:
                floors = [o for p, o in self._floors.values() if p == partition]
                start = checkpoints.get(partition, min(floors, default=done))
            if start < end:
                ranges[partition] = [start, end]
            self._positions[partition] = max(self._positions.get(partition, end), end)
        if ranges:
            await self._replay(ranges, committed, backlog)
        if backlog is not None:
            for partition, end in ends.items():
                if partition in partitions:
                    self._drained[partition] = end

    async def _replay(
        self,
        ranges: dict[int, list[int]],
        committed: Mapping[int, int],
        backlog: BacklogProcess | None,
    ) -> None:
        """Read ``ranges`` (partition -> [next, end]) and replay them in event-time order,
        the partitions merged message by message (each partition's own order kept), as
        they came when live. Messages below the committed offset only feed the engine;
        the rest go to ``backlog`` in chunks."""
        assert self.source is not None
        recent = RecentIds(CATCH_UP_DEDUP)
        queues: dict[int, deque[InMessage]] = {p: deque() for p in ranges}
        heads: dict[int, tuple[InMessage, list[Event]]] = {}
        heap: list[tuple[datetime, int, int]] = []
        order = itertools.count()
        fed: Counter[int] = Counter()
        chunk: list[InMessage] = []
        chunk_events = 0

        async def flush() -> None:
            nonlocal chunk_events
            if chunk and backlog is not None:
                batch = list(chunk)
                chunk.clear()
                chunk_events = 0
                await backlog(batch)
                self.stats.backlog_messages += len(batch)

        async def advance(partition: int) -> None:
            """Make the partition's next message with unseen events its head."""
            queue = queues[partition]
            limit = committed.get(partition, 0)
            while True:
                if not queue and not await self._read_chunk(partition, ranges, queue):
                    return
                message = queue.popleft()
                live = message.offset >= limit
                if message.value is None:
                    if live:
                        chunk.append(message)  # dead-lettered by the batch stage
                    continue
                decoded = decode_message(
                    message.value, key=message.key, limits=self.limits, now=datetime.now(UTC)
                )
                events = (
                    decoded.events
                    if live
                    else [e for e in decoded.events if not recent.seen_before(e.event_id)]
                )
                if events:
                    heads[partition] = (message, events)
                    heapq.heappush(heap, (events[0].ts, next(order), partition))
                    return
                if live:
                    chunk.append(message)

        for partition in sorted(ranges):
            await advance(partition)
        since_yield = 0
        while heap:
            _, _, partition = heapq.heappop(heap)
            message, events = heads.pop(partition)
            if message.offset >= committed.get(partition, 0):
                chunk.append(message)
                chunk_events += len(events)
                if len(chunk) >= BACKLOG_CHUNK or chunk_events >= BACKLOG_CHUNK_EVENTS:
                    await flush()
            else:
                await flush()  # the backlog before it, in order
                self.observe((message,), BatchOutput(events=events))
                for event in events:
                    self.engine.process(event)  # anomalies were raised the first time
                fed[partition] += len(events)
                since_yield += len(events)
                if since_yield >= YIELD_EVENTS:
                    since_yield = 0
                    await asyncio.sleep(0)
            await advance(partition)
        await flush()
        self.stats.caught_up_events += sum(fed.values())
        if fed:
            log.info(
                "caught up %d events (%s)",
                sum(fed.values()),
                ", ".join(f"partition {p}: {n}" for p, n in sorted(fed.items())),
            )

    async def _read_chunk(
        self, partition: int, ranges: dict[int, list[int]], queue: deque[InMessage]
    ) -> bool:
        """Append the next chunk of ``partition`` that a restored model has not seen to
        ``queue``; False once its range is done."""
        assert self.source is not None
        while partition in ranges:
            span = ranges[partition]
            start, end = span
            messages = [m for m in await self.source.read(partition, start, end) if m.offset < end]
            if not messages:
                del ranges[partition]
                break
            span[0] = messages[-1].offset + 1
            if span[0] >= end:
                del ranges[partition]
            fresh = self.unseen(messages)
            if fresh:
                queue.extend(fresh)
                return True
        return False

    def _load(self, snapshot: Snapshot) -> bool:
        agent = snapshot.agent_id
        # A model in memory (a revert) is kept if the snapshot cannot be loaded.
        previous = self.engine.snapshot(agent) if self.engine.sessions.events_of(agent) else None
        try:
            self.engine.restore(agent, snapshot.state)
        except Exception as exc:  # noqa: BLE001 - a corrupt snapshot must not stop the worker
            if previous is not None:
                with contextlib.suppress(Exception):
                    self.engine.restore(agent, previous)
            log.error(
                "snapshot %s of agent %s cannot be loaded (%s: %s); %s",
                snapshot.snapshot_id,
                agent,
                type(exc).__name__,
                exc,
                "its model is unchanged" if previous is not None else "it starts a new baseline",
            )
            return False
        self._held[agent] = snapshot.snapshot_id
        self._partition_of[agent] = snapshot.partition
        if snapshot.event_ts > EPOCH:
            self._event_ts[agent] = snapshot.event_ts
        self._dirty.discard(agent)
        self.stats.restore_bytes += snapshot.size_bytes
        return True

    async def on_revoked(self, partitions: Iterable[int]) -> int:
        """``partitions`` are being taken away: snapshot their dirty agents, then give
        them up (see :meth:`disown`, also when the snapshot fails). Rows written."""
        revoked = set(partitions)
        try:
            return await self.snapshot_dirty("revoke", revoked)
        finally:
            self.disown(revoked)

    def disown(self, partitions: Iterable[int]) -> None:
        """Stop owning ``partitions``: agents of theirs whose changes were not written are
        no longer snapshotted (their next owner catches up from Kafka; a newer snapshot of
        its must not be overwritten by a stale one) and are reloaded if they come back."""
        gone = set(partitions)
        for agent in self.dirty(gone):
            self._dirty.discard(agent)
            self._held.pop(agent, None)
        for partition in gone:
            self._drained.pop(partition, None)
        self.owned -= gone

    # -- feedback -------------------------------------------------------------------------

    async def apply_raw(self, raw: bytes | None, partition: int | None = None) -> ControlResult:
        """Decode and apply one control message; a malformed one is rejected, not raised."""
        try:
            message = decode_feedback(raw or b"")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.stats.feedback_rejected += 1
            log.warning("control message rejected: %s", exc)
            return ControlResult("rejected", f"invalid control message: {exc}")
        try:
            return await self.apply_control(message, partition)
        except (StorageError, asyncio.CancelledError):
            raise  # the caller retries: nothing was recorded
        except Exception as exc:  # noqa: BLE001 - a control message never stops the worker
            log.error(
                "feedback %s could not be applied (%s); rejected",
                message.feedback_id,
                type(exc).__name__,
            )
            return self._reject(message, f"could not be applied: {type(exc).__name__}: {exc}")

    async def apply_control(
        self, message: FeedbackMessage, partition: int | None = None
    ) -> ControlResult:
        """Apply an analyst action to the engine, snapshot the agent and record it.

        Idempotent (a redelivered message is applied again and recorded once). Storage
        errors propagate; a revert to a snapshot that does not exist is rejected.
        """
        await self.wait_ready()  # never on a half-restored model
        agent = message.agent_id
        if partition is not None and partition >= 0 and agent not in self._partition_of:
            # The control topic is keyed by agent_id and has as many partitions.
            self._partition_of[agent] = partition
        now = datetime.now(UTC)
        if message.action == "benign":
            keys = tuple(message.keys)
            async with self._lock:  # between batches
                await self._load_if_unknown(agent)
                self.engine.accept(agent, keys)
                snapshots = await self._take_all([agent], message.action)
            detail = (
                f"{message.who} accepted {' '.join(keys)} as benign"
                f"{f' (anomaly {message.anomaly_id})' if message.anomaly_id else ''}"
                f"{f': {message.why}' if message.why else ''}"
            )
            snapshot_id = ""
        else:
            snapshot_id = message.snapshot_id or ""
            target = await asyncio.to_thread(self.store.snapshot, agent, snapshot_id)
            if target is None:
                return self._reject(message, f"agent {agent} has no snapshot {snapshot_id}")
            async with self._lock:  # between batches
                if not self._load(target):
                    return self._reject(message, f"snapshot {snapshot_id} cannot be loaded")
                snapshots = await self._take_all([agent], message.action)
            keys = ()
            detail = (
                f"{message.who} reverted the model to snapshot {snapshot_id} "
                f"(taken {target.ts.isoformat()}, {target.events} events)"
                f"{f': {message.why}' if message.why else ''}"
            )
        await self._write(snapshots, None)
        row = FeedbackRow(
            feedback_id=message.feedback_id,
            ts=message.ts,
            applied_at=now,
            agent_id=agent,
            action=message.action,
            who=message.who,
            why=message.why,
            anomaly_id=message.anomaly_id or "",
            keys=keys,
            snapshot_id=snapshot_id,
        )
        change = BaselineChange(now, agent, message.action, detail)
        await asyncio.to_thread(self.store.write_feedback, [row])
        await asyncio.to_thread(self.store.write_baseline_changes, [change])
        self.stats.feedback_applied += 1
        self.stats.baseline_changes += 1
        log.info("feedback %s applied: %s", message.feedback_id, detail)
        return self._remember(
            ControlResult(
                "applied", detail, message.feedback_id, agent, message.action, keys, snapshot_id
            )
        )

    async def _load_if_unknown(self, agent_id: str) -> None:
        """Load the newest snapshot of ``agent_id`` if this worker holds no model of it,
        so feedback adds to the agent's baseline instead of replacing it with a new one
        (e.g. a verdict sent before the agent's partition was restored here)."""
        if (
            agent_id in self._held
            or agent_id in self._dirty
            or self.engine.sessions.events_of(agent_id) > 0
        ):
            return
        refs = await asyncio.to_thread(self.store.latest_refs, agent_ids=[agent_id])
        ref = refs.get(agent_id)
        if ref is None:
            return
        for snapshot in await asyncio.to_thread(
            self.store.load_states, {agent_id: ref.snapshot_id}
        ):
            if self._load(snapshot) and ref.offset >= 0:
                self._floors[agent_id] = (ref.partition, ref.offset)

    def _reject(self, message: FeedbackMessage, detail: str) -> ControlResult:
        self.stats.feedback_rejected += 1
        log.warning("feedback %s rejected: %s", message.feedback_id, detail)
        return self._remember(
            ControlResult(
                "rejected",
                detail,
                message.feedback_id,
                message.agent_id,
                message.action,
                tuple(message.keys),
                message.snapshot_id or "",
            )
        )

    def _remember(self, result: ControlResult) -> ControlResult:
        self._results[result.feedback_id] = result
        self._results.move_to_end(result.feedback_id)
        while len(self._results) > RECENT_RESULTS:
            self._results.popitem(last=False)
        return result

    def result(self, feedback_id: str) -> ControlResult | None:
        """What this worker did with a recent control message, if it handled it."""
        return self._results.get(feedback_id)

    # -- notices --------------------------------------------------------------------------

    async def record_notices(self, notices: Sequence[Notice]) -> int:
        """Store the engine's notices (version changes) in ``baseline_changes``."""
        if not notices:
            return 0
        changes = [BaselineChange(n.ts, n.agent_id, n.kind, n.detail) for n in notices]
        await asyncio.to_thread(self.store.write_baseline_changes, changes)
        for notice in notices:
            self.mark(notice.agent_id)
        self.stats.baseline_changes += len(changes)
        return len(changes)

    # -- introspection --------------------------------------------------------------------

    def status(self, agent_id: str) -> dict[str, Any] | None:
        """The in-memory model of ``agent_id`` (None if this worker has none)."""
        if agent_id not in set(self.engine.agent_ids()):
            return None
        blob = self.engine.snapshot(agent_id)
        state = msgspec.msgpack.decode(blob)
        detectors = {
            str(name): len(msgspec.msgpack.encode(value))
            for name, value in (state.get("detectors") or {}).items()
            if value is not None
        }
        partition = self.partition_of(agent_id)
        latest = self._event_ts.get(agent_id)
        return {
            "agent_id": agent_id,
            "status": self.engine.status(agent_id),
            "events": int(state.get("events") or 0),
            "agent_version": state.get("version"),
            "partition": partition,
            "owned": partition in self.owned,
            "dirty": agent_id in self._dirty,
            "snapshot_id": self._held.get(agent_id),
            "latest_event_ts": latest.isoformat() if latest else None,
            "state_bytes": len(blob),
            "detectors": detectors,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "agents": len(self.engine.agent_ids()),
            "dirty": len(self._dirty),
            "owned_partitions": sorted(self.owned),
            "ready": self.ready,
            "interrupted": self.interrupted,
            "snapshot_interval_s": self.interval_s,
            **self.stats.as_dict(),
        }
