"""The worker's model state without faust or storage: dirty tracking, snapshots, restores,
feedback and reverts, with a real DetectionEngine and an in-memory store."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
import pytest

from agentwatch.config import DetectSettings
from agentwatch.models.engine import DetectionEngine, Notice
from agentwatch.schemas.decode import Limits, decode_message
from agentwatch.schemas.events import Destination, Event, encode_events
from agentwatch.schemas.feedback import (
    FeedbackMessage,
    benign_message,
    decode_feedback,
    encode_feedback,
    revert_message,
)
from agentwatch.storage.client import Client, StorageError
from agentwatch.storage.snapshots import (
    BaselineChange,
    FeedbackRow,
    ModelStore,
    Snapshot,
    SnapshotRef,
)
from agentwatch.streams.control import ModelState, new_snapshot_id
from agentwatch.streams.partitioning import partition_for
from agentwatch.streams.processor import BatchOutput, InMessage
from agentwatch.streams.stats import WorkerStats

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
PARTITIONS = 4
_ids = itertools.count()


class MemoryStore(ModelStore):
    """The ModelStore interface over lists, with switchable failure."""

    def __init__(self) -> None:
        super().__init__(cast(Client, None), "agentwatch")
        self.rows: list[Snapshot] = []
        self.feedback_rows: list[FeedbackRow] = []
        self.changes: list[BaselineChange] = []
        self.checkpoint_rows: dict[tuple[str, int], int] = {}
        self.fail = False
        self.state_reads = 0

    def _check(self) -> None:
        if self.fail:
            raise StorageError("storage down", transient=True)

    def write_snapshots(self, snapshots: Sequence[Snapshot]) -> int:
        self._check()
        self.rows.extend(snapshots)
        return len(snapshots)

    def latest_refs(
        self,
        *,
        partitions: Iterable[int] | None = None,
        agent_ids: Iterable[str] | None = None,
    ) -> dict[str, SnapshotRef]:
        self._check()
        newest: dict[str, Snapshot] = {}
        for row in self.rows:
            if row.agent_id not in newest or row.ts >= newest[row.agent_id].ts:
                newest[row.agent_id] = row
        wanted = set(partitions) if partitions is not None else None
        agents = set(agent_ids) if agent_ids is not None else None
        return {
            a: SnapshotRef(a, s.snapshot_id, s.ts, s.partition, s.offset)
            for a, s in newest.items()
            if (wanted is None or s.partition in wanted) and (agents is None or a in agents)
        }

    def load_states(self, refs: Mapping[str, str]) -> list[Snapshot]:
        self._check()
        self.state_reads += len(refs)
        by_id = {(s.agent_id, s.snapshot_id): s for s in self.rows}
        return [by_id[(a, i)] for a, i in refs.items() if (a, i) in by_id]

    def snapshot(self, agent_id: str, snapshot_id: str) -> Snapshot | None:
        self._check()
        return next(
            (s for s in self.rows if (s.agent_id, s.snapshot_id) == (agent_id, snapshot_id)),
            None,
        )

    def write_feedback(self, rows: Sequence[FeedbackRow]) -> int:
        self._check()
        self.feedback_rows.extend(rows)
        return len(rows)

    def feedback(
        self, *, agent_id: str | None = None, feedback_id: str | None = None, limit: int = 100
    ) -> list[FeedbackRow]:
        return [
            r
            for r in self.feedback_rows
            if (agent_id is None or r.agent_id == agent_id)
            and (feedback_id is None or r.feedback_id == feedback_id)
        ][:limit]

    def write_baseline_changes(self, changes: Sequence[BaselineChange]) -> int:
        self._check()
        self.changes.extend(changes)
        return len(changes)

    def write_checkpoints(self, topic: str, offsets: Mapping[int, int], ts: datetime) -> int:
        self._check()
        self.checkpoint_rows.update({(topic, p): o for p, o in offsets.items()})
        return len(offsets)

    def checkpoints(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        self._check()
        wanted = set(partitions)
        return {p: o for (t, p), o in self.checkpoint_rows.items() if t == topic and p in wanted}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ev(agent: str, seconds: float, host: str, *, version: str | None = None) -> Event:
    return Event(
        schema_version="1",
        event_id=f"e{next(_ids)}",
        ts=T0 + timedelta(seconds=seconds),
        agent_id=agent,
        type="tool_call",
        session_id=f"{agent}-s{int(seconds) // 20}",
        tool_name="http_post",
        destinations=[Destination(kind="host", value=host)],
        agent_type="support",
        agent_version=version,
    )


class Worker:
    """What the faust app does around the engine, minus Kafka: batches through the state."""

    def __init__(self, store: MemoryStore, interval_s: float = 60.0) -> None:
        self.engine = DetectionEngine(DetectSettings(warmup_events=50))
        self.clock = Clock()
        self.state = ModelState(
            self.engine,
            lambda: store,
            partitions=PARTITIONS,
            interval_s=interval_s,
            clock=self.clock,
        )
        self.t = 0.0

    def send(self, events: Sequence[Event]) -> BatchOutput:
        out = BatchOutput()
        messages = []
        for event in events:
            result = self.engine.process(event)
            out.events.append(event)
            out.anomalies.extend(result.anomalies)
            out.notices.extend(result.notices)
            messages.append(
                InMessage(
                    value=b"",
                    key=event.agent_id.encode(),
                    topic="agentwatch.events.v1",
                    partition=partition_for(event.agent_id, PARTITIONS),
                    offset=0,
                )
            )
        self.state.observe(messages, out)
        return out

    def baseline(self, agent: str, n: int = 600) -> None:
        self.send([ev(agent, self.t + i, f"h{i % 3}.example.com") for i in range(n)])
        self.t += n

    def use(self, agent: str, host: str) -> BatchOutput:
        self.t += 1
        return self.send([ev(agent, self.t, host)])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- dirty tracking and periodic snapshots --------------------------------------------------


def test_only_changed_agents_are_snapshotted_and_only_when_due() -> None:
    store = MemoryStore()
    w = Worker(store, interval_s=60)
    w.baseline("a")
    w.baseline("b")
    assert w.state.dirty() == ["a", "b"]
    assert not w.state.due(w.clock.now + 59)
    assert run(w.state.maybe_snapshot(w.clock.now + 59)) == 0

    w.clock.now += 60
    assert run(w.state.maybe_snapshot()) == 2
    assert {s.agent_id for s in store.rows} == {"a", "b"}
    assert all(s.reason == "periodic" and s.events == 600 for s in store.rows)
    assert store.rows[0].event_ts == T0 + timedelta(seconds=599)
    assert store.rows[0].partition == partition_for("a", PARTITIONS)
    assert w.state.dirty() == []

    w.use("b", "h1.example.com")
    w.clock.now += 30
    assert run(w.state.maybe_snapshot()) == 0  # not due yet
    w.clock.now += 30
    assert run(w.state.maybe_snapshot()) == 1
    assert store.rows[-1].agent_id == "b"
    assert run(w.state.snapshot_dirty("periodic")) == 0  # nothing changed since


def test_failed_write_leaves_agents_dirty_and_raises() -> None:
    store = MemoryStore()
    w = Worker(store)
    w.baseline("a")
    store.fail = True
    w.clock.now += 60
    with pytest.raises(StorageError):
        run(w.state.maybe_snapshot())
    assert w.state.dirty() == ["a"]
    assert w.state.due(w.clock.now)  # still due: the next tick tries again
    store.fail = False
    assert run(w.state.maybe_snapshot()) == 1
    assert w.state.dirty() == []


def test_partition_comes_from_the_messages_else_the_default_partitioner() -> None:
    w = Worker(MemoryStore())
    out = BatchOutput(events=[ev("x", 0, "h.example.com")])
    w.state.observe([InMessage(b"", b"x", "t", partition=3, offset=1)], out)
    assert w.state.partition_of("x") == 3
    assert w.state.partition_of("never-seen") == partition_for("never-seen", PARTITIONS)
    assert w.state.dirty([3]) == ["x"]
    assert w.state.dirty([0, 1, 2]) == []


def test_snapshot_ids_sort_by_time_and_differ() -> None:
    a, b = new_snapshot_id(T0), new_snapshot_id(T0 + timedelta(seconds=1))
    assert a.startswith("20261124-090000-")
    assert a < b
    assert new_snapshot_id(T0) != new_snapshot_id(T0)


# -- restores ---------------------------------------------------------------------------------


def test_restore_brings_baselines_back_and_skips_states_already_held() -> None:
    store = MemoryStore()
    before = Worker(store)
    agents = [f"agent-{i}" for i in range(8)]
    for agent in agents:
        before.baseline(agent)
    assert run(before.state.snapshot_dirty("shutdown")) == len(agents)

    after = Worker(store)  # a restarted worker: empty engine
    after.t = before.t
    mine = {partition_for(a, PARTITIONS) for a in agents[:4]}
    restored = run(after.state.restore_partitions(mine))
    expected = [a for a in agents if partition_for(a, PARTITIONS) in mine]
    assert restored == len(expected)
    assert sorted(after.engine.agent_ids()) == sorted(expected)
    assert after.state.owned == mine
    for agent in expected:
        assert after.engine.status(agent) == "baselined"
        assert after.state.held(agent) is not None
        assert not after.use(agent, "h2.example.com").anomalies  # no false positive
        assert after.use(agent, f"drop-{agent}.evil.example").anomalies  # still sharp
    # Assigned again (a rebalance that kept the partitions): nothing re-read.
    reads = store.state_reads
    run(after.state.snapshot_dirty("revoke"))  # the uses above changed them
    assert run(after.state.restore_partitions(mine)) == 0
    assert store.state_reads == reads


def test_restore_replaces_a_stale_state_when_another_worker_wrote_a_newer_one() -> None:
    store = MemoryStore()
    a, b = Worker(store), Worker(store)
    a.baseline("x")
    run(a.state.snapshot_dirty("revoke"))
    assert run(b.state.restore_partitions(range(PARTITIONS))) == 1
    (flagged,) = b.use("x", "new-partner.example").anomalies  # flagged, not learned
    accept = flagged.labels["keys"].split()
    run(b.state.apply_control(benign_message("x", flagged.anomaly_id, accept, "al")))
    # x moves back to worker a, which still holds its older state in memory.
    assert run(a.state.restore_partitions(range(PARTITIONS))) == 1
    assert not a.use("x", "new-partner.example").anomalies


def test_wait_ready_blocks_while_a_restore_is_pending_or_failed() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        state = Worker(store).state
        assert state.ready
        store.fail = True
        with pytest.raises(StorageError):
            await state.restore_partitions({0})
        assert not state.ready
        waiter = asyncio.ensure_future(state.wait_ready())
        await asyncio.sleep(0.01)
        assert not waiter.done()  # no event is scored on an empty model meanwhile
        store.fail = False
        await state.restore_partitions({0})
        await asyncio.wait_for(waiter, 1)

    run(scenario())


def test_unloadable_snapshot_is_skipped_not_fatal() -> None:
    store = MemoryStore()
    w = Worker(store)
    store.rows.append(
        Snapshot("bad", "s1", T0, T0, partition_for("bad", PARTITIONS), "periodic", 1, 9, b"\x01")
    )
    assert run(w.state.restore_partitions(range(PARTITIONS))) == 0
    assert w.state.ready


def test_revoke_snapshots_the_changed_agents_of_those_partitions() -> None:
    store = MemoryStore()
    w = Worker(store)
    agents = [f"r{i}" for i in range(12)]
    run(w.state.restore_partitions(range(PARTITIONS)))
    for agent in agents:
        w.baseline(agent, 60)
    gone = {0, 1}
    assert run(w.state.on_revoked(gone)) == len(
        [a for a in agents if partition_for(a, PARTITIONS) in gone]
    )
    assert {s.reason for s in store.rows} == {"revoke"}
    assert {partition_for(s.agent_id, PARTITIONS) for s in store.rows} <= gone
    assert w.state.owned == {2, 3}
    assert sorted(w.state.dirty()) == sorted(
        a for a in agents if partition_for(a, PARTITIONS) not in gone
    )


def test_a_failed_revoke_snapshot_gives_the_agents_up() -> None:
    """Agents whose revoke snapshot failed are not snapshotted later (their next owner's
    newer snapshots must not be overwritten) and are reloaded if they come back."""
    store = MemoryStore()
    w = Worker(store)
    run(w.state.restore_partitions(range(PARTITIONS)))
    w.baseline("g", 60)
    run(w.state.snapshot_dirty("periodic"))
    w.use("g", "h1.example.com")
    mine = {partition_for("g", PARTITIONS)}
    store.fail = True
    with pytest.raises(StorageError):
        run(w.state.on_revoked(mine))
    store.fail = False
    assert w.state.dirty() == []
    assert w.state.held("g") is None
    assert mine.isdisjoint(w.state.owned)
    w.clock.now += 60
    assert run(w.state.maybe_snapshot()) == 0
    reads = store.state_reads
    assert run(w.state.restore_partitions(range(PARTITIONS))) == 1  # back: reloaded
    assert store.state_reads == reads + 1


def test_an_interrupted_batch_stops_snapshots() -> None:
    """A batch cut between scoring and storing leaves the models ahead of storage: no
    snapshot may claim its messages any more."""

    async def scenario() -> None:
        store = MemoryStore()
        w = Worker(store)
        w.baseline("i", 60)
        message = InMessage(b"", b"i", "agentwatch.events.v1", partition_for("i", 4), 7)

        async def cut_batch() -> None:
            async with w.state.batch([message]) as fresh:
                assert fresh == [message]
                w.state.observe(fresh, BatchOutput(events=[ev("i", 999, "h.example.com")]))
                raise RuntimeError("storage write cancelled")

        with pytest.raises(RuntimeError):
            await cut_batch()
        assert w.state.interrupted
        assert await w.state.snapshot_dirty("shutdown") == 0
        assert store.rows == []
        assert w.state.summary()["interrupted"] is True

    run(scenario())


# -- feedback ----------------------------------------------------------------------------------


def test_repeated_new_destination_stays_flagged_until_marked_benign() -> None:
    store = MemoryStore()
    w = Worker(store)
    w.baseline("a", 600)
    flagged = [w.use("a", "drop.evil.example").anomalies for _ in range(1000)]
    assert all(len(f) == 1 for f in flagged)  # the 1,000th too: flagged uses are never learned
    last = flagged[-1][0]
    keys = last.labels["keys"].split()
    assert "destination/host/drop.evil.example" in keys

    message = benign_message("a", last.anomaly_id, keys, "alice", "new partner")
    result = run(w.state.apply_control(message, partition=2))
    assert result.status == "applied"
    assert not w.use("a", "drop.evil.example").anomalies
    (row,) = store.feedback_rows
    assert (row.who, row.why, row.action, row.keys, row.anomaly_id) == (
        "alice",
        "new partner",
        "benign",
        tuple(keys),
        last.anomaly_id,
    )
    (change,) = store.changes
    assert change.kind == "benign"
    assert "alice" in change.detail
    assert "new partner" in change.detail
    assert (store.rows[-1].agent_id, store.rows[-1].reason) == ("a", "benign")
    assert w.state.result(message.feedback_id) == result
    # Redelivered: applied again, harmlessly; the row collapses in storage (same id).
    assert run(w.state.apply_control(message)).status == "applied"
    assert {r.feedback_id for r in store.feedback_rows} == {message.feedback_id}


def test_revert_rolls_a_poisoned_baseline_back() -> None:
    store = MemoryStore()
    w = Worker(store)
    w.baseline("a")
    run(w.state.snapshot_dirty("periodic"))
    good = store.rows[-1].snapshot_id
    (flagged,) = w.use("a", "evil.example").anomalies
    poison = flagged.labels["keys"].split()  # wrongly accepted: the baseline is poisoned
    run(w.state.apply_control(benign_message("a", flagged.anomaly_id, poison, "mallory")))
    assert not w.use("a", "evil.example").anomalies

    result = run(w.state.apply_control(revert_message("a", good, "alice", "poisoned")))
    assert (result.status, result.snapshot_id) == ("applied", good)
    w.t += 1
    assert "new_destination" in w.engine.process(ev("a", w.t, "evil.example")).detectors
    assert not w.use("a", "h0.example.com").anomalies
    assert store.rows[-1].reason == "revert"  # the reverted state is the newest snapshot
    assert store.changes[-1].kind == "revert"
    assert good in store.changes[-1].detail

    missing = run(w.state.apply_control(revert_message("a", "no-such-snapshot", "alice")))
    assert missing.status == "rejected"
    assert "no-such-snapshot" in missing.detail
    assert w.state.stats.feedback_rejected == 1


def test_a_control_message_that_cannot_be_applied_is_rejected_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = Worker(MemoryStore())
    w.baseline("a")

    def broken(agent_id: str, keys: Iterable[str]) -> None:
        raise KeyError("detector bug")

    monkeypatch.setattr(w.engine, "accept", broken)
    message = benign_message("a", "x", ["destination/host/h.example"], "bob")
    result = run(w.state.apply_raw(encode_feedback(message)))
    assert result.status == "rejected"
    assert "KeyError" in result.detail
    assert w.state.stats.feedback_rejected == 1
    assert w.state.result(message.feedback_id) == result


def test_storage_trouble_is_raised_for_the_caller_to_retry() -> None:
    store = MemoryStore()
    w = Worker(store)
    w.baseline("a")
    store.fail = True
    message = benign_message("a", "x", ["destination/host/h.example"], "bob")
    with pytest.raises(StorageError):
        run(w.state.apply_raw(encode_feedback(message)))
    assert w.state.stats.feedback_rejected == 0
    store.fail = False
    assert run(w.state.apply_raw(encode_feedback(message))).status == "applied"


def test_feedback_for_an_agent_not_in_memory_adds_to_its_stored_baseline() -> None:
    """A verdict reaching a worker that holds no model of the agent (yet) loads the agent's
    newest snapshot first, instead of replacing the baseline with a new one."""
    store = MemoryStore()
    first = Worker(store)
    first.baseline("f")
    run(first.state.snapshot_dirty("revoke"))
    (flagged,) = first.use("f", "partner.example").anomalies

    other = Worker(store)
    keys = flagged.labels["keys"].split()
    assert run(other.state.apply_control(benign_message("f", "x", keys, "al"))).status == "applied"
    assert other.engine.sessions.events_of("f") == 600
    assert other.engine.status("f") == "baselined"
    assert not other.use("f", "partner.example").anomalies
    assert other.use("f", "elsewhere.example").anomalies  # still its own baseline


def test_malformed_control_messages_are_rejected_not_raised() -> None:
    w = Worker(MemoryStore())
    for raw in (None, b"", b"{", b'{"action": "benign"}', b'{"action": "delete"}'):
        assert run(w.state.apply_raw(raw)).status == "rejected"
    assert w.state.stats.feedback_rejected == 5
    good = benign_message("a", "x", ["destination/host/h.example"], "bob", "ok")
    assert run(w.state.apply_raw(encode_feedback(good))).status == "applied"


def test_control_message_round_trip_and_validation() -> None:
    message = revert_message("a", "20261124-090000-00000000", "bob")
    assert decode_feedback(encode_feedback(message)) == message
    with pytest.raises(msgspec.ValidationError, match="keys"):
        decode_feedback(
            b'{"action":"benign","feedback_id":"f","agent_id":"a",'
            b'"ts":"2026-11-24T09:00:00Z","who":"x"}'
        )
    with pytest.raises(msgspec.ValidationError, match="snapshot_id"):
        msgspec.convert(
            {"action": "revert", "feedback_id": "f", "agent_id": "a", "ts": T0, "who": "x"},
            FeedbackMessage,
        )


# -- notices and introspection -------------------------------------------------------------------


def test_version_change_notice_is_recorded_and_marks_the_agent() -> None:
    store = MemoryStore()
    w = Worker(store)
    w.send([ev("v", i, "h.example.com", version="1.0") for i in range(10)])
    run(w.state.snapshot_dirty("periodic"))
    out = w.send([ev("v", 20, "h.example.com", version="1.1")])
    assert [n.kind for n in out.notices] == ["version_change"]
    assert run(w.state.record_notices(out.notices)) == 1
    (change,) = store.changes
    assert change.kind == "version_change"
    assert "1.0 → 1.1" in change.detail
    assert w.state.dirty() == ["v"]
    assert run(w.state.record_notices([])) == 0
    assert isinstance(out.notices[0], Notice)


def test_model_counters_are_exposed_as_prometheus_metrics() -> None:
    w = Worker(MemoryStore())
    w.baseline("a", 30)
    run(w.state.snapshot_dirty("periodic"))
    text = WorkerStats().prometheus(w.state.summary())
    lines = text.splitlines()
    assert "agentwatch_model_agents 1" in lines
    assert "agentwatch_model_snapshots_total 1" in lines
    assert "# TYPE agentwatch_model_snapshot_bytes_total counter" in lines
    assert "agentwatch_model_ready 1" in lines
    assert "agentwatch_model_dirty_agents 0" in lines
    assert "agentwatch_model_" not in WorkerStats().prometheus()


def test_status_describes_the_in_memory_model() -> None:
    w = Worker(MemoryStore())
    assert w.state.status("nobody") is None
    w.baseline("a", 30)
    status = w.state.status("a")
    assert status is not None
    assert (status["status"], status["events"], status["dirty"]) == ("warming_up", 30, True)
    assert status["state_bytes"] > 0
    assert status["detectors"]["new_destination"] > 0
    w.baseline("a", 30)
    assert cast(dict[str, Any], w.state.status("a"))["status"] == "baselined"
    assert w.state.summary()["agents"] == 1


# -- catching up after a crash ----------------------------------------------------------------

FLOW = [("search", "files.example"), ("http_post", "api.example"), ("send_email", "mail.example")]


class Topic:
    """An in-memory events topic: keyed messages (batches of one agent) per partition."""

    def __init__(self) -> None:
        self.log: dict[int, list[InMessage]] = {p: [] for p in range(PARTITIONS)}
        self.committed_offsets: dict[int, int] = {}
        self.reads = 0

    def append(self, events: list[Event]) -> InMessage:
        agent = events[0].agent_id
        partition = partition_for(agent, PARTITIONS)
        message = InMessage(
            value=encode_events(events),
            key=agent.encode(),
            topic="agentwatch.events.v1",
            partition=partition,
            offset=len(self.log[partition]),
        )
        self.log[partition].append(message)
        return message

    async def committed(self, partitions: set[int]) -> dict[int, int]:
        return {p: o for p, o in self.committed_offsets.items() if p in partitions}

    async def ends(self, partitions: set[int]) -> dict[int, int]:
        return {p: len(self.log[p]) for p in partitions}

    async def read(self, partition: int, start: int, end: int) -> list[InMessage]:
        self.reads += 1
        return self.log[partition][max(0, start) : end][:7]  # small chunks on purpose


def routine(agent: str, step: int) -> Event:
    tool, host = FLOW[step % 3]
    return Event(
        schema_version="1",
        event_id=f"{agent}-{step}",
        ts=T0 + timedelta(seconds=step),
        agent_id=agent,
        type="tool_call",
        session_id=f"{agent}-s{step // 6}",
        tool_name=tool,
        destinations=[Destination(kind="host", value=host)],
        agent_type="ops",
    )


def feed(state: ModelState, messages: Sequence[InMessage]) -> list[str]:
    """The batch path: drop what restored models hold, decode, score, observe; the
    anomaly ids raised."""
    out = BatchOutput()
    raised = []
    for message in state.unseen(messages):
        assert message.value is not None
        for event in decode_message(message.value, key=message.key, limits=Limits(), now=T0).events:
            result = state.engine.process(event)
            out.events.append(event)
            raised += [a.anomaly_id for a in result.anomalies]
    state.observe(messages, out)
    return raised


def committed_at(topic: Topic, messages: list[InMessage], index: int) -> dict[int, int]:
    """The committed offsets when the first ``index`` messages were committed."""
    return {
        p: max((m.offset + 1 for m in messages[:index] if m.partition == p), default=0)
        for p in range(PARTITIONS)
    }


def engine_restores_open_windows() -> bool:
    """Whether DetectionEngine snapshots carry the window aggregator's open windows."""
    one, two = DetectionEngine(DetectSettings()), DetectionEngine(DetectSettings())
    one.process(routine("probe", 0))
    two.restore("probe", one.snapshot("probe"))
    return two.aggregator.open_windows() == one.aggregator.open_windows()


