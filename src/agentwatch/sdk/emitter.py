"""The telemetry emitter an agent embeds: non-blocking, batched, schema-v1 events to Kafka.

Three layers:

* :class:`Emitter` owns one Kafka producer and one background thread. ``emit(event)`` only
  appends to a bounded in-memory buffer; the thread encodes the events, groups them per
  agent (:class:`BatchAssembler`) and sends one Kafka message per batch, keyed by the
  ``agent_id``. Nothing in the agent's code path blocks on the network or raises because
  of telemetry.
* :class:`AgentTelemetry` (from :meth:`Emitter.agent`) is bound to one agent and builds
  the events: ``tool_call``, ``llm_call``, ``network``, ``secret_access``,
  ``file_access``, ``metric``, and the context managers :meth:`AgentTelemetry.session`
  and :meth:`AgentTelemetry.track_tool`.
* :class:`BatchAssembler` is the pure batching logic (no I/O), usable on its own.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import ipaddress
import itertools
import logging
import os
import re
import socket
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, NamedTuple, ParamSpec, Protocol, TypeVar

import msgspec

from agentwatch.schemas.events import (
    MAX_ATTR_STRING,
    Destination,
    DestinationKind,
    Event,
    EventType,
    Status,
)
from agentwatch.sdk.ids import new_id, now_ms, ulid_at, utc_from_ms

_LEGACY_RESOURCES_WARNING = r"\w+ is deprecated\. Use files\(\) instead"
with warnings.catch_warnings():
    # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text and
    # open_text, which Python 3.11+ deprecates; keep that import-time notice out of the
    # agent's warnings (under ``-W error`` it would otherwise become an ImportError).
    warnings.filterwarnings("ignore", _LEGACY_RESOURCES_WARNING, DeprecationWarning)
    from kafka import KafkaProducer

__all__ = [
    "BOOTSTRAP_ENV",
    "DEFAULT_TOPIC",
    "TOPIC_ENV",
    "AgentTelemetry",
    "BatchAssembler",
    "DestinationLike",
    "Emitter",
    "EmitterStats",
    "EventSink",
    "Message",
    "Session",
    "ToolCall",
    "as_destination",
    "dest",
]

log = logging.getLogger("agentwatch.sdk")

DEFAULT_TOPIC = "agentwatch.events.v1"
BOOTSTRAP_ENV = "AGENTWATCH_KAFKA__BOOTSTRAP"
TOPIC_ENV = "AGENTWATCH_KAFKA__TOPICS__EVENTS"

KIB = 1024
MAX_MESSAGE_BYTES = 1024 * KIB
# Room for the Kafka record and batch framing and a key of up to 256 characters of UTF-8.
_FRAMING_HEADROOM = 2 * KIB
MAX_BATCH_BYTES_LIMIT = MAX_MESSAGE_BYTES - _FRAMING_HEADROOM

_LOG_EVERY_S = 30.0
_CONNECT_BACKOFF_MAX_S = 10.0
_IDLE_WAIT_S = 1.0


# --------------------------------------------------------------------------------------
# Batching (pure)


class Message(NamedTuple):
    """One Kafka message ready to send: the agent, the value bytes, the events it holds."""

    key: str
    value: bytes
    events: int


class _OpenBatch:
    __slots__ = ("deadline", "nbytes", "parts")

    def __init__(self, deadline: float) -> None:
        self.parts: list[bytes] = []
        self.nbytes = 2  # the enclosing brackets
        self.deadline = deadline


class BatchAssembler:
    """Groups encoded events per agent into Kafka messages.

    A batch of one agent is sealed when it holds ``max_batch`` events, when the next event
    would make the message larger than ``max_batch_bytes``, or when ``linger_s`` has
    passed since its first event (:meth:`due`). A batch is a JSON array of events; with
    ``max_batch == 1`` every message is the plain event object instead.

    Parameters
    ----------
    max_batch : int
        Most events in one message (``>= 1``).
    max_batch_bytes : int
        Most bytes of one message value, brackets and commas included. An event larger
        than ``max_batch_bytes - 2`` is sealed alone; callers drop such events before.
    linger_s : float
        Longest time an event waits for its batch to fill, in seconds.
    """

    def __init__(self, max_batch: int, max_batch_bytes: int, linger_s: float) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if max_batch_bytes < 3:
            raise ValueError("max_batch_bytes must be >= 3")
        if linger_s < 0:
            raise ValueError("linger must be >= 0")
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.linger_s = linger_s
        self._open: dict[str, _OpenBatch] = {}
        self._events = 0

    @property
    def open_events(self) -> int:
        """Events held in batches that are not sealed yet."""
        return self._events

    @property
    def open_batches(self) -> int:
        """Agents with an unsealed batch."""
        return len(self._open)

    def add(self, key: str, part: bytes, now: float) -> list[Message]:
        """Add one encoded event of agent ``key``; return the messages this sealed.

        Parameters
        ----------
        key : str
            The agent id.
        part : bytes
            The event encoded as one JSON object.
        now : float
            The current monotonic time in seconds (starts the linger of a new batch).

        Returns
        -------
        list of Message
            Zero, one or two sealed messages (the previous batch if ``part`` did not fit
            it, and the batch ``part`` completed).
        """
        sealed: list[Message] = []
        if self.max_batch == 1:
            sealed.append(Message(key, part, 1))
            return sealed
        batch = self._open.get(key)
        if batch is not None and batch.nbytes + 1 + len(part) > self.max_batch_bytes:
            sealed.append(self._seal(key, batch))
            batch = None
        if batch is None:
            batch = _OpenBatch(now + self.linger_s)
            self._open[key] = batch
        if batch.parts:
            batch.nbytes += 1
        batch.parts.append(part)
        batch.nbytes += len(part)
        self._events += 1
        if len(batch.parts) >= self.max_batch:
            sealed.append(self._seal(key, batch))
        return sealed

    def due(self, now: float, force: bool = False) -> list[Message]:
        """Seal and return the batches whose linger has passed (all with ``force``).

        Parameters
        ----------
        now : float
            The current monotonic time in seconds.
        force : bool
            Seal every open batch regardless of its deadline (flush, close).

        Returns
        -------
        list of Message
            The sealed messages, oldest batch first.
        """
        sealed: list[Message] = []
        # Batches are inserted in deadline order, so the dict is sorted by deadline.
        for key, batch in list(self._open.items()):
            if not force and batch.deadline > now:
                break
            sealed.append(self._seal(key, batch))
        return sealed

    def next_deadline(self) -> float | None:
        """Monotonic time at which the oldest open batch is due, or ``None``."""
        for batch in self._open.values():
            return batch.deadline
        return None

    def _seal(self, key: str, batch: _OpenBatch) -> Message:
        del self._open[key]
        self._events -= len(batch.parts)
        return Message(key, b"[" + b",".join(batch.parts) + b"]", len(batch.parts))


# --------------------------------------------------------------------------------------
# Emitter


@dataclass(frozen=True, slots=True)
class EmitterStats:
    """A snapshot of an emitter's counters (events unless said otherwise).

    An accepted event (``enqueued``) is ``pending`` until it is ``sent`` or dropped as
    ``oversize``, ``invalid`` (not encodable), ``send_errors`` or ``dropped_closed``.
    ``dropped_full`` events, events emitted after close and events that could not even
    be built were refused before the buffer and are not part of ``enqueued``.

    Attributes
    ----------
    enqueued : int
        Events accepted into the buffer.
    sent : int
        Events acknowledged by the broker.
    batches_sent : int
        Kafka messages acknowledged by the broker.
    dropped_full : int
        Events refused because the buffer held ``buffer_size`` unacknowledged events.
    oversize : int
        Events dropped because their JSON was larger than ``max_event_bytes``.
    invalid : int
        Events that could not be built or encoded (for example an argument that is not
        JSON-serialisable in a way msgspec understands); dropped.
    send_errors : int
        Events whose Kafka send failed after the producer's retries; dropped.
    dropped_closed : int
        Events emitted after :meth:`Emitter.close`, or still unsent when its timeout ran
        out.
    pending : int
        Events accepted but not yet acknowledged or dropped.
    """

    enqueued: int = 0
    sent: int = 0
    batches_sent: int = 0
    dropped_full: int = 0
    oversize: int = 0
    invalid: int = 0
    send_errors: int = 0
    dropped_closed: int = 0
    pending: int = 0


class _Throttle:
    """At most one log line per key and interval; counts what it suppressed."""

    def __init__(self, interval_s: float = _LOG_EVERY_S) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> int | None:
        """``None`` to stay quiet, else how many lines were suppressed since the last."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._suppressed.pop(key, 0)


