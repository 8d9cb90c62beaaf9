"""The Grafana dashboards: committed JSON is current, and every query runs on the schema.

Every SQL query of the dashboards (panels, template variables, annotations) is expanded
with :func:`agentwatch.grafana.dashboards.expand_macros` (what grafana-clickhouse-datasource
sends to ClickHouse) and executed against chDB on the project's migrations, with rows
written by the real :class:`~agentwatch.storage.writer.EventStore`.

chDB runs one engine per process on one data dir at a time: this module opens a single
dir for all its tests (module scope, closed at the end so later modules may open another
dir) and uses a database of its own with a unique name.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentwatch.config import StorageSettings
from agentwatch.grafana.dashboards import (
    AGENT_DASHBOARD_UID,
    ALL_AGENTS_VALUE,
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    OPERATIONS_DASHBOARD_UID,
    OVERVIEW_DASHBOARD_UID,
    SUPPORTED_MACROS,
    Raw,
    VariableValue,
    dashboard_queries,
    dumps_dashboard,
    expand_macros,
    render_dashboards,
    write_dashboards,
)
from agentwatch.schemas.anomaly import Anomaly, severity_for
from agentwatch.schemas.events import Destination, Event
from agentwatch.storage.client import Client, connect
from agentwatch.storage.migrate import apply_migrations
from agentwatch.storage.snapshots import BaselineChange, FeedbackRow, ModelStore, Snapshot
from agentwatch.storage.writer import DeadLetterRow, EventStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "deploy" / "grafana" / "dashboards"
DATASOURCE_FILE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "clickhouse.yaml"
PROVIDER_FILE = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "agentwatch.yaml"

DATABASE = f"grafana_{uuid.uuid4().hex[:12]}"
AGENTS = ("agent-alpha", "agent-beta", "agent-o'hara")  # a quote must not break the SQL
SELECTED = AGENTS[0]

# Data sits in the 30 minutes before NOW; queries run over the last hour.
NOW = datetime.now(UTC).replace(microsecond=0)
RANGE = (NOW - timedelta(hours=1), NOW + timedelta(minutes=1))

OVERVIEW = f"{OVERVIEW_DASHBOARD_UID}.json"
AGENT = f"{AGENT_DASHBOARD_UID}.json"
OPERATIONS = f"{OPERATIONS_DASHBOARD_UID}.json"

# Planted in the columns no panel may read (notification JSON, alert items, model states):
# it must never come back from a query.
PLANTED = "PLANTED-SECRET-hooks.slack.com/services/T0/B0/x0x0"


# --- data ---------------------------------------------------------------------------------


def _event(agent: str, a: int, i: int, kind: str, **fields: Any) -> Event:
    return Event(
        schema_version="1",
        event_id=f"{agent}-{i}",
        ts=NOW - timedelta(minutes=30) + timedelta(seconds=37 * i + a),
        agent_id=agent,
        type=kind,  # type: ignore[arg-type]
        agent_type="finance",
        session_id=f"s-{a}",
        **fields,
    )


def _events() -> list[Event]:
    events: list[Event] = []
    for a, agent in enumerate(AGENTS):
        events.append(_event(agent, a, 0, "session_start"))
        for i in range(1, 6):
            events.append(
                _event(
                    agent,
                    a,
                    i,
                    "tool_call",
                    tool_name="send_invoice" if i % 2 else "lookup_customer",
                    destinations=[Destination(kind="email", value=f"ap{i % 2}@customer.example")],
                    duration_ms=12.5,
                    bytes_out=1000 * i,
                    status="ok" if i != 3 else "error",
                )
            )
        events += [
            _event(agent, a, 6, "llm_call", model="gpt-4o", tokens_in=800, tokens_out=90,
                   cost_usd=0.003),
            _event(agent, a, 7, "secret_access", secret_name="stripe-api-key"),
            _event(agent, a, 8, "network", bytes_out=250_000,
                   destinations=[Destination(kind="host", value="paste.example")]),
            _event(agent, a, 9, "metric", metrics={"cpu": 0.5}),
            _event(agent, a, 10, "session_end"),
        ]  # fmt: skip
    return events


def _anomalies() -> list[Anomaly]:
    out: list[Anomaly] = []
    for a, agent in enumerate(AGENTS):
        for i, score in enumerate((30.0, 65.0, 95.0 - 10 * a)):
            ts = NOW - timedelta(minutes=20) + timedelta(minutes=i)
            out.append(
                Anomaly(
                    schema_version="1",
                    anomaly_id=f"an-{agent}-{i}",
                    agent_id=agent,
                    ts=ts,
                    detected_at=ts + timedelta(seconds=2),
                    detector="new_destination",
                    score=score,
                    severity=severity_for(score),
                    title=f"New destination for {agent}",
                    explanation="paste.example was never contacted before by this agent",
                    detectors=["new_destination"],
                    event_ids=[f"{agent}-8"],
                    session_id=f"s-{a}",
                    agent_type="finance",
                )
            )
    return out


def _dead_letters() -> list[DeadLetterRow]:
    return [
        DeadLetterRow(
            ts=NOW - timedelta(minutes=10, seconds=i),
            topic="agentwatch.events.v1",
            partition=i % 2,
            offset=100 + i,
            reason="bad_json" if i % 2 else "missing_field",
            detail="at byte 3",
            key=AGENTS[0],
            size_bytes=42,
        )
        for i in range(4)
    ]


# --- alerting and model data (operations dashboard) -----------------------------------------
# The alert tables are filled with plain inserts (the rows agentwatch.alerts.store writes);
# the model tables through the real ModelStore.


def _ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def _alert(alert_id: str, agent: str, version: int, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "alert_id": alert_id,
        "route": "page-oncall",
        "group_key": f"{{}}:{{agent_id={agent!r}}}",
        "group_labels": {"agent_id": agent} if agent else {"detector": "new_destination"},
        "agent_id": agent,
        "receivers": ["oncall-pagerduty", "soc-slack"],
        "status": "firing",
        "severity": "high",
        "max_score": 70.0,
        "title": f"New destination for {agent or 'several agents'}",
        "anomaly_count": 1,
        "folded_total": 0,
        "notifications": 1,
        "started_at": _ago(25),
        "last_anomaly_at": _ago(20),
        "resolved_at": None,
        "acked_by": "",
        "acked_at": None,
        "recent": f'[{{"anomaly_id": "x", "explanation": "{PLANTED}"}}]',
        "updated_at": _ago(20),
        "version": version,
    }
    row.update(fields)
    return row


def _alerts() -> list[dict[str, Any]]:
    alpha, beta, ohara = AGENTS
    return [
        # al-1: firing, not acknowledged; its second version (higher) wins under FINAL.
        _alert("al-1", alpha, 1, severity="high", max_score=70.0, anomaly_count=3),
        _alert(
            "al-1", alpha, 2, severity="critical", max_score=95.0, anomaly_count=12,
            folded_total=4, notifications=3, last_anomaly_at=_ago(5), updated_at=_ago(5),
        ),
        # al-2: firing, acknowledged by ana.
        _alert(
            "al-2", beta, 1, severity="high", max_score=72.5, anomaly_count=2, started_at=_ago(15),
            last_anomaly_at=_ago(12), acked_by="ana", acked_at=_ago(11),
        ),
        # al-3: resolved in the time range (was firing first).
        _alert("al-3", ohara, 1, severity="medium", max_score=55.0, started_at=_ago(40)),
        _alert(
            "al-3", ohara, 2, status="resolved", severity="medium", max_score=55.0,
            started_at=_ago(40), last_anomaly_at=_ago(30), resolved_at=_ago(10),
        ),
        # al-4: grouped by detector only: no agent.
        _alert("al-4", "", 1, route="soc", severity="low", max_score=30.0, started_at=_ago(8),
               last_anomaly_at=_ago(8)),
        # al-5: opened and resolved before the time range.
        _alert("al-5", alpha, 1, status="resolved", severity="critical", max_score=99.0,
               started_at=_ago(180), last_anomaly_at=_ago(170), resolved_at=_ago(120)),
    ]  # fmt: skip


def _attempt(minutes: float, nid: str, receiver: str, attempt: int, outcome: str,
             **fields: Any) -> dict[str, Any]:  # fmt: skip
    integration = {"oncall-pagerduty": "pagerduty", "soc-slack": "slack"}.get(receiver, "webhook")
    row: dict[str, Any] = {
        "ts": _ago(minutes),
        "notification_id": nid,
        "alert_id": "al-1",
        "dedup_key": f"aw-{nid}",
        "route": "page-oncall",
        "receiver": receiver,
        "integration": integration,
        "kind": "firing",
        "sequence": 1,
        "attempt": attempt,
        "outcome": outcome,
        "status_code": 200 if outcome == "delivered" else 503,
        "reason": "" if outcome == "delivered" else "HTTP 503",
        "duration_ms": 50.0,
        "fallback_for": "",
        "external_ref": "",
    }
    row.update(fields)
    return row


def _notifications() -> list[dict[str, Any]]:
    delivered_pd = _attempt(20, "n1", "oncall-pagerduty", 1, "delivered", duration_ms=120.0)
    return [
        delivered_pd,
        delivered_pd,  # a retried insert: the same row twice
        _attempt(20, "n1", "soc-slack", 1, "retry"),
        _attempt(19, "n1", "soc-slack", 2, "delivered", duration_ms=80.0),
        _attempt(15, "n2", "oncall-pagerduty", 1, "retry"),
        _attempt(14, "n2", "oncall-pagerduty", 2, "retry"),
        _attempt(13, "n2", "oncall-pagerduty", 3, "gave_up"),
        _attempt(11, "n3", "soc-slack", 1, "failed", alert_id="al-2", status_code=404,
                 reason="HTTP 404: no_service"),
        _attempt(11, "n4", "audit-webhook", 0, "skipped", alert_id="al-2", kind="acknowledged",
                 reason="webhook receivers have no acknowledge"),
        _attempt(150, "n0", "oncall-pagerduty", 1, "failed"),  # before the time range
    ]  # fmt: skip


def _alert_dead_letter(minutes: float, nid: str, receiver: str, outcome: str, attempts: int,
                       reason: str) -> dict[str, Any]:  # fmt: skip
    return {
        "ts": _ago(minutes),
        "notification_id": nid,
        "alert_id": "al-1" if nid != "n3" else "al-2",
        "dedup_key": f"aw-{nid}",
        "route": "page-oncall",
        "receiver": receiver,
        "integration": "pagerduty" if receiver == "oncall-pagerduty" else "slack",
        "kind": "firing",
        "outcome": outcome,
        "reason": reason,
        "attempts": attempts,
        "notification": f'{{"notification_id": "{nid}", "url": "{PLANTED}"}}',
    }


def _alert_dead_letters() -> list[dict[str, Any]]:
    gave_up = _alert_dead_letter(13, "n2", "oncall-pagerduty", "gave_up", 3, "HTTP 503 (3 tries)")
    return [
        gave_up,
        gave_up,  # a retried insert
        _alert_dead_letter(11, "n3", "soc-slack", "failed", 1, "HTTP 404: no_service"),
        _alert_dead_letter(150, "n0", "oncall-pagerduty", "failed", 1, "HTTP 400"),
    ]


def _silence(silence_id: str, version: int, starts: float, ends: float,
             **fields: Any) -> dict[str, Any]:  # fmt: skip
    row: dict[str, Any] = {
        "silence_id": silence_id,
        "matchers": ['agent_id="agent-beta"', 'detector=~"new_.*"'],
        "starts_at": _ago(starts),
        "ends_at": _ago(ends),
        "created_by": "ana",
        "comment": "migration of the billing cluster",
        "created_at": _ago(60),
        "updated_at": _ago(60),
        "version": version,
    }
    row.update(fields)
    return row


def _silences() -> list[dict[str, Any]]:
    return [
        _silence("si-active", 1, 60, -30),
        _silence("si-active", 2, 60, -60),  # extended to now + 1 h
        _silence("si-expired", 1, 60, -120, matchers=['route="soc"']),
        _silence("si-expired", 2, 60, 5, matchers=['route="soc"']),  # expired 5 min ago
        _silence("si-pending", 1, -60, -180, created_by="bob", comment="maintenance window",
                 matchers=['agent_type="finance"']),
    ]  # fmt: skip


def _insert_rows(client: Client, table: str, rows: list[dict[str, Any]]) -> None:
    names = list(rows[0])
    client.insert(f"{DATABASE}.{table}", [[r[n] for n in names] for r in rows], column_names=names)


def _state(size: int) -> bytes:
    return (PLANTED.encode() * (size // len(PLANTED) + 1))[:size]


def _snapshot(agent: str, snapshot_id: str, minutes: float, reason: str, size: int,
              events: int) -> Snapshot:  # fmt: skip
    return Snapshot(
        agent_id=agent,
        snapshot_id=snapshot_id,
        ts=_ago(minutes),
        event_ts=_ago(minutes + 1),
        partition=AGENTS.index(agent),
        reason=reason,
        events=events,
        format=1,
        state=_state(size),
        offset=100 + events,
    )


def _seed_models(client: Client) -> None:
    alpha, beta, ohara = AGENTS
    store = ModelStore(client, DATABASE)
    first = _snapshot(alpha, "sn-a1", 50, "periodic", 2_000, 40)
    store.write_snapshots(
        [
            first,
            _snapshot(alpha, "sn-a2", 10, "feedback", 5_000, 90),
            _snapshot(beta, "sn-b1", 40, "periodic", 600, 30),
            _snapshot(beta, "sn-b2", 8, "revert", 300_000, 30),
            _snapshot(ohara, "sn-o1", 180, "shutdown", 100_000, 500),  # before the range
        ]
    )
    store.write_snapshots([first])  # a retried insert: the same snapshot twice
    benign = FeedbackRow(
        feedback_id="fb-1",
        ts=_ago(11),
        applied_at=_ago(10),
        agent_id=alpha,
        action="benign",
        who="ana",
        why="known partner",
        anomaly_id="an-agent-alpha-2",
        keys=("host:paste.example", "email:ap1@customer.example"),
    )
    revert = FeedbackRow(
        feedback_id="fb-2",
        ts=_ago(9),
        applied_at=_ago(8),
        agent_id=beta,
        action="revert",
        who="bob",
        why="poisoned baseline",
        snapshot_id="sn-b1",
    )
    store.write_feedback([benign, revert])
    store.write_feedback([benign])  # a redelivered control message
    version = BaselineChange(
        _ago(30), ohara, "version_change", "agent_version 1.2 → 1.3: new baseline seeded"
    )
    store.write_baseline_changes(
        [
            version,
            BaselineChange(_ago(10), alpha, "benign", "ana accepted host:paste.example as benign"),
            BaselineChange(_ago(8), beta, "revert", "bob reverted the model to snapshot sn-b1"),
        ]
    )
    store.write_baseline_changes([version])  # a replayed event


def _seed_operations(client: Client) -> None:
    _insert_rows(client, "alerts", _alerts())
    _insert_rows(client, "alert_notifications", _notifications())
    _insert_rows(client, "alert_dead_letters", _alert_dead_letters())
    _insert_rows(client, "silences", _silences())
    _seed_models(client)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    ch = connect(f"chdb://{tmp_path_factory.mktemp('grafana-chdb')}")
    try:
        settings = StorageSettings(database=DATABASE)
        apply_migrations(ch, settings)
        store = EventStore.from_settings(ch, settings)
        events = _events()
        store.insert_events(events)
        store.insert_events(events[:4])  # redelivered: FINAL must not count these twice
        store.insert_anomalies(_anomalies())
        store.insert_dead_letters(_dead_letters())
        _seed_operations(ch)
        yield ch
        ch.command(f"DROP DATABASE IF EXISTS {DATABASE} SYNC")
    finally:
        ch.close()


def run(client: Client, sql: str, variables: dict[str, VariableValue]) -> list[tuple[Any, ...]]:
    expanded = expand_macros(sql, *RANGE, interval_s=60, variables=variables)
    assert "$" not in expanded, expanded
    return [tuple(row) for row in client.query(expanded).result_rows]


# --- the committed files ------------------------------------------------------------------


def test_committed_dashboards_are_generated_from_code() -> None:
    rendered = render_dashboards()
    on_disk = {p.name for p in DASHBOARD_DIR.glob("*.json")}
    assert on_disk == set(rendered), "regenerate: python -m agentwatch.grafana.dashboards"
    for name, dashboard in rendered.items():
        assert (DASHBOARD_DIR / name).read_text(encoding="utf-8") == dumps_dashboard(dashboard), (
            f"{name} is stale: run `python -m agentwatch.grafana.dashboards`"
        )


def test_write_dashboards_round_trip(tmp_path: Path) -> None:
    written = write_dashboards(tmp_path)
    assert sorted(p.name for p in written) == sorted(render_dashboards())
    for path in written:
        assert path.read_text(encoding="utf-8") == (DASHBOARD_DIR / path.name).read_text(
            encoding="utf-8"
        )


def test_provisioning_matches_dashboards() -> None:
    datasources = yaml.safe_load(DATASOURCE_FILE.read_text(encoding="utf-8"))["datasources"]
    (ds,) = datasources
    assert ds["uid"] == DATASOURCE_UID
    assert ds["type"] == DATASOURCE_TYPE
    assert ds["jsonData"]["host"] == "clickhouse"
    assert ds["jsonData"]["port"] == 8123
    assert ds["jsonData"]["protocol"] == "http"
    assert ds["jsonData"]["username"] == "$CLICKHOUSE_USER"
    assert ds["secureJsonData"]["password"] == "$CLICKHOUSE_PASSWORD"
    (provider,) = yaml.safe_load(PROVIDER_FILE.read_text(encoding="utf-8"))["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# --- structure ----------------------------------------------------------------------------


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


# ReplacingMergeTree tables: read with FINAL. Append-only logs a retried insert can
# duplicate: read deduplicated by their key.
_REPLACING = (
    "events", "anomalies", "dead_letters", "alerts", "silences", "model_latest",
    "model_checkpoints", "feedback", "baseline_changes",
)  # fmt: skip
_LOG_KEYS = {
    "model_snapshots": ("LIMIT 1 BY agent_id, snapshot_id", "uniqExact(agent_id, snapshot_id)"),
    "alert_notifications": ("LIMIT 1 BY notification_id, receiver, attempt, outcome",),
    "alert_dead_letters": (
        "LIMIT 1 BY notification_id, receiver",
        "uniqExact(notification_id, receiver)",
    ),
}


@pytest.mark.parametrize("name", [OVERVIEW, AGENT, OPERATIONS])
def test_dashboard_structure(name: str) -> None:
    dashboard = render_dashboards()[name]
    assert dashboard["uid"] == name.removesuffix(".json")
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(titles) == len(set(titles))
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0
        assert pos["x"] + pos["w"] <= 24
    for panel in _panels(dashboard):
        assert panel["title"]
        assert panel["description"], panel["title"]
        assert panel["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID
            assert target["editorType"] == "sql"
            if panel["type"] == "timeseries":
                assert target["format"] == 0, panel["title"]
            else:
                assert target["format"] == 1, panel["title"]
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "agent"
    assert variable["type"] == "query"
    for where, sql in dashboard_queries(dashboard):
        if "agent_id" in sql and "FROM agentwatch.dead_letters" not in sql:
            assert "${agent:singlequote}" in sql or where.startswith("variable"), where
        assert "FROM agentwatch." in sql, where  # qualified: works on any default database
        for table in _REPLACING:
            reads = re.findall(rf"FROM agentwatch\.{table}\b(?: FINAL)?", sql)
            assert all(r.endswith(" FINAL") for r in reads), (where, table)
        for table, dedup in _LOG_KEYS.items():
            if re.search(rf"FROM agentwatch\.{table}\b", sql):
                assert any(d in sql for d in dedup), (where, table)


def test_overview_has_the_soc_panels() -> None:
    titles = {p["title"] for p in _panels(render_dashboards()[OVERVIEW])}
    assert {
        "Events/s by type",
        "Active agents",
        "Active agents over time",
        "Dead letters by reason",
        "Anomalies by severity",
        "Top agents by anomaly score",
        "Latest anomalies",
        "Tool calls per agent",
        "Bytes out per agent",
        "Cost per agent",
    } <= titles


def test_operations_has_the_oncall_and_model_panels() -> None:
    dashboard = render_dashboards()[OPERATIONS]
    assert dashboard["title"] == "agentwatch operations"
    titles = {p["title"] for p in _panels(dashboard)}
    assert {
        "Firing now",
        "Acknowledged now",
        "Resolved",
        "Open alerts",
        "Alerts opened by severity",
        "Notifications by receiver and outcome",
        "Undelivered notifications",
        "Active silences",
        "Snapshots by reason",
        "Model state size distribution",
        "Largest model states",
        "Baseline changes",
        "Analyst feedback",
    } <= titles
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Alerts", "Notifications", "Models"]


# Columns that may hold what a dashboard must never show: the notification JSON of a dead
# letter and the alert's latest anomalies (their own texts; stored redacted, not needed),
# dedup and group keys, Slack message references, and the model states (msgpack, large).
_NEVER_READ = {
    "alert_dead_letters": ("notification", "dedup_key"),
    "alert_notifications": ("dedup_key", "external_ref"),
    "alerts": ("recent", "group_key"),
    "model_snapshots": ("state",),
    "model_latest": ("state",),
}


def test_no_panel_reads_a_column_that_may_hold_a_secret() -> None:
    for where, sql in dashboard_queries(render_dashboards()[OPERATIONS]):
        for table, columns in _NEVER_READ.items():
            if re.search(rf"\bagentwatch\.{table}\b", sql):
                for column in columns:
                    assert not re.search(rf"\b{column}\b", sql), (where, column)


def test_dead_letter_panel_reads_only_safe_columns(client: Client) -> None:
    # Every column of alert_dead_letters the panel mentions; none can hold a routing key,
    # webhook URL or token (receivers are named; reason is scrubbed and redacted on write).
    columns = [
        str(row[0])
        for row in client.query(
            f"SELECT name FROM system.columns WHERE database = '{DATABASE}' "
            "AND table = 'alert_dead_letters'"
        ).result_rows
    ]
    sql = _query(OPERATIONS, "Undelivered notifications")
    read = {c for c in columns if re.search(rf"\b{c}\b", sql)}
    planted = client.query(
        f"SELECT countIf(position(notification, '{PLANTED}') > 0) "
        f"FROM {DATABASE}.alert_dead_letters"
    ).result_rows
    assert planted[0][0] > 0  # so the scan of every query's rows for PLANTED means something
    assert read == {
        "ts", "notification_id", "alert_id", "route", "receiver", "integration", "kind",
        "outcome", "reason", "attempts",
    }  # fmt: skip


def test_agent_ids_link_to_the_drill_down() -> None:
    dashboards = render_dashboards()
    agent_dashboard = dashboards[AGENT]
    slug = agent_dashboard["title"].lower().replace(" ", "-")
    text = dumps_dashboard(dashboards[OVERVIEW])
    link = f"/d/{agent_dashboard['uid']}/{slug}?var-agent="
    assert text.count(link) >= 5  # two tables, three bar gauges
    assert "var-agent=${__data.fields.agent_id:percentencode}" in text
    overview = dashboards[OVERVIEW]
    assert any(x["url"].startswith(f"/d/{AGENT_DASHBOARD_UID}/") for x in overview["links"])
    assert any(
        x["url"].startswith(f"/d/{OVERVIEW_DASHBOARD_UID}/") for x in agent_dashboard["links"]
    )
    (variable,) = overview["templating"]["list"]
    assert variable["multi"]
    assert variable["includeAll"]
    assert variable["allValue"] == ALL_AGENTS_VALUE
    (variable,) = agent_dashboard["templating"]["list"]
    assert not variable["multi"]
    assert not variable["includeAll"]


def test_overview_and_operations_link_to_each_other() -> None:
    dashboards = render_dashboards()
    overview, operations = dashboards[OVERVIEW], dashboards[OPERATIONS]
    to_operations = [x for x in overview["links"] if "/d/agentwatch-operations/" in x["url"]]
    assert [x["url"] for x in to_operations] == ["/d/agentwatch-operations/agentwatch-operations"]
    assert to_operations[0]["keepTime"]
    assert to_operations[0]["includeVars"]
    urls = {x["url"] for x in operations["links"]}
    assert urls == {
        "/d/agentwatch-overview/agentwatch-overview",
        "/d/agentwatch-agent/agentwatch-agent",
    }
    assert all(x["keepTime"] for x in operations["links"])
    text = dumps_dashboard(operations)
    # open alerts, largest model states, baseline changes, analyst feedback
    assert text.count("/d/agentwatch-agent/agentwatch-agent?var-agent=") == 4
    (variable,) = operations["templating"]["list"]
    assert variable["multi"]
    assert variable["includeAll"]
    assert variable["allValue"] == ALL_AGENTS_VALUE


# --- macro expansion ----------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 13, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("$__timeFilter(ts)", "ts >= toDateTime(1772366400) AND ts <= toDateTime(1772371800)"),
        (
            "$__timeFilter_ms(ts)",
            "ts >= fromUnixTimestamp64Milli(1772366400000) "
            "AND ts <= fromUnixTimestamp64Milli(1772371800000)",
        ),
        ("$__dateFilter(d)", "d >= toDate('2026-03-01') AND d <= toDate('2026-03-01')"),
        (
            "$__dateTimeFilter(d, ts)",
            "(d >= toDate('2026-03-01') AND d <= toDate('2026-03-01')) AND "
            "(ts >= toDateTime(1772366400) AND ts <= toDateTime(1772371800))",
        ),
        ("$__fromTime", "toDateTime(1772366400)"),
        ("$__toTime", "toDateTime(1772371800)"),
        ("$__fromTime_ms", "fromUnixTimestamp64Milli(1772366400000)"),
        ("$__toTime_ms", "fromUnixTimestamp64Milli(1772371800000)"),
        ("$__timeInterval(ts)", "toStartOfInterval(toDateTime(ts), INTERVAL 300 second)"),
        (
            "$__timeInterval_ms(ts)",
            "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 300000 millisecond)",
        ),
        ("count() / $__interval_s", "count() / 300"),
        (
            "$__timeInterval(toDateTime(ts, 'UTC'))",
            "toStartOfInterval(toDateTime(toDateTime(ts, 'UTC')), INTERVAL 300 second)",
        ),
    ],
)
def test_expand_macros(sql: str, expected: str) -> None:
    assert expand_macros(sql, T0, T1, interval_s=300) == expected


def test_every_supported_macro_is_tested() -> None:
    names = {key.split("(")[0] for key in SUPPORTED_MACROS}
    assert names == {
        "$__timeFilter", "$__timeFilter_ms", "$__dateFilter", "$__dateTimeFilter", "$__dt",
        "$__fromTime", "$__toTime", "$__fromTime_ms", "$__toTime_ms", "$__timeInterval",
        "$__timeInterval_ms", "$__interval_s",
    }  # fmt: skip
    assert expand_macros("$__dt(d, ts)", T0, T1) == expand_macros(
        "$__dateTimeFilter(d, ts)", T0, T1
    )


def test_naive_datetimes_are_utc() -> None:
    naive = expand_macros("$__fromTime", T0.replace(tzinfo=None), T1.replace(tzinfo=None))
    assert naive == expand_macros("$__fromTime", T0, T1)


def test_variables() -> None:
    sql = "a IN (${agent:singlequote}) AND b = $one AND c = ${one:sqlstring} AND d IN (${agent})"
    out = expand_macros(sql, T0, T1, variables={"agent": ["x", "o'h"], "one": "v'1"})
    assert out == "a IN ('x','o\\'h') AND b = v'1 AND c = 'v''1' AND d IN ('x','o\\'h')"
    all_value = expand_macros(
        "(${agent:singlequote})", T0, T1, variables={"agent": Raw(ALL_AGENTS_VALUE)}
    )
    assert all_value == f"({ALL_AGENTS_VALUE})"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("$__conditionalAll(x, $agent)", "unsupported macro"),
        ("$__timeFilter", "needs 1 argument"),
        ("$__timeFilter(a, b)", "takes 1 argument"),
        ("$__timeFilter(ts", "unbalanced"),
        ("x = $nobody", "no value for template variable 'nobody'"),
        ("x = ${agent:json}", "unsupported variable format"),
    ],
)
def test_expand_macros_rejects(sql: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expand_macros(sql, T0, T1, variables={"agent": ["a"]})


# --- every query on chDB ------------------------------------------------------------------

_CASES = [
    pytest.param(name, where, sql, variables, id=f"{name.removesuffix('.json')}:{label}:{where}")
    for name, runs in (
        (OVERVIEW, {"all": {"agent": Raw(ALL_AGENTS_VALUE)}, "one": {"agent": [SELECTED]}}),
        (AGENT, {"one": {"agent": SELECTED}, "quote": {"agent": AGENTS[2]}}),
        (OPERATIONS, {"all": {"agent": Raw(ALL_AGENTS_VALUE)}, "one": {"agent": [SELECTED]}}),
    )
    for label, variables in runs.items()
    for where, sql in dashboard_queries(render_dashboards(DATABASE)[name])
]


@pytest.mark.parametrize(("name", "where", "sql", "variables"), _CASES)
def test_query_runs_and_returns_rows(
    client: Client, name: str, where: str, sql: str, variables: dict[str, VariableValue]
) -> None:
    rows = run(client, sql, variables)
    assert rows, f"{where} returned no rows"
    assert PLANTED not in repr(rows), f"{where} returned a column it must not read"
    if where.startswith("variable"):
        assert {row[0] for row in rows} == set(AGENTS)


def _query(name: str, title: str) -> str:
    dashboard = render_dashboards(DATABASE)[name]
    (sql,) = [
        s for where, s in dashboard_queries(dashboard) if where.startswith(f"panel {title!r}")
    ]
    return sql


def test_agent_filter_all_and_selection(client: Client) -> None:
    sql = _query(OVERVIEW, "Active agents")
    assert run(client, sql, {"agent": Raw(ALL_AGENTS_VALUE)}) == [(len(AGENTS),)]
    assert run(client, sql, {"agent": [SELECTED]}) == [(1,)]
    assert run(client, sql, {"agent": list(AGENTS[1:])}) == [(2,)]
    top = run(client, _query(OVERVIEW, "Top agents by anomaly score"), {"agent": [SELECTED]})
    assert [row[0] for row in top] == [SELECTED]


def test_redelivered_events_are_counted_once(client: Client) -> None:
    (row,) = run(client, _query(AGENT, "Events"), {"agent": SELECTED})
    assert row == (11,)  # 11 events, the first 4 delivered twice
    per_type = run(client, _query(OVERVIEW, "Events/s by type"), {"agent": [SELECTED]})
    assert sum(r[2] for r in per_type) * 60 == pytest.approx(11)


def test_top_agents_ranked_by_score(client: Client) -> None:
    rows = run(
        client, _query(OVERVIEW, "Top agents by anomaly score"), {"agent": Raw(ALL_AGENTS_VALUE)}
    )
    assert [row[0] for row in rows] == list(AGENTS)  # max scores 95, 85, 75
    assert rows[0][1] == pytest.approx(95.0)


def test_latest_anomalies_carry_the_explanation(client: Client) -> None:
    rows = run(client, _query(OVERVIEW, "Latest anomalies"), {"agent": Raw(ALL_AGENTS_VALUE)})
    assert len(rows) == 3 * len(AGENTS)
    assert all("never contacted" in row[7] for row in rows)
    assert {row[1] for row in rows} == {"low", "medium", "critical", "high"}


def test_dead_letters_by_reason(client: Client) -> None:
    rows = run(client, _query(OVERVIEW, "Dead letters by reason"), {"agent": [SELECTED]})
    totals: dict[str, int] = {}
    for _, reason, count in rows:
        totals[reason] = totals.get(reason, 0) + count
    assert totals == {"bad_json": 2, "missing_field": 2}


def test_per_agent_usage(client: Client) -> None:
    # These panels read the per-minute rollup agent_stats_1m, which (by design, see the
    # migration) also counts the redelivered copies of the first 4 events of AGENTS[0].
    everyone: dict[str, VariableValue] = {"agent": Raw(ALL_AGENTS_VALUE)}
    tool_calls = dict(run(client, _query(OVERVIEW, "Tool calls per agent"), everyone))
    assert tool_calls == {**dict.fromkeys(AGENTS, 5), AGENTS[0]: 5 + 3}
    bytes_out = dict(run(client, _query(OVERVIEW, "Bytes out per agent"), everyone))
    exact = 15_000 + 250_000
    assert bytes_out == {**dict.fromkeys(AGENTS, exact), AGENTS[0]: exact + 6_000}
    cost = dict(run(client, _query(OVERVIEW, "Cost per agent"), everyone))
    assert cost == pytest.approx(dict.fromkeys(AGENTS, 0.003))


def test_destinations_and_secrets_of_one_agent(client: Client) -> None:
    one: dict[str, VariableValue] = {"agent": AGENTS[2]}
    destinations = {(r[0], r[1]): r[2] for r in run(client, _query(AGENT, "Destinations"), one)}
    assert destinations == {
        ("email", "ap1@customer.example"): 3,
        ("email", "ap0@customer.example"): 2,
        ("host", "paste.example"): 1,
    }
    (secret,) = run(client, _query(AGENT, "Secrets accessed"), one)
    assert secret[:3] == ("stripe-api-key", 1, 0)


# --- the operations dashboard on seeded alert and model rows ---------------------------------

EVERYONE: dict[str, VariableValue] = {"agent": Raw(ALL_AGENTS_VALUE)}
ALPHA: dict[str, VariableValue] = {"agent": [SELECTED]}


def _at(minutes: float) -> datetime:
    """``_ago(minutes)`` as a query returns it (naive UTC)."""
    return _ago(minutes).replace(tzinfo=None)


def _one(client: Client, title: str, variables: dict[str, VariableValue]) -> Any:
    (row,) = run(client, _query(OPERATIONS, title), variables)
    (value,) = row
    return value


def _totals(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    """Sum of the value per series of a time series query (time, series, value)."""
    out: dict[str, int] = {}
    for _, series, value in rows:
        out[series] = out.get(series, 0) + value
    return out


def test_alert_state_stats(client: Client) -> None:
    expected = {
        "Firing now": (2, 1),  # al-1 (alpha) and al-4 (no agent); acknowledged al-2 apart
        "Acknowledged now": (1, 0),  # al-2 (beta)
        "Resolved": (1, 0),  # al-3; al-5 resolved before the range
        "Opened": (4, 1),  # al-1..al-4
        "Undelivered": (2, 2),  # n2, n3 (the retried insert counted once)
        "Silences in force": (1, 1),  # si-active; si-expired ended, si-pending not started
    }
    for title, (everyone, alpha) in expected.items():
        assert _one(client, title, EVERYONE) == everyone, title
        assert _one(client, title, ALPHA) == alpha, title


def test_open_alerts(client: Client) -> None:
    rows = run(client, _query(OPERATIONS, "Open alerts"), EVERYONE)
    # Not acknowledged first (critical before low), then the acknowledged one.
    assert [row[-1] for row in rows] == ["al-1", "al-4", "al-2"]
    al1, al4, al2 = rows
    agent, route, severity, score, title, anomalies, folded, notifications = al1[:8]
    assert (agent, route, severity, anomalies, folded, notifications) == (
        SELECTED,
        "page-oncall",
        "critical",
        12,
        4,
        3,
    )  # the newest version of al-1
    assert score == pytest.approx(95.0)
    assert title == f"New destination for {SELECTED}"
    assert al1[8:11] == (_at(25), _at(5), "")  # first_seen, last_seen, acked_by
    assert (al4[0], al4[1], al4[2]) == ("", "soc", "low")
    assert (al2[0], al2[2], al2[10]) == (AGENTS[1], "high", "ana")
    assert [row[-1] for row in run(client, _query(OPERATIONS, "Open alerts"), ALPHA)] == ["al-1"]


def test_alerts_opened_by_severity(client: Client) -> None:
    rows = run(client, _query(OPERATIONS, "Alerts opened by severity"), EVERYONE)
    assert _totals(rows) == {"critical": 1, "high": 1, "medium": 1, "low": 1}
    assert _totals(run(client, _query(OPERATIONS, "Alerts opened by severity"), ALPHA)) == {
        "critical": 1
    }


def test_notifications_by_receiver_and_outcome(client: Client) -> None:
    rows = run(client, _query(OPERATIONS, "Notifications by receiver and outcome"), EVERYONE)
    assert _totals(rows) == {
        "oncall-pagerduty / delivered": 1,  # inserted twice, counted once
        "oncall-pagerduty / retry": 2,
        "oncall-pagerduty / gave_up": 1,
        "soc-slack / retry": 1,
        "soc-slack / delivered": 1,
        "soc-slack / failed": 1,
        "audit-webhook / skipped": 1,
    }


def test_receivers(client: Client) -> None:
    rows = run(client, _query(OPERATIONS, "Receivers"), EVERYONE)
    summary = {row[0]: row[1:6] for row in rows}
    assert [row[0] for row in rows] == ["oncall-pagerduty", "soc-slack", "audit-webhook"]
    assert summary == {
        # integration, delivered, retries, undelivered, skipped
        "oncall-pagerduty": ("pagerduty", 1, 2, 1, 0),
        "soc-slack": ("slack", 1, 1, 1, 0),
        "audit-webhook": ("webhook", 0, 0, 0, 1),
    }
    p95 = {row[0]: row[6] for row in rows}
    assert p95["oncall-pagerduty"] == pytest.approx(120.0)
    assert p95["soc-slack"] == pytest.approx(80.0)


def test_undelivered_notifications(client: Client) -> None:
    rows = run(client, _query(OPERATIONS, "Undelivered notifications"), EVERYONE)
    assert [row[1:8] for row in rows] == [
        # receiver, integration, route, kind, outcome, attempts, reason (newest first)
        ("soc-slack", "slack", "page-oncall", "firing", "failed", 1, "HTTP 404: no_service"),
        ("oncall-pagerduty", "pagerduty", "page-oncall", "firing", "gave_up", 3,
         "HTTP 503 (3 tries)"),
    ]  # fmt: skip
    assert [(row[8], row[9]) for row in rows] == [("al-2", "n3"), ("al-1", "n2")]


def test_active_silences(client: Client) -> None:
    rows = run(client, _query(OPERATIONS, "Active silences"), EVERYONE)
    assert [row[0] for row in rows] == ["active", "pending"]
    active, pending = rows
    assert active[1:4] == (
        'agent_id="agent-beta", detector=~"new_.*"',
        "ana",
        "migration of the billing cluster",
    )
    assert active[5] == _at(-60)  # the newest version: extended
    assert active[6] == "si-active"
    assert (pending[1], pending[2], pending[6]) == ('agent_type="finance"', "bob", "si-pending")


def test_model_stats(client: Client) -> None:
    assert _one(client, "Agents with a model", EVERYONE) == 3
    assert _one(client, "Agents with a model", ALPHA) == 1
    # Newest snapshot of each agent: 5 000 (alpha), 300 000 (beta), 100 000 (o'hara).
    assert _one(client, "Model state, total", EVERYONE) == 405_000
    assert _one(client, "Model state, total", ALPHA) == 5_000
    assert _one(client, "Largest model state", EVERYONE) == 300_000
    assert _one(client, "Snapshots written", EVERYONE) == 4  # sn-a1 twice; sn-o1 too old
    assert _one(client, "Snapshots written", ALPHA) == 2
    assert _one(client, "Baselines changed", EVERYONE) == 3  # the replayed change once
    assert _one(client, "Baselines changed", ALPHA) == 1
    assert _one(client, "Feedback applied", EVERYONE) == 2  # the redelivered verdict once
    assert _one(client, "Feedback applied", ALPHA) == 1


def test_snapshots_by_reason(client: Client) -> None:
    rows = run(client, _query(OPERATIONS, "Snapshots by reason"), EVERYONE)
    assert _totals(rows) == {"periodic": 2, "feedback": 1, "revert": 1}
    assert _totals(run(client, _query(OPERATIONS, "Snapshots by reason"), ALPHA)) == {
        "periodic": 1,
        "feedback": 1,
    }


def test_model_state_sizes(client: Client) -> None:
    rows = run(client, _query(OPERATIONS, "Model state size distribution"), EVERYONE)
    assert rows == [("≤ 8.00 KiB", 1), ("≤ 128.00 KiB", 1), ("≤ 512.00 KiB", 1)]
    largest = run(client, _query(OPERATIONS, "Largest model states"), EVERYONE)
    assert [row[:3] for row in largest] == [
        (AGENTS[1], 300_000, 30),
        (AGENTS[2], 100_000, 500),
        (AGENTS[0], 5_000, 90),
    ]
    assert [(row[4], row[5]) for row in largest] == [
        ("revert", "sn-b2"),
        ("shutdown", "sn-o1"),
        ("feedback", "sn-a2"),
    ]


def test_baseline_changes_with_who_and_why(client: Client) -> None:
    rows = run(client, _query(OPERATIONS, "Baseline changes"), EVERYONE)
    assert [row[:5] for row in rows] == [
        (_at(8), AGENTS[1], "revert", "bob", "poisoned baseline"),
        (_at(10), AGENTS[0], "benign", "ana", "known partner"),
        (_at(30), AGENTS[2], "version_change", "", ""),
    ]
    assert rows[2][5].startswith("agent_version 1.2 → 1.3")
    quoted = run(client, _query(OPERATIONS, "Baseline changes"), {"agent": [AGENTS[2]]})
    assert [row[2] for row in quoted] == ["version_change"]


def test_analyst_feedback(client: Client) -> None:
    rows = run(client, _query(OPERATIONS, "Analyst feedback"), EVERYONE)
    assert [row[-1] for row in rows] == ["fb-2", "fb-1"]
    revert, benign = rows
    assert revert[:6] == (_at(9), _at(8), AGENTS[1], "revert", "bob", "poisoned baseline")
    assert revert[8] == "sn-b1"
    assert benign[2:8] == (
        SELECTED,
        "benign",
        "ana",
        "known partner",
        "host:paste.example email:ap1@customer.example",
        "an-agent-alpha-2",
    )
