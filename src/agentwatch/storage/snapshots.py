"""Model snapshots, analyst feedback and baseline changes in ClickHouse (migration 0002).

* :meth:`ModelStore.write_snapshots` inserts snapshots column-wise, many agents per insert;
  the materialized view ``model_latest_mv`` keeps the newest one of each agent in
  ``model_latest``, which is what workers restore from.
* :meth:`ModelStore.latest_refs` finds the newest snapshot of the agents of some
  partitions (or some agents) without reading their states;
  :meth:`ModelStore.load_states` then reads only the states a worker does not hold yet.
* :meth:`ModelStore.snapshots` lists an agent's history, :meth:`ModelStore.snapshot` reads
  one of them back (for ``agentwatch models revert``).
* feedback (analyst verdicts and reverts) and baseline changes are an audit trail: written
  by the worker that applied them, read by the CLI and dashboards.

Calls block and raise :class:`~agentwatch.storage.client.StorageError` (``transient`` set
when a retry may help); the worker runs them in a thread and retries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from clickhouse_connect.driver.client import Client

from agentwatch.config import StorageSettings
from agentwatch.storage.client import StorageError, check_database_name, redact_error
from agentwatch.storage.writer import ANOMALY_COLUMNS, is_transient

__all__ = [
    "BaselineChange",
    "FeedbackRow",
    "ModelStore",
    "Snapshot",
    "SnapshotRef",
]

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SNAPSHOT_COLUMNS: tuple[str, ...] = (
    "agent_id",
    "snapshot_id",
    "ts",
    "event_ts",
    "partition",
    "offset",
    "reason",
    "events",
    "format",
    "size_bytes",
    "state",
)
FEEDBACK_COLUMNS: tuple[str, ...] = (
    "feedback_id",
    "ts",
    "applied_at",
    "agent_id",
    "action",
    "anomaly_id",
    "keys",
    "snapshot_id",
    "who",
    "why",
)
CHANGE_COLUMNS: tuple[str, ...] = ("ts", "agent_id", "kind", "detail")
CHECKPOINT_COLUMNS: tuple[str, ...] = ("topic", "partition", "offset", "ts")

# Agents per query when reading states by agent (keeps the IN list and the reply bounded).
LOAD_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One stored model snapshot; ``state`` is empty when only the listing was read."""

    agent_id: str
    snapshot_id: str
    ts: datetime  # when it was taken (wall time)
    event_ts: datetime  # the agent's latest event time then (EPOCH if unknown)
    partition: int
    reason: str
    events: int
    format: int
    state: bytes = b""
    size_bytes: int = -1
    offset: int = -1  # next offset of the partition not in the state (-1: unknown)

    def __post_init__(self) -> None:
        if self.size_bytes < 0:
            object.__setattr__(self, "size_bytes", len(self.state))

    def info(self) -> dict[str, Any]:
        """Everything but the state, JSON-ready."""
        return {
            "agent_id": self.agent_id,
            "snapshot_id": self.snapshot_id,
            "ts": self.ts.isoformat(),
            "event_ts": self.event_ts.isoformat() if self.event_ts > EPOCH else None,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "events": self.events,
            "format": self.format,
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """Which snapshot is the newest of an agent, without its state."""

    agent_id: str
    snapshot_id: str
    ts: datetime
    partition: int
    offset: int = -1


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """An analyst action as applied by a worker (see ``agentwatch.schemas.feedback``)."""

    feedback_id: str
    ts: datetime  # when the analyst sent it
    applied_at: datetime  # when the worker applied it
    agent_id: str
    action: str  # benign | revert
    who: str
    why: str = ""
    anomaly_id: str = ""
    keys: tuple[str, ...] = ()
    snapshot_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "feedback_id": self.feedback_id,
            "ts": self.ts.isoformat(),
            "applied_at": self.applied_at.isoformat(),
            "agent_id": self.agent_id,
            "action": self.action,
            "anomaly_id": self.anomaly_id,
            "keys": list(self.keys),
            "snapshot_id": self.snapshot_id,
            "who": self.who,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class BaselineChange:
    """A change of an agent's baseline other than learning (version change, feedback)."""

    ts: datetime
    agent_id: str
    kind: str  # version_change | benign | revert
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts.isoformat(),
            "agent_id": self.agent_id,
            "kind": self.kind,
            "detail": self.detail,
        }


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _columns(names: Iterable[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


class ModelStore:
    """Reads and writes the 0002 tables of ``database`` through ``client``."""

    def __init__(self, client: Client, database: str = "agentwatch") -> None:
        self.client = client
        self.database = check_database_name(database)

    @classmethod
    def from_settings(cls, client: Client, settings: StorageSettings) -> ModelStore:
        return cls(client, settings.database)

    # -- snapshots ------------------------------------------------------------------------

    def write_snapshots(self, snapshots: Sequence[Snapshot]) -> int:
        """Insert ``snapshots`` (one insert); the number of rows written."""
        if not snapshots:
            return 0
        columns: list[list[Any]] = [
            [s.agent_id for s in snapshots],
            [s.snapshot_id for s in snapshots],
            [_utc(s.ts) for s in snapshots],
            [_utc(s.event_ts) for s in snapshots],
            [s.partition for s in snapshots],
            [s.offset for s in snapshots],
            [s.reason for s in snapshots],
            [max(0, s.events) for s in snapshots],
            [s.format for s in snapshots],
            [len(s.state) for s in snapshots],
            [s.state for s in snapshots],
        ]
        self._insert("model_snapshots", SNAPSHOT_COLUMNS, columns)
        return len(snapshots)

    def latest_refs(
        self,
        *,
        partitions: Iterable[int] | None = None,
        agent_ids: Iterable[str] | None = None,
    ) -> dict[str, SnapshotRef]:
        """The newest snapshot of each agent whose newest snapshot is in ``partitions`` (or
        of each agent of ``agent_ids``; of every agent if neither is given), by agent.

        The partition filter applies to the newest snapshot only: an agent whose partition
        changed belongs to its latest one.
        """
        where, having = "", ""
        params: dict[str, Any] = {}
        if agent_ids is not None:
            ids = list(dict.fromkeys(agent_ids))
            if not ids:
                return {}
            where = "WHERE agent_id IN {agents:Array(String)}"
            params["agents"] = ids
        if partitions is not None:
            wanted = sorted(set(partitions))
            if not wanted:
                return {}
            having = "HAVING argMax(`partition`, ts) IN {partitions:Array(Int32)}"
            params["partitions"] = wanted
        rows = self._query(
            "SELECT agent_id, argMax(snapshot_id, ts), max(ts), argMax(`partition`, ts), "
            "argMax(`offset`, ts) "
            f"FROM {self.database}.model_latest {where} GROUP BY agent_id {having}",
            params,
        )
        return {
            str(agent): SnapshotRef(
                str(agent), str(snapshot_id), _utc(ts), int(partition), int(offset)
            )
            for agent, snapshot_id, ts, partition, offset in rows
        }

    def load_states(self, refs: Mapping[str, str]) -> list[Snapshot]:
        """The snapshots named by ``refs`` (agent_id -> snapshot_id), states included.

        Read from ``model_latest``, falling back to the history for a snapshot that was
        superseded meanwhile. Agents whose snapshot is in neither are left out.
        """
        found: dict[str, Snapshot] = {}
        agents = list(refs)
        for table in ("model_latest", "model_snapshots"):
            missing = [a for a in agents if a not in found]
            for chunk in _chunks(missing, LOAD_CHUNK):
                rows = self._query(
                    f"SELECT {_columns(SNAPSHOT_COLUMNS)} FROM {self.database}.{table} "
                    "WHERE agent_id IN {agents:Array(String)} "
                    "AND snapshot_id IN {ids:Array(String)} "
                    "LIMIT 1 BY agent_id, snapshot_id",
                    {"agents": list(chunk), "ids": [refs[a] for a in chunk]},
                    state=True,
                )
                for row in rows:
                    snapshot = self._snapshot(row)
                    if refs.get(snapshot.agent_id) == snapshot.snapshot_id:
                        found[snapshot.agent_id] = snapshot
            if len(found) == len(agents):
                break
        return [found[a] for a in agents if a in found]

    def latest(
        self,
        *,
        partitions: Iterable[int] | None = None,
        agent_ids: Iterable[str] | None = None,
    ) -> list[Snapshot]:
        """The newest snapshot (state included) of the agents selected as in
        :meth:`latest_refs`."""
        refs = self.latest_refs(partitions=partitions, agent_ids=agent_ids)
        return self.load_states({agent: ref.snapshot_id for agent, ref in refs.items()})

    def snapshots(self, agent_id: str, limit: int = 50) -> list[Snapshot]:
        """The agent's snapshots, newest first, without states."""
        columns = [c for c in SNAPSHOT_COLUMNS if c != "state"]
        rows = self._query(
            f"SELECT {_columns(columns)} FROM {self.database}.model_snapshots "
            "WHERE agent_id = {agent:String} "
            "ORDER BY ts DESC, snapshot_id LIMIT 1 BY snapshot_id LIMIT {limit:UInt32}",
            {"agent": agent_id, "limit": max(0, int(limit))},
        )
        return [self._snapshot((*row, b"")) for row in rows]

    def snapshot(self, agent_id: str, snapshot_id: str) -> Snapshot | None:
        """The stored snapshot ``snapshot_id`` of ``agent_id`` with its state, if kept."""
        rows = self._query(
            f"SELECT {_columns(SNAPSHOT_COLUMNS)} FROM {self.database}.model_snapshots "
            "WHERE agent_id = {agent:String} AND snapshot_id = {id:String} LIMIT 1",
            {"agent": agent_id, "id": snapshot_id},
            state=True,
        )
        return self._snapshot(rows[0]) if rows else None

    @staticmethod
    def _snapshot(row: Sequence[Any]) -> Snapshot:
        agent, snapshot_id, ts, event_ts, partition, offset, reason, events, fmt, size, state = row
        return Snapshot(
            agent_id=str(agent),
            snapshot_id=str(snapshot_id),
            ts=_utc(ts),
            event_ts=_utc(event_ts),
            partition=int(partition),
            reason=str(reason),
            events=int(events),
            format=int(fmt),
            state=bytes(state),
            size_bytes=int(size),
            offset=int(offset),
        )

    # -- checkpoints ----------------------------------------------------------------------

    def write_checkpoints(self, topic: str, offsets: Mapping[int, int], ts: datetime) -> int:
        """Record that every agent of each partition is snapshotted up to its offset."""
        if not offsets:
            return 0
        parts = sorted(offsets)
        columns: list[list[Any]] = [
            [topic] * len(parts),
            parts,
            [int(offsets[p]) for p in parts],
            [_utc(ts)] * len(parts),
        ]
        self._insert("model_checkpoints", CHECKPOINT_COLUMNS, columns)
        return len(parts)

    def checkpoints(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The newest checkpoint offset of each of ``partitions`` that has one."""
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        rows = self._query(
            f"SELECT `partition`, argMax(`offset`, ts) FROM {self.database}.model_checkpoints "
            "WHERE topic = {topic:String} AND `partition` IN {partitions:Array(Int32)} "
            "GROUP BY `partition`",
            {"topic": topic, "partitions": wanted},
        )
        return {int(partition): int(offset) for partition, offset in rows}

    # -- feedback -------------------------------------------------------------------------

    def write_feedback(self, rows: Sequence[FeedbackRow]) -> int:
        if not rows:
            return 0
        columns: list[list[Any]] = [
            [r.feedback_id for r in rows],
            [_utc(r.ts) for r in rows],
            [_utc(r.applied_at) for r in rows],
            [r.agent_id for r in rows],
            [r.action for r in rows],
            [r.anomaly_id for r in rows],
            [list(r.keys) for r in rows],
            [r.snapshot_id for r in rows],
            [r.who for r in rows],
            [r.why for r in rows],
        ]
        self._insert("feedback", FEEDBACK_COLUMNS, columns)
        return len(rows)

    def feedback(
        self,
        *,
        agent_id: str | None = None,
        feedback_id: str | None = None,
        limit: int = 100,
    ) -> list[FeedbackRow]:
        """Applied analyst actions, newest first (of one agent, or one request)."""
        conditions: list[str] = []
        params: dict[str, Any] = {"limit": max(0, int(limit))}
        if agent_id is not None:
            conditions.append("agent_id = {agent:String}")
            params["agent"] = agent_id
        if feedback_id is not None:
            conditions.append("feedback_id = {id:String}")
            params["id"] = feedback_id
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._query(
            f"SELECT {_columns(FEEDBACK_COLUMNS)} FROM {self.database}.feedback FINAL "
            f"{where} ORDER BY ts DESC, feedback_id LIMIT {{limit:UInt32}}",
            params,
        )
        return [
            FeedbackRow(
                feedback_id=str(fid),
                ts=_utc(ts),
                applied_at=_utc(applied),
                agent_id=str(agent),
                action=str(action),
                anomaly_id=str(anomaly),
                keys=tuple(str(k) for k in keys),
                snapshot_id=str(snapshot),
                who=str(who),
                why=str(why),
            )
            for fid, ts, applied, agent, action, anomaly, keys, snapshot, who, why in rows
        ]

    # -- baseline changes -----------------------------------------------------------------

    def write_baseline_changes(self, changes: Sequence[BaselineChange]) -> int:
        if not changes:
            return 0
        columns: list[list[Any]] = [
            [_utc(c.ts) for c in changes],
            [c.agent_id for c in changes],
            [c.kind for c in changes],
            [c.detail for c in changes],
        ]
        self._insert("baseline_changes", CHANGE_COLUMNS, columns)
        return len(changes)

    def baseline_changes(self, agent_id: str, limit: int = 100) -> list[BaselineChange]:
        """The agent's baseline changes, newest first."""
        rows = self._query(
            f"SELECT {_columns(CHANGE_COLUMNS)} FROM {self.database}.baseline_changes FINAL "
            "WHERE agent_id = {agent:String} ORDER BY ts DESC LIMIT {limit:UInt32}",
            {"agent": agent_id, "limit": max(0, int(limit))},
        )
        return [BaselineChange(_utc(ts), str(a), str(kind), str(d)) for ts, a, kind, d in rows]

    # -- anomalies (0001) -----------------------------------------------------------------

    def anomaly(self, anomaly_id: str) -> dict[str, Any] | None:
        """The stored anomaly ``anomaly_id`` as a dict (``contributions`` decoded), or None."""
        columns = [c for c in ANOMALY_COLUMNS if c != "ingested_at"]
        rows = self._query(
            f"SELECT {_columns(columns)} FROM {self.database}.anomalies FINAL "
            "WHERE anomaly_id = {id:String} LIMIT 1",
            {"id": anomaly_id},
        )
        if not rows:
            return None
        row = dict(zip(columns, rows[0], strict=True))
        for name in ("ts", "detected_at"):
            row[name] = _utc(row[name])
        row["contributions"] = msgspec.json.decode(row["contributions"] or "[]")
        row["labels"] = dict(row["labels"] or {})
        row["detectors"] = list(row["detectors"] or [])
        row["event_ids"] = list(row["event_ids"] or [])
        return row

    # -- plumbing -------------------------------------------------------------------------

    def _query(
        self, sql: str, parameters: dict[str, Any], *, state: bool = False
    ) -> list[Sequence[Any]]:
        try:
            result = self.client.query(
                sql,
                parameters=parameters,
                column_formats={"state": "bytes"} if state else None,
            )
        except Exception as exc:
            raise StorageError(
                f"query on {self.database} failed: {type(exc).__name__}: {redact_error(exc)}",
                transient=is_transient(exc),
            ) from exc
        return list(result.result_rows)

    def _insert(self, table: str, names: Sequence[str], columns: list[list[Any]]) -> None:
        target = f"{self.database}.{table}"
        try:
            self.client.insert(target, columns, column_names=list(names), column_oriented=True)
        except Exception as exc:
            raise StorageError(
                f"insert of {len(columns[0])} rows into {target} failed: "
                f"{type(exc).__name__}: {redact_error(exc)}",
                transient=is_transient(exc),
            ) from exc
