"""Routing, matchers, silences, dedup keys, grouping timers and the storm guard (fake clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentwatch.alerts.config import AlertSettings, StormSettings
from agentwatch.alerts.dedup import MAX_DEDUP_KEY_CHARS, dedup_key, group_key
from agentwatch.alerts.grouping import Grouper, utc
from agentwatch.alerts.matchers import parse_matcher
from agentwatch.alerts.model import anomaly_labels, item_from_anomaly
from agentwatch.alerts.pipeline import AlertPipeline, notifications_for
from agentwatch.alerts.routing import Router
from agentwatch.alerts.silences import SilenceError, Silencer, new_silence
from agentwatch.schemas.anomaly import Anomaly, severity_for

T0 = 1_700_000_000.0


def anomaly(
    agent: str = "agent-1",
    i: int = 0,
    *,
    detector: str = "new_destination",
    score: float = 80,
    **labels: str,
) -> Anomaly:
    now = datetime.fromtimestamp(T0, tz=UTC)
    return Anomaly(
        schema_version="1",
        anomaly_id=f"{agent}-{detector}-{i}",
        agent_id=agent,
        ts=now,
        detected_at=now,
        detector=detector,
        score=score,
        severity=severity_for(score),
        title=f"{agent}: anomaly {i}",
        explanation=f"explanation {i}",
        labels={"peer_group": "support", **labels},
    )


def settings(**extra: Any) -> AlertSettings:
    data: dict[str, Any] = {
        "receivers": [
            {"name": "pager", "type": "pagerduty", "routing_key": "k" * 32},
            {"name": "chat", "type": "slack", "url": "https://hooks.example/T/B/x"},
            {"name": "hook", "type": "webhook", "url": "https://soar.example/h"},
        ],
        "defaults": {
            "group_wait": 30,
            "group_interval": 300,
            "repeat_interval": 3600,
            "resolve_timeout": 600,
        },
    }
    data.update(extra)
    return AlertSettings.model_validate(data)


# --- matchers and routing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('agent_id="a-1"', {"agent_id": "a-1"}, True),
        ("agent_id=a-1", {"agent_id": "a-2"}, False),
        ('severity!="info"', {"severity": "high"}, True),
        ('detector=~"new_.*"', {"detector": "new_destination"}, True),
        ('detector=~"new"', {"detector": "new_destination"}, False),  # anchored
        ('team!~"pay.*"', {}, True),
        ('team=""', {}, True),  # an absent label is empty
    ],
)
def test_matchers(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize("bad", ["", "=x", "a b=c", 'a=~"("'])
def test_bad_matchers(bad: str) -> None:
    with pytest.raises(ValueError, match=r"matcher|regular expression"):
        parse_matcher(bad)


def test_routes_first_match_continue_and_default() -> None:
    s = settings(
        routes=[
            {
                "name": "page",
                "match": {"min_severity": "high"},
                "receivers": ["pager"],
                "continue": True,
            },
            {"name": "payments", "match": {"team": ["payments"]}, "receivers": ["chat"]},
            {
                "name": "new-dest",
                "match": {"detector": ["new_*"], "agent": ["support-*"]},
                "receivers": ["hook"],
            },
            {"name": "never", "match": {"agent": ["*"]}, "receivers": ["hook"]},
        ],
        default_receivers=["hook"],
    )
    router = Router(s)

    def names(**labels: str) -> list[str]:
        return [r.name for r in router.routes_for(labels)]

    assert names(severity="critical", team="payments") == ["page", "payments"]
    assert names(severity="low", team="payments") == ["payments"]
    assert names(severity="low", detector="new_tool", agent_id="support-3") == ["new-dest"]
    assert names(severity="low", detector="rate", agent_id="support-3") == ["never"]
    s2 = settings(
        routes=[{"name": "only-high", "match": {"severity": ["high"]}, "receivers": ["pager"]}],
        default_receivers=["hook"],
    )
    assert [r.name for r in Router(s2).routes_for({"severity": "low"})] == ["default"]
    assert Router(settings()).routes_for({"severity": "low"}) == []


def test_route_matches_labels_peer_group_agent_type_and_matchers() -> None:
    s = settings(
        routes=[
            {
                "name": "r",
                "receivers": ["hook"],
                "match": {
                    "peer_group": ["support"],
                    "agent_type": ["chat*"],
                    "labels": {"env": "prod"},
                    "matchers": ['detector!~"rate.*"'],
                },
            }
        ]
    )
    route = Router(s).routes[0]
    base = {"peer_group": "support", "agent_type": "chatbot", "env": "prod", "detector": "x"}
    assert route.matches(base)
    assert not route.matches({**base, "env": "dev"})
    assert not route.matches({**base, "detector": "rate_spike"})
    assert not route.matches({**base, "peer_group": "finance"})


def test_labels_of_an_anomaly_and_team_mapping() -> None:
    a = anomaly("billing-7", keys="k1 k2", status="ok")
    labels = anomaly_labels(a, {"billing-7": "payments"})
    assert labels["alertname"] == "AgentBehaviourAnomaly"
    assert labels["team"] == "payments"
    assert labels["severity"] == "high"
    assert "keys" not in labels  # per-occurrence detail: an annotation
    assert item_from_anomaly(a, labels).annotations["keys"] == "k1 k2"
    assert anomaly_labels(anomaly("x", team="own"), {"x": "other"})["team"] == "own"


# --- silences -------------------------------------------------------------------------------


def test_silence_lifecycle() -> None:
    now = utc(T0)
    silence = new_silence(
        ['agent_id="agent-1"', 'detector=~"new_.*"'],
        created_by="ana",
        comment="maintenance",
        now=now,
        duration_s=600,
    )
    silencer = Silencer([silence])
    labels = {"agent_id": "agent-1", "detector": "new_destination"}
    assert silencer.silenced_by(labels, now) == silence
    assert silencer.silenced_by({**labels, "agent_id": "agent-2"}, now) is None
    assert silencer.silenced_by(labels, now + timedelta(seconds=601)) is None  # expired
    expired = silence.expired(now + timedelta(seconds=10))
    silencer.put(expired)
    assert silencer.silenced_by(labels, now + timedelta(seconds=11)) is None
    assert expired.state(now + timedelta(seconds=11)) == "expired"
    later = new_silence(
        ['agent_id="a"'],
        created_by="b",
        comment="c",
        now=now,
        starts_at=now + timedelta(hours=1),
        duration_s=60,
    )
    assert later.state(now) == "pending"
    assert not later.active(now)


@pytest.mark.parametrize(
    ("matchers", "by", "comment", "duration", "message"),
    [
        ([], "a", "c", 60, "at least one matcher"),
        (['team!="x"'], "a", "c", 60, "empty label"),
        (['a="b"'], "", "c", 60, "creator"),
        (['a="b"'], "a", " ", 60, "reason"),
        (['a="b"'], "a", "c", 0, "duration"),
        (['a="b"'], "a", "c", 400 * 86400, "at most"),
    ],
)
def test_silence_validation(
    matchers: list[str], by: str, comment: str, duration: float, message: str
) -> None:
    with pytest.raises(SilenceError, match=message):
        new_silence(matchers, created_by=by, comment=comment, now=utc(T0), duration_s=duration)


# --- dedup keys -------------------------------------------------------------------------------


def test_dedup_keys_are_stable_bounded_and_distinct() -> None:
    labels = {"agent_id": "a" * 5000, "detector": "d"}
    key = group_key("route", ("agent_id", "detector"), labels)
    first = dedup_key("route", "pager", key)
    assert first == dedup_key("route", "pager", key)
    assert len(first) <= MAX_DEDUP_KEY_CHARS
    assert first != dedup_key("route", "chat", key)
    assert first != dedup_key("other", "pager", key)
    assert first != dedup_key("route", "pager", group_key("route", ("agent_id",), labels))
    # Label order and extra labels do not change the group.
    shuffled = {"x": "1", "detector": "d", "agent_id": "a" * 5000}
    assert group_key("route", ("detector", "agent_id"), shuffled) == key


# --- grouping -----------------------------------------------------------------------------------


def pipeline_with(**extra: Any) -> AlertPipeline:
    return AlertPipeline(
        settings(routes=[{"name": "all", "receivers": ["pager", "hook"]}], **extra)
    )


def test_group_wait_group_interval_repeat_and_resolve() -> None:
    p = pipeline_with()
    p.ingest(anomaly(i=0), T0)
    assert p.due(T0 + 29) == []
    assert p.next_deadline() == T0 + 30
    p.ingest(anomaly(i=1), T0 + 10)
    (first,) = p.due(T0 + 30)
    assert first.kind == "firing"
    assert [i.anomaly_id for i in first.items] == [
        "agent-1-new_destination-0",
        "agent-1-new_destination-1",
    ]
    # A new anomaly after the first notification waits for group_interval.
    p.ingest(anomaly(i=2), T0 + 40)
    assert p.due(T0 + 329) == []
    (second,) = p.due(T0 + 330)
    assert second.new_count == 1
    assert second.state.anomaly_count == 3
    assert second.state.alert_id == first.state.alert_id
    # Nothing new: resolved resolve_timeout after the last anomaly (T0+40+600).
    assert p.due(T0 + 639) == []
    (resolved,) = p.due(T0 + 640)
    assert resolved.kind == "resolved"
    assert resolved.state.status == "resolved"
    assert len(p.grouper) == 0
    # The next anomaly opens a new episode: new alert id, same dedup key.
    p.ingest(anomaly(i=3), T0 + 700)
    (again,) = p.due(T0 + 730)
    assert again.state.alert_id != first.state.alert_id
    n_first = notifications_for(first)
    n_again = notifications_for(again)
    assert [n.dedup_key for n in n_first] == [n.dedup_key for n in n_again]
    assert n_first[0].notification_id != n_again[0].notification_id


def test_repeat_interval_and_acknowledge_stops_repeats() -> None:
    p = pipeline_with(
        defaults={
            "group_wait": 0,
            "group_interval": 60,
            "repeat_interval": 100,
            "resolve_timeout": 10_000,
        }
    )
    p.ingest(anomaly(), T0)
    (first,) = p.due(T0)
    (repeat,) = p.due(T0 + 100)
    assert repeat.repeat
    assert repeat.kind == "firing"
    assert [i.anomaly_id for i in repeat.items] == [i.anomaly_id for i in first.items]
    ack = p.grouper.acknowledge(first.state.alert_id, "ana", "looking", T0 + 150)
    assert ack is not None
    assert ack.kind == "acknowledged"
    assert ack.state.acked_by == "ana"
    assert p.due(T0 + 1000) == []  # no repeats after the acknowledgement
    (resolved,) = p.due(T0 + 10_000)
    assert resolved.kind == "resolved"
    assert resolved.state.acked_by == "ana"


def test_burst_of_50_is_one_notification_and_storm_guard_folds() -> None:
    p = pipeline_with(storm={"max_alerts_per_minute": 60, "max_alerts_per_notification": 100})
    for i in range(50):
        p.ingest(anomaly(i=i), T0 + i * 0.01)
    (burst,) = p.due(T0 + 30)
    assert len(burst.items) == 50
    assert burst.folded == 0
    assert burst.new_count == 50
    notes = notifications_for(burst)
    assert {n.receiver for n in notes} == {"pager", "hook"}
    assert all(n.anomaly_count == 50 for n in notes)

    storm = pipeline_with(
        storm={"max_alerts_per_minute": 10, "max_alerts_per_notification": 100},
        defaults={"group_wait": 0, "group_interval": 0, "resolve_timeout": 600},
    )
    sent = []
    for i in range(100):
        storm.ingest(anomaly(i=i), T0 + i * 0.1)
        sent += storm.due(T0 + i * 0.1)
    # Ten listed one by one, then the rest wait for the end of the minute, folded.
    assert len(sent) == 10
    assert sum(len(f.items) for f in sent) == 10
    (folded,) = storm.due(T0 + 60)
    assert folded.folded == 90
    assert folded.items == ()
    assert folded.state.folded_total == 90
    assert folded.state.anomaly_count == 100


def test_notification_cap_folds_the_rest() -> None:
    p = pipeline_with(storm={"max_alerts_per_minute": 1000, "max_alerts_per_notification": 5})
    for i in range(12):
        p.ingest(anomaly(i=i), T0)
    (flush,) = p.due(T0 + 30)
    assert len(flush.items) == 5
    assert flush.folded == 7
    assert flush.new_count == 12


def test_groups_by_configured_labels_and_positions() -> None:
    p = pipeline_with(defaults={"group_by": ["agent_id"], "group_wait": 1})
    p.ingest(anomaly("a", 1, detector="x"), T0, ("p0", 1))
    p.ingest(anomaly("a", 2, detector="y"), T0, ("p0", 2))
    p.ingest(anomaly("b", 3, detector="x"), T0, ("p1", 7))
    flushes = p.due(T0 + 1)
    assert len(flushes) == 2
    by_agent = {f.state.group_labels["agent_id"]: f for f in flushes}
    assert set(by_agent["a"].positions) == {("p0", 1), ("p0", 2)}
    assert by_agent["b"].positions == (("p1", 7),)


def test_silence_stage_and_redelivered_anomalies() -> None:
    silencer = Silencer()
    p = AlertPipeline(settings(routes=[{"name": "all", "receivers": ["hook"]}]), silencer)
    silencer.put(
        new_silence(['agent_id="quiet"'], created_by="a", comment="c", now=utc(T0), duration_s=60)
    )
    assert p.ingest(anomaly("quiet", 1), T0) == 0
    assert p.stats.silenced == 1
    assert p.ingest(anomaly("loud", 1), T0) == 1
    assert p.ingest(anomaly("loud", 1), T0 + 1) == 0  # same anomaly id again
    assert p.stats.duplicates == 1
    assert p.ingest(anomaly("quiet", 2), T0 + 61) == 1  # silence over


def test_restore_continues_a_firing_alert() -> None:
    p = pipeline_with()
    p.ingest(anomaly(), T0)
    (flush,) = p.due(T0 + 30)
    state = flush.state
    restored = pipeline_with()
    route = restored.router.get("all")
    assert route is not None
    restored.grouper.restore(state, route)
    restored.remember([i.anomaly_id for i in state.recent])
    assert restored.ingest(anomaly(), T0 + 40) == 0  # already notified
    (resolved,) = restored.due(T0 + 630)
    assert resolved.kind == "resolved"
    assert resolved.state.alert_id == state.alert_id
    assert resolved.state.sequence == state.sequence + 1


def test_grouper_storm_settings_default() -> None:
    assert Grouper().storm == StormSettings()
