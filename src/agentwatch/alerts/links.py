"""Links an on-call engineer follows from a notification: the agent's Grafana dashboard."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

from agentwatch.grafana.dashboards import AGENT_DASHBOARD_UID

__all__ = ["grafana_agent_url"]


def grafana_agent_url(grafana_url: str, agent_id: str, around: datetime | None = None) -> str:
    """The agent dashboard for ``agent_id`` (an hour before ``around`` to 15 minutes after).

    >>> grafana_agent_url("https://g.example", "billing 7")
    'https://g.example/d/agentwatch-agent/agentwatch-agent?var-agent=billing%207'
    >>> grafana_agent_url("", "a")
    ''
    """
    if not grafana_url or not agent_id:
        return ""
    query = {"var-agent": agent_id}
    if around is not None:
        start = around - timedelta(hours=1)
        end = around + timedelta(minutes=15)
        query["from"] = str(int(start.timestamp() * 1000))
        query["to"] = str(int(end.timestamp() * 1000))
    base = grafana_url.rstrip("/")
    return f"{base}/d/{AGENT_DASHBOARD_UID}/agentwatch-agent?{urlencode(query, quote_via=quote)}"
