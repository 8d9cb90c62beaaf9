"""Grouping with Alertmanager's timers, the storm guard, resolve and acknowledge.

Pure and synchronous: time comes from the caller (seconds since the epoch), so every timer
is testable with a fake clock.

* A group is (route, values of the route's ``group_by`` labels). Its first anomaly opens an
  *episode* (an alert, with an id) and schedules the first notification after
  ``group_wait``.
* Anomalies arriving after a notification are sent ``group_interval`` after it (at once if
  that has already passed).
* A firing, unacknowledged group with nothing new is re-sent every ``repeat_interval``.
* A group without a new anomaly for ``resolve_timeout`` is resolved: one ``resolved``
  notification, and the episode ends.
* Storm guard: past ``max_alerts_per_minute`` anomalies in a minute, a group's further
  anomalies are not listed but counted (``folded``) into its next notification, which is
  not sent before the minute is over. A notification lists at most
  ``max_alerts_per_notification`` anomalies; the rest are folded too.
* Each anomaly carries an opaque *position* (its Kafka coordinates); a flush returns the
  positions it covers so the caller can commit them once the notification is durable.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agentwatch.alerts.config import SEVERITY_RANK, StormSettings
from agentwatch.alerts.dedup import alert_id_for, group_key, group_labels
from agentwatch.alerts.model import AlertItem, Kind
from agentwatch.alerts.routing import Route

__all__ = ["AlertState", "Flush", "Grouper", "ts", "utc"]

STORM_WINDOW_S = 60.0
RECENT_ITEMS = 100


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def ts(dt: datetime) -> float:
    return dt.timestamp()


@dataclass(frozen=True, slots=True)
class AlertState:
    """An alert (one episode of a group) as stored in the ``alerts`` table."""

    alert_id: str
    route: str
    group_key: str
    group_labels: dict[str, str]
    receivers: tuple[str, ...]
    status: str  # firing | resolved
    started_at: datetime
    last_anomaly_at: datetime
    last_notified_at: datetime | None
    resolved_at: datetime | None
    anomaly_count: int
    folded_total: int
    severity: str
    max_score: float
    sequence: int
    acked_by: str
    acked_at: datetime | None
    ack_comment: str
    title: str
    recent: tuple[AlertItem, ...]
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Flush:
    """A notification to send for one alert, before it is addressed to receivers."""

    kind: Kind
    state: AlertState
    items: tuple[AlertItem, ...]
    new_count: int
    folded: int
    repeat: bool
    positions: tuple[Hashable, ...]


@dataclass(slots=True, eq=False)
class _Group:
    route: Route
    key: str
    labels: dict[str, str]
    alert_id: str
    started_at: float
    last_anomaly_at: float
    last_notified_at: float | None = None
    next_flush_at: float | None = None
    pending: list[AlertItem] = field(default_factory=list)
    pending_folded: int = 0
    positions: list[Hashable] = field(default_factory=list)
    recent: deque[AlertItem] = field(default_factory=lambda: deque(maxlen=RECENT_ITEMS))
    anomaly_count: int = 0
    folded_total: int = 0
    severity: str = "info"
    max_score: float = 0.0
    sequence: int = 0
    acked_by: str = ""
    acked_at: float | None = None
    ack_comment: str = ""
    title: str = ""
    storm_window_start: float = 0.0
    storm_count: int = 0
    deadline: float | None = None

    @property
    def has_pending(self) -> bool:
        return bool(self.pending) or self.pending_folded > 0

    def compute_deadline(self) -> float | None:
        timing = self.route.timing
        if self.has_pending:
            return self.next_flush_at
        if self.last_notified_at is None:
            return None
        candidates = [self.last_anomaly_at + timing.resolve_timeout]
        if timing.repeat_interval > 0 and not self.acked_by:
            candidates.append(self.last_notified_at + timing.repeat_interval)
        return min(candidates)


class Grouper:
    """The live groups; :meth:`add` anomalies, :meth:`due` returns what to send now."""

    def __init__(self, storm: StormSettings | None = None) -> None:
        self.storm = storm or StormSettings()
        self._groups: dict[tuple[str, str], _Group] = {}
        self._by_alert: dict[str, _Group] = {}
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._seq = 0
        self.folded_total = 0

    # -- state ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._groups)

    def states(self, now: float) -> list[AlertState]:
        """The alerts of every live group (firing or about to be)."""
        return [self._state(g, now) for g in self._groups.values()]

    def state_of(self, alert_id: str, now: float) -> AlertState | None:
        group = self._by_alert.get(alert_id)
        return None if group is None else self._state(group, now)

    def next_deadline(self) -> float | None:
        while self._heap:
            deadline, _, key = self._heap[0]
            group = self._groups.get(key)
            if group is not None and group.deadline == deadline:
                return deadline
            heapq.heappop(self._heap)
        return None

    def _schedule(self, group: _Group) -> None:
        deadline = group.compute_deadline()
        group.deadline = deadline
        if deadline is not None:
            self._seq += 1
            heapq.heappush(self._heap, (deadline, self._seq, (group.route.name, group.key)))

    # -- input ------------------------------------------------------------------------

    def add(self, route: Route, item: AlertItem, now: float, position: Hashable = None) -> str:
        """Put ``item`` into its group of ``route``; the alert id of that group."""
        timing = route.timing
        key = group_key(route.name, timing.group_by, item.labels)
        gid = (route.name, key)
        group = self._groups.get(gid)
        if group is None:
            started_ms = int(now * 1000)
            group = _Group(
                route=route,
                key=key,
                labels=group_labels(timing.group_by, item.labels),
                alert_id=alert_id_for(key, started_ms),
                started_at=now,
                last_anomaly_at=now,
                next_flush_at=now + timing.group_wait,
                storm_window_start=now,
            )
            self._groups[gid] = group
            self._by_alert[group.alert_id] = group
        elif not group.has_pending:
            last = group.last_notified_at if group.last_notified_at is not None else now
            group.next_flush_at = max(now, last + timing.group_interval)

        if now - group.storm_window_start >= STORM_WINDOW_S:
            group.storm_window_start = now
            group.storm_count = 0
        group.storm_count += 1
        group.anomaly_count += 1
        group.last_anomaly_at = max(group.last_anomaly_at, now)
        group.title = item.title
        if SEVERITY_RANK.get(item.severity, 0) > SEVERITY_RANK.get(group.severity, 0):
            group.severity = item.severity
        group.max_score = max(group.max_score, item.score)
        if position is not None:
            group.positions.append(position)

        stormy = group.storm_count > self.storm.max_alerts_per_minute
        if stormy or len(group.pending) >= self.storm.max_alerts_per_notification:
            group.pending_folded += 1
            group.folded_total += 1
            self.folded_total += 1
            if stormy:
                # Folded anomalies wait for the group's next notification, not before the
                # storm window is over.
                window_end = group.storm_window_start + STORM_WINDOW_S
                current = group.next_flush_at if group.next_flush_at is not None else now
                group.next_flush_at = max(current, window_end)
        else:
            group.pending.append(item)
        self._schedule(group)
        return group.alert_id

    def acknowledge(self, alert_id: str, by: str, comment: str, now: float) -> Flush | None:
        """Mark a live alert acknowledged (no more repeats); the notification to send."""
        group = self._by_alert.get(alert_id)
        if group is None:
            return None
        group.acked_by = by
        group.acked_at = now
        group.ack_comment = comment
        self._schedule(group)
        if group.last_notified_at is None:
            return None  # nobody was told yet: the first notification carries the ack
        return Flush(
            kind="acknowledged",
            state=self._state(group, now),
            items=(),
            new_count=0,
            folded=0,
            repeat=False,
            positions=(),
        )

    def restore(self, state: AlertState, route: Route) -> None:
        """Continue a firing alert loaded from storage (after a restart)."""
        key = (route.name, state.group_key)
        if key in self._groups:
            return
        group = _Group(
            route=route,
            key=state.group_key,
            labels=dict(state.group_labels),
            alert_id=state.alert_id,
            started_at=ts(state.started_at),
            last_anomaly_at=ts(state.last_anomaly_at),
            # Rows are stored when a notification is made: a restored alert was notified.
            last_notified_at=ts(state.last_notified_at or state.last_anomaly_at),
            anomaly_count=state.anomaly_count,
            folded_total=state.folded_total,
            severity=state.severity,
            max_score=state.max_score,
            sequence=state.sequence,
            acked_by=state.acked_by,
            acked_at=ts(state.acked_at) if state.acked_at else None,
            ack_comment=state.ack_comment,
            title=state.title,
            storm_window_start=ts(state.last_anomaly_at),
        )
        group.recent.extend(state.recent)
        self._groups[key] = group
        self._by_alert[group.alert_id] = group
        self._schedule(group)

    # -- output -----------------------------------------------------------------------

    def due(self, now: float) -> list[Flush]:
        """The notifications due at ``now``; resolved groups are removed."""
        out: list[Flush] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, _, gid = heapq.heappop(self._heap)
            group = self._groups.get(gid)
            if group is None or group.deadline != deadline:
                continue
            flush = self._flush(group, now)
            if flush is not None:
                out.append(flush)
        return out

    def _flush(self, group: _Group, now: float) -> Flush | None:
        timing = group.route.timing
        if group.has_pending:
            items = tuple(group.pending)
            folded = group.pending_folded
            positions = tuple(group.positions)
            group.pending = []
            group.pending_folded = 0
            group.positions = []
            group.recent.extend(items)
            group.sequence += 1
            group.last_notified_at = now
            group.next_flush_at = None
            self._schedule(group)
            return Flush(
                kind="firing",
                state=self._state(group, now),
                items=items,
                new_count=len(items) + folded,
                folded=folded,
                repeat=False,
                positions=positions,
            )
        if group.last_notified_at is None:
            group.deadline = None
            return None
        if now >= group.last_anomaly_at + timing.resolve_timeout:
            self._remove(group)
            group.sequence += 1
            return Flush(
                kind="resolved",
                state=self._state(group, now, resolved=True),
                items=tuple(group.recent),
                new_count=0,
                folded=0,
                repeat=False,
                positions=(),
            )
        if timing.repeat_interval > 0 and not group.acked_by:
            group.sequence += 1
            group.last_notified_at = now
            self._schedule(group)
            return Flush(
                kind="firing",
                state=self._state(group, now),
                items=tuple(group.recent),
                new_count=0,
                folded=0,
                repeat=True,
                positions=(),
            )
        self._schedule(group)
        return None

    def _remove(self, group: _Group) -> None:
        self._groups.pop((group.route.name, group.key), None)
        self._by_alert.pop(group.alert_id, None)
        group.deadline = None

    @staticmethod
    def _state(group: _Group, now: float, *, resolved: bool = False) -> AlertState:
        return AlertState(
            alert_id=group.alert_id,
            route=group.route.name,
            group_key=group.key,
            group_labels=dict(group.labels),
            receivers=group.route.receivers,
            status="resolved" if resolved else "firing",
            started_at=utc(group.started_at),
            last_anomaly_at=utc(group.last_anomaly_at),
            last_notified_at=utc(group.last_notified_at) if group.last_notified_at else None,
            resolved_at=utc(now) if resolved else None,
            anomaly_count=group.anomaly_count,
            folded_total=group.folded_total,
            severity=group.severity,
            max_score=group.max_score,
            sequence=group.sequence,
            acked_by=group.acked_by,
            acked_at=utc(group.acked_at) if group.acked_at else None,
            ack_comment=group.ack_comment,
            title=group.title,
            recent=tuple(group.recent),
            updated_at=utc(now),
        )
