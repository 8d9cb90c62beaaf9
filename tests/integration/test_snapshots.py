"""Model snapshots, feedback and baseline changes against the real embedded ClickHouse
(chDB), and the partitioner against the real broker.

chDB runs one engine per process on one data dir at a time: one dir for the module
(closed at the end), a database per test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from agentwatch.config import DetectSettings, StorageSettings
from agentwatch.embedded.broker import EmbeddedBroker
from agentwatch.models.engine import DetectionEngine
from agentwatch.schemas.anomaly import Anomaly
from agentwatch.schemas.events import Destination, Event
from agentwatch.schemas.feedback import benign_message, revert_message
from agentwatch.storage.client import Client, connect
from agentwatch.storage.migrate import apply_migrations
from agentwatch.storage.snapshots import BaselineChange, FeedbackRow, ModelStore, Snapshot
from agentwatch.storage.writer import EventStore
from agentwatch.streams.control import KafkaEventSource, ModelState
from agentwatch.streams.partitioning import partition_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    ch = connect(f"chdb://{tmp_path_factory.mktemp('snapshots-chdb')}")
    yield ch
    ch.close()


@pytest.fixture
def settings(client: Client) -> Iterator[StorageSettings]:
    s = StorageSettings(database=f"s_{uuid.uuid4().hex[:12]}")
    apply_migrations(client, s)
    yield s
    client.command(f"DROP DATABASE IF EXISTS {s.database} SYNC")


@pytest.fixture
def store(client: Client, settings: StorageSettings) -> ModelStore:
    return ModelStore.from_settings(client, settings)


def snap(
    agent: str, minutes: float, *, partition: int = 0, state: bytes = b"s", **kw: object
) -> Snapshot:
    ts = T0 + timedelta(minutes=minutes)
    return Snapshot(
        agent_id=agent,
        snapshot_id=f"{agent}-{minutes}",
        ts=ts,
        event_ts=ts - timedelta(seconds=5),
        partition=partition,
        reason=str(kw.get("reason", "periodic")),
        events=int(minutes * 10),
        format=1,
        state=state,
    )


def test_snapshots_written_listed_and_read_back(store: ModelStore) -> None:
    binary = bytes(range(256)) * 40  # msgpack is binary: every byte value survives
    rows = [snap("a", m, state=binary + bytes([m])) for m in range(5)] + [snap("b", 1)]
    assert store.write_snapshots(rows) == 6
    assert store.write_snapshots([]) == 0

    listed = store.snapshots("a")
    assert [s.snapshot_id for s in listed] == [f"a-{m}" for m in (4, 3, 2, 1, 0)]
    assert listed[0].state == b""  # listing does not read states
    assert listed[0].size_bytes == len(binary) + 1
    assert listed[0].ts == T0 + timedelta(minutes=4)
    assert listed[0].event_ts == T0 + timedelta(minutes=4, seconds=-5)
    assert [s.snapshot_id for s in store.snapshots("a", limit=2)] == ["a-4", "a-3"]

    one = store.snapshot("a", "a-2")
    assert one is not None
    assert one.state == binary + bytes([2])
    assert (one.reason, one.events, one.format, one.partition) == ("periodic", 20, 1, 0)
    assert store.snapshot("a", "b-1") is None  # ids are per agent
    assert store.snapshot("nobody", "a-2") is None


def test_latest_per_agent_by_partition_and_by_agent(store: ModelStore) -> None:
    store.write_snapshots(
        [
            snap("a", 1, partition=0, state=b"a1"),
            snap("a", 2, partition=0, state=b"a2"),
            snap("b", 1, partition=1, state=b"b1"),
            # c moved from partition 1 to 2 (topic repartitioned): it belongs to 2 now
            snap("c", 1, partition=1, state=b"c1"),
            snap("c", 3, partition=2, state=b"c3"),
        ]
    )
    refs = store.latest_refs(partitions={0, 1})
    assert {a: r.snapshot_id for a, r in refs.items()} == {"a": "a-2", "b": "b-1"}
    assert refs["a"].partition == 0
    latest = {s.agent_id: s.state for s in store.latest(partitions=[2])}
    assert latest == {"c": b"c3"}
    assert {s.agent_id: s.state for s in store.latest(agent_ids=["a", "b", "x"])} == {
        "a": b"a2",
        "b": b"b1",
    }
    assert store.latest(partitions=[]) == []
    assert store.latest(agent_ids=[]) == []
    assert len(store.latest()) == 3
    # A state superseded meanwhile is still found in the history.
    assert [s.state for s in store.load_states({"a": "a-1"})] == [b"a1"]
    assert store.load_states({"a": "nope"}) == []


def test_feedback_and_baseline_changes_recorded_once(store: ModelStore) -> None:
    row = FeedbackRow(
        feedback_id="f1",
        ts=T0,
        applied_at=T0 + timedelta(seconds=1),
        agent_id="a",
        action="benign",
        who="alice",
        why="new partner",
        anomaly_id="an1",
        keys=("destination/host/x.example", "tool_destination/http_post>host/x.example"),
    )
    store.write_feedback([row])
    store.write_feedback([row])  # redelivered control message
    assert store.feedback(agent_id="a") == [row]
    assert store.feedback(feedback_id="f1") == [row]
    assert store.feedback(feedback_id="f2") == []

    change = BaselineChange(T0, "a", "version_change", "agent_version 1 → 2")
    store.write_baseline_changes([change, change])
    store.write_baseline_changes([BaselineChange(T0 + timedelta(seconds=1), "a", "benign", "x")])
    assert [c.kind for c in store.baseline_changes("a")] == ["benign", "version_change"]


def test_anomaly_looked_up_by_id(
    client: Client, settings: StorageSettings, store: ModelStore
) -> None:
    anomaly = Anomaly(
        schema_version="1",
        anomaly_id="an-42",
        agent_id="a",
        ts=T0,
        detected_at=T0,
        detector="new_destination",
        detectors=["new_destination"],
        score=70.0,
        severity="medium",
        title="a: sent to 1 new destination",
        explanation="sent to 1 new destination (host x.example)",
        event_ids=["e1"],
        labels={"keys": "destination/host/x.example", "status": "baselined"},
    )
    EventStore.from_settings(client, settings).insert_anomalies([anomaly])
    found = store.anomaly("an-42")
    assert found is not None
    assert found["agent_id"] == "a"
    assert found["labels"]["keys"] == "destination/host/x.example"
    assert found["ts"] == T0
    assert store.anomaly("an-43") is None


def test_model_state_round_trip_through_clickhouse(store: ModelStore) -> None:
    """A worker snapshots, a new worker restores, feedback and revert are stored."""

    def ev(agent: str, i: int, host: str) -> Event:
        return Event(
            schema_version="1",
            event_id=f"{agent}-{i}-{host}",
            ts=T0 + timedelta(seconds=i),
            agent_id=agent,
            type="tool_call",
            session_id=f"{agent}-s",
            tool_name="http_post",
            destinations=[Destination(kind="host", value=host)],
        )

    async def scenario() -> None:
        detect = DetectSettings(warmup_events=20)
        first = ModelState(DetectionEngine(detect), lambda: store, partitions=4)
        agents = [f"agent-{n}" for n in range(6)]
        for agent in agents:
            for i in range(400):
                first.engine.process(ev(agent, i, f"h{i % 3}.example"))
                first.mark(agent)
        assert await first.snapshot_dirty("shutdown") == 6

        second = ModelState(DetectionEngine(detect), lambda: store, partitions=4)
        assert await second.restore_partitions(range(4)) == 6
        for agent in agents:
            assert second.engine.snapshot(agent) == first.engine.snapshot(agent)
        flagged = second.engine.process(ev("agent-0", 500, "drop.evil.example")).anomalies
        assert flagged
        keys = flagged[0].labels["keys"].split()
        good = second.held("agent-0")
        assert good is not None

        applied = await second.apply_control(benign_message("agent-0", "x", keys, "alice", "ok"))
        assert applied.status == "applied"
        assert not second.engine.process(ev("agent-0", 501, "drop.evil.example")).anomalies
        reverted = await second.apply_control(revert_message("agent-0", good, "bob", "undo"))
        assert reverted.status == "applied"
        target = store.snapshot("agent-0", good)
        assert target is not None
        assert second.engine.snapshot("agent-0") == target.state
        again = second.engine.process(ev("agent-0", 502, "drop.evil.example"))
        assert "new_destination" in again.detectors  # new to the agent again

    asyncio.run(scenario())
    reasons = [s.reason for s in store.snapshots("agent-0")]
    assert reasons == ["revert", "benign", "shutdown"]
    assert [(f.action, f.who) for f in store.feedback(agent_id="agent-0")] == [
        ("revert", "bob"),
        ("benign", "alice"),
    ]
    assert {c.kind for c in store.baseline_changes("agent-0")} == {"benign", "revert"}
    # The reverted state is what a restart gets back.
    (latest,) = store.latest(agent_ids=["agent-0"])
    assert latest.reason == "revert"


def test_snapshot_size_and_restore_time_for_many_agents(store: ModelStore) -> None:
    """Measured: bytes per agent and the restore time of a few thousand agents."""

    async def scenario() -> tuple[int, float, float]:
        detect = DetectSettings(warmup_events=20)
        state = ModelState(DetectionEngine(detect), lambda: store, partitions=8)
        n = 2000
        for a in range(n):
            agent = f"fleet-{a}"
            for i in range(60):
                state.engine.process(
                    Event(
                        schema_version="1",
                        event_id=f"{agent}-{i}",
                        ts=T0 + timedelta(seconds=i),
                        agent_id=agent,
                        type="tool_call",
                        session_id=f"{agent}-s{i // 20}",
                        tool_name=("search", "http_post", "send_email")[i % 3],
                        destinations=[
                            Destination(kind="host", value=f"h{i % 12}.{a % 50}.example")
                        ],
                    )
                )
            state.mark(agent)
        started = time.perf_counter()
        await state.snapshot_dirty("periodic")
        write_s = time.perf_counter() - started
        fresh = ModelState(DetectionEngine(detect), lambda: store, partitions=8)
        started = time.perf_counter()
        assert await fresh.restore_partitions(range(8)) == n
        return state.stats.snapshot_bytes // n, write_s, time.perf_counter() - started

    per_agent, write_s, restore_s = asyncio.run(scenario())
    print(
        f"\nsnapshot: {per_agent} bytes per agent; 2000 agents written in {write_s:.2f}s, "
        f"restored in {restore_s:.2f}s"
    )
    assert per_agent < 16_384
    assert restore_s < 20


def test_partition_for_matches_the_partition_kafka_assigns(tmp_path: Path) -> None:
    topic, partitions = "partition-check", 6
    agents = [f"agent-{n}" for n in range(40)] + ["billing-assistant", "ü-agent/with spaces", "x"]
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        finally:
            admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        try:
            for agent in agents:
                producer.send(topic, key=agent.encode("utf-8"), value=b"{}")
            producer.flush()
        finally:
            producer.close()
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            stored: dict[str, int] = {}
            deadline = time.monotonic() + 20
            while len(stored) < len(agents) and time.monotonic() < deadline:
                for tp, records in consumer.poll(timeout_ms=300).items():
                    for record in records:
                        stored[record.key.decode("utf-8")] = tp.partition
        finally:
            consumer.close()
    assert stored == {agent: partition_for(agent, partitions) for agent in agents}
    assert len(set(stored.values())) > 1
    with pytest.raises(ValueError, match="partitions"):
        partition_for("a", 0)


def test_kafka_event_source_reads_what_a_restore_catches_up_from(tmp_path: Path) -> None:
    """The catch-up's view of the events topic on the real broker: the consumer group's
    committed offsets, the partitions' ends, and ranges read in chunks, in offset order."""
    topic, group, partitions = "source-check", "source-group", 2
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        finally:
            admin.close()
        pa, pb = partition_for("a", partitions), partition_for("d", partitions)
        assert pa != pb
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        try:
            for n in range(30):
                producer.send(topic, key=b"a", value=f"a{n}".encode())
            for n in range(5):
                producer.send(topic, key=b"d", value=f"d{n}".encode())
            producer.flush()
        finally:
            producer.close()
        committer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
        )
        try:
            committer.commit({TopicPartition(topic, pa): OffsetAndMetadata(12, None, -1)})
        finally:
            committer.close()

        source = KafkaEventSource(broker.bootstrap, topic, group, chunk=7, timeout_s=20)

        async def scenario() -> None:
            assert await source.committed({pa, pb}) == {pa: 12}
            assert await source.ends({pa, pb}) == {pa: 30, pb: 5}
            first = await source.read(pa, 10, 25)
            assert [m.offset for m in first] == list(range(10, 17))  # one chunk
            assert [m.value for m in first[:2]] == [b"a10", b"a11"]
            assert {(m.key, m.topic, m.partition) for m in first} == {(b"a", topic, pa)}
            assert [m.offset for m in await source.read(pa, 24, 25)] == [24]
            assert [m.value for m in await source.read(pb, 0, 5)] == [
                f"d{n}".encode() for n in range(5)
            ]

        asyncio.run(scenario())
