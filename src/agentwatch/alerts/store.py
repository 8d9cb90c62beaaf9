"""ClickHouse storage of alerting: alerts, notification attempts, silences, dead letters.

Tables: ``storage/migrations/0003_alerts.sql``. :class:`AlertStore` is synchronous (one
client, used from one thread at a time); :class:`AsyncAlertStore` runs its calls on a
single worker thread, in order, for the asyncio dispatcher. :class:`BufferedRecorder`
batches attempt and dead-letter rows and tells when they are stored.

Where the tables live: see :func:`alerts_storage`. Texts that come from anomalies are
redacted before they are stored; receivers are stored by name only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
from clickhouse_connect.driver.client import Client

from agentwatch.alerts.config import AlertSettings
from agentwatch.alerts.delivery import FINAL_OUTCOMES, AttemptRecord, DeadLetterRecord
from agentwatch.alerts.grouping import AlertState
from agentwatch.alerts.matchers import parse_matcher
from agentwatch.alerts.model import AlertItem, encode_notification
from agentwatch.alerts.silences import Silence
from agentwatch.config import Settings, StorageSettings
from agentwatch.storage.client import check_database_name
from agentwatch.storage.redact import redact_text

__all__ = [
    "ALERT_COLUMNS",
    "AlertStore",
    "AsyncAlertStore",
    "BufferedRecorder",
    "alerts_storage",
]

log = logging.getLogger("agentwatch.alerts.store")

T = TypeVar("T")

ALERT_COLUMNS: tuple[str, ...] = (
    "alert_id",
    "route",
    "group_key",
    "group_labels",
    "agent_id",
    "receivers",
    "status",
    "severity",
    "max_score",
    "title",
    "anomaly_count",
    "folded_total",
    "notifications",
    "started_at",
    "last_anomaly_at",
    "last_notified_at",
    "resolved_at",
    "acked_by",
    "acked_at",
    "ack_comment",
    "recent",
    "updated_at",
    "version",
)
ATTEMPT_COLUMNS: tuple[str, ...] = (
    "ts",
    "notification_id",
    "alert_id",
    "dedup_key",
    "route",
    "receiver",
    "integration",
    "kind",
    "sequence",
    "attempt",
    "outcome",
    "status_code",
    "reason",
    "duration_ms",
    "fallback_for",
    "external_ref",
)
DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    "ts",
    "notification_id",
    "alert_id",
    "dedup_key",
    "route",
    "receiver",
    "integration",
    "kind",
    "outcome",
    "reason",
    "attempts",
    "notification",
)
SILENCE_COLUMNS: tuple[str, ...] = (
    "silence_id",
    "matchers",
    "starts_at",
    "ends_at",
    "created_by",
    "comment",
    "created_at",
    "updated_at",
    "version",
)

_items_encoder = msgspec.json.Encoder()
#: Latest anomalies stored with an alert (for ``alerts show`` and a resolve after a restart).
STORED_RECENT = 20
_items_decoder = msgspec.json.Decoder(list[AlertItem])


def alerts_storage(
    settings: Settings, alert_settings: AlertSettings
) -> tuple[str, StorageSettings]:
    """The DSN and storage settings of the alert tables.

    ``alerts.storage.dsn`` if set; else the main storage DSN when it is a ClickHouse server
    (the tables then live beside ``anomalies``, for Grafana); else the embedded engine in
    ``<data_dir>/alerts-clickhouse`` — chDB lets one process open a data dir, and the ingest
    worker owns the main one.
    """
    configured = alert_settings.storage.dsn
    if configured is not None and configured.get_secret_value():
        dsn = configured.get_secret_value()
    else:
        main = settings.storage_dsn
        scheme = urlsplit(main).scheme.lower()
        if scheme in ("http", "https"):
            dsn = main
        else:
            dsn = f"chdb://{(settings.data_dir / 'alerts-clickhouse').resolve()}"
    database = alert_settings.storage.database or settings.storage.database
    return dsn, settings.storage.model_copy(update={"database": database})


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    raise TypeError(f"not a datetime: {value!r}")


def _req_utc(value: Any) -> datetime:
    out = _utc(value)
    assert out is not None
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _redacted_items(items: Sequence[AlertItem]) -> str:
    text = _items_encoder.encode(list(items)).decode("utf-8")
    return redact_text(text)


class _RedactedItems:
    """:func:`_redacted_items`, one item at a time, each item redacted once.

    An alert row is stored on every notification with its latest anomalies, so an anomaly
    is stored up to :data:`STORED_RECENT` times: its redacted JSON is kept (by anomaly id,
    bounded) rather than redacted again each time. Items are redacted separately and
    joined, which gives the same text as redacting the array (no redaction pattern spans
    two items' JSON: every item starts with its ``anomaly_id`` key).
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._cache: dict[str, tuple[AlertItem, str]] = {}

    def _one(self, item: AlertItem) -> str:
        cached = self._cache.get(item.anomaly_id)
        if cached is not None and (cached[0] is item or cached[0] == item):
            return cached[1]
        text = redact_text(_items_encoder.encode(item).decode("utf-8"))
        if len(self._cache) >= self.capacity:
            del self._cache[next(iter(self._cache))]
        self._cache[item.anomaly_id] = (item, text)
        return text

    def __call__(self, items: Sequence[AlertItem]) -> str:
        return "[" + ",".join(self._one(item) for item in items) + "]"


class _Version:
    """Strictly increasing row versions (microseconds since the epoch, or one more)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            return self._last


class AlertStore:
    """Reads and writes of the alerting tables of ``database``."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = check_database_name(database)
        self._version = _Version()
        self._redacted_items = _RedactedItems()
        self._column_types: dict[str, list[Any]] = {}

    def _table(self, name: str) -> str:
        return f"{self.database}.{name}"

    def _insert(self, name: str, rows: list[list[Any]], columns: Sequence[str]) -> None:
        """Insert ``rows``; the column types are looked up once per table, not per insert."""
        table = self._table(name)
        types = self._column_types.get(table)
        if types is None:
            context = self.client.create_insert_context(table, list(columns))
            types = self._column_types[table] = list(context.column_types)
        try:
            self.client.insert(table, rows, column_names=list(columns), column_types=types)
        except Exception:
            self._column_types.pop(table, None)  # looked up again (the table may have changed)
            raise

    # --- alerts ----------------------------------------------------------------------

    def upsert_alerts(self, states: Sequence[AlertState]) -> None:
        if not states:
            return
        rows = [
            [
                s.alert_id,
                s.route,
                s.group_key,
                s.group_labels,
                s.group_labels.get("agent_id", ""),
                list(s.receivers),
                s.status,
                s.severity,
                s.max_score,
                redact_text(s.title),
                s.anomaly_count,
                s.folded_total,
                s.sequence,
                s.started_at,
                s.last_anomaly_at,
                s.last_notified_at,
                s.resolved_at,
                s.acked_by,
                s.acked_at,
                redact_text(s.ack_comment),
                self._redacted_items(s.recent[-STORED_RECENT:]),
                s.updated_at,
                self._version.next(),
            ]
            for s in states
        ]
        self._insert("alerts", rows, ALERT_COLUMNS)

    def _alert_rows(self, where: str, parameters: dict[str, Any], limit: int) -> list[AlertState]:
        columns = ", ".join(c for c in ALERT_COLUMNS if c not in ("agent_id", "version"))
        result = self.client.query(
            f"SELECT {columns} FROM {self._table('alerts')} FINAL WHERE {where} "
            f"ORDER BY last_anomaly_at DESC LIMIT {int(limit)}",
            parameters=parameters,
        )
        out = []
        for row in result.result_rows:
            r = dict(zip(result.column_names, row, strict=True))
            try:
                recent = tuple(_items_decoder.decode(r["recent"])) if r["recent"] else ()
            except msgspec.DecodeError:
                recent = ()
            out.append(
                AlertState(
                    alert_id=r["alert_id"],
                    route=r["route"],
                    group_key=r["group_key"],
                    group_labels=dict(r["group_labels"]),
                    receivers=tuple(r["receivers"]),
                    status=r["status"],
                    started_at=_req_utc(r["started_at"]),
                    last_anomaly_at=_req_utc(r["last_anomaly_at"]),
                    last_notified_at=_utc(r["last_notified_at"]),
                    resolved_at=_utc(r["resolved_at"]),
                    anomaly_count=int(r["anomaly_count"]),
                    folded_total=int(r["folded_total"]),
                    severity=r["severity"],
                    max_score=float(r["max_score"]),
                    sequence=int(r["notifications"]),
                    acked_by=r["acked_by"],
                    acked_at=_utc(r["acked_at"]),
                    ack_comment=r["ack_comment"],
                    title=r["title"],
                    recent=recent,
                    updated_at=_req_utc(r["updated_at"]),
                )
            )
        return out

    def firing_alerts(self, limit: int = 100_000) -> list[AlertState]:
        return self._alert_rows("status = 'firing'", {}, limit)

    def list_alerts(self, status: str | None = None, limit: int = 50) -> list[AlertState]:
        if status:
            return self._alert_rows("status = {status:String}", {"status": status}, limit)
        return self._alert_rows("1", {}, limit)

    def get_alert(self, alert_id: str) -> AlertState | None:
        """The alert with id ``alert_id`` (or the one alert whose id starts with it)."""
        rows = self._alert_rows("alert_id = {id:String}", {"id": alert_id}, 1)
        if rows:
            return rows[0]
        if len(alert_id) >= 4:
            rows = self._alert_rows("startsWith(alert_id, {id:String})", {"id": alert_id}, 2)
            if len(rows) == 1:
                return rows[0]
        return None

    # --- notifications ---------------------------------------------------------------

    def insert_attempts(self, records: Sequence[AttemptRecord]) -> None:
        if not records:
            return
        rows = [
            [
                r.ts,
                r.notification_id,
                r.alert_id,
                r.dedup_key,
                r.route,
                r.receiver,
                r.integration,
                r.kind,
                r.sequence,
                min(r.attempt, 65535),
                r.outcome,
                r.status_code,
                redact_text(r.reason),
                r.duration_ms,
                r.fallback_for,
                r.external_ref,
            ]
            for r in records
        ]
        self._insert("alert_notifications", rows, ATTEMPT_COLUMNS)

    def insert_dead_letters(self, records: Sequence[DeadLetterRecord]) -> None:
        if not records:
            return
        rows = []
        for r in records:
            n = r.notification
            rows.append(
                [
                    r.ts,
                    n.notification_id,
                    n.alert_id,
                    n.dedup_key,
                    n.route,
                    n.receiver,
                    r.integration,
                    n.kind,
                    r.outcome,
                    redact_text(r.reason),
                    min(r.attempts, 65535),
                    redact_text(encode_notification(n).decode("utf-8")),
                ]
            )
        self._insert("alert_dead_letters", rows, DEAD_LETTER_COLUMNS)

    def finished(self, notification_ids: Sequence[str]) -> set[str]:
        """Which of ``notification_ids`` have a final outcome recorded."""
        if not notification_ids:
            return set()
        result = self.client.query(
            f"SELECT DISTINCT notification_id FROM {self._table('alert_notifications')} "
            "WHERE notification_id IN {ids:Array(String)} AND outcome IN {final:Array(String)}",
            parameters={"ids": list(notification_ids), "final": sorted(FINAL_OUTCOMES)},
        )
        return {str(row[0]) for row in result.result_rows}

    def thread_refs(self, dedup_keys: Sequence[str]) -> dict[tuple[str, str], str]:
        """(receiver, dedup key) -> reference of the first delivered firing message."""
        if not dedup_keys:
            return {}
        result = self.client.query(
            "SELECT receiver, dedup_key, argMin(external_ref, ts) FROM "
            f"{self._table('alert_notifications')} WHERE dedup_key IN {{keys:Array(String)}} "
            "AND outcome = 'delivered' AND kind = 'firing' AND external_ref != '' "
            "GROUP BY receiver, dedup_key",
            parameters={"keys": list(dedup_keys)},
        )
        return {(str(r[0]), str(r[1])): str(r[2]) for r in result.result_rows}

    def notifications_of(self, alert_id: str, limit: int = 500) -> list[dict[str, Any]]:
        result = self.client.query(
            "SELECT ts, notification_id, receiver, integration, kind, sequence, attempt, "
            "outcome, status_code, reason, duration_ms, fallback_for "
            f"FROM {self._table('alert_notifications')} WHERE alert_id = {{id:String}} "
            f"ORDER BY ts, attempt LIMIT {int(limit)}",
            parameters={"id": alert_id},
        )
        out = []
        for row in result.result_rows:
            r = dict(zip(result.column_names, row, strict=True))
            r["ts"] = _iso(_utc(r["ts"]))
            r["duration_ms"] = round(float(r["duration_ms"]), 1)
            out.append(r)
        return out

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        result = self.client.query(
            "SELECT ts, notification_id, alert_id, receiver, kind, outcome, reason, attempts "
            f"FROM {self._table('alert_dead_letters')} ORDER BY ts DESC LIMIT {int(limit)}"
        )
        out = []
        for row in result.result_rows:
            r = dict(zip(result.column_names, row, strict=True))
            r["ts"] = _iso(_utc(r["ts"]))
            out.append(r)
        return out

    # --- silences --------------------------------------------------------------------

    def put_silences(self, silences: Sequence[Silence]) -> None:
        if not silences:
            return
        rows = [
            [
                s.silence_id,
                [str(m) for m in s.matchers],
                s.starts_at,
                s.ends_at,
                s.created_by,
                s.comment,
                s.created_at,
                s.updated_at,
                self._version.next(),
            ]
            for s in silences
        ]
        self._insert("silences", rows, SILENCE_COLUMNS)

    def silences(self) -> list[Silence]:
        result = self.client.query(
            f"SELECT {', '.join(SILENCE_COLUMNS[:-1])} FROM {self._table('silences')} FINAL "
            "ORDER BY created_at"
        )
        out = []
        for row in result.result_rows:
            r = dict(zip(result.column_names, row, strict=True))
            out.append(
                Silence(
                    silence_id=r["silence_id"],
                    matchers=tuple(parse_matcher(m) for m in r["matchers"]),
                    starts_at=_req_utc(r["starts_at"]),
                    ends_at=_req_utc(r["ends_at"]),
                    created_by=r["created_by"],
                    comment=r["comment"],
                    created_at=_req_utc(r["created_at"]),
                    updated_at=_req_utc(r["updated_at"]),
                )
            )
        return out


class AsyncAlertStore:
    """:class:`AlertStore` for asyncio: every call runs on one worker thread, in order."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="alert-store"
        )

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class BufferedRecorder:
    """Batches attempt and dead-letter rows into few inserts.

    :meth:`attempt` and :meth:`dead_letter` only queue; :meth:`flush` returns once every
    row queued before it is stored (a failed insert is retried with backoff; rows are
    never dropped).
    """

    def __init__(self, store: AsyncAlertStore, *, interval_s: float = 0.05) -> None:
        self.store = store
        self.interval_s = interval_s
        self._attempts: list[AttemptRecord] = []
        self._dead: list[DeadLetterRecord] = []
        self._queued = itertools.count(1)
        self._last_queued = 0
        self._stored = 0
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.retries = 0
        self.rows = 0
        self.inserts = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="alert-recorder")

    def attempt(self, record: AttemptRecord) -> None:
        self._attempts.append(record)
        self._last_queued = next(self._queued)
        self._wake.set()

    def dead_letter(self, record: DeadLetterRecord) -> None:
        self._dead.append(record)
        self._last_queued = next(self._queued)
        self._wake.set()

    async def flush(self) -> None:
        target = self._last_queued
        while self._stored < target:
            if self._task is None or self._task.done():
                await self._write_pending()
                continue
            self._changed.clear()
            await self._changed.wait()

    async def _write_pending(self) -> None:
        async with self._lock:
            await self._write_locked()

    async def _write_locked(self) -> None:
        attempts, self._attempts = self._attempts, []
        dead, self._dead = self._dead, []
        upto = self._last_queued
        delay = 0.2
        while True:
            try:
                if attempts:
                    await self.store.run(self.store.store.insert_attempts, attempts)
                    self.inserts += 1
                    attempts = []
                if dead:
                    await self.store.run(self.store.store.insert_dead_letters, dead)
                break
            except asyncio.CancelledError:
                self._attempts[:0] = attempts
                self._dead[:0] = dead
                raise
            except Exception as exc:  # noqa: BLE001 - rows are kept and retried
                self.retries += 1
                log.warning(
                    "recording notifications failed (%s); retrying in %.1fs",
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.rows += upto - self._stored
        self._stored = max(self._stored, upto)
        self._changed.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.interval_s)
            if self._last_queued > self._stored:
                await self._write_pending()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._last_queued > self._stored:
            await self._write_pending()
