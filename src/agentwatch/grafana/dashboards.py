"""The agentwatch Grafana dashboards, as Python data.

Three dashboards read the ClickHouse tables of :mod:`agentwatch.storage` through the
``grafana-clickhouse-datasource`` plugin (data source uid ``agentwatch-clickhouse``, see
``deploy/grafana/provisioning``):

* **agentwatch overview** (uid ``agentwatch-overview``): the fleet for a SOC analyst —
  events/s by type, active agents, dead letters by reason, anomalies by severity, top
  agents by anomaly score, the latest anomalies with their explanation, and tool calls,
  bytes out and cost per agent. The multi-value variable ``agent`` (default: All) filters
  every agent-scoped panel.
* **agentwatch agent** (uid ``agentwatch-agent``): one agent (single-value variable
  ``agent``) — its activity, anomalies, destinations, secrets and latest events. Every
  agent id on the overview links here as ``/d/agentwatch-agent/agentwatch-agent?var-agent=<id>``.
* **agentwatch operations** (uid ``agentwatch-operations``): for the on-call engineer and the
  detection owner, over the tables of migrations 0002 (models) and 0003 (alerting) — alerts
  firing / acknowledged now and resolved, the open alerts, alerts opened by severity, active
  silences, notifications by receiver and outcome, per-receiver delivery, undelivered
  notifications (dead letters) with their reason; agents with a model and state sizes,
  snapshots by reason, the largest model states, baseline changes with who and why, and the
  analyst feedback log. Same ``agent`` variable as the overview (receiver, dead-letter and
  silence panels are not per agent; alerts grouped without ``agent_id`` show under All
  only); agent ids link to the agent dashboard. It never reads
  a column that may hold a secret or a blob (dead letters' ``notification``, ``dedup_key``,
  alerts' ``recent``, model ``state``): receivers are stored by name, reasons scrubbed.

The overview and the operations dashboard link to each other (keeping the time range and
``agent``); both link to the agent dashboard, which links back to both.

Regenerate the committed JSON after changing this module::

    python -m agentwatch.grafana.dashboards deploy/grafana/dashboards

Conventions of the SQL:

* ReplacingMergeTree tables are read with ``FINAL``: ``events``, ``anomalies`` and
  ``dead_letters`` (Kafka delivery is at-least-once; redeliveries collapse only in merges),
  ``alerts`` and ``silences`` (every state change is a new version), ``model_latest``,
  ``feedback`` and ``baseline_changes``. The append-only logs ``model_snapshots``,
  ``alert_notifications`` and ``alert_dead_letters``, where a retried insert can leave the
  same row twice, are read with ``LIMIT 1 BY`` their key (or ``uniqExact`` of it).
  ``agent_stats_1m`` (a SummingMergeTree filled by a materialized view) is read with
  ``sum()`` and ``GROUP BY``; panels on it have a minimum interval of one minute.
* Panels about the current state — alerts firing now, open alerts, silences in force, the
  newest model of each agent — ignore the time range (an alert opened last week may still
  be firing); every other panel is limited to it with ``$__timeFilter``.
* Time ranges and buckets use the plugin's macros (``$__timeFilter(ts)``,
  ``$__timeInterval(ts)``, ``$__interval_s``); :func:`expand_macros` turns them into plain
  ClickHouse SQL the same way the plugin does, so the queries can be tested.
* The ``agent`` variable of the overview and operations has the custom all value
  ``'__all__'``, which Grafana inserts verbatim (custom all values are not formatted), so
  one filter works for "All" and for any selection without listing every agent::

    ('__all__' IN (${agent:singlequote}) OR agent_id IN (${agent:singlequote}))
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "AGENT_DASHBOARD_UID",
    "ALL_AGENTS_VALUE",
    "DATASOURCE_TYPE",
    "DATASOURCE_UID",
    "DEFAULT_DATABASE",
    "OPERATIONS_DASHBOARD_UID",
    "OVERVIEW_DASHBOARD_UID",
    "SUPPORTED_MACROS",
    "Raw",
    "dashboard_queries",
    "dumps_dashboard",
    "expand_macros",
    "main",
    "render_dashboards",
    "write_dashboards",
]

Json = dict[str, Any]

DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "agentwatch-clickhouse"
DATASOURCE: Json = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
DEFAULT_DATABASE = "agentwatch"

OVERVIEW_DASHBOARD_UID = "agentwatch-overview"
OVERVIEW_TITLE = "agentwatch overview"
AGENT_DASHBOARD_UID = "agentwatch-agent"
AGENT_TITLE = "agentwatch agent"
OPERATIONS_DASHBOARD_UID = "agentwatch-operations"
OPERATIONS_TITLE = "agentwatch operations"

#: The overview's custom "All" value of ``agent``, inserted by Grafana as it is.
ALL_AGENTS_VALUE = "'__all__'"

SCHEMA_VERSION = 39  # Grafana 11
TAGS = ["agentwatch"]

# grafana-clickhouse-datasource query formats (sqlutil.FormatQueryOption).
FORMAT_TIME_SERIES = 0
FORMAT_TABLE = 1

SEVERITY_COLORS: dict[str, str] = {
    "info": "blue",
    "low": "green",
    "medium": "yellow",
    "high": "orange",
    "critical": "red",
}

_OVERVIEW_AGENT_FILTER = (
    f"({ALL_AGENTS_VALUE} IN (${{agent:singlequote}}) OR agent_id IN (${{agent:singlequote}}))"
)
_ONE_AGENT_FILTER = "agent_id = ${agent:singlequote}"

_AGENT_LINK = (
    f"/d/{AGENT_DASHBOARD_UID}/agentwatch-agent"
    "?var-agent=${__data.fields.agent_id:percentencode}&${__url_time_range}"
)


# --------------------------------------------------------------------------------------
# Building blocks


def _sql(template: str, database: str, agent_filter: str = "") -> str:
    """``template`` with ``{db}`` and ``{agent}`` filled in, trimmed."""
    text = template.replace("{db}", database).replace("{agent}", agent_filter)
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "\n".join(lines)


def _target(sql: str, fmt: int, ref_id: str = "A") -> Json:
    return {
        "datasource": DATASOURCE,
        "editorType": "sql",
        "format": fmt,
        "queryType": "timeseries" if fmt == FORMAT_TIME_SERIES else "table",
        "rawSql": sql,
        "refId": ref_id,
    }


def _thresholds(*steps: tuple[str, float | None]) -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for color, value in steps],
    }


_BASE_THRESHOLDS = _thresholds(("green", None))
_SCORE_THRESHOLDS = _thresholds(("green", None), ("yellow", 40.0), ("orange", 60.0), ("red", 80.0))


def _severity_mappings() -> list[Json]:
    return [
        {
            "type": "value",
            "options": {
                severity: {"color": color, "index": index, "text": severity}
                for index, (severity, color) in enumerate(SEVERITY_COLORS.items())
            },
        }
    ]


def _severity_color_overrides() -> list[Json]:
    return [
        {
            "matcher": {"id": "byName", "options": severity},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
        }
        for severity, color in SEVERITY_COLORS.items()
    ]


def _agent_link(title: str = "Open agent ${__data.fields.agent_id}") -> list[Json]:
    return [{"title": title, "url": _AGENT_LINK}]


def _dashboard_link(title: str, tooltip: str, uid: str, *, include_vars: bool = False) -> Json:
    """A link in the dashboard's header to the dashboard ``uid`` (keeping the time range)."""
    slug = {
        OVERVIEW_DASHBOARD_UID: OVERVIEW_TITLE,
        AGENT_DASHBOARD_UID: AGENT_TITLE,
        OPERATIONS_DASHBOARD_UID: OPERATIONS_TITLE,
    }[uid].replace(" ", "-")
    return {
        "asDropdown": False,
        "icon": "dashboard",
        "includeVars": include_vars,
        "keepTime": True,
        "tags": [],
        "targetBlank": False,
        "title": title,
        "tooltip": tooltip,
        "type": "link",
        "url": f"/d/{uid}/{slug}",
    }