class _FlushTicket:
    __slots__ = ("armed", "barrier", "failed")

    def __init__(self) -> None:
        self.barrier: set[int] | None = None
        self.failed = False
        self.armed = False


def _encode_fallback(obj: Any) -> Any:
    """Unknown types in ``tool_args``/``attributes`` are sent as (bounded) strings."""
    return str(obj)[:MAX_ATTR_STRING]


def _resolve_bootstrap(bootstrap: str | None) -> str:
    value = bootstrap or os.environ.get(BOOTSTRAP_ENV, "")
    value = value.strip()
    if not value:
        raise ValueError(
            f"no Kafka bootstrap servers: pass bootstrap='host:port' or set {BOOTSTRAP_ENV}"
        )
    return value


_SECRET_KEY = re.compile(r"pass|secret|token|key|credential", re.IGNORECASE)


class Emitter:
    """Sends schema-v1 events to Kafka from a background thread, batched per agent.

    :meth:`emit` (and everything built on it) only appends to a bounded buffer and
    returns at once; it never blocks on the network and never raises. The background
    thread encodes the events, batches them per agent and sends one Kafka message per
    batch (key = ``agent_id``). If Kafka cannot be reached the emitter still constructs;
    it connects in the background with backoff while events wait in the buffer, and once
    ``buffer_size`` events are unacknowledged new ones are dropped and counted.

    Parameters
    ----------
    bootstrap : str, optional
        ``host:port[,host:port]``; defaults to the ``AGENTWATCH_KAFKA__BOOTSTRAP``
        environment variable. One of the two is required.
    topic : str, optional
        Kafka topic; defaults to ``AGENTWATCH_KAFKA__TOPICS__EVENTS`` or
        ``agentwatch.events.v1``.
    client_id : str
        Kafka client id (shows up in broker logs and quotas).
    max_batch : int
        Most events per Kafka message; ``1`` sends every event as a plain JSON object.
    max_batch_bytes : int
        Most bytes per Kafka message value (at most ``1 MiB - 2 KiB``, and at least
        ``max_event_bytes + 2``).
    linger_ms : float
        Longest time an event waits for its agent's batch to fill.
    buffer_size : int
        Most events accepted but not yet acknowledged; beyond it events are dropped.
    max_event_bytes : int
        Events whose JSON is larger are dropped and counted as ``oversize`` (the worker
        would dead-letter them).
    acks : {1, 0, -1, "all"}
        Broker acknowledgement level.
    request_timeout_ms : int
        Kafka request timeout; also bounds connecting and waiting for metadata.
    producer_config : mapping, optional
        Extra :class:`kafka.KafkaProducer` settings (TLS, SASL, ...); they override the
        emitter's defaults. Unknown keys raise ``ValueError`` here.
    close_at_exit : bool
        Flush and close when the interpreter exits (best effort, ``exit_timeout``).
    exit_timeout : float
        Seconds the exit hook waits for outstanding events.

    Raises
    ------
    ValueError
        For a missing bootstrap or inconsistent settings (never once constructed).
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        topic: str | None = None,
        client_id: str = "agentwatch-sdk",
        max_batch: int = 100,
        max_batch_bytes: int = 512 * KIB,
        linger_ms: float = 200.0,
        buffer_size: int = 10_000,
        max_event_bytes: int = 64 * KIB,
        acks: int | Literal["all"] = 1,
        request_timeout_ms: int = 10_000,
        producer_config: Mapping[str, Any] | None = None,
        close_at_exit: bool = True,
        exit_timeout: float = 5.0,
    ) -> None:
        self.bootstrap = _resolve_bootstrap(bootstrap)
        self.topic = topic or os.environ.get(TOPIC_ENV, "").strip() or DEFAULT_TOPIC
        if buffer_size < 1:
            raise ValueError("buffer_size must be >= 1")
        if max_event_bytes < 256:
            raise ValueError("max_event_bytes must be >= 256")
        if not max_event_bytes + 2 <= max_batch_bytes <= MAX_BATCH_BYTES_LIMIT:
            raise ValueError(
                f"max_batch_bytes must be between max_event_bytes + 2 ({max_event_bytes + 2}) "
                f"and {MAX_BATCH_BYTES_LIMIT}"
            )
        if request_timeout_ms < 1000:
            raise ValueError("request_timeout_ms must be >= 1000")
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.linger_ms = linger_ms
        self.buffer_size = buffer_size
        self.max_event_bytes = max_event_bytes
        self._probe_timeout_s = min(2.0, request_timeout_ms / 1000.0)
        self._assembler = BatchAssembler(max_batch, max_batch_bytes, linger_ms / 1000.0)
        self._producer_config = self._build_producer_config(
            client_id, acks, request_timeout_ms, producer_config
        )
        self._secrets = [
            str(v)
            for k, v in (producer_config or {}).items()
            if _SECRET_KEY.search(k) and isinstance(v, str) and v
        ]

        # Shared state, guarded by _lock (the condition uses the same lock).
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._intake: list[Event] = []
        self._new_tickets: list[_FlushTicket] = []
        self._armed: list[_FlushTicket] = []
        self._inflight: dict[int, int] = {}
        self._closed = False
        self._close_deadline = float("inf")
        self._finished = False
        self._lost_at_close = 0
        self._enqueued = 0
        self._sent = 0
        self._batches_sent = 0
        self._dropped_full = 0
        self._oversize = 0
        self._invalid = 0
        self._send_errors = 0
        self._dropped_closed = 0
        self._pending = 0

        # Owned by the background thread.
        self._wake = threading.Event()
        self._producer: Any = None
        self._sealed: deque[Message] = deque()
        self._waiting: list[_FlushTicket] = []
        self._next_connect = 0.0
        self._backoff = 0.5
        self._reported_full = 0
        self._batch_ids = itertools.count(1)
        self._encoder = msgspec.json.Encoder(enc_hook=_encode_fallback)
        self._throttle = _Throttle()

        self._exit_hook: Callable[[], None] | None = None
        if close_at_exit:
            self._exit_hook = functools.partial(_close_at_exit, weakref.ref(self), exit_timeout)
            atexit.register(self._exit_hook)
        self._thread = threading.Thread(target=self._run, name="agentwatch-emitter", daemon=True)
        self._thread.start()

    # -- configuration ---------------------------------------------------------------

    def _build_producer_config(
        self,
        client_id: str,
        acks: int | str,
        request_timeout_ms: int,
        extra: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        if acks not in (0, 1, -1, "all"):
            raise ValueError("acks must be 0, 1, -1 or 'all'")
        config: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap.split(",") if s.strip()],
            "client_id": client_id,
            "acks": acks,
            # Idempotence needs acks=all; with acks=1 it is switched off explicitly.
            "enable_idempotence": acks in (-1, "all"),
            "retries": 5,
            "retry_backoff_ms": 200,
            "linger_ms": 5,
            "compression_type": None,
            "request_timeout_ms": request_timeout_ms,
            "delivery_timeout_ms": 3 * request_timeout_ms,
            "max_block_ms": request_timeout_ms,
            "bootstrap_timeout_ms": request_timeout_ms,
            "max_request_size": MAX_MESSAGE_BYTES + 64 * KIB,
            # Several agents' messages share a producer batch; it stays under 1 MiB.
            "batch_size": 512 * KIB,
            "api_version": None,
            "metrics_enabled": False,
        }
        unknown = sorted(set(extra or {}) - set(KafkaProducer.DEFAULT_CONFIG))
        if unknown:
            raise ValueError(f"unknown KafkaProducer settings: {', '.join(unknown)}")
        config.update(extra or {})
        return config

    # -- the agent's side ------------------------------------------------------------

    def emit(self, event: Event) -> bool:
        """Queue one event; never blocks, never raises.

        Parameters
        ----------
        event : Event
            A schema-v1 event (its ``agent_id`` becomes the Kafka key).

        Returns
        -------
        bool
            ``True`` if the event was accepted, ``False`` if it was dropped (buffer full
            or emitter closed; see :attr:`stats`).
        """
        with self._lock:
            if self._closed:
                self._dropped_closed += 1
                return False
            if self._pending >= self.buffer_size:
                self._dropped_full += 1
                return False
            intake = self._intake
            intake.append(event)
            self._pending += 1
            self._enqueued += 1
            size = len(intake)
        if size == 1 or size % self.max_batch == 0:
            self._wake.set()
        return True

    def agent(
        self,
        agent_id: str,
        *,
        agent_version: str | None = None,
        agent_type: str | None = None,
        session_id: str | None = None,
    ) -> AgentTelemetry:
        """An :class:`AgentTelemetry` bound to ``agent_id`` that sends through this emitter.

        Parameters
        ----------
        agent_id : str
            Stable id of the agent instance (the Kafka key).
        agent_version, agent_type, session_id : str, optional
            Copied into every event of the returned object.

        Returns
        -------
        AgentTelemetry
        """
        return AgentTelemetry(
            self,
            agent_id,
            agent_version=agent_version,
            agent_type=agent_type,
            session_id=session_id,
        )

    def note_invalid(self, reason: str) -> None:
        """Count an event that could not be built (used by :class:`AgentTelemetry`)."""
        with self._lock:
            self._invalid += 1
        self._log_throttled("invalid", "agentwatch: event dropped, could not be built: %s", reason)

    @property
    def stats(self) -> EmitterStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return EmitterStats(
                enqueued=self._enqueued,
                sent=self._sent,
                batches_sent=self._batches_sent,
                dropped_full=self._dropped_full,
                oversize=self._oversize,
                invalid=self._invalid,
                send_errors=self._send_errors,
                dropped_closed=self._dropped_closed,
                pending=self._pending,
            )

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything buffered now and wait until the broker has answered for it.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait; ``None`` waits as long as it takes.

        Returns
        -------
        bool
            ``True`` if every event accepted before the call was acknowledged or dropped
            by a size or encoding check; ``False`` on timeout or if a send failed.
        """
        ticket = _FlushTicket()
        with self._lock:
            if self._finished:
                return self._pending == 0
            self._new_tickets.append(ticket)
        self._wake.set()

        def done() -> bool:
            return self._finished or (
                ticket.barrier is not None and ticket.barrier.isdisjoint(self._inflight)
            )

        with self._cond:
            complete = self._cond.wait_for(done, timeout)
            if ticket in self._armed:
                self._armed.remove(ticket)
            return complete and ticket.barrier is not None and not ticket.failed

    def close(self, timeout: float = 10.0) -> bool:
        """Flush for at most ``timeout`` seconds, then stop the thread and the producer.

        Events still unsent at the deadline, and events emitted afterwards, are counted
        in ``stats.dropped_closed``. Calling it again does nothing.

        Parameters
        ----------
        timeout : float
            Seconds to wait for outstanding events.

        Returns
        -------
        bool
            ``True`` if the emitter stopped within the timeout and nothing was lost on
            the way (every event it held was acknowledged).
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close_deadline = time.monotonic() + max(0.0, timeout)
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
            self._exit_hook = None
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(max(0.0, timeout) + 1.0)
        with self._lock:
            return self._finished and not self._lost_at_close

    def __enter__(self) -> Emitter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Emitter(bootstrap={self.bootstrap!r}, topic={self.topic!r})"

    # -- the background thread --------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - a bug must never take the agent down
            log.error("agentwatch: emitter thread failed: %s", self._safe(exc))
        finally:
            self._finish()

    def _loop(self) -> None:
        assembler = self._assembler
        while True:
            self._wake.wait(self._wait_timeout())
            self._wake.clear()
            with self._lock:
                events, self._intake = self._intake, []
                tickets, self._new_tickets = self._new_tickets, []
                closing = self._closed
            self._waiting.extend(tickets)
            now = time.monotonic()
            for event in events:
                self._add(event, now)
            force = closing or bool(self._waiting)
            self._sealed.extend(assembler.due(now, force=force))
            if self._producer is None and (self._sealed or assembler.open_events):
                self._connect()
            if self._producer is not None:
                self._send_sealed()
            if self._waiting and not self._sealed and not assembler.open_events:
                self._arm(self._waiting)
                self._waiting = []
            self._report_drops()
            if closing and (
                (not self._sealed and not assembler.open_events)
                or time.monotonic() >= self._close_deadline
            ):
                return

    def _wait_timeout(self) -> float:
        deadline = self._assembler.next_deadline()
        now = time.monotonic()
        waits = [_IDLE_WAIT_S]
        if deadline is not None:
            waits.append(deadline - now)
        if self._producer is None and (self._sealed or deadline is not None or self._waiting):
            waits.append(self._next_connect - now)
        if self._closed:
            waits.append(self._close_deadline - now)
        return max(0.0, min(waits))

    def _add(self, event: Event, now: float) -> None:
        try:
            part = self._encoder.encode(event)
            key = event.agent_id
            if not isinstance(key, str):
                raise TypeError("agent_id is not a string")
        except Exception as exc:  # noqa: BLE001 - an unencodable event is dropped, counted
            with self._lock:
                self._invalid += 1
                self._pending -= 1
            self._log_throttled(
                "encode", "agentwatch: event dropped, cannot encode: %s", type(exc).__name__
            )
            return
        if len(part) > self.max_event_bytes:
            with self._lock:
                self._oversize += 1
                self._pending -= 1
            self._log_throttled(
                "oversize",
                "agentwatch: event of agent %r dropped: %d bytes > max_event_bytes %d",
                key,
                len(part),
                self.max_event_bytes,
            )
            return
        self._sealed.extend(self._assembler.add(key, part, now))

    def _connect(self) -> None:
        now = time.monotonic()
        if now < self._next_connect:
            return
        try:
            # A plain TCP probe first: while the broker is down this fails fast and cleanly
            # (a failed KafkaProducer bootstrap leaves sockets for the garbage collector).
            if not self._producer_config.get("proxy_url"):
                _probe(self._producer_config["bootstrap_servers"], self._probe_timeout_s)
            producer = KafkaProducer(**self._producer_config)
        except Exception as exc:  # noqa: BLE001 - any failure is retried with backoff
            self._next_connect = time.monotonic() + self._backoff
            self._log_throttled(
                "connect",
                "agentwatch: cannot reach Kafka at %s (%s); retrying in the background",
                self.bootstrap,
                self._safe(exc),
            )
            self._backoff = min(self._backoff * 2, _CONNECT_BACKOFF_MAX_S)
            return
        self._producer = producer
        self._backoff = 0.5
        # The producer registered its own exit hook, which would run before ours and close
        # it with our events still buffered; re-register ours so that it runs first.
        hook = self._exit_hook
        if hook is not None:
            atexit.unregister(hook)
            atexit.register(hook)
        log.debug("agentwatch: connected to Kafka at %s", self.bootstrap)

    def _send_sealed(self) -> None:
        producer = self._producer
        sealed = self._sealed
        topic = self.topic
        while sealed:
            message = sealed.popleft()
            batch_id = next(self._batch_ids)
            with self._lock:
                self._inflight[batch_id] = message.events
            try:
                future = producer.send(topic, key=message.key.encode("utf-8"), value=message.value)
            except Exception as exc:  # noqa: BLE001 - counted as a send error, never raised
                self._on_error(batch_id, message.events, exc)
                continue
            future.add_callback(self._on_sent, batch_id, message.events)
            future.add_errback(self._on_error, batch_id, message.events)

    def _on_sent(self, batch_id: int, count: int, _metadata: object) -> None:
        with self._cond:
            if self._inflight.pop(batch_id, None) is None:
                return  # already written off by close()
            self._sent += count
            self._batches_sent += 1
            self._pending -= count
            self._cond.notify_all()

    def _on_error(self, batch_id: int, count: int, exc: BaseException) -> None:
        with self._cond:
            if self._inflight.pop(batch_id, None) is None:
                return
            self._send_errors += count
            self._pending -= count
            for ticket in self._armed:
                if ticket.barrier is not None and batch_id in ticket.barrier:
                    ticket.failed = True
            self._cond.notify_all()
        self._log_throttled(
            "send",
            "agentwatch: sending %d event(s) to %s failed: %s",
            count,
            self.topic,
            self._safe(exc),
        )

    def _arm(self, tickets: list[_FlushTicket]) -> None:
        with self._cond:
            for ticket in tickets:
                ticket.barrier = set(self._inflight)
                ticket.armed = True
                self._armed.append(ticket)
            self._cond.notify_all()

    def _report_drops(self) -> None:
        dropped = self._dropped_full
        if dropped > self._reported_full:
            suppressed = self._throttle.check("full")
            if suppressed is not None:
                log.warning(
                    "agentwatch: telemetry buffer full (%d events unacknowledged); "
                    "%d event(s) dropped so far",
                    self.buffer_size,
                    dropped,
                )
                self._reported_full = dropped

    def _finish(self) -> None:
        leftover = sum(m.events for m in self._sealed) + self._assembler.open_events
        self._sealed.clear()
        self._assembler.due(0.0, force=True)
        with self._lock:
            leftover += len(self._intake)
            self._intake = []
            self._dropped_closed += leftover
            self._pending -= leftover
        if leftover:
            log.warning("agentwatch: %d event(s) unsent when the emitter closed", leftover)
        errors_before = self._send_errors
        producer, self._producer = self._producer, None
        if producer is not None:
            self._close_producer(producer)
        with self._cond:
            # Whatever the producer did not complete is lost.
            lost = sum(self._inflight.values()) + self._send_errors - errors_before
            unfinished = sum(self._inflight.values())
            self._inflight.clear()
            self._send_errors += unfinished
            self._pending -= unfinished
            for ticket in [*self._waiting, *self._new_tickets, *self._armed]:
                ticket.barrier = ticket.barrier or set()
                ticket.failed = ticket.failed or bool(lost or leftover)
            self._waiting = []
            self._new_tickets = []
            self._lost_at_close = leftover + lost
            self._finished = True
            self._cond.notify_all()

    def _close_producer(self, producer: Any) -> None:
        remaining = self._close_deadline - time.monotonic()
        if remaining == float("inf"):  # the thread ended without close(): a bug path
            remaining = 10.0
        try:
            producer.flush(timeout=max(0.0, remaining))
        except Exception as exc:  # noqa: BLE001 - broker gone: abandon what is in flight
            log.warning(
                "agentwatch: Kafka did not answer before the close timeout: %s", self._safe(exc)
            )
            # KafkaProducer.close() insists on a complete flush first; make its I/O
            # thread fail the outstanding batches so that close() can finish.
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                with contextlib.suppress(Exception):
                    sender.force_close()
                    sender.join(1.0)
        try:
            producer.close(timeout=1.0)
        except Exception as exc:  # noqa: BLE001 - best effort at shutdown
            log.warning("agentwatch: closing the Kafka producer: %s", self._safe(exc))

    # -- logging without secrets -----------------------------------------------------

    def _safe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:500]

    def _log_throttled(self, key: str, msg: str, *args: object) -> None:
        suppressed = self._throttle.check(key)
        if suppressed is None:
            return
        if suppressed:
            msg += f" ({suppressed} similar message(s) suppressed)"
        log.warning(msg, *args)


def _split_host_port(server: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` (port 9092) as a pair."""
    server = server.strip()
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        port = rest.lstrip(":")
    elif server.count(":") == 1:
        host, _, port = server.partition(":")
    else:
        host, port = server, ""
    return host, int(port) if port else 9092


