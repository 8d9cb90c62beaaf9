"""Every kind of bad input lands on the dead-letter topic with its reason and original
bytes, is counted, and the good events around it are stored."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from agentwatch.embedded.stack import Stack
from tests.integration.conftest import MAX_MESSAGE_BYTES
from tests.integration.pipeline_support import chdb_query, read_topic, wait_for, worker_stats

pytestmark = pytest.mark.integration

AGENT = "agent-dlq-1"
TOPIC = "agentwatch.events.v1"


def good(i: int) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "event_id": f"good-{i}-{uuid.uuid4()}",
        "ts": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
        "agent_id": AGENT,
        "type": "llm_call",
        "model": "gpt-4o",
        "tokens_in": 100 + i,
    }


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def bad_inputs() -> list[tuple[str, bytes]]:
    g = good(0)
    future = dict(good(1), ts="2999-01-01T00:00:00Z")
    old = dict(good(2), ts="2001-01-01T00:00:00Z")
    return [
        ("bad_json", b'{"schema_version": "1", "event_id": '),
        ("bad_json", b"\xff\xfe not json at all"),
        ("not_an_event", b"42"),
        ("empty_batch", b"[]"),
        ("invalid_field", dumps(dict(g, event_id="wt-1", tokens_in="many"))),
        ("invalid_field", dumps(dict(g, event_id="wt-2", ts="yesterday"))),
        ("missing_field", dumps({k: v for k, v in g.items() if k != "event_id"})),
        ("missing_field", dumps(dict(g, event_id="mf-2", type="tool_call"))),
        ("unknown_type", dumps(dict(g, event_id="ut-1", type="teleport"))),
        ("unsupported_schema_version", dumps(dict(g, event_id="sv-1", schema_version="2"))),
        ("ts_in_future", dumps(future)),
        ("ts_too_old", dumps(old)),
        (
            "oversize_event",
            dumps(
                dict(
                    g,
                    event_id="big-1",
                    attributes={"note": "x" * 1000},
                    tool_args={"blob": "y" * 70_000},
                )
            ),
        ),
        (
            "oversize_message",
            dumps([dict(good(i), tool_args={"p": "z" * 30_000}) for i in range(10)]),
        ),
    ]


def test_each_bad_input_dead_lettered_with_reason_good_ones_stored(stack: Stack) -> None:
    worker = stack.workers[0]
    before = worker_stats(worker)
    producer = KafkaProducer(
        bootstrap_servers=stack.bootstrap, max_request_size=4 * MAX_MESSAGE_BYTES
    )
    goods: list[dict[str, Any]] = []
    cases = bad_inputs()
    for i, (_, raw) in enumerate(cases):
        g = good(100 + i)
        goods.append(g)
        producer.send(TOPIC, key=AGENT.encode(), value=dumps(g))
        producer.send(TOPIC, key=AGENT.encode(), value=raw)
    # A batch with one bad element among good ones: the good ones are kept.
    mixed_good = [good(500), good(501)]
    bad_element = dict(good(502), type="teleport")
    producer.send(
        TOPIC, key=AGENT.encode(), value=dumps([mixed_good[0], bad_element, mixed_good[1]])
    )
    goods += mixed_good
    # An event whose agent_id differs from the message key.
    producer.send(TOPIC, key=b"someone-else", value=dumps(good(600)))
    producer.flush()
    producer.close()

    expected = [reason for reason, _ in cases] + ["unknown_type", "key_mismatch"]
    wait_for(
        lambda: worker_stats(worker)["dead_letters"] - before["dead_letters"] >= len(expected),
        60,
        "the dead letters",
    )
    wait_for(
        lambda: worker_stats(worker)["events_stored"] - before["events_stored"] >= len(goods),
        30,
        "the good events",
    )
    stats = worker_stats(worker)
    assert stats["dead_letters"] - before["dead_letters"] == len(expected)
    assert stats["events_stored"] - before["events_stored"] == len(goods)

    records = read_topic(stack.bootstrap, "agentwatch.events.dlq.v1")
    by_bytes = {}
    for record in records:
        headers = dict(record.headers)
        by_bytes[record.value] = headers["agentwatch.reason"].decode()
        assert headers["agentwatch.source.topic"] == TOPIC.encode()
        assert int(headers["agentwatch.source.offset"]) >= 0
        assert headers["agentwatch.detail"]
    for reason, raw in cases:
        assert by_bytes.get(raw) == reason, f"{reason}: {raw[:80]!r}"
    # The bad element of the mixed batch is dead-lettered with its own original bytes.
    assert by_bytes.get(dumps(bad_element)) == "unknown_type"

    stack.stop_worker(worker)
    try:
        ids = chdb_query(
            stack, f"SELECT event_id FROM agentwatch.events FINAL WHERE agent_id = '{AGENT}'"
        )
        assert sorted(r[0] for r in ids) == sorted(g["event_id"] for g in goods)
        reasons = chdb_query(
            stack,
            "SELECT reason, count() FROM agentwatch.dead_letters GROUP BY reason ORDER BY reason",
        )
        counted = dict((r[0], int(r[1])) for r in reasons)
        for reason in set(expected):
            assert counted.get(reason, 0) >= expected.count(reason)
    finally:
        stack.start_worker()
        stack.wait_workers_ready(60)
