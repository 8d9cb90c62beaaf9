"""PagerDuty Events API v2 bodies (``POST /v2/enqueue``).

``trigger`` carries the full payload: ``summary`` (at most 1024 characters), ``source``
(the agent), ``severity`` (critical, error, warning or info), ``timestamp``, ``component``,
``group``, ``class`` and ``custom_details``. ``acknowledge`` and ``resolve`` carry only the
routing key, the action and the ``dedup_key`` of the trigger, as the API documents.
"""

from __future__ import annotations

from typing import Any

from agentwatch.alerts.links import grafana_agent_url
from agentwatch.alerts.model import Notification
from agentwatch.alerts.receivers.webhook.payload import rfc3339

__all__ = [
    "MAX_CUSTOM_ANOMALIES",
    "MAX_SUMMARY_CHARS",
    "PAGERDUTY_SEVERITY",
    "event_action",
    "pagerduty_event",
    "summary_of",
]

MAX_SUMMARY_CHARS = 1024
MAX_CUSTOM_ANOMALIES = 20
MAX_FIELD_CHARS = 1000

#: agentwatch severity -> PagerDuty severity.
PAGERDUTY_SEVERITY: dict[str, str] = {
    "critical": "critical",
    "high": "error",
    "medium": "warning",
    "low": "info",
    "info": "info",
}

_ACTIONS = {"firing": "trigger", "resolved": "resolve", "acknowledged": "acknowledge"}


def event_action(kind: str) -> str:
    return _ACTIONS[kind]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_of(notification: Notification) -> str:
    """``[severity] agent: title (N anomalies)``, cut to 1024 characters."""
    labels = notification.group_labels
    agent = labels.get("agent_id") or notification.common_labels.get("agent_id", "")
    title = notification.items[-1].title if notification.items else notification.group_key
    count = notification.anomaly_count
    text = f"[{notification.severity}] {title}"
    if agent and agent not in title:
        text = f"[{notification.severity}] {agent}: {title}"
    if count > 1:
        text += f" ({count} anomalies)"
    return _cut(text, MAX_SUMMARY_CHARS)


def pagerduty_event(
    notification: Notification,
    routing_key: str,
    *,
    grafana_url: str = "",
    client: str = "agentwatch",
    client_url: str = "",
) -> dict[str, Any]:
    action = event_action(notification.kind)
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": notification.dedup_key,
    }
    if action != "trigger":
        return event
    labels = {**notification.common_labels, **notification.group_labels}
    agent = labels.get("agent_id", "")
    latest = notification.items[-1] if notification.items else None
    when = latest.ts if latest else notification.created_at
    link = grafana_agent_url(grafana_url, agent, when)
    anomalies = [
        {
            "anomaly_id": item.anomaly_id,
            "agent_id": item.agent_id,
            "detector": item.detector,
            "score": round(item.score, 1),
            "severity": item.severity,
            "ts": rfc3339(item.ts),
            "title": _cut(item.title, MAX_FIELD_CHARS),
        }
        for item in notification.items[-MAX_CUSTOM_ANOMALIES:]
    ]
    custom: dict[str, Any] = {
        "alert_id": notification.alert_id,
        "route": notification.route,
        "group_labels": dict(notification.group_labels),
        "labels": labels,
        "severity": notification.severity,
        "max_score": round(notification.max_score, 1),
        "anomaly_count": notification.anomaly_count,
        "new_anomalies": notification.new_count,
        "folded_anomalies": notification.folded,
        "listed_anomalies": len(notification.items),
        "explanation": _cut(latest.explanation, MAX_FIELD_CHARS) if latest else "",
        "anomalies": anomalies,
    }
    if link:
        custom["grafana_url"] = link
    payload = {
        "summary": summary_of(notification),
        "source": agent or "agentwatch",
        "severity": PAGERDUTY_SEVERITY.get(notification.severity, "warning"),
        "timestamp": rfc3339(when),
        "component": labels.get("agent_type") or "agent",
        "group": labels.get("team") or labels.get("peer_group") or notification.route,
        "class": labels.get("detector") or "behavioural_anomaly",
        "custom_details": custom,
    }
    event["payload"] = payload
    event["client"] = client
    if client_url or link:
        event["client_url"] = client_url or link
    if link:
        event["links"] = [{"href": link, "text": f"Grafana: agent {agent}"}]
    return event
