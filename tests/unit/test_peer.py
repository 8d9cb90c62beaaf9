"""Peer-group novelty with Half-Space Trees (:mod:`agentwatch.models.peer`)."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest

from agentwatch.config import DetectSettings
from agentwatch.features.windows import WindowFeatures
from agentwatch.models.base import REGISTRY, WindowDetector
from agentwatch.models.peer import PeerConfig, PeerGroupDetector

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
FLAG_P = 0.01
PROFILES = {  # group: (tool calls per window, median bytes out, LLM calls)
    "support": (8.0, 20_000.0, 3.0),
    "crawler": (60.0, 2_000_000.0, 0.5),
    "coder": (20.0, 5_000.0, 6.0),
}


def window(i: int, agent: str, group: str, values: dict[str, float]) -> WindowFeatures:
    start = T0 + timedelta(minutes=i)
    return WindowFeatures(
        agent,
        group,
        "window",
        start.isoformat(),
        start,
        start + timedelta(minutes=1),
        values,
        int(values.get("events", 0)),
        (f"{agent}-{i}",),
    )


def activity(rng: np.random.Generator, group: str) -> dict[str, float]:
    calls, median_bytes, llm = PROFILES[group]
    n = float(rng.poisson(calls))
    llm_calls = float(rng.poisson(llm))
    return {
        "events": n + llm_calls,
        "tool_calls": n,
        "events.llm_call": llm_calls,
        "distinct_tools": float(min(n, rng.poisson(3) + 1)),
        "distinct_destinations": float(min(n, rng.poisson(2))),
        "bytes_out": float(median_bytes * rng.lognormal(0, 0.5)) if n else 0.0,
        "tokens_out": float(rng.poisson(200 * llm_calls)),
        "error_rate": float(rng.binomial(int(n), 0.02) / n) if n else 0.0,
    }


def fleet(
    detector: PeerGroupDetector,
    rng: np.random.Generator,
    minutes: int,
    agents: int = 6,
    start: int = 0,
) -> list[float]:
    """Every agent of every group sends a window per minute; learn what is not flagged."""
    ps = []
    for i in range(start, start + minutes):
        for group in PROFILES:
            for k in range(agents):
                w = window(i, f"{group}-{k}", group, activity(rng, group))
                finding = detector.score(w)
                p = finding.p if finding else 1.0
                ps.append(p)
                if p > FLAG_P:
                    detector.learn(w)
    return ps


@pytest.fixture(scope="module")
def trained() -> PeerGroupDetector:
    detector = PeerGroupDetector()
    fleet(detector, np.random.default_rng(1), 150)
    return detector


def test_registered_and_a_window_detector() -> None:
    detector = REGISTRY["peer_group"](DetectSettings())
    assert isinstance(detector, PeerGroupDetector)
    assert isinstance(detector, WindowDetector)


def test_one_model_per_peer_group_never_per_agent(trained: PeerGroupDetector) -> None:
    assert trained.models() == len(PROFILES) == 3
    assert sorted(trained.group_names()) == sorted(PROFILES)
    # per agent only the calibration counts: a few floats
    assert trained.agents() == 18
    state = trained.state_of("support-0")
    assert state is not None
    assert set(state) == {"c"}
    assert len(msgspec.msgpack.encode(state)) < 100
    assert trained.state_of("nobody") is None


def test_a_window_typical_for_its_group_is_not_flagged(trained: PeerGroupDetector) -> None:
    rng = np.random.default_rng(2)
    for group in PROFILES:
        values = activity(rng, group)
        values.update(tool_calls=PROFILES[group][0], bytes_out=PROFILES[group][1])
        assert trained.score(window(500, "new-agent", group, values)) is None


def test_a_window_atypical_for_its_group_is_flagged_and_explained(
    trained: PeerGroupDetector,
) -> None:
    rng = np.random.default_rng(3)
    values = activity(rng, "support")
    # A support bot moving gigabytes both ways. (One extreme feature alone is the rate
    # detector's business: the reported p is per agent-hour, so the trees must find the
    # window far outside the group, not merely at the edge of it.)
    values["bytes_out"] = values["bytes_in"] = 5e9
    finding = trained.score(window(500, "support-1", "support", values))
    assert finding is not None
    assert finding.detector == "peer_group"
    assert finding.p < FLAG_P
    assert {c.feature for c in finding.contributions[:2]} == {"bytes_in", "bytes_out"}
    top = next(c for c in finding.contributions if c.feature == "bytes_out")
    assert top.value == pytest.approx(5e9, rel=1e-6)
    assert isinstance(top.typical, float)
    assert 5_000 < top.typical < 100_000
    assert "peer group 'support'" in finding.explanation
    assert finding.event_ids == ("support-1-500",)
    # What is normal for crawlers is abnormal for support bots, and vice versa.
    # (Per window: the trees see the crawler's ordinary activity at the group's far edge.)
    crawler = activity(rng, "crawler")
    per_hour = trained.config
    trained.config = dataclasses.replace(per_hour, period_s=0.0)
    try:
        assert trained.score(window(500, "support-2", "support", crawler)) is not None
    finally:
        trained.config = per_hour


def test_benign_windows_are_rarely_flagged() -> None:
    detector = PeerGroupDetector()
    rng = np.random.default_rng(4)
    fleet(detector, rng, 150)
    ps = fleet(detector, rng, 150, start=150)
    assert np.mean(np.array(ps) <= FLAG_P) <= 0.015


def test_scoring_does_not_teach_the_model(trained: PeerGroupDetector) -> None:
    rng = np.random.default_rng(5)
    values = activity(rng, "coder")
    values["bytes_out"] = 1e10
    w = window(600, "coder-0", "coder", values)
    state = trained.group_state_of("coder")
    first, second = trained.score(w), trained.score(w)
    assert first is not None
    assert second is not None
    assert first.p == second.p
    after = trained.group_state_of("coder")
    assert state is not None
    assert after is not None
    assert (after["l_mass"], after["r_mass"]) == (state["l_mass"], state["r_mass"])


def test_group_state_round_trips_as_plain_data(trained: PeerGroupDetector) -> None:
    state = trained.group_state_of("crawler")
    assert state is not None
    blob = msgspec.msgpack.encode(state)
    restored = PeerGroupDetector()
    restored.load_group_state("crawler", msgspec.msgpack.decode(blob))
    rng = np.random.default_rng(6)
    for _ in range(20):
        values = activity(rng, "crawler")
        values["bytes_out"] *= float(rng.choice([1.0, 1e3]))
        w = window(700, "crawler-9", "crawler", values)
        original, again = trained.score(w), restored.score(w)
        assert (original is None) == (again is None)
        if original is not None and again is not None:
            assert original.p == again.p
    assert restored.models() == 1
    assert trained.group_state_of("nobody") is None
    with pytest.raises(ValueError, match="feature set"):
        PeerGroupDetector(PeerConfig(features=(("events", 1.0, 10.0),))).load_group_state(
            "crawler", state
        )


def test_untrained_groups_and_sessions_are_not_scored(trained: PeerGroupDetector) -> None:
    rng = np.random.default_rng(7)
    assert trained.score(window(0, "x", "brand-new-group", activity(rng, "coder"))) is None
    session = WindowFeatures("a", "coder", "session", "s1", T0, T0, activity(rng, "coder"), 5)
    assert trained.score(session) is None
    trained.learn(session)  # ignored
    assert trained.models() == 3


def test_groups_are_bounded() -> None:
    detector = PeerGroupDetector(PeerConfig(max_groups=2))
    rng = np.random.default_rng(8)
    for group in ("g1", "g2", "g3"):
        detector.learn(window(0, "a", group, activity(rng, "coder")))
    assert detector.models() == 2
    assert detector.group_names() == ["g2", "g3"]


def test_vector_is_log_scaled_into_the_unit_interval() -> None:
    detector = PeerGroupDetector()
    w = window(0, "a", "g", {"bytes_out": 1e15, "error_rate": 0.25, "events": 0.0})
    vector = dict(zip((f for f, _, _ in detector.config.features), detector.vector(w), strict=True))
    assert vector["bytes_out"] == 1.0
    assert vector["error_rate"] == 0.25
    assert vector["events"] == 0.0
    assert vector["tool_calls"] == 0.0
    assert all(0.0 <= v <= 1.0 for v in vector.values())


def test_cost_per_window_is_small(trained: PeerGroupDetector) -> None:
    rng = np.random.default_rng(9)
    windows = [window(800 + i, "coder-1", "coder", activity(rng, "coder")) for i in range(200)]
    detector = PeerGroupDetector()
    fleet(detector, np.random.default_rng(10), 100, agents=3)
    started = time.perf_counter()
    for w in windows:
        detector.score(w)
        detector.learn(w)
    per_window = (time.perf_counter() - started) / len(windows)
    assert per_window < 2e-3  # ≈ 30–60 µs here; generous for slow CI machines


def test_silent_windows_are_neither_scored_nor_learned(trained: PeerGroupDetector) -> None:
    quiet = window(900, "support-3", "support", {"events": 0.0, "tool_calls": 0.0})
    assert trained.score(quiet) is None
    before = trained.group_state_of("support")
    trained.learn(quiet)
    assert trained.group_state_of("support") == before


def test_an_agent_always_at_the_edge_of_its_group_is_calibrated_on_its_own_record() -> None:
    """One support bot always sends about five times the group's bytes: odd for the group,
    ordinary for itself — after calibration it is flagged about as rarely as the others."""
    detector = PeerGroupDetector()
    rng = np.random.default_rng(11)
    fleet(detector, rng, 100)
    flagged = []
    for i in range(100, 700):
        values = activity(rng, "support")
        values["bytes_out"] *= 5.0
        w = window(i, "support-edge", "support", values)
        finding = detector.score(w)
        flagged.append(finding is not None and finding.p <= FLAG_P)
        if finding is None or finding.p > 0.1:
            detector.learn(w)
        else:
            detector.observe(w)
        for k in range(3):  # the rest of the group keeps working
            normal = window(i, f"support-{k}", "support", activity(rng, "support"))
            if detector.score(normal) is None:
                detector.learn(normal)
    assert np.mean(flagged[300:]) <= 0.03
