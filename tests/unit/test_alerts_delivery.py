"""Delivery rules with a fake clock: retries, Retry-After, no retry on 4xx, circuit breaker,
fallback, dead letters, rate limit, ordering, isolation between receivers; offsets."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from agentwatch.alerts.config import DeliveryPolicy
from agentwatch.alerts.delivery import (
    AttemptRecord,
    Backoff,
    CircuitBreaker,
    DeadLetterRecord,
    DeliveryService,
    ReceiverRunner,
    TokenBucket,
)
from agentwatch.alerts.model import Kind, Notification
from agentwatch.alerts.outbox import OffsetTracker
from agentwatch.alerts.receivers.base import DeliveryError, NotifyContext

T = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Sink:
    def __init__(self) -> None:
        self.attempts: list[AttemptRecord] = []
        self.dead: list[DeadLetterRecord] = []

    def attempt(self, record: AttemptRecord) -> None:
        self.attempts.append(record)

    def dead_letter(self, record: DeadLetterRecord) -> None:
        self.dead.append(record)

    async def flush(self) -> None:
        return None


class FakeNotifier:
    """Raises the scripted errors in turn, then succeeds."""

    integration = "fake"

    def __init__(
        self,
        name: str,
        script: list[DeliveryError] | None = None,
        kinds: tuple[str, ...] = ("firing", "resolved"),
    ) -> None:
        self.name = name
        self.script = list(script or [])
        self.kinds = kinds
        self.delivered: list[Notification] = []
        self.calls = 0
        self.gate: asyncio.Event | None = None

    def supports(self, kind: Kind) -> bool:
        return kind in self.kinds

    async def notify(self, notification: Notification, context: NotifyContext) -> str | None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.script:
            raise self.script.pop(0)
        self.delivered.append(notification)
        return f"ref-{len(self.delivered)}"

    async def aclose(self) -> None:
        return None


def note(i: int = 0, kind: Kind = "firing", receiver: str = "r", key: str = "k") -> Notification:
    return Notification(
        notification_id=f"n{i}-{kind}",
        kind=kind,
        receiver=receiver,
        route="all",
        alert_id="a1",
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
        sequence=i,
    )


def err500() -> DeliveryError:
    return DeliveryError("HTTP 500", retryable=True, status=500)


def runner(notifier: FakeNotifier, clock: Clock, sink: Sink, **policy: object) -> ReceiverRunner:
    return ReceiverRunner(
        notifier,
        DeliveryPolicy.model_validate({"backoff_initial": 1, "backoff_max": 30, **policy}),
        sink,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),
    )


async def test_5xx_is_retried_then_delivered_exactly_once() -> None:
    clock, sink = Clock(), Sink()
    notifier = FakeNotifier("r", [err500(), err500()])
    result = await runner(notifier, clock, sink).deliver(note())
    assert result.outcome == "delivered"
    assert result.attempts == 3
    assert len(notifier.delivered) == 1
    assert [a.outcome for a in sink.attempts] == ["retry", "retry", "delivered"]
    assert [a.status_code for a in sink.attempts] == [500, 500, 0]
    assert len(clock.sleeps) == 2
    assert 0.1 <= clock.sleeps[0] <= 1.0
    assert 0.2 <= clock.sleeps[1] <= 2.0
    assert not sink.dead


async def test_retry_after_is_honoured_and_capped() -> None:
    clock, sink = Clock(), Sink()
    notifier = FakeNotifier(
        "r",
        [
            DeliveryError("HTTP 429", retryable=True, status=429, retry_after=12.0),
            DeliveryError("HTTP 503", retryable=True, status=503, retry_after=9999.0),
        ],
    )
    await runner(notifier, clock, sink, max_retry_after=60, max_retry_duration=3600).deliver(note())
    assert clock.sleeps == [12.0, 60.0]


async def test_4xx_is_not_retried_and_dead_lettered() -> None:
    clock, sink = Clock(), Sink()
    notifier = FakeNotifier(
        "r", [DeliveryError("HTTP 400 (not retried)", retryable=False, status=400)]
    )
    result = await runner(notifier, clock, sink).deliver(note())
    assert result.outcome == "failed"
    assert notifier.calls == 1
    assert clock.sleeps == []
    assert [a.outcome for a in sink.attempts] == ["failed"]
    assert sink.attempts[0].status_code == 400
    (dead,) = sink.dead
    assert dead.outcome == "failed"
    assert "400" in dead.reason


async def test_gives_up_after_max_attempts_or_duration() -> None:
    clock, sink = Clock(), Sink()
    notifier = FakeNotifier("r", [err500()] * 10)
    result = await runner(notifier, clock, sink, max_attempts=3, circuit_failures=100).deliver(
        note()
    )
    assert result.outcome == "gave_up"
    assert notifier.calls == 3
    assert "gave up after 3 attempts" in sink.dead[0].reason
    clock2, sink2 = Clock(), Sink()
    slow = FakeNotifier("r", [DeliveryError("x", retryable=True, retry_after=50)] * 10)
    result = await runner(
        slow, clock2, sink2, max_retry_duration=120, circuit_failures=100
    ).deliver(note())
    assert result.outcome == "gave_up"
    assert slow.calls == 3  # 0, 50, 100; the next wait would pass 120 s


async def test_circuit_opens_fails_fast_and_recovers() -> None:
    clock, sink = Clock(), Sink()
    notifier = FakeNotifier("r", [err500()] * 3)
    r = runner(notifier, clock, sink, circuit_failures=3, circuit_reset=30, max_attempts=10)
    first = await r.deliver(note(1))
    assert first.outcome == "circuit_open"
    assert notifier.calls == 3
    assert r.breaker.state == "open"
    calls = notifier.calls
    second = await r.deliver(note(2))
    assert second.outcome == "circuit_open"
    assert notifier.calls == calls  # failed fast, the receiver was not called
    assert [d.outcome for d in sink.dead] == ["circuit_open", "circuit_open"]
    clock.now += 31  # half-open: one trial, it succeeds, the circuit closes
    third = await r.deliver(note(3))
    assert third.outcome == "delivered"
    assert r.breaker.state == "closed"


def test_circuit_breaker_states() -> None:
    now = [0.0]
    cb = CircuitBreaker(2, 10.0, clock=lambda: now[0])
    assert cb.allow()
    assert cb.state == "closed"
    cb.record_failure()
    assert cb.state == "closed"
    cb.record_failure()
    assert cb.state == "open"
    assert not cb.allow()
    now[0] = 10.0
    assert cb.allow()  # the trial
    assert not cb.allow()  # only one at a time
    cb.record_failure()  # trial failed: open again
    assert cb.state == "open"
    assert cb.opened == 1
    now[0] = 25.0
    assert cb.allow()
    cb.record_success()
    assert cb.state == "closed"
    assert cb.failures == 0


async def test_fallback_gets_what_the_primary_could_not_deliver() -> None:
    clock, sink = Clock(), Sink()
    primary = FakeNotifier("primary", [DeliveryError("HTTP 403", retryable=False, status=403)])
    backup = FakeNotifier("backup")
    runners = {
        "primary": replace_fallback(runner(primary, clock, sink), "backup"),
        "backup": runner(backup, clock, sink),
    }
    service = DeliveryService(runners, sink)
    result = await service.deliver(note(receiver="primary"))
    assert result.outcome == "delivered"
    (sent,) = backup.delivered
    assert sent.receiver == "backup"
    assert sent.fallback_for == "primary"
    assert sent.notification_id != "n0-firing"
    assert sent.dedup_key != note().dedup_key
    assert [d.notification.receiver for d in sink.dead] == ["primary"]


def replace_fallback(r: ReceiverRunner, fallback: str) -> ReceiverRunner:
    r.fallback = fallback
    return r


async def test_unknown_receiver_and_unsupported_kind() -> None:
    clock, sink = Clock(), Sink()
    service = DeliveryService({"r": runner(FakeNotifier("r"), clock, sink)}, sink)
    assert (await service.deliver(note(receiver="gone"))).outcome == "failed"
    assert "unknown receiver" in sink.dead[0].reason
    result = await service.deliver(note(kind="acknowledged"))
    assert result.outcome == "skipped"
    assert sink.attempts[-1].outcome == "skipped"


async def test_rate_limit_spaces_requests() -> None:
    clock, sink = Clock(), Sink()
    r = runner(FakeNotifier("r"), clock, sink, rate_per_s=1.0, burst=1)
    for i in range(3):
        await r.deliver(note(i, key=str(i)))
    assert clock.sleeps == [1.0, 1.0]


def test_token_bucket_refills() -> None:
    now = [0.0]
    bucket = TokenBucket(2.0, 2, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.5]
    now[0] = 10.0
    assert bucket.reserve() == 0.0


def test_backoff_grows_and_is_capped() -> None:
    b = Backoff(0.5, 8.0, rng=random.Random(3))
    assert [b.ceiling(n) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert all(0.05 <= b.delay(1) <= 0.5 for _ in range(50))


async def test_one_alert_in_order_other_alerts_and_receivers_not_held_back() -> None:
    sink = Sink()
    slow = FakeNotifier("slow")
    slow.gate = asyncio.Event()
    fast = FakeNotifier("fast")
    policy = DeliveryPolicy(concurrency=4)
    runners = {
        "slow": ReceiverRunner(slow, policy, sink),
        "fast": ReceiverRunner(fast, policy, sink),
    }
    service = DeliveryService(runners, sink)
    trigger = asyncio.create_task(service.deliver(note(1, receiver="slow")))
    resolve = asyncio.create_task(service.deliver(note(2, "resolved", receiver="slow")))
    other_alert = asyncio.create_task(service.deliver(note(3, receiver="slow", key="other")))
    others = [
        asyncio.create_task(service.deliver(note(i, receiver="fast", key=str(i)))) for i in range(5)
    ]
    await asyncio.wait_for(asyncio.gather(*others), timeout=2)
    assert len(fast.delivered) == 5  # the slow receiver holds nobody else back
    await asyncio.sleep(0.01)
    assert slow.calls == 2  # the trigger and the other alert; the resolve waits its turn
    slow.gate.set()
    await asyncio.wait_for(asyncio.gather(trigger, resolve, other_alert), timeout=2)
    kinds = [n.kind for n in slow.delivered if n.dedup_key == "aw-k"]
    assert kinds == ["firing", "resolved"]


async def test_thread_reference_is_passed_to_follow_ups() -> None:
    seen: list[str | None] = []

    class Threaded(FakeNotifier):
        async def notify(self, notification: Notification, context: NotifyContext) -> str | None:
            seen.append(context.thread_ref)
            return await super().notify(notification, context)

    clock, sink = Clock(), Sink()
    r = runner(Threaded("r", kinds=("firing", "resolved")), clock, sink)
    await r.deliver(note(1))
    await r.deliver(note(2, "resolved"))
    assert seen == [None, "ref-1"]
    assert sink.attempts[0].external_ref == "ref-1"


@pytest.mark.parametrize("make", [lambda: OffsetTracker()])
def test_offset_tracker(make: Callable[[], OffsetTracker]) -> None:
    t = make()
    t.track("p", 10, count=2)  # one anomaly in two groups
    t.done("p", 11)
    t.track("p", 12)
    t.track("q", 3)
    assert t.committable() == {"p": 10, "q": 3}
    t.release("p", 10)
    assert t.committable()["p"] == 10  # still held by the second group
    t.release("p", 10)
    assert t.committable()["p"] == 12
    t.release("p", 12)
    t.release("p", 99)  # unknown: ignored
    assert t.committable() == {"p": 13, "q": 3}
    assert t.in_work() == 1
    t.forget(["q"])
    assert t.committable() == {"p": 13}


def test_records_carry_no_receiver_secret() -> None:
    record = AttemptRecord(
        ts=T,
        notification_id="n",
        alert_id="a",
        dedup_key="d",
        route="r",
        receiver="pd",
        integration="pagerduty",
        kind="firing",
        sequence=1,
        attempt=1,
        outcome="delivered",
        status_code=202,
        reason="",
        duration_ms=1.0,
    )
    assert "routing" not in repr(replace(record))
