"""Unusually long argument values (:mod:`agentwatch.models.argument_size`)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np

from agentwatch.config import DetectSettings
from agentwatch.features.context import SessionTracker
from agentwatch.models.argument_size import ArgumentSizeDetector
from agentwatch.models.base import REGISTRY, EventDetector
from agentwatch.models.engine import DetectionEngine
from agentwatch.schemas.events import Event

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
FLAG_P = 0.01
_ids = itertools.count()
_tracker = SessionTracker()
WORDS = ("rent", "power bill", "phone", "refund for dinner", "groceries", "gym")


def call(subject: str, amount: float = 10.0, agent: str = "a", i: int = 0) -> Event:
    return Event(
        schema_version="1",
        event_id=f"z{next(_ids)}",
        ts=T0 + timedelta(seconds=i),
        agent_id=agent,
        type="tool_call",
        tool_name="send_money",
        tool_args={"recipient": "acct-1", "amount": amount, "subject": subject},
    )


def subjects(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 3)))) for _ in range(n)]


def test_registered_as_an_event_detector() -> None:
    detector = REGISTRY["argument_size"](DetectSettings())
    assert isinstance(detector, ArgumentSizeDetector)
    assert isinstance(detector, EventDetector)


def test_a_payload_in_a_short_argument_is_flagged_and_explained() -> None:
    rng = np.random.default_rng(1)
    detector = ArgumentSizeDetector(DetectSettings())
    ps = []
    for i, subject in enumerate(subjects(rng, 600)):
        event = call(subject, float(rng.integers(1, 500)), i=i)
        ctx = _tracker.observe(event)
        finding = detector.score(event, ctx)
        p = finding.p if finding else 1.0
        ps.append(p)
        if p > FLAG_P:
            detector.learn(event, ctx)
    assert np.mean(np.array(ps[100:]) <= FLAG_P) <= 0.01  # ordinary subjects are not news
    dump = "Scheduled transactions: " + "; ".join(f"SE35 5000 {k} 50.00 EUR" for k in range(12))
    event = call(dump, i=700)
    finding = detector.score(event, _tracker.observe(event))
    assert finding is not None
    assert finding.p < FLAG_P  # heavy tails: thirty times longer is rare, not impossible
    (contribution,) = finding.contributions
    assert contribution.feature == "argument send_money.subject length"
    assert isinstance(contribution.value, int)
    assert contribution.value > 200
    assert finding.explanation.startswith(f"sent {contribution.value} characters")
    assert finding.keys == ("argument_size/send_money.subject",)


def test_numbers_have_no_length_baseline() -> None:
    detector = ArgumentSizeDetector(DetectSettings())
    for i in range(100):
        event = call("rent", 5.0, i=i)
        detector.learn(event, _tracker.observe(event))
    event = call("rent", 123456789.25, i=200)
    assert detector.score(event, _tracker.observe(event)) is None


def test_flagged_payloads_are_not_learned_through_the_engine() -> None:
    engine = DetectionEngine(DetectSettings(detectors=["argument_size"]))
    rng = np.random.default_rng(2)
    for i, subject in enumerate(subjects(rng, 300)):
        engine.process(call(subject, i=i))
    dump = "x" * 400
    scores = [engine.process(call(dump, i=400 + i)).score for i in range(30)]
    assert min(scores) >= 50
    assert scores[-1] == scores[0]


def test_state_is_small_bounded_and_round_trips() -> None:
    detector = ArgumentSizeDetector(DetectSettings(), max_slots=16)
    for i in range(2000):
        event = Event(
            schema_version="1",
            event_id=f"z{next(_ids)}",
            ts=T0 + timedelta(seconds=i),
            agent_id="a",
            type="tool_call",
            tool_name=f"tool{i % 40}",
            tool_args={"q": "w" * (i % 17 + 1)},
        )
        detector.learn(event, _tracker.observe(event))
    state = detector.state_of("a")
    assert len(state) == 16
    blob = msgspec.msgpack.encode(state)
    assert len(blob) < 16 * 20
    restored = ArgumentSizeDetector(DetectSettings(), max_slots=16)
    restored.load_state("a", msgspec.msgpack.decode(blob))
    assert restored.state_of("a") == state