WINDOWS_GAP = pytest.mark.xfail(
    not engine_restores_open_windows(),
    reason="DetectionEngine.snapshot does not carry the aggregator's open windows and "
    "sessions (WindowAggregator.state_of keeps long-lived memories only): the window open "
    "at snapshot time closes with the events after the snapshot only, so rate and drift "
    "baselines learn one partial window per restore",
    strict=True,
)


def new_state(store: MemoryStore, topic: Topic | None = None) -> ModelState:
    return ModelState(
        DetectionEngine(DetectSettings(warmup_events=30)),
        lambda: store,
        partitions=PARTITIONS,
        source=topic,
    )


@dataclass
class Crash:
    """A worker that died mid-stream, one that never stopped, and the restarted one after
    catching up and consuming the redelivered messages."""

    agents: list[str]
    restarted: ModelState
    reference: ModelState
    restarted_raised: list[str]
    reference_raised: list[str]


def crash_and_restart() -> Crash:
    """Snapshots lag or lead the committed offsets. What lags is replayed into the model,
    each agent from its own snapshot on; what leads is not scored twice when Kafka delivers
    it again. Sessions are open across the snapshots and the crash (no session_end)."""
    store, topic = MemoryStore(), Topic()
    agents = [f"ag-{n}" for n in range(10)]
    messages = [
        topic.append([routine(a, 2 * s), routine(a, 2 * s + 1)]) for s in range(150) for a in agents
    ]
    crashed, reference = new_state(store), new_state(MemoryStore())
    run(crashed.restore_partitions(range(PARTITIONS)))

    feed(crashed, messages[:900])
    run(crashed.snapshot_dirty("periodic"))  # and a checkpoint of every partition
    feed(crashed, messages[900:1100])
    run(crashed.snapshot_agents(agents[:3], "benign"))  # these three are further ahead
    feed(crashed, messages[1100:1300])
    # The worker dies; offsets were committed up to message 1050: behind the snapshots of
    # the first three agents, ahead of the others'.
    topic.committed_offsets = committed_at(topic, messages, 1050)

    restarted = new_state(store, topic)
    assert run(restarted.restore_partitions(range(PARTITIONS))) == len(agents)
    assert restarted.stats.caught_up_events > 0
    for p, end in topic.committed_offsets.items():
        assert restarted.position(p) == end
    reference_raised = feed(reference, messages)
    redelivered = [m for m in messages if m.offset >= topic.committed_offsets[m.partition]]
    restarted_raised = feed(restarted, redelivered)
    assert restarted.stats.redelivered_skipped > 0
    assert set(restarted.dirty()) == set(agents)  # the next round snapshots them
    return Crash(agents, restarted, reference, restarted_raised, reference_raised)


