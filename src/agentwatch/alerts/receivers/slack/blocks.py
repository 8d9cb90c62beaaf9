"""Slack Block Kit messages for notifications, cut to Slack's limits.

Limits applied (Slack's documented ones): at most 50 blocks; header text 150 characters;
section text 3000; at most 10 fields of 2000; context elements 10; button text 75 and URL
3000; the top-level ``text`` (notification fallback) is kept under 3000. Text from
anomalies is escaped (``&``, ``<``, ``>``) so it cannot form links or mentions.
"""

from __future__ import annotations

from typing import Any

from agentwatch.alerts.links import grafana_agent_url
from agentwatch.alerts.model import Notification

__all__ = ["LIMITS", "escape", "slack_message"]

LIMITS = {
    "blocks": 50,
    "header": 150,
    "section": 3000,
    "field": 2000,
    "fields": 10,
    "context": 10,
    "button": 75,
    "url": 3000,
    "text": 3000,
}
MAX_LISTED = 10

_ICONS = {"firing": ":rotating_light:", "resolved": ":white_check_mark:", "acknowledged": ":eyes:"}


def escape(text: str) -> str:
    """``text`` safe for Slack mrkdwn: no links, mentions or broadcasts can be formed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str, limit: int = LIMITS["section"]) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _cut(text, limit)}


def slack_message(notification: Notification, *, grafana_url: str = "") -> dict[str, Any]:
    """``{"text": ..., "blocks": [...]}`` for ``notification``."""
    n = notification
    labels = {**n.common_labels, **n.group_labels}
    agent = labels.get("agent_id", "")
    detector = labels.get("detector", "")
    subject = " / ".join(v for v in (agent, detector) if v) or n.group_key
    state = {"firing": "FIRING", "resolved": "RESOLVED", "acknowledged": "ACKNOWLEDGED"}[n.kind]
    if n.repeat:
        state = "STILL FIRING"
    header = _cut(f"{state} [{n.severity}] {subject}", LIMITS["header"])
    latest = n.items[-1] if n.items else None
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}
    ]
    if n.kind == "acknowledged":
        text = f"{_ICONS['acknowledged']} Acknowledged by *{escape(n.acked_by)}*"
        if n.ack_comment:
            text += f": {escape(n.ack_comment)}"
        blocks.append({"type": "section", "text": _mrkdwn(text)})
    elif n.kind == "resolved":
        text = (
            f"{_ICONS['resolved']} No new anomaly for this alert; resolved after "
            f"{n.anomaly_count} anomalies."
        )
        blocks.append({"type": "section", "text": _mrkdwn(text)})
    elif latest is not None:
        text = f"{_ICONS['firing']} *{escape(latest.title)}*\n{escape(latest.explanation)}"
        blocks.append({"type": "section", "text": _mrkdwn(text)})
    fields = [
        f"*Severity*\n{escape(n.severity)}",
        f"*Max score*\n{n.max_score:.1f}",
        f"*Anomalies*\n{n.anomaly_count} (new {n.new_count}, folded {n.folded})",
        f"*Agent*\n{escape(agent) or '-'}",
        f"*Detector*\n{escape(detector) or '-'}",
        f"*Route*\n{escape(n.route)}",
    ]
    blocks.append({"type": "section", "fields": [_mrkdwn(f, LIMITS["field"]) for f in fields][:10]})
    if n.kind == "firing" and len(n.items) > 1:
        lines = [
            f"• `{item.score:5.1f}` {escape(_cut(item.title, 250))}"
            for item in n.items[-MAX_LISTED:]
        ]
        more = len(n.items) - MAX_LISTED + n.folded
        if more > 0:
            lines.append(f"… and {more} more")
        blocks.append({"type": "section", "text": _mrkdwn("\n".join(lines))})
    link = grafana_agent_url(grafana_url, agent, n.started_at)
    if link and len(link) <= LIMITS["url"]:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in Grafana"[:75]},
                        "url": link,
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [_mrkdwn(f"alert `{n.alert_id}` · dedup `{n.dedup_key}`", 2000)],
        }
    )
    fallback = _cut(escape(header + (f": {latest.title}" if latest else "")), LIMITS["text"])
    return {"text": fallback, "blocks": blocks[: LIMITS["blocks"]]}
