"""Batched, column-wise inserts of events, anomalies and dead letters.

Secrets are redacted here, before anything reaches ClickHouse: ``tool_args`` and
``attributes`` (by key and by shape, see :mod:`agentwatch.storage.redact`), destination
values (URL credentials, tokens in query strings), anomaly texts and dead-letter details.

Inserts are safe to repeat: the tables are ReplacingMergeTree keyed by the event id (or
anomaly id, or Kafka coordinates), so a retried or redelivered row collapses into one on
reads with ``FINAL``. Transient server errors are retried a few times with exponential
backoff; anything else, or a transient error that outlasts the retries, raises
:class:`~agentwatch.storage.client.StorageError` and the caller must not commit the Kafka
offsets of the rows (they will be delivered again).

The calls block; an asyncio worker runs them in an executor. One store (and its client)
can be shared by threads.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from agentwatch.config import StorageSettings
from agentwatch.schemas.anomaly import Anomaly
from agentwatch.schemas.events import Event
from agentwatch.storage.client import StorageError, check_database_name, redact_error
from agentwatch.storage.redact import may_contain_secret, redact_text, redact_value

__all__ = [
    "ANOMALY_COLUMNS",
    "DEAD_LETTER_COLUMNS",
    "EVENT_COLUMNS",
    "DeadLetterRow",
    "EventStore",
    "is_transient",
]

log = logging.getLogger(__name__)

EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "ts",
    "agent_id",
    "type",
    "agent_version",
    "agent_type",
    "session_id",
    "trace_id",
    "span_id",
    "tool_name",
    "tool_args",
    "dest_kinds",
    "dest_values",
    "status",
    "duration_ms",
    "bytes_in",
    "bytes_out",
    "model",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "secret_name",
    "metrics",
    "attributes",
    "ingested_at",
)
ANOMALY_COLUMNS: tuple[str, ...] = (
    "anomaly_id",
    "ts",
    "detected_at",
    "agent_id",
    "session_id",
    "agent_type",
    "detector",
    "detectors",
    "score",
    "severity",
    "title",
    "explanation",
    "contributions",
    "event_ids",
    "labels",
    "ingested_at",
)
DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "ts",
    "topic",
    "partition",
    "offset",
    "item",
    "key",
    "reason",
    "detail",
    "size_bytes",
    "ingested_at",
)

MAX_DETAIL_CHARS = 2048
MAX_KEY_CHARS = 256

# ClickHouse error codes worth retrying: the same insert may succeed a moment later.
TRANSIENT_CODES = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY (replica restarting)
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        999,  # KEEPER_EXCEPTION
    }
)

# Events may span many days (replays): do not fail a batch for touching many partitions.
_EVENT_INSERT_SETTINGS = {"max_partitions_per_insert_block": 0}

_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """One rejected message (or one rejected part of a batch message), without its payload.

    The payload stays on the Kafka dead-letter topic; ``(topic, partition, offset)`` find
    it. ``item`` numbers the rejected parts of one message.
    """

    ts: datetime  # when the worker received the message
    topic: str
    partition: int
    offset: int
    reason: str
    detail: str = ""
    key: bytes | str | None = None
    size_bytes: int = 0
    item: int = 0


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the failed call may help."""
    if isinstance(exc, OperationalError):
        return True
    code = getattr(exc, "code", None)
    return isinstance(exc, ClickHouseError) and isinstance(code, int) and code in TRANSIENT_CODES


