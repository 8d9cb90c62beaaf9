"""The Prometheus Alertmanager webhook payload (version 4) for a notification.

Every existing Alertmanager webhook receiver understands it. Each listed anomaly is one
alert of ``alerts[]``: its labels are the anomaly's label set plus ``anomaly_id`` (so each
has its own fingerprint), its annotations carry the score, severity, explanation and a
Grafana link for the agent. A resolved notification lists the episode's latest anomalies
with ``status: resolved`` and ``endsAt`` set. Anomalies folded by the storm guard (or cut
by ``max_alerts``) are counted in ``truncatedAlerts`` and in ``commonAnnotations``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agentwatch.alerts.links import grafana_agent_url
from agentwatch.alerts.model import AlertItem, Notification, short_hash

__all__ = ["ZERO_TIME", "alertmanager_payload", "fingerprint", "rfc3339"]

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(dt: datetime) -> str:
    """``dt`` in UTC as RFC 3339 with a ``Z`` (millisecond precision).

    >>> rfc3339(datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC))
    '2026-03-04T05:06:07.891Z'
    """
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z"
    )


def fingerprint(labels: dict[str, str]) -> str:
    """A 16-hex-digit fingerprint of a label set (stable, order independent)."""
    return short_hash(*(f"{k}={v}" for k, v in sorted(labels.items())), size=8)


def _item_alert(item: AlertItem, status: str, ends_at: str, grafana_url: str) -> dict[str, Any]:
    labels = dict(item.labels)
    labels["anomaly_id"] = item.anomaly_id
    link = grafana_agent_url(grafana_url, item.agent_id, item.ts)
    annotations = {
        "summary": item.title,
        "description": item.explanation,
        "explanation": item.explanation,
        "score": f"{item.score:.1f}",
        "severity": item.severity,
        "detected_at": rfc3339(item.detected_at),
        **item.annotations,
    }
    if link:
        annotations["grafana_url"] = link
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(item.ts),
        "endsAt": ends_at,
        "generatorURL": link,
        "fingerprint": fingerprint(labels),
    }


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    common = dict(dicts[0])
    for d in dicts[1:]:
        for key in list(common):
            if d.get(key) != common[key]:
                del common[key]
    return common


def alertmanager_payload(
    notification: Notification,
    *,
    external_url: str = "",
    grafana_url: str = "",
    max_alerts: int = 0,
) -> dict[str, Any]:
    """The v4 webhook body of ``notification``; ``max_alerts`` > 0 caps ``alerts[]``."""
    resolved = notification.kind == "resolved"
    status = "resolved" if resolved else "firing"
    ends_at = rfc3339(notification.ended_at) if resolved and notification.ended_at else ZERO_TIME
    items = notification.items
    cut = 0
    if max_alerts > 0 and len(items) > max_alerts:
        cut = len(items) - max_alerts
        items = items[-max_alerts:]
    alerts = [_item_alert(item, status, ends_at, grafana_url) for item in items]
    common_labels = _common([a["labels"] for a in alerts]) or dict(notification.common_labels)
    common_annotations = _common([a["annotations"] for a in alerts])
    agent_id = notification.group_labels.get("agent_id") or common_labels.get("agent_id", "")
    link = grafana_agent_url(grafana_url, agent_id, notification.started_at)
    common_annotations.update(
        {
            "alert_id": notification.alert_id,
            "dedup_key": notification.dedup_key,
            "severity": notification.severity,
            "max_score": f"{notification.max_score:.1f}",
            "anomaly_count": str(notification.anomaly_count),
            "new_anomalies": str(notification.new_count),
            "folded_anomalies": str(notification.folded),
        }
    )
    if link:
        common_annotations["grafana_url"] = link
    if notification.repeat:
        common_annotations["repeat"] = "true"
    return {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": notification.folded + cut,
        "status": status,
        "receiver": notification.receiver,
        "groupLabels": dict(notification.group_labels),
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": external_url,
        "alerts": alerts,
    }
