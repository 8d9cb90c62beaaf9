"""The SDK against the embedded broker: what it sends is what a worker reads, exactly once."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # kafka-python 3.0.12 loads its protocol schemas with importlib.resources.read_text and
    # open_text, deprecated since Python 3.11. The notice comes once, when kafka is first
    # imported (here, or via agentwatch.embedded.broker below), and is harmless; under
    # ``-W error`` it would make this module fail to import, so it is silenced for the
    # import only.
    warnings.filterwarnings("ignore", r"\w+ is deprecated\. Use files\(\) instead")
    from kafka import KafkaConsumer, TopicPartition

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from agentwatch.config import KafkaSettings, TopicNames
from agentwatch.embedded.broker import EmbeddedBroker, free_port
from agentwatch.schemas.decode import Limits, decode_message
from agentwatch.schemas.events import Event
from agentwatch.sdk import DEFAULT_TOPIC, Emitter
from agentwatch.streams.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PARTITIONS = 4
SESSION_TYPES = ("session_start", "session_end")
_topic_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        ensure_topics(running.bootstrap, KafkaSettings(partitions=PARTITIONS))
        yield running


@pytest.fixture
def topic(broker: EmbeddedBroker) -> str:
    """A fresh events topic, so each test reads back only its own messages."""
    n = next(_topic_numbers)
    names = TopicNames(
        events=f"sdk-test-{n}.events", dlq=f"sdk-test-{n}.dlq", anomalies=f"sdk-test-{n}.anomalies"
    )
    ensure_topics(broker.bootstrap, KafkaSettings(partitions=PARTITIONS, topics=names))
    return names.events


@dataclass
class Record:
    key: str
    value: bytes
    partition: int
    offset: int


def read_topic(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[Record]:
    """Every record of ``topic`` (manual assignment: no consumer-group join delay)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, "timed out reading the topic back"
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(
                    Record(r.key.decode("utf-8"), r.value, r.partition, r.offset) for r in batch
                )
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def decoded(records: list[Record]) -> list[Event]:
    """All events of ``records``, asserting the worker's decoder accepts every byte."""
    events: list[Event] = []
    now = datetime.now(UTC)
    for record in records:
        result = decode_message(record.value, key=record.key.encode(), limits=Limits(), now=now)
        assert result.rejects == [], result.rejects
        assert {e.agent_id for e in result.events} == {record.key}
        events.extend(result.events)
    return events


def assert_exactly_once(sent: list[Event], received: list[Event]) -> None:
    counts = Counter(e.event_id for e in received)
    duplicates = [event_id for event_id, n in counts.items() if n > 1]
    assert duplicates == []
    assert set(counts) == {e.event_id for e in sent}
    by_id = {e.event_id: e for e in received}
    assert all(by_id[e.event_id] == e for e in sent)


def test_single_events_arrive_as_objects_on_the_default_topic(broker: EmbeddedBroker) -> None:
    before = len(read_topic(broker.bootstrap, DEFAULT_TOPIC))
    sent: list[Event] = []
    session_ids: set[str] = set()
    with Emitter(broker.bootstrap, max_batch=1, close_at_exit=False) as emitter:
        assert emitter.topic == DEFAULT_TOPIC
        for n in range(3):
            agent = emitter.agent(f"single-{n}", agent_version="2.0", agent_type="support-bot")
            with agent.session() as session:
                built = [
                    agent.llm_call("gpt-4o", 812, 96, 0.0031),
                    agent.secret_access("vault:kv/zendesk-token"),
                    agent.network("api.zendesk.com", bytes_out=120),
                    agent.file_access("/tmp/report.csv"),
                    agent.metric({"cpu_pct": 12.5}),
                ]
                with agent.track_tool("crm.lookup", {"id": n}) as call:
                    call.destination("url", "https://crm.example.com/c/1")
            sent += [e for e in [*built, call.event] if e is not None]
            session_ids.add(session.session_id)
        assert emitter.flush(timeout=15)
        stats = emitter.stats
    total = 3 * 8  # 6 events above + session_start + session_end per agent
    assert stats.sent == stats.enqueued == stats.batches_sent == total
    assert stats.pending == stats.dropped_full == stats.send_errors == 0

    records = read_topic(broker.bootstrap, DEFAULT_TOPIC)[before:]
    assert len(records) == total
    assert all(r.value.startswith(b"{") for r in records)
    received = decoded(records)
    assert len(sent) == 3 * 6
    assert_exactly_once(sent, [e for e in received if e.type not in SESSION_TYPES])
    assert {e.session_id for e in received} == session_ids
    assert len({e.event_id for e in received}) == total
    assert Counter(e.type for e in received) == {
        "session_start": 3,
        "session_end": 3,
        "llm_call": 3,
        "secret_access": 3,
        "network": 3,
        "file_access": 3,
        "metric": 3,
        "tool_call": 3,
    }
    # One agent's events share one partition (key = agent_id).
    partitions: dict[str, set[int]] = {}
    for record in records:
        partitions.setdefault(record.key, set()).add(record.partition)
    assert all(len(p) == 1 for p in partitions.values())


