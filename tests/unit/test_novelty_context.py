"""Contextual discovery rates, fleet adoption and payload sizes (the exfiltration signals)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from agentwatch.config import DetectSettings
from agentwatch.features.context import SessionTracker
from agentwatch.models.engine import DetectionEngine
from agentwatch.models.new_destination import NewDestinationDetector
from agentwatch.models.payload_size import PayloadSizeDetector
from agentwatch.schemas.events import Destination, Event

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
_ids = itertools.count()


def trip(agent: str, t: float, tool: str, url: str, size: int = 1000, group: str = "g") -> Event:
    return Event(
        schema_version="1",
        event_id=f"x{next(_ids)}",
        ts=T0 + timedelta(seconds=t),
        agent_id=agent,
        agent_type=group,
        type="tool_call",
        session_id=f"{agent}-{int(t) // 100}",
        tool_name=tool,
        destinations=[Destination(kind="url", value=url)],
        bytes_out=size,
    )


def test_a_new_place_for_a_tool_that_never_finds_one_is_rarer_than_the_agent_rate() -> None:
    detector = NewDestinationDetector(DetectSettings(warmup_events=0))
    tracker = SessionTracker()
    for i in range(300):  # searches find new pages all the time, pushes go to one remote
        for event in (
            trip("a", 2 * i, "search", f"https://site{i}.example"),
            trip("a", 2 * i + 1, "git_push", "https://git.example/repo"),
        ):
            detector.learn(event, tracker.observe(event))
    push = trip("a", 700, "git_push", "https://drop.example/x")
    search = trip("a", 701, "search", "https://site-new.example")
    to_remote = detector.score(push, tracker.observe(push))
    to_page = detector.score(search, tracker.observe(search))
    assert to_remote is not None
    assert to_page is not None
    assert to_remote.p < to_page.p / 20
    assert to_remote.p < 0.01
    assert "of its git_push url uses are new" in to_remote.explanation
    assert "typical 0 new" in to_remote.explanation


def test_snapshots_without_contexts_still_load() -> None:
    detector = NewDestinationDetector(DetectSettings())
    tracker = SessionTracker()
    for i in range(50):
        event = trip("a", i, "git_push", "https://git.example/repo")
        detector.learn(event, tracker.observe(event))
    state = detector.state_of("a")
    assert state["c"]
    old = {k: v for k, v in state.items() if k != "c"}
    restored = NewDestinationDetector(DetectSettings())
    restored.load_state("a", old)
    assert restored.state_of("a")["keys"] == state["keys"]


def _fleet(e: DetectionEngine, agents: list[str]) -> float:
    t = 0.0
    for i in range(300):
        for agent in agents:
            e.process(trip(agent, t, "send_email", f"https://mail{i % 3}.example"))
        t += 10
    return t


def test_a_place_several_peers_took_up_is_a_fleet_change_not_a_hijack() -> None:
    agents = [f"bot{i}" for i in range(6)]
    e = DetectionEngine(DetectSettings(detectors=["new_destination"]))
    t = _fleet(e, agents)
    scores = [
        e.process(trip(agent, t + i, "send_email", "https://new-pool.example")).score
        for i, agent in enumerate(agents)
    ]
    assert scores[0] >= 50  # the first adopter: nobody else uses it yet
    assert scores[-1] < 25  # five peers took it up: learned, not news
    assert scores == sorted(scores, reverse=True)


def test_a_place_one_agent_alone_repeats_stays_flagged() -> None:
    agents = [f"bot{i}" for i in range(6)]
    e = DetectionEngine(DetectSettings(detectors=["new_destination"]))
    t = _fleet(e, agents)
    scores = [
        e.process(trip("bot0", t + i, "send_email", "https://drop.example")).score
        for i in range(20)
    ]
    assert min(scores) >= 50
    assert max(scores) - min(scores) < 10


def test_an_outsized_payload_is_flagged_and_an_ordinary_one_is_not() -> None:
    detector = PayloadSizeDetector(DetectSettings())
    tracker = SessionTracker()
    for i in range(200):
        event = trip("a", i, "git_push", "https://git.example/repo", size=50_000 + 500 * (i % 30))
        detector.learn(event, tracker.observe(event))
    usual = trip("a", 300, "git_push", "https://git.example/repo", size=90_000)
    assert detector.score(usual, tracker.observe(usual)) is None
    huge = trip("a", 301, "git_push", "https://git.example/repo", size=18_000_000)
    finding = detector.score(huge, tracker.observe(huge))
    assert finding is not None
    assert finding.p <= 0.01
    assert finding.explanation.startswith("sent 18.0 MB with git_push; typical")
    assert finding.keys == ("payload_size/git_push",)
    restored = PayloadSizeDetector(DetectSettings())
    restored.load_state("a", detector.state_of("a"))
    again = restored.score(huge, tracker.observe(huge))
    assert again is not None
    assert abs(again.p - finding.p) < 0.05 * finding.p


def test_a_new_tool_is_held_to_the_agents_payloads_at_large() -> None:
    detector = PayloadSizeDetector(DetectSettings())
    tracker = SessionTracker()
    for i in range(200):
        event = trip("a", i, "http_get", "https://api.example/status", size=500 + 20 * (i % 40))
        detector.learn(event, tracker.observe(event))
    small = trip("a", 300, "http_post", "https://drop.example/u", size=900)
    assert detector.score(small, tracker.observe(small)) is None
    dump = trip("a", 301, "http_post", "https://drop.example/u", size=250_000)
    finding = detector.score(dump, tracker.observe(dump))
    assert finding is not None
    assert finding.p <= 1e-3
    assert "with http_post; typical" in finding.explanation
    assert "with any tool" in finding.explanation
    assert finding.keys == ("payload_size/*",)