def _probe(servers: Iterable[str] | str, timeout_s: float) -> None:
    """Raise ``OSError`` unless a TCP connection to one of ``servers`` succeeds."""
    if isinstance(servers, str):
        servers = servers.split(",")
    last: OSError = OSError("no bootstrap server")
    for server in servers:
        try:
            with socket.create_connection(_split_host_port(server), timeout=timeout_s):
                return
        except (OSError, ValueError) as exc:
            last = exc if isinstance(exc, OSError) else OSError(str(exc))
    raise last


def _close_at_exit(ref: weakref.ref[Emitter], timeout: float) -> None:
    emitter = ref()
    if emitter is not None:
        with contextlib.suppress(Exception):  # interpreter shutdown: best effort
            emitter.close(timeout=timeout)


# --------------------------------------------------------------------------------------
# Destinations

DestinationLike = Destination | str | tuple[DestinationKind, str]


def dest(kind: DestinationKind, value: str) -> Destination:
    """A destination: where data, requests or money went.

    Parameters
    ----------
    kind : {"host", "ip", "url", "email", "account", "user", "path"}
        What ``value`` names.
    value : str
        The destination itself, 1-2048 characters.

    Returns
    -------
    Destination
    """
    return Destination(kind=kind, value=value)


_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_MAYBE_IP = re.compile(r"^(?:[0-9.]+|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.%\w]*)$")