def _by_name(name: str, *properties: tuple[str, Any]) -> Json:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key, "value": value} for key, value in properties],
    }


class _Layout:
    """Assigns panel ids and grid positions row by row (24 columns)."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self._x = 0
        self._y = 0
        self._row_h = 0

    def add(self, panel: Json, w: int, h: int) -> None:
        if self._x + w > 24:
            self.newline()
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self._x, "y": self._y}
        self.panels.append(panel)
        self._x += w
        self._row_h = max(self._row_h, h)

    def newline(self) -> None:
        if self._x:
            self._y += self._row_h
        self._x = 0
        self._row_h = 0

    def row(self, title: str) -> None:
        self.newline()
        self.panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
                "id": len(self.panels) + 1,
                "panels": [],
                "title": title,
                "type": "row",
            }
        )
        self._y += 1


def _panel(
    kind: str,
    title: str,
    description: str,
    targets: list[Json],
    *,
    defaults: Json | None = None,
    overrides: list[Json] | None = None,
    options: Json | None = None,
    interval: str | None = None,
    transformations: list[Json] | None = None,
) -> Json:
    field_defaults: Json = {"color": {"mode": "palette-classic"}, "thresholds": _BASE_THRESHOLDS}
    field_defaults.update(defaults or {})
    panel: Json = {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
        "targets": targets,
        "title": title,
        "type": kind,
    }
    if interval:
        panel["interval"] = interval
    if transformations:
        panel["transformations"] = transformations
    return panel


def _stat(title: str, description: str, sql: str, *, unit: str = "short", **kw: Any) -> Json:
    defaults: Json = {"unit": unit, "color": {"mode": "thresholds"}}
    defaults.update(kw.pop("defaults", {}))
    return _panel(
        "stat",
        title,
        description,
        [_target(sql, FORMAT_TABLE)],
        defaults=defaults,
        options={
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name",
        },
        **kw,
    )


def _timeseries(
    title: str,
    description: str,
    sql: str,
    *,
    unit: str = "short",
    series_label: str | None = None,
    stacked: bool = False,
    bars: bool = False,
    overrides: list[Json] | None = None,
    interval: str | None = None,
) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 80 if bars else 15,
        "lineWidth": 1,
        "pointSize": 4,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
    }
    defaults: Json = {"custom": custom, "unit": unit, "min": 0}
    if series_label:
        defaults["displayName"] = f"${{__field.labels.{series_label}}}"
    return _panel(
        "timeseries",
        title,
        description,
        [_target(sql, FORMAT_TIME_SERIES)],
        defaults=defaults,
        overrides=overrides,
        options={
            "legend": {
                "calcs": [],
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        interval=interval,
    )


def _table(
    title: str,
    description: str,
    sql: str,
    *,
    overrides: list[Json] | None = None,
    sort_by: list[Json] | None = None,
) -> Json:
    return _panel(
        "table",
        title,
        description,
        [_target(sql, FORMAT_TABLE)],
        defaults={
            "color": {"mode": "thresholds"},
            "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True},
        },
        overrides=overrides,
        options={
            "cellHeight": "sm",
            "footer": {"show": False, "countRows": False, "fields": "", "reducer": ["sum"]},
            "showHeader": True,
            "sortBy": sort_by or [],
        },
    )


def _per_agent_bars(title: str, description: str, sql: str, *, unit: str) -> Json:
    """Horizontal bars, one per agent (the query returns agent_id and one number)."""
    return _panel(
        "bargauge",
        title,
        description,
        [_target(sql, FORMAT_TABLE)],
        defaults={
            "unit": unit,
            "min": 0,
            "color": {"mode": "continuous-BlPu"},
            "displayName": "${__data.fields.agent_id}",
            "links": _agent_link(),
        },
        options={
            "displayMode": "gradient",
            "orientation": "horizontal",
            "reduceOptions": {"calcs": [], "fields": "", "values": True, "limit": 15},
            "showUnfilled": True,
            "valueMode": "color",
            "namePlacement": "auto",
            "sizing": "auto",
            "minVizHeight": 16,
            "minVizWidth": 8,
            "maxVizHeight": 300,
        },
    )


def _barchart(title: str, description: str, sql: str, *, x_field: str, unit: str) -> Json:
    """Vertical bars, one per row (the query returns the label ``x_field`` and numbers)."""
    return _panel(
        "barchart",
        title,
        description,
        [_target(sql, FORMAT_TABLE)],
        defaults={
            "unit": unit,
            "min": 0,
            "custom": {"fillOpacity": 80, "gradientMode": "none", "lineWidth": 1},
        },
        options={
            "barRadius": 0,
            "barWidth": 0.9,
            "fullHighlight": False,
            "groupWidth": 0.7,
            "legend": {
                "calcs": [],
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": False,
            },
            "orientation": "vertical",
            "showValue": "auto",
            "stacking": "none",
            "tooltip": {"mode": "single", "sort": "none"},
            "xField": x_field,
            "xTickLabelRotation": 0,
            "xTickLabelSpacing": 0,
        },
    )


def _dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    panels: list[Json],
    variables: list[Json],
    links: list[Json],
    annotations: list[Json] | None = None,
    time_from: str = "now-6h",
) -> Json:
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                *(annotations or []),
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": links,
        "liveNow": False,
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": TAGS,
        "templating": {"list": variables},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m", "1h"]},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


def _agent_variable(database: str, *, multi: bool) -> Json:
    sql = _sql(
        """
SELECT DISTINCT agent_id
FROM {db}.agent_stats_1m
WHERE $__timeFilter(minute)
ORDER BY agent_id
LIMIT 10000
""",
        database,
    )
    variable: Json = {
        "datasource": DATASOURCE,
        "definition": sql,
        "description": "Agent id (agent_id of the events)",
        "hide": 0,
        "includeAll": multi,
        "label": "Agent",
        "multi": multi,
        "name": "agent",
        "options": [],
        "query": sql,
        "refresh": 2,  # on time range change
        "regex": "",
        "skipUrlSync": False,
        "sort": 0,
        "type": "query",
    }
    if multi:
        variable["allValue"] = ALL_AGENTS_VALUE
        variable["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    else:
        variable["current"] = {}
    return variable


# --------------------------------------------------------------------------------------
# The overview


def _overview(database: str) -> Json:
    f = _OVERVIEW_AGENT_FILTER
    layout = _Layout()

    layout.add(
        _stat(
            "Active agents",
            "Agents that sent at least one event in the time range.",
            _sql(
                """
