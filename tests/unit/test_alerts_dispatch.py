"""The dispatcher's delivery at write time, without Kafka: ordering gates, records read back,
offsets, alert states stored after the outbox; outbox offsets ahead of the consumer;
notification ids; redaction of stored anomalies; the HTTP client's environment."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from agentwatch.alerts.config import AlertSettings, DeliveryPolicy
from agentwatch.alerts.dispatcher import Dispatcher
from agentwatch.alerts.grouping import AlertState, Flush
from agentwatch.alerts.model import AlertItem, Notification, encode_notification
from agentwatch.alerts.outbox import OffsetTracker
from agentwatch.alerts.pipeline import notifications_for
from agentwatch.alerts.receivers.base import HttpTransport, _env_route
from agentwatch.alerts.sink import RecordingSink
from agentwatch.alerts.store import _redacted_items, _RedactedItems
from agentwatch.config import KafkaSettings

T = datetime(2026, 1, 1, tzinfo=UTC)
OUTBOX = "agentwatch.alerts.outbox.v1"
TP = TopicPartition(OUTBOX, 0)


def note(n: int, key: str = "k") -> Notification:
    return Notification(
        notification_id=f"n{n}",
        kind="firing",
        receiver="hook",
        route="all",
        alert_id=f"alert-{key}",
        dedup_key=f"aw-{key}",
        group_key="{}/all:{}",
        group_labels={},
        common_labels={},
        items=[],
        anomaly_count=1,
        new_count=1,
        folded=0,
        severity="high",
        max_score=80.0,
        started_at=T,
        created_at=T,
        sequence=n,
    )


@dataclass
class Record:
    offset: int
    key: bytes
    value: bytes
    timestamp: int


def record(offset: int, n: Notification, *, earlier: bool = False) -> Record:
    # Records written after the assignment have a later timestamp than it.
    timestamp = 0 if earlier else int(time.time() * 1000) + 60_000
    return Record(offset, n.dedup_key.encode(), encode_notification(n), timestamp)


class FakeConsumer:
    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.batches: list[dict[TopicPartition, list[Record]]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(0.01)
        return {}


class FakeStore:
    """The AlertStore calls the dispatcher makes here."""

    def __init__(self) -> None:
        self.upserts: list[list[AlertState]] = []

    def finished(self, ids: list[str]) -> set[str]:
        return set()

    def upsert_alerts(self, states: list[AlertState]) -> None:
        self.upserts.append(list(states))


def make_dispatcher(**kafka: Any) -> tuple[Dispatcher, FakeStore, list[str]]:
    settings = AlertSettings.model_validate(
        {
            "receivers": [{"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/h"}],
            "routes": [{"name": "all", "receivers": ["hook"]}],
            "kafka": kafka,
        }
    )
    store = FakeStore()
    dispatcher = Dispatcher(settings, KafkaSettings(), "127.0.0.1:9", store)  # type: ignore[arg-type]
    dispatcher._outbox_consumer = FakeConsumer({TP})
    dispatcher._assigned_ms[TP] = int(time.time() * 1000)
    started: list[str] = []

    def start(tp: TopicPartition, offset: int, notification: Notification) -> None:
        started.append(notification.notification_id)

    dispatcher._start_delivery = start  # type: ignore[method-assign]
    return dispatcher, store, started


async def test_written_notifications_wait_for_the_records_of_an_earlier_run() -> None:
    d, _, started = make_dispatcher()
    old, n1, n2, n3 = note(0, "a"), note(1, "a"), note(2, "b"), note(3, "a")
    # Offset 0 was written by an earlier run and is not delivered yet; this process writes
    # 1 and 2: they wait for the consumer to read up to them.
    d._dispatch_written([n1, n2], [(TP, 1), (TP, 2)])
    assert started == []
    await d._consume_outbox(TP, [record(0, old, earlier=True), record(1, n1), record(2, n2)])
    assert started == ["n0", "n1", "n2"]  # the earlier one first; nothing twice
    d._dispatch_written([n3], [(TP, 3)])  # caught up: delivered at once
    assert started == ["n0", "n1", "n2", "n3"]
    # The commit never passes a notification in flight, nor what the consumer has not read.
    offsets = d.outbox_offsets
    assert offsets.committable() == {TP: 0}
    for offset in (0, 1, 2):
        offsets.release(TP, offset)
    assert offsets.committable() == {TP: 3}  # 3 is in flight and not read back yet
    offsets.release(TP, 3)
    assert offsets.committable() == {TP: 3}
    await d._consume_outbox(TP, [record(3, n3)])
    assert offsets.committable() == {TP: 4}
    assert started == ["n0", "n1", "n2", "n3"]


async def test_a_notification_left_to_the_consumer_holds_back_later_ones_of_its_alert() -> None:
    d, _, started = make_dispatcher(max_in_flight=2)
    d._first_written[TP] = 0
    d._caught_up.add(TP)
    d.outbox_offsets.done(TP, 4)
    busy = [asyncio.create_task(asyncio.sleep(0)) for _ in range(2)]
    d._deliveries.update(busy)  # max_in_flight reached: left to the consumer
    d._dispatch_written([note(5, "k")], [(TP, 5)])
    d._deliveries.clear()
    d._dispatch_written([note(6, "k"), note(7, "j")], [(TP, 6), (TP, 7)])
    assert started == ["n7"]  # n6 waits for n5, of the same alert
    await d._consume_outbox(TP, [record(5, note(5, "k")), record(6, note(6, "k"))])
    assert started == ["n7", "n5", "n6"]
    await d._consume_outbox(TP, [record(7, note(7, "j"))])
    assert started == ["n7", "n5", "n6"]
    assert d._left == {}
    assert d._waiting == {}
    assert d._waiting_count == 0
    await asyncio.gather(*busy)


async def test_records_read_back_before_the_write_returns_are_not_delivered_twice() -> None:
    d, _, started = make_dispatcher()
    d._first_written[TP] = 0
    d._caught_up.add(TP)
    consumer = FakeConsumer({TP})
    d._outbox_consumer = consumer
    n1 = note(1)
    # The consumer gets the record while the write that made it is still waiting for Kafka.
    d._writing = asyncio.get_running_loop().create_future()
    consumer.batches.append({TP: [record(1, n1)]})
    loop = asyncio.create_task(d._delivery_loop())
    await asyncio.sleep(0.05)
    assert started == []  # held until the write returns
    d._dispatch_written([n1], [(TP, 1)])
    d._writing.set_result(None)
    d._writing = None
    await asyncio.sleep(0.05)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    assert started == ["n1"]
    # And a write acknowledged after its record was read back is left to the consumer.
    d._dispatch_written([n1], [(TP, 1)])
    assert started == ["n1"]


async def test_partitions_of_other_dispatchers_are_left_to_their_consumers() -> None:
    d, _, started = make_dispatcher()
    other = TopicPartition(OUTBOX, 1)
    d._dispatch_written([note(1)], [(other, 0)])
    assert started == []
    assert d.outbox_offsets.committable() == {}


def state(alert_id: str, sequence: int) -> AlertState:
    return AlertState(
        alert_id=alert_id,
        route="all",
        group_key=f"{{}}/all:{{agent_id={alert_id!r}}}",
        group_labels={"agent_id": alert_id},
        receivers=("hook",),
        status="firing",
        started_at=T,
        last_anomaly_at=T,
        last_notified_at=T,
        resolved_at=None,
        anomaly_count=sequence,
        folded_total=0,
        severity="high",
        max_score=80.0,
        sequence=sequence,
        acked_by="",
        acked_at=None,
        ack_comment="",
        title="t",
        recent=(),
        updated_at=T,
    )


async def test_alert_states_are_stored_after_the_outbox_and_then_release_anomalies() -> None:
    d, store, _ = make_dispatcher()
    anomalies = TopicPartition("agentwatch.anomalies.v1", 0)
    for offset in (10, 11, 12):
        d.anomaly_offsets.track(anomalies, offset)
    d._unstored.extend(
        [
            (state("a", 1), ((anomalies, 10),)),
            (state("b", 1), ((anomalies, 11),)),
            (state("a", 2), ((anomalies, 12),)),
        ]
    )
    d._emitted = 3
    assert d.anomaly_offsets.committable() == {anomalies: 10}
    await d._wait_stored(3)
    # One insert, the latest state of each alert; then the anomalies are released.
    assert [[(s.alert_id, s.sequence) for s in rows] for rows in store.upserts] == [
        [("a", 2), ("b", 1)]
    ]
    assert d.anomaly_offsets.committable() == {anomalies: 13}
    await d._wait_stored(3)
    assert len(store.upserts) == 1


async def test_alert_states_of_a_cancelled_store_are_kept() -> None:
    d, _, _ = make_dispatcher()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow(what: str, call: Any) -> None:
        entered.set()
        await release.wait()

    d._storage = slow  # type: ignore[assignment,method-assign]
    d._unstored.append((state("a", 1), ()))
    d._emitted = 1
    task = asyncio.create_task(d._store_pending())
    await entered.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [s.alert_id for s, _ in d._unstored] == ["a"]
    assert d._stored == 0


def test_offset_tracker_with_offsets_ahead_of_the_consumer() -> None:
    t = OffsetTracker()
    t.track("p", 10, advance=False)
    t.track("p", 12, advance=False)
    assert t.committable() == {}  # the consumer has read nothing yet
    t.done("p", 9)
    assert t.committable() == {"p": 10}
    t.track("p", 11)  # read by the consumer after 12 was tracked: order does not matter
    t.done("p", 10)
    t.done("p", 12)
    t.release("p", 10)
    assert t.committable() == {"p": 11}
    t.release("p", 11)
    assert t.committable() == {"p": 12}
    t.release("p", 12)
    assert t.committable() == {"p": 13}
    assert t.position("p") == 13
    assert t.position("q") is None


def item(i: int) -> AlertItem:
    return AlertItem(
        anomaly_id=f"an-{i}",
        agent_id="a",
        detector="d",
        severity="high",
        score=80.0,
        title="t",
        explanation="e",
        ts=T,
        detected_at=T,
        labels={},
    )


def flush(items: tuple[AlertItem, ...], *, kind: Any = "firing", folded: int = 0) -> Flush:
    return Flush(
        kind=kind,
        state=state("a", 3),
        items=items,
        new_count=len(items) + folded,
        folded=folded,
        repeat=False,
        positions=(),
    )


def test_notification_id_covers_the_anomalies_a_firing_notification_lists() -> None:
    def nid(f: Flush) -> str:
        return notifications_for(f, now=T)[0].notification_id

    same = nid(flush((item(1),)))
    assert nid(flush((item(1),))) == same  # made again, saying the same thing
    assert nid(flush((item(1), item(2)))) != same  # made again with one more anomaly
    assert nid(flush((item(1),), folded=3)) != same
    resolved = nid(flush((item(1),), kind="resolved"))
    assert resolved == nid(flush((item(1), item(2)), kind="resolved"))


def test_stored_anomalies_are_redacted_as_one_text() -> None:
    secrets = [
        "curl -H 'Authorization: Bearer abcdef0123456789'",
        "password=hunter2",
        "https://bob:hunter2@db.example/x",
        "AKIAIOSFODNN7EXAMPLE",
        "plain text",
    ]
    items = [
        AlertItem(
            anomaly_id=f"an-{i}",
            agent_id="a",
            detector="d",
            severity="high",
            score=1.0,
            title=text,
            explanation=secrets[(i + 1) % len(secrets)],
            ts=T,
            detected_at=T,
            labels={"password": text},
            annotations={"keys": text},
        )
        for i, text in enumerate(secrets)
    ]
    redacted = _RedactedItems(capacity=3)
    for start in range(len(items)):
        for end in range(start, len(items) + 1):
            assert redacted(items[start:end]) == _redacted_items(items[start:end])
    assert "hunter2" not in redacted(items)


def test_proxy_and_netrc_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine hooks.example login bot password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    route = _env_route("https://hooks.example/x")
    assert route.proxy == "http://proxy.example:3128"
    assert route.authorization == "Basic Ym90OnMzY3JldA=="  # bot:s3cret
    direct = _env_route("https://internal.example/x")
    assert direct.proxy is None
    assert direct.authorization is None
    assert _env_route("https://user:pw@hooks.example/x").authorization is None  # URL wins


async def test_http_client_looks_the_environment_up_once_per_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login bot password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    import agentwatch.alerts.receivers.base as base

    lookups: list[str] = []

    def counted(url: str) -> Any:
        lookups.append(url)
        return _env_route(url)

    monkeypatch.setattr(base, "_env_route", counted)
    client = HttpTransport(DeliveryPolicy(timeout=5, concurrency=2))
    with RecordingSink() as sink:
        for _ in range(3):
            reply = await client.post(sink.url("/h"), b"{}", {"Content-Type": "application/json"})
            assert reply.status == 200
        await client.post(sink.url("/h"), b"{}", {"Authorization": "Bearer t"})
        await client.aclose()
        requests = sink.received("/h")
    assert lookups == [sink.url("/h")]
    assert [r.headers.get("Authorization", "")[:6] for r in requests] == ["Basic "] * 3 + ["Bearer"]
