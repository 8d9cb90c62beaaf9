"""Delivery: retries with backoff and jitter, rate limits, circuit breakers, fallback.

Pure pieces (testable with a fake clock): :class:`Backoff`, :class:`TokenBucket`,
:class:`CircuitBreaker`. The I/O around them: :class:`ReceiverRunner` delivers to one
receiver; :class:`DeliveryService` picks the runner, falls back and dead-letters.

Rules, per receiver:

* 2xx: delivered. 5xx, 429 and network errors: retried with exponential backoff and full
  jitter (``Retry-After`` honoured, capped), at most ``max_attempts`` times and for at most
  ``max_retry_duration``. Other statuses: failed at once with the reason.
* ``circuit_failures`` consecutive retryable failures open the receiver's circuit: while it
  is open, notifications to it fail at once (``circuit_open``); after ``circuit_reset`` one
  trial request is let through, and its success closes the circuit again.
* A notification that was not delivered gets a dead-letter record with the reason, and
  goes to the receiver's ``fallback`` if one is configured.
* Each receiver has its own rate limit (token bucket), concurrency limit and HTTP client:
  a slow or failing receiver does not hold back the others. Notifications of one alert to
  one receiver are delivered in order (a resolve never overtakes its trigger).
* Every attempt is recorded (``alert_notifications``), with outcome, status and reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

import msgspec

from agentwatch.alerts.config import DeliveryPolicy
from agentwatch.alerts.dedup import dedup_key, notification_id_for
from agentwatch.alerts.model import Notification
from agentwatch.alerts.receivers.base import DeliveryError, Notifier, NotifyContext

__all__ = [
    "FINAL_OUTCOMES",
    "AttemptRecord",
    "Backoff",
    "CircuitBreaker",
    "DeadLetterRecord",
    "DeliveryResult",
    "DeliveryService",
    "ReceiverRunner",
    "RecordSink",
    "TokenBucket",
]

log = logging.getLogger("agentwatch.alerts.delivery")

Outcome = Literal["delivered", "retry", "failed", "gave_up", "circuit_open", "skipped"]
#: Outcomes after which a notification is finished for its receiver.
FINAL_OUTCOMES: frozenset[str] = frozenset(
    {"delivered", "failed", "gave_up", "circuit_open", "skipped"}
)


# --- pure pieces ---------------------------------------------------------------------


class Backoff:
    """Exponential backoff with full jitter: attempt ``n`` waits ``U(0, min(max, b·2^(n-1)))``,
    never less than a tenth of the un-jittered delay.

    >>> b = Backoff(1.0, 60.0, rng=random.Random(1))
    >>> all(0.1 <= b.delay(1) <= 1.0 for _ in range(100)), b.delay(20) <= 60.0
    (True, True)
    """

    def __init__(self, initial: float, maximum: float, *, rng: random.Random | None = None):
        self.initial = initial
        self.maximum = maximum
        self.rng = rng or random.Random()

    def ceiling(self, attempt: int) -> float:
        exponent = min(max(attempt - 1, 0), 40)
        return float(min(self.maximum, self.initial * 2.0**exponent))

    def delay(self, attempt: int) -> float:
        ceiling = self.ceiling(attempt)
        return max(ceiling / 10, self.rng.uniform(0, ceiling))


class TokenBucket:
    """``rate`` requests per second with bursts of ``burst``; :meth:`reserve` says how long
    to wait for a slot (and takes it).

    >>> now = [0.0]
    >>> bucket = TokenBucket(1.0, 1, clock=lambda: now[0])
    >>> bucket.reserve(), bucket.reserve(), bucket.reserve()
    (0.0, 1.0, 2.0)
    """

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self._tokens = float(self.burst)
        self._at = clock()

    def reserve(self) -> float:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate


class CircuitBreaker:
    """Closed → (``threshold`` consecutive failures) → open → (``reset_s``) → half-open: one
    trial; success closes, failure opens again.

    >>> now = [0.0]
    >>> cb = CircuitBreaker(2, 10.0, clock=lambda: now[0])
    >>> cb.record_failure(); cb.record_failure(); cb.state, cb.allow()
    ('open', False)
    >>> now[0] = 11.0; cb.allow(), cb.allow(), cb.state
    (True, False, 'half_open')
    >>> cb.record_success(); cb.state
    'closed'
    """

    def __init__(
        self, threshold: int, reset_s: float, *, clock: Callable[[], float] = time.monotonic
    ):
        self.threshold = threshold
        self.reset_s = reset_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False
        self.opened = 0  # times the circuit opened

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self._trial or self.clock() - self.opened_at >= self.reset_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if self._trial:
            return False  # one trial at a time
        if self.clock() - self.opened_at >= self.reset_s:
            self._trial = True
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial = False

    def record_failure(self) -> None:
        self.failures += 1
        if self._trial or (self.opened_at is None and self.failures >= self.threshold):
            if self.opened_at is None:
                self.opened += 1
            self.opened_at = self.clock()
            self._trial = False

    def release_trial(self) -> None:
        """The trial ended without telling anything about the receiver's health."""
        self._trial = False