SELECT uniqExact(agent_id) AS `active agents`
FROM {db}.agent_stats_1m
WHERE $__timeFilter(minute) AND {agent}
""",
                database,
                f,
            ),
        ),
        6,
        4,
    )
    layout.add(
        _stat(
            "Events",
            "Valid events stored in the time range (per-minute rollup; a rare redelivery "
            "the worker did not drop is counted twice here).",
            _sql(
                """
SELECT sum(events) AS events
FROM {db}.agent_stats_1m
WHERE $__timeFilter(minute) AND {agent}
""",
                database,
                f,
            ),
        ),
        6,
        4,
    )
    layout.add(
        _stat(
            "High + critical anomalies",
            "Anomalies of severity high or critical in the time range.",
            _sql(
                """
SELECT countIf(severity IN ('high', 'critical')) AS `high + critical`
FROM {db}.anomalies FINAL
WHERE $__timeFilter(ts) AND {agent}
""",
                database,
                f,
            ),
            defaults={"thresholds": _thresholds(("green", None), ("red", 1.0))},
        ),
        6,
        4,
    )
    layout.add(
        _stat(
            "Dead letters",
            "Messages (or parts of batch messages) rejected by the workers in the time range; "
            "the original bytes are on the topic agentwatch.events.dlq.v1.",
            _sql(
                """
SELECT count() AS `dead letters`
FROM {db}.dead_letters FINAL
WHERE $__timeFilter(ts)
""",
                database,
            ),
            defaults={"thresholds": _thresholds(("green", None), ("orange", 1.0))},
        ),
        6,
        4,
    )

    layout.add(
        _timeseries(
            "Events/s by type",
            "Valid events per second, by event type.",
            _sql(
                """
SELECT
    $__timeInterval(ts) AS time,
    type,
    count() / $__interval_s AS events_per_s
FROM {db}.events FINAL
WHERE $__timeFilter(ts) AND {agent}
GROUP BY time, type
ORDER BY time, type
""",
                database,
                f,
            ),
            unit="reqps",
            series_label="type",
            stacked=True,
        ),
        12,
        8,
    )
    layout.add(
        _timeseries(
            "Anomalies by severity",
            "Anomalies per interval, by severity (time of the anomalous behaviour).",
            _sql(
                """
SELECT
    $__timeInterval(ts) AS time,
    severity,
    count() AS anomalies
FROM {db}.anomalies FINAL
WHERE $__timeFilter(ts) AND {agent}
GROUP BY time, severity
ORDER BY time, severity
""",
                database,
                f,
            ),
            series_label="severity",
            stacked=True,
            bars=True,
            overrides=_severity_color_overrides(),
        ),
        12,
        8,
    )

    layout.add(
        _timeseries(
            "Active agents over time",
            "Agents that sent at least one event in each interval.",
            _sql(
                """
SELECT
    $__timeInterval(minute) AS time,
    uniqExact(agent_id) AS `active agents`
FROM {db}.agent_stats_1m
WHERE $__timeFilter(minute) AND {agent}
GROUP BY time
ORDER BY time
""",
                database,
                f,
            ),
            interval="1m",
        ),
        8,
        8,
    )
    layout.add(
        _timeseries(
            "Dead letters by reason",
            "Rejected messages per interval, by reason (bad_json, missing_field, "
            "invalid_field, ...). Not filtered by agent.",
            _sql(
                """
SELECT
    $__timeInterval(ts) AS time,
    reason,
    count() AS dead_letters
FROM {db}.dead_letters FINAL
WHERE $__timeFilter(ts)
GROUP BY time, reason
ORDER BY time, reason
""",
                database,
            ),
            series_label="reason",
            stacked=True,
            bars=True,
        ),
        8,
        8,
    )
    layout.add(
        _table(
            "Top agents by anomaly score",
            "Agents with the highest anomaly score in the time range. Click an agent id "
            "to open its dashboard.",
            _sql(
                """
SELECT
    agent_id,
    max(score) AS max_score,
    count() AS anomalies,
    countIf(severity IN ('high', 'critical')) AS high_critical,
    argMax(title, score) AS top_finding,
    max(ts) AS last_anomaly
FROM {db}.anomalies FINAL
WHERE $__timeFilter(ts) AND {agent}
GROUP BY agent_id
ORDER BY max_score DESC, anomalies DESC, agent_id
LIMIT 20
""",
                database,
                f,
            ),
            overrides=[
                _by_name("agent_id", ("links", _agent_link())),
                _by_name(
                    "max_score",
                    ("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
                    ("thresholds", _SCORE_THRESHOLDS),
                    ("decimals", 1),
                    ("min", 0),
                    ("max", 100),
                ),
            ],
        ),
        8,
        8,
    )

    layout.add(
        _table(
            "Latest anomalies",
            "The most recent anomalies with the detectors' explanation. Click an agent id "
            "to open its dashboard.",
            _sql(
                """
SELECT
    ts AS time,
    severity,
    round(score, 1) AS anomaly_score,
    agent_id,
    agent_type,
    detector,
    title,
    explanation,
    session_id,
    anomaly_id
FROM {db}.anomalies FINAL
WHERE $__timeFilter(ts) AND {agent}
ORDER BY ts DESC, anomaly_id
LIMIT 200
""",
                database,
                f,
            ),
            overrides=[
                _by_name("agent_id", ("links", _agent_link())),
                _by_name(
                    "severity",
                    ("mappings", _severity_mappings()),
                    ("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
                    ("custom.width", 90),
                ),
                _by_name("anomaly_score", ("custom.width", 110)),
                _by_name("time", ("custom.width", 180)),
                _by_name("explanation", ("custom.cellOptions", {"type": "auto", "wrapText": True})),
            ],
        ),
        24,
        10,
    )

    layout.row("Per agent")
    layout.add(
        _per_agent_bars(
            "Tool calls per agent",
            "tool_call events per agent in the time range (top 15).",
            _sql(
                """
SELECT agent_id, sum(events) AS tool_calls
FROM {db}.agent_stats_1m
WHERE $__timeFilter(minute) AND type = 'tool_call' AND {agent}
GROUP BY agent_id
ORDER BY tool_calls DESC, agent_id
LIMIT 15
""",
                database,
                f,
            ),
            unit="short",
        ),
        8,
        9,
    )
    layout.add(
        _per_agent_bars(
            "Bytes out per agent",
            "Bytes the agent sent out (bytes_out of its events) in the time range (top 15).",
            _sql(
                """
SELECT agent_id, sum(bytes_out) AS bytes_out
FROM {db}.agent_stats_1m
WHERE $__timeFilter(minute) AND {agent}
GROUP BY agent_id
ORDER BY bytes_out DESC, agent_id
LIMIT 15
""",
                database,
                f,
            ),
            unit="decbytes",
        ),
        8,
        9,
    )
    layout.add(
        _per_agent_bars(
            "Cost per agent",
            "LLM cost (cost_usd of its events) in the time range (top 15).",
            _sql(
                """
