"""The alert pipeline, after Alertmanager: route → silence → group → dedup → notifications.

Pure and synchronous (time is passed in). The dispatcher feeds anomalies with
:meth:`AlertPipeline.ingest`, asks :meth:`AlertPipeline.due` for what to send, and turns each
:class:`~agentwatch.alerts.grouping.Flush` into one :class:`~agentwatch.alerts.model.Notification`
per receiver with :func:`notifications_for`.

Stages share one small interface (:class:`Stage`): they take candidates and return the ones
that go on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from agentwatch.alerts.config import AlertSettings
from agentwatch.alerts.dedup import dedup_key, notification_id_for
from agentwatch.alerts.grouping import Flush, Grouper, utc
from agentwatch.alerts.model import AlertItem, Notification, anomaly_labels, item_from_anomaly
from agentwatch.alerts.routing import Route, Router, TeamIndex
from agentwatch.alerts.silences import Silencer
from agentwatch.schemas.anomaly import Anomaly

__all__ = [
    "AlertPipeline",
    "Candidate",
    "PipelineStats",
    "SilenceStage",
    "Stage",
    "notifications_for",
]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An anomaly on its way through the pipeline, for one route."""

    item: AlertItem
    route: Route
    position: Hashable = None


class Stage(Protocol):
    def __call__(self, candidates: list[Candidate], now: float) -> list[Candidate]: ...


@dataclass(slots=True)
class PipelineStats:
    anomalies: int = 0
    unrouted: int = 0
    silenced: int = 0
    grouped: int = 0
    duplicates: int = 0
    by_route: Counter[str] = field(default_factory=Counter)


class SilenceStage:
    """Drops candidates whose labels an active silence matches."""

    def __init__(self, silencer: Silencer, stats: PipelineStats) -> None:
        self.silencer = silencer
        self.stats = stats

    def __call__(self, candidates: list[Candidate], now: float) -> list[Candidate]:
        when = utc(now)
        out = []
        for candidate in candidates:
            if self.silencer.silenced_by(candidate.item.labels, when) is None:
                out.append(candidate)
            else:
                self.stats.silenced += 1
        return out


class _RecentIds:
    """A bounded set of recently seen anomaly ids (redelivered anomalies are dropped)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: dict[str, None] = {}

    def seen(self, anomaly_id: str) -> bool:
        if anomaly_id in self._ids:
            return True
        self._ids[anomaly_id] = None
        if len(self._ids) > self.capacity:
            del self._ids[next(iter(self._ids))]
        return False


class AlertPipeline:
    """Routing, silences and grouping for one dispatcher."""

    def __init__(
        self,
        settings: AlertSettings,
        silencer: Silencer | None = None,
        *,
        extra_stages: Sequence[Stage] = (),
        dedup_capacity: int = 200_000,
    ) -> None:
        self.settings = settings
        self.router = Router(settings)
        self.teams = TeamIndex(settings.teams)
        self.silencer = silencer if silencer is not None else Silencer()
        self.stats = PipelineStats()
        self.grouper = Grouper(settings.storm)
        self.stages: list[Stage] = [SilenceStage(self.silencer, self.stats), *extra_stages]
        self._recent = _RecentIds(dedup_capacity)

    def remember(self, anomaly_ids: Sequence[str]) -> None:
        """Ids already notified (restored alerts): a redelivery of them is dropped."""
        for anomaly_id in anomaly_ids:
            self._recent.seen(anomaly_id)

    def ingest(self, anomaly: Anomaly, now: float, position: Hashable = None) -> int:
        """Route, silence and group ``anomaly``; the number of groups it joined.

        0 means the caller may treat the anomaly's position as done at once.
        """
        self.stats.anomalies += 1
        if self._recent.seen(anomaly.anomaly_id):
            self.stats.duplicates += 1
            return 0
        team = self.teams.get(anomaly.agent_id)
        labels = anomaly_labels(anomaly, {anomaly.agent_id: team} if team else None)
        routes = self.router.routes_for(labels)
        if not routes:
            self.stats.unrouted += 1
            return 0
        item = item_from_anomaly(anomaly, labels)
        candidates = [Candidate(item, route, position) for route in routes]
        for stage in self.stages:
            candidates = stage(candidates, now)
            if not candidates:
                return 0
        for candidate in candidates:
            self.grouper.add(candidate.route, candidate.item, now, candidate.position)
            self.stats.by_route[candidate.route.name] += 1
        self.stats.grouped += 1
        return len(candidates)

    def due(self, now: float) -> list[Flush]:
        return self.grouper.due(now)

    def next_deadline(self) -> float | None:
        return self.grouper.next_deadline()


def notifications_for(flush: Flush, *, now: datetime | None = None) -> list[Notification]:
    """One notification per receiver of the flushed alert (dedup key per receiver)."""
    state = flush.state
    created = now or datetime.now(UTC)
    common = _common_labels(flush.items) if flush.items else dict(state.group_labels)
    new = flush.kind == "firing" and not flush.repeat
    listed = [item.anomaly_id for item in flush.items] if new else []
    folded = flush.folded if new else 0
    out = []
    for receiver in state.receivers:
        out.append(
            Notification(
                notification_id=notification_id_for(
                    state.alert_id, receiver, state.sequence, flush.kind, listed, folded
                ),
                kind=flush.kind,
                receiver=receiver,
                route=state.route,
                alert_id=state.alert_id,
                dedup_key=dedup_key(state.route, receiver, state.group_key),
                group_key=state.group_key,
                group_labels=dict(state.group_labels),
                common_labels=common,
                items=list(flush.items),
                anomaly_count=state.anomaly_count,
                new_count=flush.new_count,
                folded=flush.folded,
                severity=state.severity,
                max_score=state.max_score,
                started_at=state.started_at,
                ended_at=state.resolved_at,
                created_at=created,
                sequence=state.sequence,
                repeat=flush.repeat,
                acked_by=state.acked_by,
                ack_comment=state.ack_comment,
            )
        )
    return out


def _common_labels(items: Sequence[AlertItem]) -> dict[str, str]:
    first = dict(items[0].labels)
    for item in items[1:]:
        for key in list(first):
            if item.labels.get(key) != first[key]:
                del first[key]
    return first
