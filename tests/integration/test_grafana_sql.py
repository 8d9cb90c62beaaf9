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


@pytest.mark.parametrize("name", [OVERVIEW, AGENT])
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
        for table in ("events", "anomalies", "dead_letters"):
            if f"FROM agentwatch.{table}" in sql:
                assert f"FROM agentwatch.{table} FINAL" in sql, where


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