SELECT agent_id, round(sum(cost_usd), 4) AS cost_usd
FROM {db}.agent_stats_1m
WHERE $__timeFilter(minute) AND {agent}
GROUP BY agent_id
ORDER BY cost_usd DESC, agent_id
LIMIT 15
""",
                database,
                f,
            ),
            unit="currencyUSD",
        ),
        8,
        9,
    )

    return _dashboard(
        uid=OVERVIEW_DASHBOARD_UID,
        title=OVERVIEW_TITLE,
        description="Fleet overview: event volume, anomalies, dead letters, per-agent usage.",
        panels=layout.panels,
        variables=[_agent_variable(database, multi=True)],
        links=[
            _dashboard_link("Agent drill-down", "One agent in detail", AGENT_DASHBOARD_UID),
            _dashboard_link(
                "Operations",
                "Alerts, notifications, silences, models and baseline changes",
                OPERATIONS_DASHBOARD_UID,
                include_vars=True,
            ),
        ],
        time_from="now-6h",
    )


# --------------------------------------------------------------------------------------
# The per-agent drill-down


def _agent(database: str) -> Json:
    f = _ONE_AGENT_FILTER
    layout = _Layout()

    def stat(title: str, description: str, template: str, **kw: Any) -> None:
        layout.add(_stat(title, description, _sql(template, database, f), **kw), 4, 4)

    stat(
        "Events",
        "Events of this agent in the time range.",
        """
SELECT count() AS events
FROM {db}.events FINAL
WHERE $__timeFilter(ts) AND {agent}
""",
    )
    stat(
        "Sessions",
        "Distinct sessions of this agent in the time range.",
        """
SELECT uniqExactIf(session_id, session_id != '') AS sessions
FROM {db}.events FINAL
WHERE $__timeFilter(ts) AND {agent}
""",
    )
    stat(
        "Anomalies",
        "Anomalies of this agent in the time range.",
        """
SELECT count() AS anomalies
FROM {db}.anomalies FINAL
WHERE $__timeFilter(ts) AND {agent}
""",
        defaults={"thresholds": _thresholds(("green", None), ("orange", 1.0))},
    )
    stat(
        "Max anomaly score",
        "Highest anomaly score (0-100) of this agent in the time range.",
        """
SELECT max(score) AS max_score
FROM {db}.anomalies FINAL
WHERE $__timeFilter(ts) AND {agent}
""",
        defaults={"thresholds": _SCORE_THRESHOLDS, "decimals": 1, "min": 0, "max": 100},
    )
    stat(
        "Bytes out",
        "Bytes the agent sent out in the time range.",
        """
SELECT sum(bytes_out) AS bytes_out
FROM {db}.events FINAL
WHERE $__timeFilter(ts) AND {agent}
""",
        unit="decbytes",
    )
    stat(
        "Cost",
        "LLM cost of the agent in the time range.",
        """
SELECT sum(cost_usd) AS cost_usd
FROM {db}.events FINAL
WHERE $__timeFilter(ts) AND {agent}
""",
        unit="currencyUSD",
    )

    layout.add(
        _timeseries(
            "Events/s by type",
            "Events of this agent per second, by event type.",
            _sql(
                """
SELECT
    $__timeInterval(ts) AS time,
    type,
    count() / $__interval_s AS events_per_s
FROM {db}.events FINAL
WHERE $__timeFilter(ts) AND {agent}
GROUP BY time, type
ORDER BY time, type
""",
                database,
                f,
            ),
            unit="reqps",
            series_label="type",
            stacked=True,
        ),
        12,
        8,
    )
    layout.add(
        _timeseries(
            "Anomaly score by detector",
            "Score (0-100) of each anomaly of this agent, by detector (highest per interval).",
            _sql(
                """
SELECT
    $__timeInterval(ts) AS time,
    detector,
    max(score) AS score
FROM {db}.anomalies FINAL
WHERE $__timeFilter(ts) AND {agent}
GROUP BY time, detector
ORDER BY time, detector
""",
                database,
                f,
            ),
            series_label="detector",
            bars=True,
        ),
        12,
        8,
    )

    layout.add(
        _timeseries(
            "Tool calls by tool",
            "tool_call events of this agent per interval, by tool.",
            _sql(
                """
SELECT
    $__timeInterval(ts) AS time,
    tool_name,
    count() AS calls
FROM {db}.events FINAL
WHERE $__timeFilter(ts) AND {agent} AND type = 'tool_call'
GROUP BY time, tool_name
ORDER BY time, tool_name
""",
                database,
                f,
            ),
            series_label="tool_name",
            stacked=True,
            bars=True,
        ),
        8,
        8,
    )
    layout.add(
        _timeseries(
            "Bytes out over time",
            "Bytes this agent sent out per interval.",
            _sql(
                """
SELECT
    $__timeInterval(ts) AS time,
    sum(bytes_out) AS bytes_out
FROM {db}.events FINAL
WHERE $__timeFilter(ts) AND {agent}
GROUP BY time
ORDER BY time
""",
                database,
                f,
            ),
            unit="decbytes",
            bars=True,
        ),
        8,
        8,
    )
    layout.add(
        _timeseries(
            "Tokens and cost",
            "LLM tokens (in + out) and cost of this agent per interval.",
            _sql(
                """
SELECT
    $__timeInterval(ts) AS time,
    sum(tokens_in) + sum(tokens_out) AS tokens,
    sum(cost_usd) AS cost_usd
FROM {db}.events FINAL
WHERE $__timeFilter(ts) AND {agent} AND type = 'llm_call'
GROUP BY time
ORDER BY time
""",
                database,
                f,
            ),
            overrides=[
                _by_name(
                    "cost_usd",
                    ("unit", "currencyUSD"),
                    ("custom.axisPlacement", "right"),
                )
            ],
        ),
        8,
        8,
    )

    layout.add(
        _table(
            "Anomalies with explanation",
            "Anomalies of this agent with the detectors' explanation.",
            _sql(
                """
SELECT
    ts AS time,
    severity,
    round(score, 1) AS anomaly_score,
    detector,
    title,
    explanation,
    session_id,
    event_ids,
    anomaly_id
FROM {db}.anomalies FINAL
WHERE $__timeFilter(ts) AND {agent}
ORDER BY ts DESC, anomaly_id
LIMIT 200
""",
                database,
                f,
            ),
            overrides=[
                _by_name(
                    "severity",
                    ("mappings", _severity_mappings()),
                    ("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
                    ("custom.width", 90),
                ),
                _by_name("time", ("custom.width", 180)),
                _by_name("explanation", ("custom.cellOptions", {"type": "auto", "wrapText": True})),
            ],
        ),
        24,
        9,
    )

    layout.add(
        _table(
            "Destinations",
            "Where the agent sent data or money (destinations of its events), with first "
            "and last use in the time range.",
            _sql(
                """
SELECT
    dest.1 AS kind,
    dest.2 AS destination,
    count() AS events,
    min(ts) AS first_seen,
    max(ts) AS last_seen
