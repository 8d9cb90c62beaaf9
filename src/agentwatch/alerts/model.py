"""The alerting data: an anomaly as an alert item, and a notification to one receiver.

A :class:`Notification` is what the pipeline writes to the outbox topic
(``agentwatch.alerts.outbox.v1``, key = dedup key) and what a notifier turns into its
integration's payload. It holds no receiver secrets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

import msgspec

from agentwatch.schemas.anomaly import Anomaly

__all__ = [
    "ALERTNAME",
    "AlertItem",
    "Kind",
    "Notification",
    "anomaly_labels",
    "decode_notification",
    "encode_notification",
    "item_from_anomaly",
    "short_hash",
]

Kind = Literal["firing", "resolved", "acknowledged"]

#: ``alertname`` label of every agentwatch alert (Alertmanager receivers key on it).
ALERTNAME = "AgentBehaviourAnomaly"

# Anomaly labels that describe one occurrence rather than the alert: kept as annotations.
_ANNOTATION_LABELS = frozenset({"keys", "window"})
MAX_LABEL_CHARS = 256


def short_hash(*parts: str, size: int = 10) -> str:
    """A stable hex digest of ``parts`` (``2 * size`` characters)."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=size).hexdigest()


class AlertItem(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One anomaly as listed in a notification.

    Not tracked by the garbage collector (``gc=False``: its fields are strings, numbers,
    datetimes and string dicts, so it cannot be part of a reference cycle). Live groups
    keep their latest items, which would otherwise make every collection slower.
    """

    anomaly_id: str
    agent_id: str
    detector: str
    severity: str
    score: float
    title: str
    explanation: str
    ts: datetime
    detected_at: datetime
    labels: dict[str, str]
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


class Notification(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One message to one receiver about one alert (a group of anomalies, one episode).

    ``gc=False`` as :class:`AlertItem`: no field can refer back to it.
    """

    schema_version: Literal["1"] = "1"
    notification_id: str
    kind: Kind
    receiver: str
    route: str
    alert_id: str
    dedup_key: str
    group_key: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    items: list[AlertItem]
    anomaly_count: int  # anomalies of the episode so far
    new_count: int  # anomalies since the previous notification (listed + folded)
    folded: int  # anomalies since the previous notification that are not listed
    severity: str  # highest of the episode
    max_score: float
    started_at: datetime
    ended_at: datetime | None = None
    created_at: datetime
    sequence: int  # notification number within the episode, from 1
    repeat: bool = False
    acked_by: str = ""
    ack_comment: str = ""
    fallback_for: str = ""  # the receiver this notification was meant for, if a fallback


def anomaly_labels(anomaly: Anomaly, teams: Mapping[str, str] | None = None) -> dict[str, str]:
    """The label set of ``anomaly`` used for routing, silences and grouping.

    ``alertname``, ``agent_id``, ``detector``, ``severity``, ``agent_type``, ``team`` and
    the anomaly's own labels (``peer_group``, ``status``, ...), except per-occurrence
    details. ``teams`` maps an agent id to its team when the anomaly has no ``team``.
    """
    labels: dict[str, str] = {}
    for key, value in anomaly.labels.items():
        if key not in _ANNOTATION_LABELS and value:
            labels[key] = str(value)[:MAX_LABEL_CHARS]
    labels.update(
        alertname=ALERTNAME,
        agent_id=anomaly.agent_id,
        detector=anomaly.detector,
        severity=anomaly.severity,
    )
    if anomaly.agent_type:
        labels["agent_type"] = anomaly.agent_type
    if "team" not in labels and teams:
        team = teams.get(anomaly.agent_id)
        if team:
            labels["team"] = team
    return labels


def item_from_anomaly(anomaly: Anomaly, labels: dict[str, str]) -> AlertItem:
    annotations = {k: str(v) for k, v in anomaly.labels.items() if k in _ANNOTATION_LABELS}
    if anomaly.session_id:
        annotations["session_id"] = anomaly.session_id
    if anomaly.event_ids:
        annotations["event_ids"] = " ".join(anomaly.event_ids[:10])
    if len(anomaly.detectors) > 1:
        annotations["detectors"] = " ".join(anomaly.detectors)
    return AlertItem(
        anomaly_id=anomaly.anomaly_id,
        agent_id=anomaly.agent_id,
        detector=anomaly.detector,
        severity=anomaly.severity,
        score=float(anomaly.score),
        title=anomaly.title,
        explanation=anomaly.explanation,
        ts=_utc(anomaly.ts),
        detected_at=_utc(anomaly.detected_at),
        labels=labels,
        annotations=annotations,
    )


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Notification)


def encode_notification(notification: Notification) -> bytes:
    return _encoder.encode(notification)


def decode_notification(raw: bytes) -> Notification:
    return _decoder.decode(raw)
