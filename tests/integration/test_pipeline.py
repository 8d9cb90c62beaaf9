"""End to end on real parts: SDK → Tansu → faust worker → chDB, anomalies to Kafka."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer

from agentwatch.embedded.stack import Stack, WorkerProcess
from agentwatch.schemas.anomaly import decode_anomaly
from agentwatch.schemas.events import Destination, Event, encode_event
from agentwatch.sdk import Emitter
from tests.integration.pipeline_support import chdb_query, read_topic, wait_for, worker_stats

pytestmark = pytest.mark.integration

KNOWN = ["api.crm.example.com", "mail.example.com", "files.example.com"]


def event(agent: str, i: int, host: str, *, session: str = "s1") -> Event:
    return Event(
        schema_version="1",
        event_id=str(uuid.uuid4()),
        ts=datetime.now(UTC) - timedelta(seconds=60) + timedelta(milliseconds=10 * i),
        agent_id=agent,
        type="tool_call",
        session_id=session,
        tool_name="http_post",
        tool_args={"url": f"https://{host}/v1/items", "n": i},
        destinations=[Destination(kind="host", value=host)],
        bytes_out=100 + i,
    )


def test_sdk_events_stored_exactly_once_and_new_destination_flagged(stack: Stack) -> None:
    worker = stack.workers[0]
    before = worker_stats(worker)
    single_agent, batch_agent = "agent-single-1", "agent-batch-1"
    # A stable baseline: 600 uses of three destinations make a new one rare (p < 0.01).
    singles = [event(single_agent, i, KNOWN[i % 3]) for i in range(600)]
    batched = [event(batch_agent, i, KNOWN[i % 3]) for i in range(250)]
    planted = event(single_agent, 1000, "drop.attacker-owned.example")

    with Emitter(bootstrap=stack.bootstrap, max_batch=1) as single_emitter:
        for e in singles:
            single_emitter.emit(e)
        assert single_emitter.flush(timeout=20)
    with Emitter(bootstrap=stack.bootstrap, max_batch=100, linger_ms=50) as batch_emitter:
        for e in batched:
            batch_emitter.emit(e)
        assert batch_emitter.flush(timeout=20)
        assert batch_emitter.stats.batches_sent < len(batched)  # really batched
    # At-least-once delivery: the same events arrive a second time.
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap)
    for e in singles[:5] + batched[:5]:
        producer.send("agentwatch.events.v1", key=e.agent_id.encode(), value=encode_event(e))
    producer.send("agentwatch.events.v1", key=single_agent.encode(), value=encode_event(planted))
    producer.flush()
    producer.close()

    total = len(singles) + len(batched) + 1
    wait_for(
        lambda: worker_stats(worker)["events_valid"] - before["events_valid"] >= total + 10,
        60,
        "the worker to consume every event",
    )
    stats = worker_stats(worker)
    assert stats["events_stored"] - before["events_stored"] == total
    assert stats["duplicates_dropped"] - before["duplicates_dropped"] == 10

    anomalies = [
        decode_anomaly(r.value) for r in read_topic(stack.bootstrap, "agentwatch.anomalies.v1")
    ]
    mine = [a for a in anomalies if a.agent_id == single_agent]
    assert [a.event_ids for a in mine] == [[planted.event_id]]
    assert mine[0].detector == "new_destination"
    assert 0 <= mine[0].score <= 100
    assert "drop.attacker-owned.example" in mine[0].explanation
    # Known destinations after warm-up never fired, for either agent.
    assert not [a for a in anomalies if a.agent_id == batch_agent]

    stack.stop_worker(worker)
    ids = [e.event_id for e in [*singles, *batched, planted]]
    rows = chdb_query(
        stack,
        "SELECT event_id, count() FROM agentwatch.events FINAL "
        f"WHERE agent_id IN ('{single_agent}', '{batch_agent}') GROUP BY event_id",
    )
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert {r[1] for r in rows} == {1}
    stored = chdb_query(
        stack,
        "SELECT anomaly_id, detector, score, event_ids FROM agentwatch.anomalies FINAL "
        f"WHERE agent_id = '{single_agent}'",
    )
    assert len(stored) == 1
    assert stored[0][0] == mine[0].anomaly_id
    assert stored[0][3] == [planted.event_id]
    stack.start_worker()
    stack.wait_workers_ready(60)


def test_worker_killed_mid_stream_loses_nothing_and_duplicates_nothing(stack: Stack) -> None:
    agent = "agent-crash-1"
    events = [event(agent, i, KNOWN[i % 3], session=f"s{i // 500}") for i in range(20_000)]
    with Emitter(
        bootstrap=stack.bootstrap, max_batch=50, linger_ms=20, buffer_size=len(events)
    ) as emitter:
        for e in events:
            emitter.emit(e)
        assert emitter.flush(timeout=60)
        assert emitter.stats.sent == len(events)
    worker = stack.workers[0]
    before = worker_stats(worker)["events_stored"]
    wait_for(
        lambda: worker_stats(worker)["events_stored"] > before,
        60,
        "the worker to start storing",
        interval_s=0.01,
    )
    stack.stop_worker(worker, kill=True)  # SIGKILL: no graceful commit
    restarted = stack.start_worker()
    stack.wait_workers_ready(60)
    wait_for(lambda: _idle(restarted), 90, "the restarted worker to catch up")
    stack.stop_worker(restarted)
    rows = chdb_query(
        stack,
        "SELECT count(), uniqExact(event_id) FROM agentwatch.events FINAL "
        f"WHERE agent_id = '{agent}'",
    )
    assert rows == [[len(events), len(events)]]
    stack.start_worker()
    stack.wait_workers_ready(60)


def _idle(worker: WorkerProcess, quiet_s: float = 2.0) -> bool:
    """True when the worker holds partitions, has no lag and consumed nothing for ``quiet_s``."""
    first = worker_stats(worker)
    if not first["partitions"] or first["lag"] != 0:
        return False
    time.sleep(quiet_s)
    return bool(worker_stats(worker)["messages"] == first["messages"])