@WINDOWS_GAP
def test_restore_catches_up_to_the_committed_offset_exactly() -> None:
    """The restored model is the model of a worker that never stopped."""
    crash = crash_and_restart()
    for agent in crash.agents:
        assert crash.restarted.engine.snapshot(agent) == crash.reference.engine.snapshot(agent)
    assert set(crash.restarted_raised) <= set(crash.reference_raised)


def test_restore_catch_up_is_exact_for_sessions_and_event_detectors() -> None:
    """Everything but the open windows is exactly the never-stopped worker's: event count,
    open sessions (previous tool of each), the aggregator's memories and every event
    detector's baseline; no anomaly the never-stopped worker would not raise."""
    crash = crash_and_restart()
    restarted, reference = crash.restarted.engine, crash.reference.engine
    for agent in crash.agents:
        sessions = restarted.sessions.state_of(agent)
        assert sessions is not None
        assert sessions == reference.sessions.state_of(agent), agent
        assert sessions["s"], "sessions are open across the crash"
        assert restarted.aggregator.state_of(agent) == reference.aggregator.state_of(agent)
        for mine, theirs in zip(restarted.event_detectors, reference.event_detectors, strict=True):
            assert mine.state_of(agent) == theirs.state_of(agent), (agent, mine.name)
    assert set(crash.restarted_raised) <= set(crash.reference_raised)