FROM {db}.events FINAL
ARRAY JOIN arrayZip(dest_kinds, dest_values) AS dest
WHERE $__timeFilter(ts) AND {agent}
GROUP BY kind, destination
ORDER BY first_seen DESC, kind, destination
LIMIT 500
""",
                database,
                f,
            ),
            sort_by=[{"displayName": "first_seen", "desc": True}],
        ),
        12,
        9,
    )
    layout.add(
        _table(
            "Secrets accessed",
            "Secrets (by name, never the value) the agent read in the time range.",
            _sql(
                """
SELECT
    secret_name,
    count() AS reads,
    countIf(status != 'ok') AS failed,
    min(ts) AS first_read,
    max(ts) AS last_read
FROM {db}.events FINAL
WHERE $__timeFilter(ts) AND {agent} AND type = 'secret_access'
GROUP BY secret_name
ORDER BY last_read DESC, secret_name
LIMIT 200
""",
                database,
                f,
            ),
        ),
        12,
        9,
    )

    layout.add(
        _table(
            "Latest events",
            "The most recent events of this agent (tool arguments and attributes are "
            "redacted at ingestion).",
            _sql(
                """
SELECT
    ts AS time,
    type,
    status,
    tool_name,
    arrayStringConcat(
        arrayMap((k, v) -> concat(k, ':', v), dest_kinds, dest_values), ', '
    ) AS destinations,
    secret_name,
    model,
    bytes_out,
    tokens_in,
    tokens_out,
    cost_usd,
    duration_ms,
    session_id,
    event_id
FROM {db}.events FINAL
WHERE $__timeFilter(ts) AND {agent}
ORDER BY ts DESC, event_id
LIMIT 500
""",
                database,
                f,
            ),
            overrides=[_by_name("time", ("custom.width", 180))],
        ),
        24,
        12,
    )

    anomaly_annotation: Json = {
        "datasource": DATASOURCE,
        "enable": True,
        "hide": False,
        "iconColor": "red",
        "name": "Anomalies",
        "target": _target(
            _sql(
                """
SELECT
    ts AS time,
    concat('[', severity, '] ', title) AS title,
    explanation AS text,
    detector AS tags
FROM {db}.anomalies FINAL
WHERE $__timeFilter(ts) AND {agent}
ORDER BY ts
LIMIT 1000
""",
                database,
                f,
            ),
            FORMAT_TABLE,
            "Anomalies",
        ),
    }

    return _dashboard(
        uid=AGENT_DASHBOARD_UID,
        title=AGENT_TITLE,
        description="One agent in detail: activity, anomalies, destinations, secrets, events.",
        panels=layout.panels,
        variables=[_agent_variable(database, multi=False)],
        links=[
            _dashboard_link("Fleet overview", "All agents", OVERVIEW_DASHBOARD_UID),
            _dashboard_link(
                "Operations",
                "Alerts, notifications, silences, models and baseline changes",
                OPERATIONS_DASHBOARD_UID,
            ),
        ],
        annotations=[anomaly_annotation],
        time_from="now-24h",
    )


# --------------------------------------------------------------------------------------
# Operations: alerting and models


def _operations(database: str) -> Json:
    f = _OVERVIEW_AGENT_FILTER
    layout = _Layout()

    def stat(title: str, description: str, template: str, **kw: Any) -> None:
        layout.add(_stat(title, description, _sql(template, database, f), **kw), 4, 4)

    severity_cell = _by_name(
        "severity",
        ("mappings", _severity_mappings()),
        ("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
        ("custom.width", 90),
    )

    layout.row("Alerts")
    stat(
        "Firing now",
        "Alerts firing now and not acknowledged, whatever the time range (each alert is an "
        "episode of a group of anomalies, from its first anomaly to its resolve).",
        """
SELECT count() AS firing
FROM {db}.alerts FINAL
WHERE status = 'firing' AND acked_by = '' AND {agent}
""",
        defaults={"thresholds": _thresholds(("green", None), ("red", 1.0))},
    )
    stat(
        "Acknowledged now",
        "Alerts firing now that someone acknowledged (no more repeats), whatever the time range.",
        """
SELECT count() AS acknowledged
FROM {db}.alerts FINAL
WHERE status = 'firing' AND acked_by != '' AND {agent}
""",
        defaults={"thresholds": _thresholds(("green", None), ("yellow", 1.0))},
    )
    stat(
        "Resolved",
        "Alerts resolved in the time range (no new anomaly for resolve_timeout).",
        """
SELECT count() AS resolved
FROM {db}.alerts FINAL
WHERE status = 'resolved' AND $__timeFilter(resolved_at) AND started_at <= $__toTime
    AND {agent}
""",
    )
    stat(
        "Opened",
        "Alerts whose first anomaly is in the time range.",
        """
SELECT count() AS opened
FROM {db}.alerts FINAL
WHERE $__timeFilter(started_at) AND {agent}
""",
    )
    stat(
        "Undelivered",
        "Notifications that reached no receiver in the time range (dead letters: failed, "
        "gave_up, circuit_open). Not filtered by agent.",
        """
SELECT uniqExact(notification_id, receiver) AS undelivered
FROM {db}.alert_dead_letters
WHERE $__timeFilter(ts)
""",
        defaults={"thresholds": _thresholds(("green", None), ("red", 1.0))},
    )
    stat(
        "Silences in force",
        "Silences in force now, whatever the time range. Not filtered by agent.",
        """
SELECT count() AS silences
FROM {db}.silences FINAL
WHERE starts_at <= now64(3) AND ends_at > now64(3)
""",
        defaults={"thresholds": _thresholds(("green", None), ("yellow", 1.0))},
    )

    layout.add(
        _table(
            "Open alerts",
            "Alerts firing now, whatever the time range: not acknowledged first, then by "
            "severity and score. anomalies counts the episode's anomalies, folded those the "
            "storm guard did not list, notifications the notifications made so far. Use "
            "alert_id with `agentwatch alerts show` / `ack`. Click an agent id to open its "
            "dashboard (alerts grouped by other labels have none).",
            _sql(
                """
SELECT
    agent_id,
    route,
    severity,
    max_score,
    title,
    anomaly_count AS anomalies,
    folded_total AS folded,
    notifications,
    started_at AS first_seen,
    last_anomaly_at AS last_seen,
    acked_by,
    alert_id
FROM {db}.alerts FINAL
WHERE status = 'firing' AND {agent}
ORDER BY acked_by != '', indexOf(['info', 'low', 'medium', 'high', 'critical'], severity) DESC,
    max_score DESC, last_seen DESC, alert_id
LIMIT 500
""",
                database,
                f,
            ),
            overrides=[
                _by_name("agent_id", ("links", _agent_link())),
                severity_cell,
                _by_name(
                    "max_score",
                    ("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
                    ("thresholds", _SCORE_THRESHOLDS),
                    ("decimals", 1),
                    ("min", 0),
                    ("max", 100),
                    ("custom.width", 90),
                ),
                _by_name("first_seen", ("custom.width", 180)),
                _by_name("last_seen", ("custom.width", 180)),
            ],
        ),
        24,
        10,
    )

    layout.add(
        _timeseries(
            "Alerts opened by severity",
            "Alerts per interval of their first anomaly, by the highest severity of the episode.",
            _sql(
                """
