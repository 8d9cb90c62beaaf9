"""Small read helpers (CLI live view, tests). Every read deduplicates with ``FINAL``.

Rows come back as dicts keyed by column name; times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
from clickhouse_connect.driver.client import Client

from agentwatch.schemas.events import Destination, Event
from agentwatch.storage.client import check_database_name
from agentwatch.storage.writer import ANOMALY_COLUMNS, DEAD_LETTER_COLUMNS, EVENT_COLUMNS

__all__ = [
    "agent_count",
    "dead_letter_counts",
    "dead_letters",
    "event_count",
    "events_by_id",
    "latest_anomalies",
    "row_to_event",
]


def _columns(names: Iterable[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _rows(
    client: Client, sql: str, parameters: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    result = client.query(sql, parameters=parameters)
    rows = []
    for row in result.named_results():
        rows.append(
            {
                k: v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v
                for k, v in row.items()
            }
        )
    return rows


def _scalar(client: Client, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


def event_count(client: Client, db: str) -> int:
    """Distinct stored events."""
    return _scalar(client, f"SELECT count() FROM {check_database_name(db)}.events FINAL")


def agent_count(client: Client, db: str) -> int:
    """Distinct agents with at least one stored event."""
    return _scalar(
        client, f"SELECT uniqExact(agent_id) FROM {check_database_name(db)}.events FINAL"
    )


def events_by_id(client: Client, db: str, event_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The stored rows of ``event_ids`` (one per id, in ``ts``, ``event_id`` order)."""
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return []
    return _rows(
        client,
        f"SELECT {_columns(EVENT_COLUMNS)} FROM {check_database_name(db)}.events FINAL "
        "WHERE event_id IN {ids:Array(String)} ORDER BY ts, event_id",
        {"ids": ids},
    )


def latest_anomalies(client: Client, db: str, limit: int = 20) -> list[dict[str, Any]]:
    """The ``limit`` most recently detected anomalies, newest first; ``contributions`` decoded."""
    rows = _rows(
        client,
        f"SELECT {_columns(ANOMALY_COLUMNS)} FROM {check_database_name(db)}.anomalies FINAL "
        "ORDER BY detected_at DESC, anomaly_id LIMIT {limit:UInt32}",
        {"limit": max(0, int(limit))},
    )
    for row in rows:
        row["contributions"] = msgspec.json.decode(row["contributions"] or "[]")
    return rows


def dead_letter_counts(client: Client, db: str) -> dict[str, int]:
    """Dead letters by reason."""
    result = client.query(
        f"SELECT reason, count() FROM {check_database_name(db)}.dead_letters FINAL "
        "GROUP BY reason ORDER BY reason"
    )
    return {str(reason): int(n) for reason, n in result.result_rows}


def dead_letters(client: Client, db: str, limit: int = 100) -> list[dict[str, Any]]:
    """The ``limit`` most recent dead letters, newest first."""
    return _rows(
        client,
        f"SELECT {_columns(DEAD_LETTER_COLUMNS)} FROM {check_database_name(db)}.dead_letters "
        "FINAL ORDER BY ts DESC, topic, `partition`, `offset`, item LIMIT {limit:UInt32}",
        {"limit": max(0, int(limit))},
    )


def row_to_event(row: dict[str, Any]) -> Event:
    """An :class:`Event` from a stored row (as stored: redacted, attribute values as strings)."""

    def opt(name: str) -> Any:
        value = row.get(name)
        return value if value not in ("", None) else None

    kinds, values = row.get("dest_kinds") or [], row.get("dest_values") or []
    tool_args = row.get("tool_args") or ""
    return Event(
        schema_version="1",
        event_id=row["event_id"],
        ts=row["ts"],
        agent_id=row["agent_id"],
        type=row["type"],
        agent_version=opt("agent_version"),
        agent_type=opt("agent_type"),
        session_id=opt("session_id"),
        trace_id=opt("trace_id"),
        span_id=opt("span_id"),
        tool_name=opt("tool_name"),
        tool_args=msgspec.json.decode(tool_args) if tool_args else None,
        destinations=[Destination(kind=k, value=v) for k, v in zip(kinds, values, strict=True)]
        or None,
        status=row.get("status") or "ok",
        duration_ms=row.get("duration_ms"),
        bytes_in=row.get("bytes_in"),
        bytes_out=row.get("bytes_out"),
        model=opt("model"),
        tokens_in=row.get("tokens_in"),
        tokens_out=row.get("tokens_out"),
        cost_usd=row.get("cost_usd"),
        secret_name=opt("secret_name"),
        metrics=dict(row["metrics"]) if row.get("metrics") else None,
        attributes=dict(row["attributes"]) if row.get("attributes") else None,
    )
