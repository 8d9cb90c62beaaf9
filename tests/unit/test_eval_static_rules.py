"""The static rule baseline fires exactly as its rules say (built-in rules file)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentwatch.evaluation.scoring import Signal
from agentwatch.evaluation.static_rules import (
    StaticRule,
    StaticRuleError,
    evaluate_static,
    load_static_rules,
    parse_static_rules,
)
from agentwatch.schemas.events import Destination, Event

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # a multiple of every step and window
E0 = T0.timestamp()
RULES = {r.name: r for r in load_static_rules()}


def ev(n: str, s: float, kind: str = "tool_call", agent: str = "a", **kw: Any) -> Event:
    if kind == "tool_call":
        kw.setdefault("tool_name", "search")
    if kind == "secret_access":
        kw.setdefault("secret_name", "vault:kv/key")
    dests = kw.pop("dests", None)
    if dests:
        kw["destinations"] = [Destination(kind=k, value=v) for k, v in dests]
    return Event(
        schema_version="1",
        event_id=n,
        ts=T0 + timedelta(seconds=s),
        agent_id=agent,
        type=kind,  # type: ignore[arg-type]
        **kw,
    )


def run(rule: str, events: list[Event]) -> list[Signal]:
    return evaluate_static([RULES[rule]], events)


def test_builtin_rules_are_the_documented_generic_thresholds() -> None:
    assert list(RULES) == [
        "tool_call_rate",
        "secret_then_external_send",
        "large_upload",
        "cost_per_hour",
        "error_rate",
        "denied_actions",
    ]
    assert (RULES["tool_call_rate"].above, RULES["tool_call_rate"].window_s) == (30, 60)
    assert RULES["large_upload"].above == 10_000_000
    assert (RULES["cost_per_hour"].above, RULES["cost_per_hour"].window_s) == (10, 3600)


def test_tool_call_rate_fires_above_30_calls_a_minute_once_per_episode() -> None:
    thirty = [ev(f"q{i}", 1 + i, agent="quiet") for i in range(30)]
    assert run("tool_call_rate", thirty) == []  # 30 is not more than 30
    loop = [ev(f"l{i}", 1 + i * 1.5, agent="loop") for i in range(120)]  # 40 a minute, 3 min
    (alert,) = run("tool_call_rate", [*thirty, *loop])
    # Windows (0, 60], (60, 120], (120, 180] hold 40 calls each: one alert, at the first
    # evaluation (60 s), scored from the peak 40: 60 + 10 · log2(40 / 30).
    assert alert.agent_id == "loop"
    assert alert.t == E0 + 60
    assert alert.score == pytest.approx(60 + 10 * math.log2(40 / 30))
    assert alert.detectors == ("tool_call_rate",)
    assert alert.alert
    assert len(alert.event_ids) == 120
    assert alert.event_ids[0] == "l0"
    # An event exactly at a boundary belongs to the window ending there: 31 calls in
    # (60, 120] with the last one at 120 s.
    edge = [ev(f"e{i}", 90 + i, agent="edge") for i in range(30)] + [ev("e30", 120, agent="edge")]
    (at_edge,) = run("tool_call_rate", edge)
    assert at_edge.t == E0 + 120


def test_secret_then_external_send_needs_the_same_session_an_external_host_and_600_s() -> None:
    post = {"dests": [("url", "https://paste.example/upload")]}
    events = [
        ev("s1", 10, "secret_access", session_id="A"),
        ev("p1", 100, session_id="A", **post),  # fires
        ev("s2", 10, "secret_access", session_id="B"),
        ev("p2", 100, session_id="B", dests=[("url", "https://vault.internal/v1/x")]),
        ev("p3", 100, session_id="B", dests=[("ip", "10.0.0.7"), ("host", "db.svc")]),
        ev("s3", 10, "secret_access", session_id="C"),
        ev("p4", 611, session_id="C", **post),  # 601 s later: too late
        ev("p5", 100, session_id="D", **post),  # no secret in this session
        ev("s4", 200, "secret_access", session_id="E"),
        ev("p6", 800, session_id="E", dests=[("email", "x@mail.example")]),  # 600 s: fires
    ]
    alerts = run("secret_then_external_send", events)
    assert [(a.event_ids, a.score, a.session_ids) for a in alerts] == [
        (("s1", "p1"), 90.0, ("A",)),
        (("s4", "p6"), 90.0, ("E",)),
    ]


def test_large_upload_fires_above_10_mb_scored_by_doublings() -> None:
    events = [
        ev("ok", 1, "network", bytes_out=10_000_000),
        ev("big", 2, "network", bytes_out=20_000_000),
        ev("huge", 3, "network", bytes_out=10_000_000 * 2**8),
    ]
    alerts = run("large_upload", events)
    assert [(a.event_ids, a.score, a.t) for a in alerts] == [
        (("big",), 70.0, E0 + 2),
        (("huge",), 100.0, E0 + 3),  # 60 + 8 doublings · 10, capped at 100
    ]


def test_cost_per_hour_sums_the_trailing_hour() -> None:
    events = [
        ev("c1", 100, "llm_call", cost_usd=6.0),
        ev("c2", 1000, "llm_call", cost_usd=6.0),
        ev("c3", 5000, "llm_call", cost_usd=9.0),
    ]
    (alert,) = run("cost_per_hour", events)
    # 12 USD in the trailing hour from the first evaluation after 1000 s (1020 s) until c1
    # leaves the window (last holding evaluation at 3660 s): one alert at 1020 s.
    assert alert.t == E0 + 1020
    assert alert.score == pytest.approx(60 + 10 * math.log2(12 / 10))
    assert alert.event_ids == ("c1", "c2")


def test_error_rate_needs_ten_actions_and_more_than_half_failing() -> None:
    def actions(agent: str, n: int, errors: int) -> list[Event]:
        return [
            ev(f"{agent}{i}", 10 + i, agent=agent, status="error" if i < errors else "ok")
            for i in range(n)
        ]

    events = [*actions("six", 10, 6), *actions("half", 10, 5), *actions("few", 9, 9)]
    events.append(ev("meta", 11, "session_start", agent="half", status="error"))  # not an action
    (alert,) = run("error_rate", events)
    assert alert.agent_id == "six"
    assert alert.t == E0 + 60
    assert alert.score == pytest.approx(60 + 10 * math.log2(0.6 / 0.5))


def test_denied_actions_fire_from_five_denials() -> None:
    four = [ev(f"f{i}", 10 + i, agent="four", status="denied") for i in range(4)]
    five = [ev(f"v{i}", 10 + i, agent="five", status="denied") for i in range(5)]
    (alert,) = run("denied_actions", four + five)
    assert (alert.agent_id, alert.t, alert.score) == (
        "five",
        E0 + 60,
        pytest.approx(60 + 10 * math.log2(5 / 4)),
    )


def test_rules_files_are_checked() -> None:
    good = {
        "version": 1,
        "rules": [{"name": "r", "kind": "event", "field": "bytes_in", "above": 1}],
    }
    assert [r.name for r in parse_static_rules(good)] == ["r"]
    bad_docs = [
        {"rules": []},
        {"version": 1, "rules": []},
        {"version": 1, "rules": [{"name": "r", "kind": "nope"}]},
        {"version": 1, "rules": [{"name": "r", "kind": "event", "field": "nope", "above": 1}]},
        {"version": 1, "rules": [{"name": "r", "kind": "event", "field": "bytes_in", "x": 1}]},
        {"version": 1, "rules": [{"name": "r", "kind": "window", "where": {"colour": "red"}}]},
        {"version": 1, "rules": [{"name": "r", "kind": "window", "aggregate": {"avg": "x"}}]},
        {"version": 1, "rules": [{"name": "r", "kind": "sequence", "first": {}}]},
    ]
    for doc in bad_docs:
        with pytest.raises(StaticRuleError):
            parse_static_rules(doc)


def test_a_custom_rules_file_replaces_the_builtin_one(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nrules:\n"
        "  - {name: chatty, kind: window, where: {type: llm_call}, window_s: 60, above: 1}\n"
    )
    (rule,) = load_static_rules(path)
    assert isinstance(rule, StaticRule)
    alerts = evaluate_static([rule], [ev("a", 1, "llm_call"), ev("b", 2, "llm_call")])
    assert [(a.t, a.score) for a in alerts] == [(E0 + 60, 70.0)]  # 2 = one doubling of 1