SELECT
    $__timeInterval(started_at) AS time,
    severity,
    count() AS alerts
FROM {db}.alerts FINAL
WHERE $__timeFilter(started_at) AND {agent}
GROUP BY time, severity
ORDER BY time, severity
""",
                database,
                f,
            ),
            series_label="severity",
            stacked=True,
            bars=True,
            overrides=_severity_color_overrides(),
        ),
        12,
        8,
    )
    layout.add(
        _table(
            "Active silences",
            "Silences in force now or scheduled (state pending), whatever the time range: "
            "anomalies matching all matchers of one are not notified. Expire one with "
            "`agentwatch alerts silence expire <silence_id>`.",
            _sql(
                """
SELECT
    if(starts_at <= now64(3), 'active', 'pending') AS state,
    arrayStringConcat(matchers, ', ') AS matching,
    created_by,
    comment,
    starts_at,
    ends_at,
    silence_id
FROM {db}.silences FINAL
WHERE ends_at > now64(3)
ORDER BY ends_at, silence_id
LIMIT 500
""",
                database,
            ),
            overrides=[
                _by_name("comment", ("custom.cellOptions", {"type": "auto", "wrapText": True}))
            ],
        ),
        12,
        8,
    )

    layout.row("Notifications")
    layout.add(
        _timeseries(
            "Notifications by receiver and outcome",
            "Delivery attempts per interval, by receiver and outcome (delivered, retry, "
            "failed, gave_up, circuit_open, skipped). Not filtered by agent.",
            _sql(
                """
SELECT
    $__timeInterval(ts) AS time,
    concat(receiver, ' / ', outcome) AS receiver_outcome,
    count() AS attempts
FROM
(
    SELECT ts, receiver, outcome
    FROM {db}.alert_notifications
    WHERE $__timeFilter(ts)
    LIMIT 1 BY notification_id, receiver, attempt, outcome
)
GROUP BY time, receiver_outcome
ORDER BY time, receiver_outcome
""",
                database,
            ),
            series_label="receiver_outcome",
            stacked=True,
            bars=True,
        ),
        12,
        8,
    )
    layout.add(
        _table(
            "Receivers",
            "Per receiver in the time range: notifications delivered, retried attempts, "
            "notifications not delivered (failed, gave_up, circuit_open), skipped (receiver "
            "disabled or no such kind), and the 95th percentile of the delivery time. Not "
            "filtered by agent.",
            _sql(
                """
SELECT
    receiver,
    any(integration) AS integration,
    countIf(outcome = 'delivered') AS delivered,
    countIf(outcome = 'retry') AS retries,
    countIf(outcome IN ('failed', 'gave_up', 'circuit_open')) AS undelivered,
    countIf(outcome = 'skipped') AS skipped,
    round(quantileIf(0.95)(duration_ms, outcome = 'delivered'), 1) AS p95_delivery_ms,
    max(ts) AS last_attempt
FROM
(
    SELECT ts, receiver, integration, outcome, duration_ms
    FROM {db}.alert_notifications
    WHERE $__timeFilter(ts)
    LIMIT 1 BY notification_id, receiver, attempt, outcome
)
GROUP BY receiver
ORDER BY undelivered DESC, receiver
LIMIT 100
""",
                database,
            ),
            overrides=[
                _by_name(
                    "undelivered",
                    ("custom.cellOptions", {"type": "color-text"}),
                    ("thresholds", _thresholds(("green", None), ("red", 1.0))),
                ),
                _by_name("p95_delivery_ms", ("unit", "ms")),
            ],
        ),
        12,
        8,
    )
    layout.add(
        _table(
            "Undelivered notifications",
            "Dead letters: notifications not delivered in the time range, with the reason "
            "(HTTP status and the receiver's answer, scrubbed of secrets). Receivers are "
            "named, never their URL or key. Inspect one with `agentwatch alerts "
            "dead-letters`. Not filtered by agent.",
            _sql(
                """
SELECT
    ts AS time,
    receiver,
    integration,
    route,
    kind,
    outcome,
    attempts,
    reason,
    alert_id,
    notification_id
FROM {db}.alert_dead_letters
WHERE $__timeFilter(ts)
ORDER BY ts DESC, notification_id, receiver
LIMIT 1 BY notification_id, receiver
LIMIT 200
""",
                database,
            ),
            overrides=[
                _by_name("time", ("custom.width", 180)),
                _by_name("reason", ("custom.cellOptions", {"type": "auto", "wrapText": True})),
            ],
        ),
        24,
        8,
    )

    layout.row("Models")
    stat(
        "Agents with a model",
        "Agents with a stored model (their newest snapshot), whatever the time range.",
        """
SELECT count() AS agents
FROM {db}.model_latest FINAL
WHERE {agent}
""",
    )
    stat(
        "Model state, total",
        "Size of the newest snapshot of every agent, summed: what workers restore.",
        """
SELECT sum(size_bytes) AS total_state
FROM {db}.model_latest FINAL
WHERE {agent}
""",
        unit="bytes",
    )
    stat(
        "Largest model state",
        "Size of the largest newest snapshot of an agent.",
        """
SELECT max(size_bytes) AS largest
FROM {db}.model_latest FINAL
WHERE {agent}
""",
        unit="bytes",
    )
    stat(
        "Snapshots written",
        "Model snapshots written in the time range (all reasons).",
        """
SELECT uniqExact(agent_id, snapshot_id) AS snapshots
FROM {db}.model_snapshots
WHERE $__timeFilter(ts) AND {agent}
""",
    )
    stat(
        "Baselines changed",
        "Baseline changes in the time range: new agent_version, benign verdicts, reverts.",
        """
SELECT count() AS changes
FROM {db}.baseline_changes FINAL
WHERE $__timeFilter(ts) AND {agent}
""",
    )
    stat(
        "Feedback applied",
        "Analyst actions (benign verdicts, reverts) sent in the time range and applied.",
        """
SELECT count() AS feedback
FROM {db}.feedback FINAL
WHERE $__timeFilter(ts) AND {agent}
""",
    )

    layout.add(
        _timeseries(
            "Snapshots by reason",
            "Model snapshots written per interval, by reason: periodic (agents that "
            "changed), revoke (partition moved), shutdown, feedback, revert.",
            _sql(
                """
SELECT
    $__timeInterval(ts) AS time,
    reason,
    count() AS snapshots
FROM
(
    SELECT ts, reason
    FROM {db}.model_snapshots
    WHERE $__timeFilter(ts) AND {agent}
    LIMIT 1 BY agent_id, snapshot_id
)
GROUP BY time, reason
ORDER BY time, reason
""",
                database,
                f,
            ),
            series_label="reason",
            stacked=True,
            bars=True,
        ),
        8,
        9,
    )
    layout.add(
        _barchart(
            "Model state size distribution",
            "Agents by the size of their newest snapshot (power-of-two buckets, from 1 KiB), "
            "whatever the time range.",
            _sql(
                """
