"""The detection engine's event path: novelty, flow rules, calibration, protection,
feedback, version changes and snapshots."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from agentwatch.config import DetectSettings
from agentwatch.models.base import Finding
from agentwatch.models.calibration import score_from_p
from agentwatch.models.engine import DetectionEngine, combine
from agentwatch.schemas.events import Destination, Event

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
_ids = itertools.count()


def ev(
    agent: str = "a",
    *,
    seconds: float = 0,
    type: str = "tool_call",
    tool: str | None = "http_post",
    host: str | None = None,
    session: str = "s1",
    secret: str | None = None,
    version: str | None = None,
    agent_type: str | None = "support",
) -> Event:
    return Event(
        schema_version="1",
        event_id=f"e{next(_ids)}",
        ts=T0 + timedelta(seconds=seconds),
        agent_id=agent,
        type=type,  # type: ignore[arg-type]
        session_id=session,
        tool_name=tool if type == "tool_call" else None,
        destinations=[Destination(kind="host", value=host)] if host else None,
        secret_name=secret,
        agent_version=version,
        agent_type=agent_type,
    )


def baseline(engine: DetectionEngine, agent: str = "a", n: int = 600, start: float = 0) -> float:
    """A stable agent: one tool, three hosts, in sessions of 20 events."""
    t = start
    for i in range(n):
        session = f"{agent}-s{i // 20}"
        engine.process(ev(agent, seconds=t, host=f"h{i % 3}.example.com", session=session))
        t += 1
    return t


def engine(**overrides: object) -> DetectionEngine:
    settings = DetectSettings(**{"warmup_events": 50, **overrides})  # type: ignore[arg-type]
    return DetectionEngine(settings)


def test_known_traffic_scores_zero_and_new_destination_flags_with_explanation() -> None:
    e = engine()
    t = baseline(e)
    assert e.process(ev(seconds=t, host="H1.Example.com.", session="x")).score == 0.0
    out = e.process(ev(seconds=t + 1, host="drop.evil.example", session="x"))
    assert out.score >= 50
    # the pair http_post → drop.evil.example is new too, but it is the same novelty
    assert set(out.detectors) == {"new_destination"}
    (anomaly,) = out.anomalies
    assert "drop.evil.example" in anomaly.explanation
    assert "typical 0 new" in anomaly.explanation
    assert "host drop.evil.example" in [c.value for c in anomaly.contributions]
    assert anomaly.event_ids[-1] == out_event_id(out)
    assert 0 <= anomaly.score <= 100
    assert anomaly.severity in {"medium", "high", "critical"}


def out_event_id(out: object) -> str:
    return out.anomalies[0].event_ids[-1]  # type: ignore[attr-defined]


def test_same_novelty_scores_higher_for_a_quiet_agent_than_a_chatty_one() -> None:
    e = engine()
    t = baseline(e, "quiet")
    for i in range(600):  # a crawler: a new host every few events
        e.process(ev("chatty", seconds=i, host=f"site{i // 3}.example.org", session=f"c{i // 20}"))
    quiet = e.process(ev("quiet", seconds=t, host="new.example.net")).score
    chatty = e.process(ev("chatty", seconds=t, host="new.example.net")).score
    assert quiet >= 50 > chatty


def test_flagged_destination_is_never_learned_poisoning() -> None:
    e = engine()
    t = baseline(e)
    scores = [
        e.process(ev(seconds=t + i, host="attacker.example", session=f"p{i}")).score
        for i in range(1000)
    ]
    assert min(scores) >= 50  # still flagged on the 1,000th
    assert scores[-1] == scores[0]  # and exactly as rare: nothing was learned


def test_feedback_benign_adds_the_flagged_keys_to_the_baseline() -> None:
    e = engine()
    t = baseline(e)
    out = e.process(ev(seconds=t, host="partner.example"))
    keys = out.anomalies[0].labels["keys"].split()
    assert sorted(keys) == ["destination/host/partner.example"]
    e.accept("a", keys)
    assert e.process(ev(seconds=t + 1, host="partner.example")).score == 0.0


def test_secret_then_new_destination_is_a_high_severity_flow_rule() -> None:
    e = engine()
    t = baseline(e)
    e.process(ev(seconds=t, type="secret_access", tool=None, secret="db-password", session="z"))
    out = e.process(ev(seconds=t + 30, host="paste.example", session="z"))
    assert "flow_rule:secret_then_new_destination" in out.detectors
    assert out.score >= 90
    assert out.anomalies[0].severity == "critical"
    # the secret read and the send are both in the anomaly's event ids
    assert len(out.anomalies[0].event_ids) == 2
    # outside the rule's window it is only a new destination
    e.process(ev(seconds=t + 100, type="secret_access", tool=None, secret="x", session="w"))
    late = e.process(ev(seconds=t + 100 + 3600, host="paste2.example", session="w"))
    assert not any(d.startswith("flow_rule") for d in late.detectors)


def test_new_tool_and_transition() -> None:
    e = engine()
    t = baseline(e)
    out = e.process(ev(seconds=t, tool="delete_repository", session="q"))
    # a transition into a new tool is the new tool's finding, not a second one
    assert set(out.detectors) == {"new_tool"}
    assert out.score >= 50
    # two known tools in an order never seen: the transition alone
    e2 = engine()
    t = start = 0.0
    for i in range(600):  # sessions of "search" then "http_post", never the reverse
        tool = "search" if i % 2 == 0 else "http_post"
        e2.process(ev(seconds=start + i, tool=tool, session=f"s{i // 20}"))
        t = start + i
    first = e2.process(ev(seconds=t + 1, tool="http_post", session="r"))
    assert first.detectors == ("new_transition",)  # session start → http_post
    out = e2.process(ev(seconds=t + 2, tool="http_post", session="r"))
    assert out.detectors == ("new_transition",)
    assert out.score >= 50
    assert "http_post → http_post" in out.anomalies[0].explanation


def test_known_destination_through_a_new_tool_is_a_new_pair() -> None:
    e = engine()
    t = baseline(e)
    out = e.process(ev(seconds=t, tool="send_email", host="h1.example.com", session="m"))
    assert "new_tool_destination" in out.detectors
    assert "new_destination" not in out.detectors


def test_warming_up_agent_is_scored_against_its_peer_group() -> None:
    e = engine(warmup_events=100)
    for agent in ("p1", "p2", "p3"):
        baseline(e, agent, n=400)
    assert e.status("newbie") == "warming_up"
    usual = e.process(ev("newbie", seconds=10_000, host="h1.example.com"))
    assert usual.score == 0.0  # its peers use it: not news
    odd = e.process(ev("newbie", seconds=10_001, host="exfil.example"))
    assert odd.score >= 50
    assert "peer group" in odd.anomalies[0].explanation
    assert e.status("p1") == "baselined"


def test_version_change_is_recorded_and_rebaselines() -> None:
    e = engine()
    e.process(ev(seconds=0, version="1.0"))
    out = e.process(ev(seconds=1, version="1.1"))
    assert [n.kind for n in out.notices] == ["version_change"]
    assert "1.0 → 1.1" in out.notices[0].detail
    assert e.status("a") == "warming_up"


def test_snapshot_restore_gives_identical_scores() -> None:
    a = engine()
    t = baseline(a)
    blob = a.snapshot("a")
    b = engine()
    b.restore("a", blob)
    probe = [ev(seconds=t + 1, host="x.example"), ev(seconds=t + 2, host="h2.example.com")]
    assert [a.process(p).score for p in probe] == [b.process(p).score for p in probe]
    assert b.status("a") == "baselined"


def test_combine_uses_rule_minimum_and_fisher_for_the_rest() -> None:
    assert combine([]) == 0.0
    assert combine([Finding("x", 0.01, "")]) == score_from_p(0.01)
    assert combine([Finding("x", 0.01, ""), Finding("y", 0.01, "")]) > score_from_p(0.01)
    assert combine([Finding("r", 1.0, "", min_score=92)]) == 92


def test_anomaly_id_is_stable_for_the_same_trigger() -> None:
    ids = []
    for _ in range(2):
        e = engine()
        t = baseline(e)
        ids.append(e.process(Event(**{**_fixed(t)})).anomalies[0].anomaly_id)  # type: ignore[arg-type]
    assert ids[0] == ids[1]


def _fixed(t: float) -> dict[str, object]:
    return {
        "schema_version": "1",
        "event_id": "fixed-trigger",
        "ts": T0 + timedelta(seconds=t),
        "agent_id": "a",
        "type": "network",
        "session_id": "s",
        "destinations": [Destination(kind="host", value="new.example")],
    }


@pytest.mark.parametrize("n", [1, 2])
def test_several_new_destinations_at_once_are_rarer(n: int) -> None:
    e = engine()
    t = baseline(e)
    event = Event(
        schema_version="1",
        event_id=f"multi{n}",
        ts=T0 + timedelta(seconds=t),
        agent_id="a",
        type="network",
        destinations=[Destination(kind="host", value=f"n{i}.example") for i in range(n)],
    )
    out = e.process(event)
    assert out.score >= 50
    assert f"{n} new destination" in out.anomalies[0].explanation


def test_peer_consensus_makes_a_group_wide_tool_normal_but_one_agent_cannot() -> None:
    e = engine(warmup_events=1000, peer_consensus_agents=3)
    for agent in ("c1", "c2", "c3", "c4"):
        baseline(e, agent, n=300)
    # one agent repeating a new tool keeps being flagged
    solo = [e.process(ev("c1", seconds=5000 + i, tool="rm_rf")).score for i in range(20)]
    assert min(solo) >= 50
    # three agents of the group use a new tool: it becomes normal for the group
    for i, agent in enumerate(("c2", "c3", "c4")):
        e.process(ev(agent, seconds=6000 + i, tool="summarize"))
    assert e.process(ev("newcomer", seconds=7000, tool="summarize")).score == 0.0