def test_catch_up_merges_the_partitions_in_event_time() -> None:
    """Minutes of backlog in several partitions are replayed as they came, merged in event
    time: the engine's watermark is shared by all agents, so replaying one partition after
    the other would make every event of the later ones late (bunched into one window)."""
    store, topic = MemoryStore(), Topic()
    agents = [f"m-{n}" for n in range(8)]
    assert len({partition_for(a, PARTITIONS) for a in agents}) > 2
    messages = [topic.append([routine(a, s)]) for s in range(600) for a in agents]
    crashed, reference = new_state(store), new_state(MemoryStore())
    run(crashed.restore_partitions(range(PARTITIONS)))
    feed(crashed, messages[:400])  # 50 s of event time
    run(crashed.snapshot_dirty("periodic"))
    feed(crashed, messages[400:4000])
    topic.committed_offsets = committed_at(topic, messages, 4000)  # 450 s behind it

    restarted = new_state(store, topic)
    run(restarted.restore_partitions(range(PARTITIONS)))
    assert restarted.stats.caught_up_events == 3600
    feed(reference, messages[:4000])
    assert reference.engine.aggregator.late_events == 0
    assert restarted.engine.aggregator.late_events == 0
    for agent in agents:
        for mine, theirs in zip(
            restarted.engine.event_detectors, reference.engine.event_detectors, strict=True
        ):
            assert mine.state_of(agent) == theirs.state_of(agent), (agent, mine.name)