def as_destination(value: DestinationLike) -> Destination:
    """A :class:`Destination` from a destination, a ``(kind, value)`` pair or a string.

    A string is a ``url`` if it contains ``://``, an ``ip`` if it parses as an IP address,
    an ``email`` if it looks like ``name@domain``, a ``path`` if it starts with ``/``,
    ``~`` or ``.`` (or a drive letter), and a ``host`` otherwise.

    Parameters
    ----------
    value : Destination or str or tuple of (str, str)

    Returns
    -------
    Destination
    """
    if isinstance(value, Destination):
        return value
    if isinstance(value, tuple):
        kind, text = value
        return Destination(kind=kind, value=text)
    text = str(value)
    if "://" in text:
        return Destination(kind="url", value=text)
    if _MAYBE_IP.match(text):
        try:
            ipaddress.ip_address(text)
        except ValueError:
            pass
        else:
            return Destination(kind="ip", value=text)
    if "@" in text and "/" not in text and " " not in text:
        return Destination(kind="email", value=text)
    if text.startswith(("/", "~", ".", "\\")) or _DRIVE.match(text):
        return Destination(kind="path", value=text)
    return Destination(kind="host", value=text)


def _destinations(values: Iterable[DestinationLike] | None) -> list[Destination] | None:
    if values is None:
        return None
    result = [as_destination(v) for v in values]
    return result or None