# --- records -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One delivery attempt (a row of ``alert_notifications``)."""

    ts: datetime
    notification_id: str
    alert_id: str
    dedup_key: str
    route: str
    receiver: str
    integration: str
    kind: str
    sequence: int
    attempt: int
    outcome: str
    status_code: int
    reason: str
    duration_ms: float
    fallback_for: str = ""
    external_ref: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A notification that was not delivered (a row of ``alert_dead_letters``)."""

    ts: datetime
    notification: Notification
    integration: str
    reason: str
    attempts: int
    outcome: str


class RecordSink(Protocol):
    """Where attempts and dead letters go (ClickHouse in the dispatcher)."""

    def attempt(self, record: AttemptRecord) -> None: ...

    def dead_letter(self, record: DeadLetterRecord) -> None: ...

    async def flush(self) -> None:
        """Return once everything handed over so far is durably stored."""
        ...


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    outcome: str
    attempts: int
    reason: str = ""
    ref: str | None = None


# --- one receiver ----------------------------------------------------------------------


class ReceiverRunner:
    """Delivers notifications to one receiver under its policy."""

    def __init__(
        self,
        notifier: Notifier,
        policy: DeliveryPolicy,
        sink: RecordSink,
        *,
        rate_per_s: float | None = None,
        burst: int = 1,
        fallback: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.notifier = notifier
        self.name = notifier.name
        self.policy = policy
        self.sink = sink
        self.fallback = fallback
        self.clock = clock
        self.sleep = sleep
        self.backoff = Backoff(policy.backoff_initial, policy.backoff_max, rng=rng)
        self.breaker = CircuitBreaker(policy.circuit_failures, policy.circuit_reset, clock=clock)
        rate = policy.rate_per_s if policy.rate_per_s is not None else rate_per_s
        self.bucket = (
            TokenBucket(rate, policy.burst or burst, clock=clock) if rate is not None else None
        )
        self.semaphore = asyncio.Semaphore(policy.concurrency)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.refs: dict[str, str] = {}  # dedup key -> reference of the alert's first message
        self.stats: dict[str, int] = {}

    def _count(self, outcome: str) -> None:
        self.stats[outcome] = self.stats.get(outcome, 0) + 1

    async def deliver(self, notification: Notification) -> DeliveryResult:
        """Deliver in order with earlier notifications of the same alert to this receiver."""
        key = notification.dedup_key
        held = self._locks.get(key)
        lock, users = held if held is not None else (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                return await self._deliver(notification)
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def _record(
        self,
        n: Notification,
        attempt: int,
        outcome: str,
        *,
        status: int | None = None,
        reason: str = "",
        duration_s: float = 0.0,
        ref: str | None = None,
    ) -> None:
        self._count(outcome)
        self.sink.attempt(
            AttemptRecord(
                ts=datetime.now(UTC),
                notification_id=n.notification_id,
                alert_id=n.alert_id,
                dedup_key=n.dedup_key,
                route=n.route,
                receiver=self.name,
                integration=self.notifier.integration,
                kind=n.kind,
                sequence=n.sequence,
                attempt=attempt,
                outcome=outcome,
                status_code=status or 0,
                reason=reason,
                duration_ms=duration_s * 1000,
                fallback_for=n.fallback_for,
                external_ref=ref or "",
            )
        )

    def _dead_letter(self, n: Notification, outcome: str, reason: str, attempts: int) -> None:
        log.warning(
            "notification %s to receiver %s not delivered (%s): %s",
            n.notification_id,
            self.name,
            outcome,
            reason,
        )
        self.sink.dead_letter(
            DeadLetterRecord(
                ts=datetime.now(UTC),
                notification=n,
                integration=self.notifier.integration,
                reason=reason,
                attempts=attempts,
                outcome=outcome,
            )
        )

    async def _deliver(self, n: Notification) -> DeliveryResult:
        if not self.notifier.supports(n.kind):
            why = getattr(self.notifier, "why", f"{self.notifier.integration} sends no {n.kind}")
            self._record(n, 0, "skipped", reason=str(why))
            return DeliveryResult("skipped", 0, str(why))
        policy = self.policy
        deadline = self.clock() + policy.max_retry_duration
        context = NotifyContext(thread_ref=self.refs.get(n.dedup_key))
        last_reason = ""
        attempt = 0
        while True:
            attempt += 1
            if not self.breaker.allow():
                reason = f"circuit open after {self.breaker.failures} failures"
                if last_reason:
                    reason += f"; last error: {last_reason}"
                self._record(n, attempt, "circuit_open", reason=reason)
                self._dead_letter(n, "circuit_open", reason, attempt - 1)
                return DeliveryResult("circuit_open", attempt - 1, reason)
            if self.bucket is not None:
                wait = self.bucket.reserve()
                if wait > 0:
                    await self.sleep(wait)
            started = self.clock()
            try:
                async with self.semaphore:
                    ref = await self.notifier.notify(n, context)
            except DeliveryError as exc:
                error = exc
            except asyncio.CancelledError:
                self.breaker.release_trial()
                raise
            else:
                self.breaker.record_success()
                if ref and n.kind == "firing":
                    self.refs.setdefault(n.dedup_key, ref)
                if n.kind == "resolved":
                    self.refs.pop(n.dedup_key, None)
                self._record(n, attempt, "delivered", duration_s=self.clock() - started, ref=ref)
                return DeliveryResult("delivered", attempt, ref=ref)
            elapsed = self.clock() - started
            last_reason = error.reason
            if not error.retryable:
                self.breaker.release_trial()
                self._record(
                    n,
                    attempt,
                    "failed",
                    status=error.status,
                    reason=error.reason,
                    duration_s=elapsed,
                )
                self._dead_letter(n, "failed", error.reason, attempt)
                return DeliveryResult("failed", attempt, error.reason)
            self.breaker.record_failure()
            if error.retry_after is not None:
                delay = min(error.retry_after, policy.max_retry_after)
            else:
                delay = self.backoff.delay(attempt)
            if attempt >= policy.max_attempts or self.clock() + delay > deadline:
                reason = f"gave up after {attempt} attempts: {error.reason}"
                self._record(
                    n,
                    attempt,
                    "gave_up",
                    status=error.status,
                    reason=error.reason,
                    duration_s=elapsed,
                )
                self._dead_letter(n, "gave_up", reason, attempt)
                return DeliveryResult("gave_up", attempt, reason)
            self._record(
                n, attempt, "retry", status=error.status, reason=error.reason, duration_s=elapsed
            )
            await self.sleep(delay)

    async def aclose(self) -> None:
        await self.notifier.aclose()


# --- all receivers ---------------------------------------------------------------------


class DeliveryService:
    """Routes each notification to its receiver's runner; falls back; dead-letters."""

    def __init__(self, runners: dict[str, ReceiverRunner], sink: RecordSink) -> None:
        self.runners = runners
        self.sink = sink

    async def deliver(self, notification: Notification) -> DeliveryResult:
        runner = self.runners.get(notification.receiver)
        if runner is None:
            reason = f"unknown receiver {notification.receiver!r} (not in the configuration)"
            self.sink.dead_letter(
                DeadLetterRecord(
                    ts=datetime.now(UTC),
                    notification=notification,
                    integration="",
                    reason=reason,
                    attempts=0,
                    outcome="failed",
                )
            )
            return DeliveryResult("failed", 0, reason)
        result = await runner.deliver(notification)
        if result.outcome in ("delivered", "skipped") or not runner.fallback:
            return result
        if notification.fallback_for:
            return result  # one level of fallback only
        fallback = self.runners.get(runner.fallback)
        if fallback is None:
            return result
        redirected = msgspec.structs.replace(
            notification,
            receiver=fallback.name,
            fallback_for=notification.receiver,
            notification_id=notification_id_for(
                notification.notification_id, fallback.name, notification.sequence, "fallback"
            ),
            dedup_key=dedup_key(notification.route, fallback.name, notification.group_key),
        )
        log.info(
            "notification %s: receiver %s failed, sending to fallback %s",
            notification.notification_id,
            notification.receiver,
            fallback.name,
        )
        return await fallback.deliver(redirected)

    async def aclose(self) -> None:
        for runner in self.runners.values():
            await runner.aclose()