def test_backlog_is_processed_in_event_time_before_the_batch_path_resumes() -> None:
    """A restore with the worker's batch stage processes the backlog past the committed
    offsets too, the partitions merged in event time: faust would hand it over
    round-robin (a message per partition in turn), and a partition whose messages cover
    more event time would run ahead of the shared watermark, making the others' events
    late. Kafka delivers the backlog again afterwards: all of it is skipped."""
    store, topic = MemoryStore(), Topic()
    agents = [f"b-{n}" for n in range(8)]
    # Uneven: the first agent of each partition sends 4 events per message, the others 1.
    firsts = {}
    for a in agents:
        firsts.setdefault(partition_for(a, PARTITIONS), a)
    messages = []
    for s in range(0, 480, 4):
        for a in agents:
            if a in firsts.values():
                messages.append(topic.append([routine(a, s + k) for k in range(4)]))
            else:
                messages += [topic.append([routine(a, s + k)]) for k in range(4)]
    crashed, reference = new_state(store), new_state(MemoryStore())
    run(crashed.restore_partitions(range(PARTITIONS)))
    cut = len(messages) // 5
    feed(crashed, messages[:cut])
    run(crashed.snapshot_dirty("periodic"))
    feed(crashed, messages[cut : 2 * cut])
    topic.committed_offsets = committed_at(topic, messages, 2 * cut)  # then the crash

    restarted = new_state(store, topic)
    processed: list[InMessage] = []
    anomalies: list[str] = []

    async def backlog(batch: list[InMessage]) -> None:
        assert not restarted.ready  # the batch path waits meanwhile
        processed.extend(batch)
        anomalies.extend(feed(restarted, batch))

    run(restarted.restore_partitions(range(PARTITIONS), backlog))
    assert restarted.ready
    past = {(m.partition, m.offset) for m in messages[2 * cut :]}
    assert {(m.partition, m.offset) for m in processed} == past
    assert restarted.stats.backlog_messages == len(past)
    assert restarted.unseen(messages) == []  # Kafka's redelivery: all held already
    for p in range(PARTITIONS):
        assert restarted.position(p) == len(topic.log[p])

    feed(reference, messages)  # a worker that never stopped: live, in event time
    assert reference.engine.aggregator.late_events == 0
    assert restarted.engine.aggregator.late_events == 0
    for agent in agents:
        assert restarted.engine.sessions.events_of(agent) == 480
        for mine, theirs in zip(
            restarted.engine.event_detectors, reference.engine.event_detectors, strict=True
        ):
            assert mine.state_of(agent) == theirs.state_of(agent), (agent, mine.name)
    assert anomalies == []
    # Left to faust's round-robin (the partitions interleaved message by message), the
    # same backlog makes events late.
    naive = new_state(MemoryStore())
    feed(naive, messages[: 2 * cut])
    by_partition = [[m for m in messages[2 * cut :] if m.partition == p] for p in range(4)]
    feed(naive, [m for group in itertools.zip_longest(*by_partition) for m in group if m])
    assert naive.engine.aggregator.late_events > 0