# --------------------------------------------------------------------------------------
# Agent-bound convenience API


class EventSink(Protocol):
    """Anything events can be handed to (an :class:`Emitter`, or a list-like in tests)."""

    def emit(self, event: Event) -> object:
        """Take one event; must not block or raise."""
        ...


_P = ParamSpec("_P")
_R = TypeVar("_R")
_build_throttle = _Throttle()


def _never_raises(method: Callable[_P, _R | None]) -> Callable[_P, _R | None]:
    """Turn any exception of a convenience method into a logged, counted drop."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R | None:
        try:
            return method(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - telemetry must never raise into the agent
            telemetry = args[0] if args else None
            sink = getattr(telemetry, "sink", None)
            reason = f"{method.__name__}: {type(exc).__name__}"
            if isinstance(sink, Emitter):
                sink.note_invalid(reason)
            else:
                suppressed = _build_throttle.check(reason)
                if suppressed is not None:
                    log.warning("agentwatch: event dropped, could not be built: %s", reason)
            return None

    return wrapper


class _SessionState:
    __slots__ = ("cost_usd", "session_id", "trace_id")

    def __init__(self, session_id: str, trace_id: str | None) -> None:
        self.session_id = session_id
        self.trace_id = trace_id
        self.cost_usd = 0.0


def _status_of(exc: BaseException | None) -> Status:
    if exc is None:
        return "ok"
    return "denied" if isinstance(exc, PermissionError) else "error"


class AgentTelemetry:
    """Builds the events of one agent and hands them to an emitter.

    Every method returns at once and never raises: a problem building an event is logged,
    counted (``stats.invalid``) and the method returns ``None``; otherwise it returns the
    :class:`~agentwatch.schemas.events.Event` it emitted.

    Parameters
    ----------
    sink : EventSink
        Usually an :class:`Emitter` (see :meth:`Emitter.agent`).
    agent_id : str
        Stable id of the agent instance.
    agent_version, agent_type : str, optional
        Copied into every event.
    session_id : str, optional
        Default session of the events; :meth:`session` overrides it inside its block.
    """

    def __init__(
        self,
        sink: EventSink,
        agent_id: str,
        *,
        agent_version: str | None = None,
        agent_type: str | None = None,
        session_id: str | None = None,
    ) -> None:
        if not agent_id:
            raise ValueError("agent_id must not be empty")
        self.sink = sink
        self.agent_id = agent_id
        self.agent_version = agent_version
        self.agent_type = agent_type
        self.default_session_id = session_id
        self._session: contextvars.ContextVar[_SessionState | None] = contextvars.ContextVar(
            f"agentwatch_session_{agent_id}", default=None
        )

    def __repr__(self) -> str:
        return f"AgentTelemetry(agent_id={self.agent_id!r})"

    @property
    def session_id(self) -> str | None:
        """The session the next event belongs to (the innermost :meth:`session`)."""
        state = self._session.get()
        return state.session_id if state is not None else self.default_session_id

    # -- building ------------------------------------------------------------------

    def _send(self, type_: EventType, fields: dict[str, Any]) -> Event:
        ms = now_ms()
        state = self._session.get()
        if state is not None:
            if fields.get("session_id") is None:
                fields["session_id"] = state.session_id
            if fields.get("trace_id") is None and state.trace_id is not None:
                fields["trace_id"] = state.trace_id
            cost = fields.get("cost_usd")
            if cost is not None and type_ != "session_end":
                state.cost_usd += cost
        elif fields.get("session_id") is None:
            fields["session_id"] = self.default_session_id
        # Fields left at None are omitted on the wire (they equal the defaults).
        event = Event(
            schema_version="1",
            event_id=ulid_at(ms),
            ts=utc_from_ms(ms),
            agent_id=self.agent_id,
            type=type_,
            agent_version=self.agent_version,
            agent_type=self.agent_type,
            **fields,
        )
        self.sink.emit(event)
        return event

    # -- raw ----------------------------------------------------------------------

    @_never_raises
    def emit(self, event: Event) -> Event | None:
        """Hand a ready-made event to the sink unchanged.

        Parameters
        ----------
        event : Event

        Returns
        -------
        Event or None
        """
        self.sink.emit(event)
        return event

    @_never_raises
    def record(self, type: EventType, **fields: Any) -> Event | None:
        """Emit an event of any type with the given schema fields.

        Parameters
        ----------
        type : str
            The event type.
        **fields
            Optional fields of :class:`~agentwatch.schemas.events.Event`.

        Returns
        -------
        Event or None
        """
        if "destinations" in fields:
            fields["destinations"] = _destinations(fields["destinations"])
        return self._send(type, dict(fields))

    # -- typed helpers ------------------------------------------------------------

    @_never_raises
    def tool_call(
        self,
        tool_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        destinations: Iterable[DestinationLike] | None = None,
        status: Status = "ok",
        duration_ms: float | None = None,
        bytes_in: int | None = None,
        bytes_out: int | None = None,
        cost_usd: float | None = None,
        attributes: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> Event | None:
        """Emit a ``tool_call`` event.

        Parameters
        ----------
        tool_name : str
            Name of the tool invoked.
        args : mapping, optional
            The tool's arguments (redact secrets and personal data first).
        destinations : iterable of DestinationLike, optional
            Where the call sent data, requests or money.
        status : {"ok", "error", "denied"}
        duration_ms : float, optional
        bytes_in, bytes_out : int, optional
        cost_usd : float, optional
            Money the call spent (paid APIs, purchases, transfers).
        attributes : mapping, optional
            Free-form context (at most 64 entries).
        trace_id, span_id : str, optional
            W3C trace context.

        Returns
        -------
        Event or None
            The event emitted, ``None`` if it could not be built.
        """
        return self._send(
            "tool_call",
            {
                "tool_name": tool_name,
                "tool_args": dict(args) if args is not None else None,
                "destinations": _destinations(destinations),
                "status": status,
                "duration_ms": duration_ms,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "cost_usd": cost_usd,
                "attributes": dict(attributes) if attributes else None,
                "trace_id": trace_id,
                "span_id": span_id,
            },
        )

    @_never_raises
    def llm_call(
        self,
        model: str,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        cost_usd: float | None = None,
        *,
        duration_ms: float | None = None,
        destinations: Iterable[DestinationLike] | None = None,
        status: Status = "ok",
        attributes: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> Event | None:
        """Emit an ``llm_call`` event.

        Parameters
        ----------
        model : str
            Model requested.
        tokens_in, tokens_out : int, optional
            Prompt and completion tokens.
        cost_usd : float, optional
            Cost of the call in US dollars (added to the session's total).
        duration_ms : float, optional
        destinations : iterable of DestinationLike, optional
            The model endpoint, e.g. ``"api.openai.com"``.
        status : {"ok", "error", "denied"}
        attributes : mapping, optional
        trace_id, span_id : str, optional

        Returns
        -------
        Event or None
        """
        return self._send(
            "llm_call",
            {
                "model": model,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "cost_usd": cost_usd,
                "duration_ms": duration_ms,
                "destinations": _destinations(destinations),
                "status": status,
                "attributes": dict(attributes) if attributes else None,
                "trace_id": trace_id,
                "span_id": span_id,
            },
        )

    @_never_raises
    def network(
        self,
        *destinations: DestinationLike,
        bytes_in: int | None = None,
        bytes_out: int | None = None,
        status: Status = "ok",
        duration_ms: float | None = None,
        attributes: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> Event | None:
        """Emit a ``network`` event for a connection or request to ``destinations``.

        Parameters
        ----------
        *destinations : DestinationLike
            Hosts, IPs or URLs contacted (strings are classified by
            :func:`as_destination`).
        bytes_in, bytes_out : int, optional
        status : {"ok", "error", "denied"}
        duration_ms : float, optional
        attributes : mapping, optional
        trace_id, span_id : str, optional

        Returns
        -------
        Event or None
        """
        return self._send(
            "network",
            {
                "destinations": _destinations(destinations),
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "status": status,
                "duration_ms": duration_ms,
                "attributes": dict(attributes) if attributes else None,
                "trace_id": trace_id,
                "span_id": span_id,
            },
        )

    @_never_raises
    def secret_access(
        self,
        secret_name: str,
        *,
        status: Status = "ok",
        destinations: Iterable[DestinationLike] | None = None,
        attributes: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> Event | None:
        """Emit a ``secret_access`` event: the NAME of a credential read, never its value.

        Parameters
        ----------
        secret_name : str
            Name or path of the secret, e.g. ``"vault:kv/support/zendesk-token"``.
        status : {"ok", "error", "denied"}
        destinations : iterable of DestinationLike, optional
            The account the secret unlocks.
        attributes : mapping, optional
        trace_id, span_id : str, optional

        Returns
        -------
        Event or None
        """
        return self._send(
            "secret_access",
            {
                "secret_name": secret_name,
                "status": status,
                "destinations": _destinations(destinations),
                "attributes": dict(attributes) if attributes else None,
                "trace_id": trace_id,
                "span_id": span_id,
            },
        )

    @_never_raises
    def file_access(
        self,
        path: str,
        *,
        bytes_in: int | None = None,
        bytes_out: int | None = None,
        status: Status = "ok",
        duration_ms: float | None = None,
        attributes: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> Event | None:
        """Emit a ``file_access`` event for ``path`` (a destination of kind ``path``).

        Parameters
        ----------
        path : str
            File or object path.
        bytes_in, bytes_out : int, optional
            Bytes read from / written to the file.
        status : {"ok", "error", "denied"}
        duration_ms : float, optional
        attributes : mapping, optional
            E.g. ``{"mode": "w"}``.
        trace_id, span_id : str, optional

        Returns
        -------
        Event or None
        """
        return self._send(
            "file_access",
            {
                "destinations": [Destination(kind="path", value=path)],
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "status": status,
                "duration_ms": duration_ms,
                "attributes": dict(attributes) if attributes else None,
                "trace_id": trace_id,
                "span_id": span_id,
            },
        )

    @_never_raises
    def metric(
        self, metrics: Mapping[str, float], *, attributes: Mapping[str, Any] | None = None
    ) -> Event | None:
        """Emit a ``metric`` event, e.g. ``metric({"cpu_pct": 12.5, "rss_mb": 410})``.

        Parameters
        ----------
        metrics : mapping of str to float
            1-64 named measurements.
        attributes : mapping, optional

        Returns
        -------
        Event or None
        """
        return self._send(
            "metric",
            {
                "metrics": {str(k): float(v) for k, v in metrics.items()},
                "attributes": dict(attributes) if attributes else None,
            },
        )

    # -- context managers -----------------------------------------------------------

    def session(
        self,
        session_id: str | None = None,
        *,
        trace_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Session:
        """A block that is one session: ``session_start`` on entry, ``session_end`` on exit.

        Inside the block (and in tasks started from it, via :mod:`contextvars`) every
        event of this agent carries the session's id and trace id. ``session_end``
        records the duration, the sum of ``cost_usd`` of the session's events and the
        status (``error`` if the block raises, ``denied`` for ``PermissionError``); the
        exception propagates unchanged. Usable with ``with`` and ``async with``.

        Parameters
        ----------
        session_id : str, optional
            Defaults to a new ULID.
        trace_id : str, optional
            W3C trace id to put on the session's events.
        attributes : mapping, optional
            Attributes of the ``session_start`` event.

        Returns
        -------
        Session
            The context manager; entering it yields itself.
        """
        return Session(self, session_id, trace_id, attributes)

    def track_tool(
        self,
        tool_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        destinations: Iterable[DestinationLike] | None = None,
        attributes: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> ToolCall:
        """A block that is one tool call; emits its ``tool_call`` event on exit.

        The event records ``duration_ms`` and the status: ``ok``, ``error`` if the block
        raises, ``denied`` if it raises ``PermissionError`` (or whatever the block set
        in ``call.status``). The exception propagates unchanged; its class name goes to
        the attribute ``error.type``. The yielded :class:`ToolCall` lets the block add
        destinations, bytes, cost and attributes. Usable with ``with`` and ``async with``.

        Parameters
        ----------
        tool_name : str
        args : mapping, optional
            The tool's arguments (redact secrets first).
        destinations : iterable of DestinationLike, optional
            Destinations known up front.
        attributes : mapping, optional
        trace_id, span_id : str, optional

        Returns
        -------
        ToolCall
        """
        return ToolCall(self, tool_name, args, destinations, attributes, trace_id, span_id)


class Session:
    """The context manager of :meth:`AgentTelemetry.session`.

    Attributes
    ----------
    session_id : str
    trace_id : str or None
    status : {"ok", "error", "denied"} or None
        Set it inside the block to override the status ``session_end`` reports.
    cost_usd : float
        Sum of ``cost_usd`` of the session's events so far.
    duration_ms : float or None
        Set on exit.
    """

    def __init__(
        self,
        telemetry: AgentTelemetry,
        session_id: str | None,
        trace_id: str | None,
        attributes: Mapping[str, Any] | None,
    ) -> None:
        self.telemetry = telemetry
        self.session_id = session_id or new_id()
        self.trace_id = trace_id
        self.status: Status | None = None
        self.duration_ms: float | None = None
        self._attributes = dict(attributes) if attributes else None
        self._state = _SessionState(self.session_id, trace_id)
        self._token: contextvars.Token[_SessionState | None] | None = None
        self._start = 0.0

    @property
    def cost_usd(self) -> float:
        return self._state.cost_usd

    def __enter__(self) -> Session:
        try:
            self._token = self.telemetry._session.set(self._state)
            self._start = time.perf_counter()
            self.telemetry.record(
                "session_start",
                session_id=self.session_id,
                trace_id=self.trace_id,
                attributes=self._attributes,
            )
        except Exception:  # noqa: BLE001 - telemetry must never raise into the agent
            log.warning("agentwatch: could not start the session", exc_info=False)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.duration_ms = (time.perf_counter() - self._start) * 1000.0
            status = self.status if exc is None and self.status else _status_of(exc)
            cost = self._state.cost_usd
            self.telemetry.record(
                "session_end",
                session_id=self.session_id,
                trace_id=self.trace_id,
                duration_ms=self.duration_ms,
                cost_usd=cost if cost > 0 else None,
                status=status,
                attributes={"error.type": type(exc).__name__} if exc is not None else None,
            )
        finally:
            token, self._token = self._token, None
            if token is not None:
                try:
                    self.telemetry._session.reset(token)
                except ValueError:  # exited in another context (e.g. another task)
                    self.telemetry._session.set(None)

    async def __aenter__(self) -> Session:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class ToolCall:
    """The handle of :meth:`AgentTelemetry.track_tool`: fill it in inside the block.

    Attributes
    ----------
    tool_name : str
    args : dict or None
    destinations : list of Destination
    bytes_in, bytes_out : int or None
    cost_usd : float or None
    attributes : dict
    status : {"ok", "error", "denied"} or None
        ``None`` lets the outcome of the block decide; set it to report e.g. a refusal
        that did not raise.
    duration_ms : float or None
        Set on exit.
    event : Event or None
        The ``tool_call`` event emitted on exit.
    """

    def __init__(
        self,
        telemetry: AgentTelemetry,
        tool_name: str,
        args: Mapping[str, Any] | None,
        destinations: Iterable[DestinationLike] | None,
        attributes: Mapping[str, Any] | None,
        trace_id: str | None,
        span_id: str | None,
    ) -> None:
        self.telemetry = telemetry
        self.tool_name = tool_name
        self.args = dict(args) if args is not None else None
        self.destinations: list[Destination] = []
        self.bytes_in: int | None = None
        self.bytes_out: int | None = None
        self.cost_usd: float | None = None
        self.attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self.status: Status | None = None
        self.trace_id = trace_id
        self.span_id = span_id
        self.duration_ms: float | None = None
        self.event: Event | None = None
        self._start = 0.0
        if destinations is not None:
            self.add_destinations(*destinations)

    def destination(self, kind: DestinationKind, value: str) -> ToolCall:
        """Record one destination of kind ``kind``; returns ``self``."""
        self.destinations.append(Destination(kind=kind, value=value))
        return self

    def add_destinations(self, *destinations: DestinationLike) -> ToolCall:
        """Record destinations (strings classified by :func:`as_destination`)."""
        try:
            self.destinations.extend(as_destination(d) for d in destinations)
        except Exception as exc:  # noqa: BLE001 - a bad destination is skipped
            log.warning("agentwatch: ignoring a destination: %s", type(exc).__name__)
        return self

    def add_bytes(self, bytes_in: int = 0, bytes_out: int = 0) -> ToolCall:
        """Add to the bytes received and sent by the call."""
        if bytes_in:
            self.bytes_in = (self.bytes_in or 0) + bytes_in
        if bytes_out:
            self.bytes_out = (self.bytes_out or 0) + bytes_out
        return self

    def set_attribute(self, key: str, value: str | bool | int | float) -> ToolCall:
        """Set one free-form attribute of the event."""
        self.attributes[key] = value
        return self

    def __enter__(self) -> ToolCall:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.duration_ms = (time.perf_counter() - self._start) * 1000.0
        try:
            if exc is not None:
                status: Status = _status_of(exc)
                self.attributes.setdefault("error.type", type(exc).__name__)
            else:
                status = self.status or "ok"
            self.event = self.telemetry.tool_call(
                self.tool_name,
                self.args,
                destinations=self.destinations,
                status=status,
                duration_ms=self.duration_ms,
                bytes_in=self.bytes_in,
                bytes_out=self.bytes_out,
                cost_usd=self.cost_usd,
                attributes=self.attributes,
                trace_id=self.trace_id,
                span_id=self.span_id,
            )
        except Exception:  # noqa: BLE001 - telemetry must never raise into the agent
            log.warning("agentwatch: could not record the tool call %r", self.tool_name)
        # Returning None lets the block's own exception propagate unchanged.

    async def __aenter__(self) -> ToolCall:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