SELECT
    concat('≤ ', formatReadableSize(exp2(bucket))) AS size,
    count() AS agents
FROM
(
    SELECT greatest(10, toUInt32(ceil(log2(greatest(size_bytes, 1))))) AS bucket
    FROM {db}.model_latest FINAL
    WHERE {agent}
)
GROUP BY bucket
ORDER BY bucket
""",
                database,
                f,
            ),
            x_field="size",
            unit="short",
        ),
        8,
        9,
    )
    layout.add(
        _table(
            "Largest model states",
            "Agents with the largest newest snapshot: size, events the model has seen, "
            "when and why it was taken. Click an agent id to open its dashboard.",
            _sql(
                """
SELECT
    agent_id,
    size_bytes,
    events,
    ts AS snapshot_at,
    reason,
    snapshot_id
FROM {db}.model_latest FINAL
WHERE {agent}
ORDER BY size_bytes DESC, agent_id
LIMIT 20
""",
                database,
                f,
            ),
            overrides=[
                _by_name("agent_id", ("links", _agent_link())),
                _by_name("size_bytes", ("unit", "bytes")),
            ],
        ),
        8,
        9,
    )

    layout.add(
        _table(
            "Baseline changes",
            "Every change of a baseline other than learning, in the time range: "
            "version_change (a new agent_version re-baselined the agent), benign (an analyst "
            "accepted flagged keys), revert (the model went back to a snapshot). who and why "
            "come from the analyst's feedback (empty for version changes). Click an agent "
            "id to open its dashboard.",
            _sql(
                """
SELECT
    c.ts AS time,
    c.agent_id AS agent_id,
    c.kind AS kind,
    f.who AS who,
    f.why AS why,
    c.detail AS detail
FROM
(
    SELECT ts, agent_id, kind, detail
    FROM {db}.baseline_changes FINAL
    WHERE $__timeFilter(ts) AND {agent}
) AS c
LEFT JOIN
(
    SELECT applied_at, agent_id, action, who, why
    FROM {db}.feedback FINAL
    WHERE $__timeFilter(applied_at) AND {agent}
) AS f ON f.agent_id = c.agent_id AND f.action = c.kind AND f.applied_at = c.ts
ORDER BY time DESC, agent_id, kind, detail
LIMIT 500
""",
                database,
                f,
            ),
            overrides=[
                _by_name("agent_id", ("links", _agent_link())),
                _by_name("time", ("custom.width", 180)),
                _by_name("detail", ("custom.cellOptions", {"type": "auto", "wrapText": True})),
            ],
        ),
        24,
        9,
    )
    layout.add(
        _table(
            "Analyst feedback",
            "Analyst actions sent in the time range, as applied by the worker holding the "
            "agent: benign verdicts (the keys joined the baseline; anomaly_id is where "
            "they came from) and reverts (to snapshot_id). Click an agent id to open its "
            "dashboard.",
            _sql(
                """
SELECT
    ts AS time,
    applied_at,
    agent_id,
    action,
    who,
    why,
    arrayStringConcat(keys, ' ') AS baseline_keys,
    anomaly_id,
    snapshot_id,
    feedback_id
FROM {db}.feedback FINAL
WHERE $__timeFilter(ts) AND {agent}
ORDER BY ts DESC, feedback_id
LIMIT 500
""",
                database,
                f,
            ),
            overrides=[
                _by_name("agent_id", ("links", _agent_link())),
                _by_name("time", ("custom.width", 180)),
                _by_name("why", ("custom.cellOptions", {"type": "auto", "wrapText": True})),
            ],
        ),
        24,
        9,
    )

    return _dashboard(
        uid=OPERATIONS_DASHBOARD_UID,
        title=OPERATIONS_TITLE,
        description=(
            "On-call and detection owner: alerts, notifications, dead letters and silences; "
            "model snapshots, state sizes, baseline changes and analyst feedback."
        ),
        panels=layout.panels,
        variables=[_agent_variable(database, multi=True)],
        links=[
            _dashboard_link(
                "Fleet overview", "All agents", OVERVIEW_DASHBOARD_UID, include_vars=True
            ),
            _dashboard_link("Agent drill-down", "One agent in detail", AGENT_DASHBOARD_UID),
        ],
        time_from="now-24h",
    )


# --------------------------------------------------------------------------------------
# Public API


def render_dashboards(database: str = DEFAULT_DATABASE) -> dict[str, Json]:
    """The dashboards, by file name, reading the tables of ``database``."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", database):
        raise ValueError(f"database name {database!r} must match [A-Za-z_][A-Za-z0-9_]*")
    return {
        f"{OVERVIEW_DASHBOARD_UID}.json": _overview(database),
        f"{AGENT_DASHBOARD_UID}.json": _agent(database),
        f"{OPERATIONS_DASHBOARD_UID}.json": _operations(database),
    }


def dumps_dashboard(dashboard: Json) -> str:
    """The JSON text of ``dashboard`` as committed (2-space indent, trailing newline)."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def write_dashboards(out_dir: str | Path, database: str = DEFAULT_DATABASE) -> list[Path]:
    """Write every dashboard of :func:`render_dashboards` to ``out_dir``; the files written."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, dashboard in render_dashboards(database).items():
        path = directory / name
        path.write_text(dumps_dashboard(dashboard), encoding="utf-8")
        written.append(path)
    return written