def test_restored_model_continues_an_open_session() -> None:
    """A session cut by the snapshot goes on after the restore: the next tool is a known
    transition, the secret read before the snapshot still counts for flow rules."""
    store = MemoryStore()
    before, reference = new_state(store), new_state(MemoryStore())
    steps = [routine("s", i) for i in range(0, 300)]  # a routine learned over 50 sessions
    for event in steps:
        before.engine.process(event)
        reference.engine.process(event)
    secret = Event(
        schema_version="1",
        event_id="s-secret",
        ts=T0 + timedelta(seconds=300, microseconds=1234),
        agent_id="s",
        type="secret_access",
        session_id="s-s50",
        secret_name="vault/ops",
    )
    first = routine("s", 300)  # search, session s-s50
    for event in (secret, first):
        before.engine.process(event)
        reference.engine.process(event)
    before.mark("s")
    run(before.snapshot_dirty("periodic"))

    after = new_state(store)
    assert run(after.restore_partitions(range(PARTITIONS))) == 1
    following = routine("s", 301)  # http_post, same session
    ctx = after.engine.sessions.observe(following)
    assert ctx.transition == ("search", "http_post")
    assert ctx.secrets_read == (("vault/ops", secret.ts),)
    assert reference.engine.sessions.observe(following) == ctx