def test_batches_arrive_as_arrays_of_one_agent_exactly_once(
    broker: EmbeddedBroker, topic: str
) -> None:
    agents = 5
    per_agent = 430
    sent: list[Event] = []
    with Emitter(broker.bootstrap, topic=topic, max_batch=100, close_at_exit=False) as emitter:
        handles = [emitter.agent(f"batch-{n}") for n in range(agents)]
        for i in range(per_agent):
            for handle in handles:
                event = handle.tool_call("search", {"q": f"query {i}"}, destinations=["s.example"])
                assert event is not None
                sent.append(event)
        assert emitter.flush(timeout=15)
        stats = emitter.stats
    assert stats.sent == stats.enqueued == agents * per_agent
    assert stats.batches_sent < agents * per_agent / 10  # really batched

    records = read_topic(broker.bootstrap, topic)
    assert len(records) == stats.batches_sent
    assert all(r.value.startswith(b"[") for r in records)
    received = decoded(records)
    assert_exactly_once(sent, received)
    # Messages hold at most max_batch events; within an agent the order is kept.
    for record in records:
        assert 1 <= len(decoded([record])) <= 100
    for n in range(agents):
        mine = [e.event_id for e in received if e.agent_id == f"batch-{n}"]
        assert mine == [e.event_id for e in sent if e.agent_id == f"batch-{n}"]


def test_byte_limited_batches_and_oversize_events(broker: EmbeddedBroker, topic: str) -> None:
    sent: list[Event] = []
    with Emitter(
        broker.bootstrap,
        topic=topic,
        max_batch=1000,
        max_batch_bytes=8 * 1024,
        max_event_bytes=4 * 1024,
        close_at_exit=False,
    ) as emitter:
        agent = emitter.agent("bytes-agent")
        for i in range(60):
            event = agent.tool_call("write", {"blob": "x" * 1000, "i": i})
            assert event is not None
            sent.append(event)
        assert agent.tool_call("write", {"blob": "x" * 5000}) is not None  # over 4 KiB
        assert emitter.flush(timeout=15)
        stats = emitter.stats
    assert stats.oversize == 1
    assert stats.sent == 60
    records = read_topic(broker.bootstrap, topic)
    assert all(len(r.value) <= 8 * 1024 for r in records)
    assert len(records) >= 60 * 1000 // (8 * 1024)
    assert_exactly_once(sent, decoded(records))


def test_linger_sends_a_partial_batch_without_flush(broker: EmbeddedBroker, topic: str) -> None:
    with Emitter(
        broker.bootstrap, topic=topic, max_batch=100, linger_ms=100, close_at_exit=False
    ) as emitter:
        agent = emitter.agent("linger-agent")
        sent = [agent.network(f"host-{i}.example") for i in range(5)]
        deadline = time.monotonic() + 10
        while emitter.stats.sent < 5:
            assert time.monotonic() < deadline, emitter.stats
            time.sleep(0.02)
        assert emitter.stats.batches_sent == 1
    (record,) = read_topic(broker.bootstrap, topic)
    assert_exactly_once([e for e in sent if e is not None], decoded([record]))


def test_broker_unreachable_at_start_then_up() -> None:
    port = free_port()
    emitter = Emitter(f"127.0.0.1:{port}", request_timeout_ms=2000, close_at_exit=False)
    try:
        agent = emitter.agent("late-agent")
        sent = [agent.network("early.example") for _ in range(20)]
        time.sleep(0.5)  # the emitter has tried and failed to connect by now
        assert emitter.stats.pending == 20
        assert emitter.stats.sent == 0
        with EmbeddedBroker(port=port) as late:
            ensure_topics(late.bootstrap, KafkaSettings(partitions=1))
            sent += [agent.network("late.example") for _ in range(5)]
            assert emitter.flush(timeout=20), emitter.stats
            assert emitter.stats.sent == 25
            received = decoded(read_topic(late.bootstrap, DEFAULT_TOPIC))
            assert_exactly_once([e for e in sent if e is not None], received)
            assert emitter.close(timeout=5)
    finally:
        emitter.close(timeout=1)
