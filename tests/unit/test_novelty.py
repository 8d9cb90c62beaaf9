"""Novelty of argument values (:mod:`agentwatch.models.new_argument`) and of pairs and
transitions whose parts are known, through the engine."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from agentwatch.config import DetectSettings
from agentwatch.features.context import SessionTracker
from agentwatch.models.engine import DetectionEngine
from agentwatch.models.new_argument import NewArgumentDetector
from agentwatch.models.new_tool_destination import NewToolDestinationDetector
from agentwatch.models.new_transition import NewTransitionDetector
from agentwatch.schemas.events import Destination, Event

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
_ids = itertools.count()
ACCOUNTS = ("acct-rent", "acct-power", "acct-phone")


def call(
    agent: str,
    t: float,
    tool: str = "send_money",
    session: str = "s",
    **args: Any,
) -> Event:
    return Event(
        schema_version="1",
        event_id=f"n{next(_ids)}",
        ts=T0 + timedelta(seconds=t),
        agent_id=agent,
        agent_type="payments",
        type="tool_call",
        session_id=session,
        tool_name=tool,
        tool_args=args or None,
    )


def routine(engine: DetectionEngine, agent: str = "a", n: int = 400) -> float:
    """A payments agent: looks customers up, pays one of three accounts with a memo."""
    t = 0.0
    for i in range(n):
        session = f"{agent}-s{i // 4}"
        account = ACCOUNTS[i % 3]
        engine.process(call(agent, t, "lookup_account", session, name=f"customer-{i}"))
        engine.process(call(agent, t + 1, "send_money", session, recipient=account, memo=f"m{i}"))
        t += 10
    return t


def engine() -> DetectionEngine:
    return DetectionEngine(DetectSettings(warmup_events=50, detectors=["new_argument"]))


def test_a_new_value_in_a_repetitive_slot_is_flagged_and_a_new_memo_is_not() -> None:
    e = engine()
    t = routine(e)
    usual = e.process(call("a", t, recipient="acct-power", memo="a memo never seen before"))
    assert usual.score == 0.0
    out = e.process(call("a", t + 1, recipient="drop-iban-4711", memo="x"))
    assert out.detectors == ("new_argument",)
    assert out.score >= 50
    (anomaly,) = out.anomalies
    assert anomaly.explanation.startswith("send_money.recipient = 'drop-iban-4711'")
    assert "never used" in anomaly.explanation
    assert anomaly.contributions[0].feature == "argument send_money.recipient"
    assert anomaly.labels["keys"].startswith("argument/send_money.recipient/#")


def test_a_value_known_from_another_slot_is_less_surprising() -> None:
    e = engine()
    t = routine(e)
    e.process(call("a", t, "lookup_account", "x", name="acct-new-landlord"))  # looked up first
    known = e.process(call("a", t + 1, session="x", recipient="acct-new-landlord", memo="x"))
    fresh = e.process(call("a", t + 2, session="y", recipient="acct-stranger", memo="y"))
    assert 0 < known.score < fresh.score
    assert fresh.score >= 50


def test_a_flagged_value_is_never_learned_until_accepted() -> None:
    e = engine()
    t = routine(e)
    scores = [
        e.process(call("a", t + i, session=f"p{i}", recipient="drop-iban", memo="z")).score
        for i in range(50)
    ]
    assert min(scores) >= 50
    out = e.process(call("a", t + 60, session="q", recipient="drop-iban", memo="z"))
    e.accept("a", out.anomalies[0].labels["keys"].split())
    assert e.process(call("a", t + 61, session="r", recipient="drop-iban", memo="z")).score == 0


def test_secret_argument_values_are_not_shown() -> None:
    detector = NewArgumentDetector(DetectSettings())
    tracker = SessionTracker()
    for i in range(200):
        event = call("a", i, "update_password", password=("hunter2", "letmein")[i % 2])
        detector.learn(event, tracker.observe(event))
    event = call("a", 300, "update_password", password="s3cret-Value")
    finding = detector.score(event, tracker.observe(event))
    assert finding is not None
    assert "s3cret" not in finding.explanation
    assert "[REDACTED]" in finding.explanation
    assert all("s3cret" not in str(c.value) for c in finding.contributions)


def test_argument_state_is_bounded_and_round_trips() -> None:
    detector = NewArgumentDetector(DetectSettings(novelty_capacity=64), max_slots=8)
    tracker = SessionTracker()
    for i in range(500):
        event = call("a", i, f"tool{i % 20}", recipient=f"r{i % 7}", note=f"n{i}")
        detector.learn(event, tracker.observe(event))
    state = detector.state_of("a")
    assert len(state["s"]) == 8
    assert len(state["k"]) <= 64
    assert len(state["v"]) <= 64
    restored = NewArgumentDetector(DetectSettings(novelty_capacity=64), max_slots=8)
    restored.load_state("a", msgspec.msgpack.decode(msgspec.msgpack.encode(state)))
    assert restored.state_of("a") == state
    probe = call("a", 600, "tool19", recipient="r-new", note="n")
    ctx = tracker.observe(probe)
    original, again = detector.score(probe, ctx), restored.score(probe, ctx)
    assert (original is None) == (again is None)
    if original is not None and again is not None:
        assert abs(original.p - again.p) <= 1e-3 * original.p


def _trip(agent: str, t: float, tool: str, host: str, session: str) -> Event:
    return Event(
        schema_version="1",
        event_id=f"n{next(_ids)}",
        ts=T0 + timedelta(seconds=t),
        agent_id=agent,
        type="tool_call",
        session_id=session,
        tool_name=tool,
        destinations=[Destination(kind="host", value=host)],
    )


def test_pairs_and_transitions_load_snapshots_taken_before_their_parts_were_kept() -> None:
    settings = DetectSettings()
    tracker = SessionTracker()
    pairs, transitions = NewToolDestinationDetector(settings), NewTransitionDetector(settings)
    for i in range(100):
        event = _trip("a", i, ("search", "post")[i % 2], f"h{i % 3}.example", f"s{i // 10}")
        ctx = tracker.observe(event)
        pairs.learn(event, ctx)
        transitions.learn(event, ctx)
    old_pairs = pairs.agents_memory.state_of("a")  # the format before "places"
    old_transitions = transitions.agents_memory.state_of("a")
    new_pairs, new_transitions = (
        NewToolDestinationDetector(settings),
        NewTransitionDetector(settings),
    )
    new_pairs.load_state("a", old_pairs)
    new_transitions.load_state("a", old_transitions)
    # a known place through a new tool is still a new pair; a known order is not news
    event = _trip("a", 200, "upload", "h1.example", "z")
    ctx = tracker.observe(event)
    assert new_pairs.score(event, ctx) is not None
    event = _trip("a", 201, "search", "h1.example", "y")
    assert new_transitions.score(event, tracker.observe(event)) is None
    assert new_pairs.state_of("a")["parts"] is not None