def test_restore_catch_up_feeds_each_agent_from_its_own_snapshot() -> None:
    """Counted, whatever the engine keeps: every event reaches the model exactly once."""
    store, topic = MemoryStore(), Topic()
    agents = [f"c-{n}" for n in range(6)]
    messages = [topic.append([routine(a, s)]) for s in range(120) for a in agents]
    crashed = new_state(store)
    run(crashed.restore_partitions(range(PARTITIONS)))
    feed(crashed, messages[:300])
    run(crashed.snapshot_dirty("periodic"))
    feed(crashed, messages[300:500])
    run(crashed.snapshot_agents(agents[:2], "benign"))
    feed(crashed, messages[500:600])
    topic.committed_offsets = committed_at(topic, messages, 420)

    restarted = new_state(store, topic)
    run(restarted.restore_partitions(range(PARTITIONS)))
    redelivered = [m for m in messages if m.offset >= topic.committed_offsets[m.partition]]
    feed(restarted, redelivered)
    for agent in agents:
        assert restarted.engine.sessions.events_of(agent) == 120, agent


def test_catch_up_skips_partitions_this_worker_kept() -> None:
    store, topic = MemoryStore(), Topic()
    state = new_state(store, topic)
    run(state.restore_partitions(range(PARTITIONS)))
    messages = [topic.append([routine("k", s)]) for s in range(40)]
    feed(state, messages)
    run(state.on_revoked(range(PARTITIONS)))
    topic.committed_offsets = {messages[0].partition: 40}
    reads = topic.reads
    assert run(state.restore_partitions(range(PARTITIONS))) == 0  # held exactly that state
    assert topic.reads == reads