def dashboard_queries(dashboard: Json) -> Iterator[tuple[str, str]]:
    """Every SQL query of ``dashboard`` as (where, sql): panels, variables, annotations."""

    def panels(items: list[Json]) -> Iterator[Json]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "rawSql" in target:
                yield f"panel {panel['title']!r} {target['refId']}", target["rawSql"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            sql = query if isinstance(query, str) else query.get("rawSql", "")
            yield f"variable {variable['name']!r}", sql
    for annotation in dashboard.get("annotations", {}).get("list", []):
        target = annotation.get("target") or {}
        if "rawSql" in target:
            yield f"annotation {annotation['name']!r}", target["rawSql"]


# --------------------------------------------------------------------------------------
# Macro expansion (for tests and for running a panel's query by hand)


@dataclass(frozen=True, slots=True)
class Raw:
    """A variable value Grafana inserts unformatted (like a variable's custom all value)."""

    text: str


VariableValue = str | Sequence[str] | Raw

#: Macros of grafana-clickhouse-datasource that :func:`expand_macros` rewrites, as the
#: plugin's backend does (pkg/macros). ``S``/``E`` are the range's Unix seconds, ``Sms``/
#: ``Ems`` its Unix milliseconds, ``N`` the interval in seconds (at least 1).
SUPPORTED_MACROS: dict[str, str] = {
    "$__timeFilter(col)": "col >= toDateTime(S) AND col <= toDateTime(E)",
    "$__timeFilter_ms(col)": (
        "col >= fromUnixTimestamp64Milli(Sms) AND col <= fromUnixTimestamp64Milli(Ems)"
    ),
    "$__dateFilter(col)": "col >= toDate('YYYY-MM-DD') AND col <= toDate('YYYY-MM-DD')",
    "$__dateTimeFilter(dcol, tcol)": "($__dateFilter(dcol)) AND ($__timeFilter(tcol))",
    "$__dt(dcol, tcol)": "same as $__dateTimeFilter",
    "$__fromTime": "toDateTime(S)",
    "$__toTime": "toDateTime(E)",
    "$__fromTime_ms": "fromUnixTimestamp64Milli(Sms)",
    "$__toTime_ms": "fromUnixTimestamp64Milli(Ems)",
    "$__timeInterval(col)": "toStartOfInterval(toDateTime(col), INTERVAL N second)",
    "$__timeInterval_ms(col)": (
        "toStartOfInterval(toDateTime64(col, 3), INTERVAL N*1000 millisecond)"
    ),
    "$__interval_s": "N",
}

_MACRO_RE = re.compile(r"\$__([A-Za-z][A-Za-z0-9_]*)")
_VARIABLE_RE = re.compile(r"\$\{([A-Za-z_]\w*)(?::([A-Za-z]+))?\}|\$([A-Za-z_]\w*)")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _format_values(values: Sequence[str], fmt: str | None, multi: bool) -> str:
    if fmt == "singlequote" or (fmt is None and multi):
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt in (None, "raw", "csv"):
        return ",".join(values)
    raise ValueError(f"unsupported variable format {fmt!r}")


def _interpolate_variables(sql: str, variables: Mapping[str, VariableValue]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[3]
        fmt = match[2]
        if name.startswith("__"):
            return match[0]  # a macro, expanded afterwards
        if name not in variables:
            raise ValueError(f"no value for template variable {name!r}")
        value = variables[name]
        if isinstance(value, Raw):
            return value.text
        if isinstance(value, str):
            return _format_values([value], fmt, multi=False)
        return _format_values(list(value), fmt, multi=True)

    return _VARIABLE_RE.sub(replace, sql)


def _macro_args(sql: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the parenthesis at ``sql[start]``, and the end."""
    depth = 0
    args: list[str] = []
    current: list[str] = []
    i = start
    while i < len(sql):
        ch = sql[i]
        if ch == "(":
            depth += 1
            if depth > 1:
                current.append(ch)
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(current).strip())
                return args, i + 1
            current.append(ch)
        elif ch == "," and depth == 1:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    raise ValueError(f"unbalanced parenthesis in macro arguments at {sql[start : start + 40]!r}")


def expand_macros(
    sql: str,
    start: datetime,
    end: datetime,
    *,
    interval_s: int = 60,
    variables: Mapping[str, VariableValue] | None = None,
) -> str:
    """``sql`` as grafana-clickhouse-datasource would send it to ClickHouse.

    Template variables are interpolated first (as Grafana's frontend does), then the
    plugin's macros listed in :data:`SUPPORTED_MACROS` are rewritten for the time range
    ``start``..``end`` (naive datetimes are UTC) and the interval ``interval_s``. A
    variable value is a string (single value), a sequence of strings (multi-value) or
    :class:`Raw` (inserted unformatted, like a custom all value); the formats ``raw``,
    ``csv``, ``singlequote``, ``doublequote`` and ``sqlstring`` are supported. An unknown
    macro, a variable without a value or a wrong number of macro arguments raises
    :class:`ValueError`.

    >>> from datetime import datetime
    >>> t0, t1 = datetime(2026, 1, 1, 0, 0), datetime(2026, 1, 1, 1, 0)
    >>> expand_macros("WHERE $__timeFilter(ts)", t0, t1)
    'WHERE ts >= toDateTime(1767225600) AND ts <= toDateTime(1767229200)'
    >>> expand_macros("SELECT $__timeInterval(ts)", t0, t1, interval_s=300)
    'SELECT toStartOfInterval(toDateTime(ts), INTERVAL 300 second)'
    >>> expand_macros("agent_id IN (${agent:singlequote})", t0, t1, variables={"agent": ["a", "b"]})
    "agent_id IN ('a','b')"
    """
    sql = _interpolate_variables(sql, variables or {})
    begin, finish = _utc(start), _utc(end)
    s, e = int(begin.timestamp()), int(finish.timestamp())
    s_ms, e_ms = int(begin.timestamp() * 1000), int(finish.timestamp() * 1000)
    seconds = max(int(interval_s), 1)

    def time_filter(col: str) -> str:
        return f"{col} >= toDateTime({s}) AND {col} <= toDateTime({e})"

    def date_filter(col: str) -> str:
        return f"{col} >= toDate('{begin:%Y-%m-%d}') AND {col} <= toDate('{finish:%Y-%m-%d}')"

    with_args: dict[str, tuple[int, Callable[[list[str]], str]]] = {
        "timeFilter": (1, lambda a: time_filter(a[0])),
        "timeFilter_ms": (
            1,
            lambda a: (
                f"{a[0]} >= fromUnixTimestamp64Milli({s_ms}) "
                f"AND {a[0]} <= fromUnixTimestamp64Milli({e_ms})"
            ),
        ),
        "dateFilter": (1, lambda a: date_filter(a[0])),
        "dateTimeFilter": (2, lambda a: f"({date_filter(a[0])}) AND ({time_filter(a[1])})"),
        "dt": (2, lambda a: f"({date_filter(a[0])}) AND ({time_filter(a[1])})"),
        "timeInterval": (
            1,
            lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {seconds} second)",
        ),
        "timeInterval_ms": (
            1,
            lambda a: (
                f"toStartOfInterval(toDateTime64({a[0]}, 3), INTERVAL {seconds * 1000} millisecond)"
            ),
        ),
    }
    without_args = {
        "fromTime": f"toDateTime({s})",
        "toTime": f"toDateTime({e})",
        "fromTime_ms": f"fromUnixTimestamp64Milli({s_ms})",
        "toTime_ms": f"fromUnixTimestamp64Milli({e_ms})",
        "interval_s": str(seconds),
    }

    out: list[str] = []
    pos = 0
    for match in _MACRO_RE.finditer(sql):
        if match.start() < pos:
            continue  # inside the arguments of a macro already expanded
        name = match[1]
        out.append(sql[pos : match.start()])
        if name in without_args:
            out.append(without_args[name])
            pos = match.end()
        elif name in with_args:
            arity, expand = with_args[name]
            if match.end() >= len(sql) or sql[match.end()] != "(":
                raise ValueError(f"macro $__{name} needs {arity} argument(s) in parentheses")
            args, pos = _macro_args(sql, match.end())
            if len(args) != arity or not all(args):
                raise ValueError(f"macro $__{name} takes {arity} argument(s), got {args!r}")
            out.append(expand(args))
        else:
            raise ValueError(f"unsupported macro $__{name}")
    out.append(sql[pos:])
    return "".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agentwatch.grafana.dashboards [OUT_DIR] [DATABASE]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 2 or any(a in ("-h", "--help") for a in args):
        print(main.__doc__)
        return 0 if args and args[0] in ("-h", "--help") else 2
    out_dir = args[0] if args else "deploy/grafana/dashboards"
    database = args[1] if len(args) > 1 else DEFAULT_DATABASE
    for path in write_dashboards(out_dir, database):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