def _number_items(rows: Sequence[DeadLetterRow]) -> Sequence[DeadLetterRow]:
    seen: dict[tuple[str, int, int], int] = {}
    out: list[DeadLetterRow] = []
    changed = False
    for row in rows:
        coordinates = (row.topic, row.partition, row.offset)
        n = seen.get(coordinates, 0)
        seen[coordinates] = n + 1
        if row.item == 0 and n:
            row = dataclasses.replace(row, item=n)
            changed = True
        out.append(row)
    return out if changed else rows


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _attr_str(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _attr_strs(attrs: dict[str, Any]) -> dict[str, str]:
    if all(type(v) is str for v in attrs.values()):
        return attrs
    return {k: _attr_str(v) for k, v in attrs.items()}


def _redacted_parts(event: Event) -> tuple[str, list[str], dict[str, str]]:
    """``tool_args`` as compact JSON, destination values and attributes, all redacted.

    One cheap pre-check over everything the event could hide a secret in; only events
    that pass it are walked.
    """
    args = event.tool_args
    if args is None and not event.destinations and not event.attributes:
        return "", [], {}
    args_json = "" if args is None else _json.encode(args).decode("utf-8")
    dests = [d.value for d in event.destinations] if event.destinations else []
    attrs = event.attributes
    probe = args_json
    if dests:
        probe = "\n".join((probe, *dests))
    if attrs:
        probe = "\n".join((probe, *attrs, *(v for v in attrs.values() if isinstance(v, str))))
    if not may_contain_secret(probe):
        return args_json, dests, _attr_strs(attrs) if attrs else {}
    if args:
        args_json = _json.encode(redact_value(args)).decode("utf-8")
    redacted_attrs = redact_value(attrs) if attrs else {}
    return (
        args_json,
        [redact_text(v) for v in dests],
        _attr_strs(redacted_attrs),
    )


def _text(value: str | None) -> str:
    return redact_text(value) if value else ""


class EventStore:
    """Writes to the agentwatch tables of ``database`` through ``client``.

    ``EventStore(connect(dsn), "agentwatch").insert_events(events)`` returns the number of
    rows written; inputs larger than ``batch_rows`` go in several inserts.
    """

    def __init__(
        self,
        client: Client,
        database: str = "agentwatch",
        *,
        batch_rows: int = 10_000,
        attempts: int = 4,
        backoff_s: float = 0.25,
        max_backoff_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if batch_rows < 1 or attempts < 1:
            raise ValueError("batch_rows and attempts must be >= 1")
        self.client = client
        self.database = check_database_name(database)
        self.batch_rows = batch_rows
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep

    @classmethod
    def from_settings(cls, client: Client, settings: StorageSettings, **kwargs: Any) -> EventStore:
        return cls(client, settings.database, batch_rows=settings.insert_batch_rows, **kwargs)

    # --- public API ------------------------------------------------------------------

    def insert_events(self, events: Sequence[Event]) -> int:
        """Insert ``events`` (redacted); the number of rows written."""
        for start in range(0, len(events), self.batch_rows):
            batch = events[start : start + self.batch_rows]
            self._insert(
                "events", EVENT_COLUMNS, self._event_columns(batch), _EVENT_INSERT_SETTINGS
            )
        return len(events)

    def insert_anomalies(self, anomalies: Sequence[Anomaly]) -> int:
        """Insert ``anomalies`` (texts redacted); the number of rows written."""
        for start in range(0, len(anomalies), self.batch_rows):
            batch = anomalies[start : start + self.batch_rows]
            self._insert("anomalies", ANOMALY_COLUMNS, self._anomaly_columns(batch))
        return len(anomalies)

    def insert_dead_letters(self, rows: Sequence[DeadLetterRow]) -> int:
        """Insert dead-letter records (no payloads); the number of rows written.

        Rows of one Kafka message left at ``item=0`` are numbered 0, 1, 2, … in the order
        given, so several rejected parts of one message are all kept while a redelivery
        (same parts, same order) still collapses onto the first.
        """
        rows = _number_items(rows)
        for start in range(0, len(rows), self.batch_rows):
            batch = rows[start : start + self.batch_rows]
            self._insert("dead_letters", DEAD_LETTER_COLUMNS, self._dead_letter_columns(batch))
        return len(rows)

    # --- columns ---------------------------------------------------------------------

    @staticmethod
    def _event_columns(events: Sequence[Event]) -> list[list[Any]]:
        now = datetime.now(UTC)
        parts = [_redacted_parts(e) for e in events]
        return [
            [e.event_id for e in events],
            [e.ts for e in events],
            [e.agent_id for e in events],
            [e.type for e in events],
            [e.agent_version or "" for e in events],
            [e.agent_type or "" for e in events],
            [e.session_id or "" for e in events],
            [e.trace_id or "" for e in events],
            [e.span_id or "" for e in events],
            [e.tool_name or "" for e in events],
            [p[0] for p in parts],
            [[d.kind for d in e.destinations] if e.destinations else [] for e in events],
            [p[1] for p in parts],
            [e.status for e in events],
            [e.duration_ms for e in events],
            [e.bytes_in for e in events],
            [e.bytes_out for e in events],
            [e.model or "" for e in events],
            [e.tokens_in for e in events],
            [e.tokens_out for e in events],
            [e.cost_usd for e in events],
            [e.secret_name or "" for e in events],
            [e.metrics or {} for e in events],
            [p[2] for p in parts],
            [now] * len(events),
        ]

    @staticmethod
    def _anomaly_columns(anomalies: Sequence[Anomaly]) -> list[list[Any]]:
        now = datetime.now(UTC)
        return [
            [a.anomaly_id for a in anomalies],
            [a.ts for a in anomalies],
            [a.detected_at for a in anomalies],
            [a.agent_id for a in anomalies],
            [a.session_id or "" for a in anomalies],
            [a.agent_type or "" for a in anomalies],
            [a.detector for a in anomalies],
            [list(a.detectors) for a in anomalies],
            [a.score for a in anomalies],
            [a.severity for a in anomalies],
            [_text(a.title) for a in anomalies],
            [_text(a.explanation) for a in anomalies],
            [
                _json.encode(redact_value(msgspec.to_builtins(a.contributions))).decode("utf-8")
                for a in anomalies
            ],
            [list(a.event_ids) for a in anomalies],
            [redact_value(a.labels) if a.labels else {} for a in anomalies],
            [now] * len(anomalies),
        ]

    @staticmethod
    def _dead_letter_columns(rows: Sequence[DeadLetterRow]) -> list[list[Any]]:
        now = datetime.now(UTC)

        def key(value: bytes | str | None) -> str:
            if value is None:
                return ""
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            return redact_text(text[:MAX_KEY_CHARS])

        return [
            [_utc(r.ts) for r in rows],
            [r.topic for r in rows],
            [r.partition for r in rows],
            [r.offset for r in rows],
            [r.item for r in rows],
            [key(r.key) for r in rows],
            [r.reason for r in rows],
            [_text(r.detail[:MAX_DETAIL_CHARS]) for r in rows],
            [max(0, r.size_bytes) for r in rows],
            [now] * len(rows),
        ]

    # --- insert with retries -----------------------------------------------------------

    def _insert(
        self,
        table: str,
        names: Sequence[str],
        columns: list[list[Any]],
        settings: dict[str, Any] | None = None,
    ) -> None:
        target = f"{self.database}.{table}"
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                self.client.insert(
                    target,
                    columns,
                    column_names=list(names),
                    column_oriented=True,
                    settings=settings,
                )
                return
            except Exception as exc:
                transient = is_transient(exc)
                detail = f"{type(exc).__name__}: {redact_error(exc)}"
                if not transient:
                    raise StorageError(
                        f"insert of {len(columns[0])} rows into {target} failed: {detail}"
                    ) from exc
                if attempt == self.attempts:
                    raise StorageError(
                        f"insert of {len(columns[0])} rows into {target} failed "
                        f"{attempt} times: {detail}",
                        transient=True,
                    ) from exc
                log.warning(
                    "insert into %s failed (attempt %d of %d), retrying in %.2fs: %s",
                    target,
                    attempt,
                    self.attempts,
                    delay,
                    detail,
                )
                self._sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
