"""Rate and volume baselines (:mod:`agentwatch.models.rate`)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest

from agentwatch.config import DetectSettings
from agentwatch.features.windows import WindowFeatures
from agentwatch.models.base import REGISTRY, WindowDetector
from agentwatch.models.rate import (
    WINDOW_RULES,
    FeatureRule,
    RateConfig,
    RateDetector,
    settings_overrides,
    with_sides,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
FLAG_P = 0.01  # the engine's default flag score (50) is p = 0.01


def window(
    i: int, values: dict[str, float], agent: str = "a", group: str = "support"
) -> WindowFeatures:
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
        (f"{agent}-e{i}",),
    )


def activity(rng: np.random.Generator, calls: float, tools: int = 3) -> dict[str, float]:
    """A realistic-looking window: tool calls spread over a few tools, some bytes, errors."""
    n = int(rng.poisson(calls))
    per_tool = rng.multinomial(n, [1 / tools] * tools) if n else [0] * tools
    values = {
        "events": float(n + rng.poisson(1.0)),
        "tool_calls": float(n),
        "actions": float(n),
        "distinct_tools": float(sum(1 for c in per_tool if c)),
        "error_rate": float(rng.binomial(n, 0.02) / n) if n else 0.0,
        "bytes_out": float(rng.lognormal(8.0, 0.8, size=n).sum()),
        "distinct_destinations": float(min(n, rng.poisson(2.0))),
    }
    values.update({f"tool.t{k}": float(c) for k, c in enumerate(per_tool) if c})
    return values


def run(
    detector: RateDetector,
    rng: np.random.Generator,
    calls: float,
    windows: int,
    start: int = 0,
    agent: str = "a",
    group: str = "support",
) -> list[float]:
    """Score then learn like the engine (never learning what was flagged); returns the ps."""
    ps = []
    for i in range(start, start + windows):
        w = window(i, activity(rng, calls), agent, group)
        finding = detector.score(w)
        p = finding.p if finding else 1.0
        ps.append(p)
        if p > FLAG_P:
            detector.learn(w)
    return ps


def test_registered_and_a_window_detector() -> None:
    detector = REGISTRY["rate"](DetectSettings())
    assert isinstance(detector, RateDetector)
    assert isinstance(detector, WindowDetector)
    assert detector.name == "rate"


def test_settings_fields_override_the_defaults() -> None:
    class Settings:
        rate_alpha = 0.05
        rate_min_windows = 10
        rate_clip_k = "3"  # wrong type: ignored
        rate_window_rules = ()  # rule tables are not settings
        other = 1

    assert settings_overrides(Settings(), "rate_", RateConfig) == {
        "alpha": 0.05,
        "min_windows": 10,
    }


def test_sides_can_be_overridden_as_data() -> None:
    rules = with_sides(WINDOW_RULES, {"bytes_out": "both", "tool.*": "none"})
    rate = RateDetector(RateConfig(window_rules=rules))
    bytes_rule = rate.rule_for("window", "bytes_out")
    assert bytes_rule is not None
    assert bytes_rule.side == "both"
    assert bytes_rule.family == "volume"
    assert bytes_rule.offset == 1024.0
    assert rate.rule_for("window", "tool.search") is None
    assert rate.rule_for("window", "tool_calls") == WINDOW_RULES[1]


def test_a_tenfold_burst_of_tool_calls_is_flagged_with_the_feature_and_the_baseline() -> None:
    rng = np.random.default_rng(1)
    rate = RateDetector()
    run(rate, rng, 12, 300)
    assert rate.status("a") == "baselined"
    burst = activity(rng, 120)
    finding = rate.score(window(300, burst))
    assert finding is not None
    assert finding.detector == "rate"
    assert finding.p < 1e-6
    features = [c.feature for c in finding.contributions]
    assert "tool_calls" in features
    top = next(c for c in finding.contributions if c.feature == "tool_calls")
    assert top.value == burst["tool_calls"]
    assert isinstance(top.typical, float)
    assert 9 < top.typical < 15
    assert "high side" in top.unusual
    assert "in 60 s; typical" in finding.explanation
    assert finding.event_ids == ("a-e300",)
    assert "rate/tool_calls" in finding.keys


@pytest.mark.parametrize("calls", [0.3, 2.0, 12.0, 80.0])
def test_benign_poisson_noise_is_not_flagged(calls: float) -> None:
    rng = np.random.default_rng(2)
    rate = RateDetector()
    run(rate, rng, calls, 100)  # warm up
    ps = run(rate, rng, calls, 500, start=100)
    false_positives = sum(p <= FLAG_P for p in ps)
    assert false_positives / len(ps) <= 0.01


@pytest.mark.parametrize("calls", [3.0, 200.0])
def test_the_same_rarity_scores_alike_for_a_quiet_and_a_chatty_agent(calls: float) -> None:
    """Calibrated on tail probabilities: p <= 0.01 about 1 % of the time or less, whatever the
    agent's volume, and a tenfold burst is far beyond it for both."""
    rng = np.random.default_rng(3)
    rate = RateDetector()
    run(rate, rng, calls, 100)
    ps = run(rate, rng, calls, 400, start=100)
    assert np.mean(np.array(ps) <= 0.05) <= 0.05
    burst = rate.score(window(600, {"events": calls * 10, "tool_calls": calls * 10}))
    assert burst is not None
    assert burst.p < 1e-4


def test_an_agent_that_goes_quiet_is_flagged_on_the_low_side() -> None:
    rng = np.random.default_rng(4)
    rate = RateDetector()
    run(rate, rng, 15, 200)
    silent = dict.fromkeys(("events", "tool_calls", "actions", "bytes_out"), 0.0)
    finding = rate.score(window(200, silent))
    assert finding is not None
    assert finding.p < 1e-4
    contributions = {c.feature: c for c in finding.contributions}
    assert {"events", "tool_calls"} <= set(contributions)
    assert contributions["tool_calls"].unusual.startswith("low side")


def test_a_quiet_agent_is_not_flagged_for_its_usual_silence() -> None:
    rng = np.random.default_rng(5)
    rate = RateDetector()
    run(rate, rng, 0.5, 200)
    finding = rate.score(window(200, {"events": 0.0, "tool_calls": 0.0, "actions": 0.0}))
    assert finding is None


def test_high_side_only_features_are_not_flagged_for_dropping() -> None:
    rng = np.random.default_rng(6)
    rate = RateDetector()
    run(rate, rng, 10, 200)
    values = activity(rng, 10)
    values["distinct_destinations"] = 0.0
    values["error_rate"] = 0.0
    finding = rate.score(window(200, values))
    assert finding is None or not {"distinct_destinations", "error_rate"} & {
        c.feature for c in finding.contributions
    }


def test_error_rate_is_judged_with_its_number_of_actions() -> None:
    rate = RateDetector()
    rng = np.random.default_rng(7)
    run(rate, rng, 20, 200)
    one_of_one = {"events": 20.0, "tool_calls": 20.0, "actions": 1.0, "error_rate": 1.0}
    assert rate.score(window(200, one_of_one)) is None
    half_of_forty = {"events": 40.0, "tool_calls": 20.0, "actions": 40.0, "error_rate": 0.5}
    finding = rate.score(window(201, half_of_forty))
    assert finding is not None
    assert finding.contributions[0].feature == "error_rate"


def test_clipping_bounds_how_fast_a_baseline_moves() -> None:
    """Even if every window were learned, a value pushed up window after window moves the
    location by at most alpha · (clip_k · scale + 1) per window."""
    cfg = RateConfig()
    rate = RateDetector(cfg)
    rng = np.random.default_rng(8)
    run(rate, rng, 10, 300)
    level = 10.0
    for i in range(300, 320):
        before = rate.baseline("a", "tool_calls")
        assert before is not None
        step_bound = cfg.alpha * (cfg.clip_k * (before.high - before.typical) + 1.0)
        level *= 1.5  # far faster than the bound: every value is clipped
        rate.learn(window(i, {"events": level, "tool_calls": level}))
        after = rate.baseline("a", "tool_calls")
        assert after is not None
        assert 0 < after.typical - before.typical <= step_bound + 1e-9
    final = rate.baseline("a", "tool_calls")
    assert final is not None
    assert final.typical < level / 100


def test_a_gradual_attacker_is_flagged_before_moving_the_baseline_far() -> None:
    """With the engine's protection (flagged windows are not learned) an attacker raising
    tool calls 20 % per window is flagged long before the baseline follows."""
    rate = RateDetector()
    rng = np.random.default_rng(15)
    run(rate, rng, 10, 300)
    start = rate.baseline("a", "tool_calls")
    level, flagged_at = 10.0, None
    for i in range(300, 340):
        level *= 1.2
        w = window(i, {"events": level, "tool_calls": level})
        finding = rate.score(w)
        if finding is not None and finding.p <= FLAG_P:
            flagged_at = flagged_at if flagged_at is not None else i - 300
        else:
            rate.learn(w)
    end = rate.baseline("a", "tool_calls")
    assert flagged_at is not None
    assert flagged_at <= 6
    assert start is not None
    assert end is not None
    assert end.typical < start.typical * 1.5


def test_volumes_are_bounded_in_log_space_too() -> None:
    cfg = RateConfig()
    rate = RateDetector(cfg)
    for i in range(100):
        rate.learn(window(i, {"events": 5.0, "bytes_out": 10_000.0 * (1 + (i % 3) / 10)}))
    before = rate.baseline("a", "bytes_out")
    rate.learn(window(100, {"events": 5.0, "bytes_out": 1e12}))
    after = rate.baseline("a", "bytes_out")
    assert before is not None
    assert after is not None
    # log(typical) moved by at most alpha · clip_k · log-scale
    log_scale = max(math.log((before.high + 1024) / (before.typical + 1024)), cfg.min_log_scale)
    moved = math.log((after.typical + 1024) / (before.typical + 1024))
    assert 0 < moved <= cfg.alpha * cfg.clip_k * log_scale + 1e-9


def test_cold_start_scores_a_new_agent_against_its_peer_group() -> None:
    rng = np.random.default_rng(9)
    rate = RateDetector()
    for k in range(10):  # ten established agents of the group
        run(rate, rng, 12, 60, agent=f"peer{k}")
    assert rate.status("new") == "warming_up"
    typical = rate.score(window(0, activity(rng, 12), agent="new"))
    assert typical is None
    odd = rate.score(window(0, {"events": 150.0, "tool_calls": 150.0}, agent="new"))
    assert odd is not None
    assert odd.p < 1e-6
    assert odd.extra["status"] == "warming_up"
    assert "peer group 'support'" in odd.explanation
    assert all("vs peer group" in c.unusual for c in odd.contributions)
    # Another group's agents are not this group's peers.
    assert rate.score(window(0, {"events": 150.0, "tool_calls": 150.0}, group="other")) is None


def test_a_new_agent_becomes_baselined_on_its_own_data() -> None:
    rng = np.random.default_rng(10)
    cfg = RateConfig(min_windows=30)
    rate = RateDetector(cfg)
    run(rate, rng, 12, 29, agent="b")
    assert rate.status("b") == "warming_up"
    run(rate, rng, 12, 1, start=29, agent="b")
    assert rate.status("b") == "baselined"
    own = rate.score(window(30, {"events": 150.0, "tool_calls": 150.0}, agent="b"))
    assert own is not None
    assert own.extra["status"] == "baselined"
    assert "peer group" not in own.explanation


def test_rebaseline_keeps_location_inflates_scale_and_warms_up_again() -> None:
    rng = np.random.default_rng(11)
    rate = RateDetector()
    run(rate, rng, 12, 200)
    before = rate.baseline("a", "tool_calls")
    rate.rebaseline("a")
    after = rate.baseline("a", "tool_calls")
    assert before is not None
    assert after is not None
    assert rate.status("a") == "warming_up"
    assert after.typical == before.typical
    assert after.high - after.typical > 1.9 * (before.high - before.typical)
    assert after.n == RateConfig().prior_windows


def test_accepted_features_get_a_wider_baseline() -> None:
    rng = np.random.default_rng(12)
    rate = RateDetector()
    run(rate, rng, 12, 200)
    before = rate.baseline("a", "tool_calls")
    other = rate.baseline("a", "events")
    rate.accept_keys("a", ["rate/tool_calls", "new_tool/x"])
    after = rate.baseline("a", "tool_calls")
    assert before is not None
    assert after is not None
    assert after.high - after.typical > before.high - before.typical
    assert rate.baseline("a", "events") == other
    assert rate.status("a") == "baselined"


def test_state_is_small_and_round_trips_to_identical_scores() -> None:
    rng = np.random.default_rng(13)
    rate = RateDetector()
    for i in range(300):  # every windowed feature, 16 tools and sessions
        values = activity(rng, 20, tools=16)
        values.update(
            {
                "events.llm_call": float(rng.poisson(3)),
                "events.network": float(rng.poisson(1)),
                "events.file_access": float(rng.poisson(1)),
                "events.session_start": float(rng.poisson(0.2)),
                "events.session_end": float(rng.poisson(0.2)),
                "events.metric": 2.0,
                "denied_rate": 0.01,
                "new_destinations": float(rng.poisson(0.1)),
                "secret_accesses": float(rng.poisson(0.3)),
                "bytes_in": float(rng.lognormal(9, 1)),
                "tokens_in": float(rng.poisson(900)),
                "tokens_out": float(rng.poisson(300)),
                "cost_usd": float(rng.lognormal(-5, 0.5)),
                "duration_p95_ms": float(rng.lognormal(6, 0.5)),
                "tool._other": 1.0,
            }
        )
        rate.learn(window(i, values))
        if i % 10 == 0:
            start = T0 + timedelta(minutes=i)
            rate.learn(WindowFeatures("a", "support", "session", f"s{i}", start, start, values, 9))
    state = rate.state_of("a")
    assert state is not None
    assert set(state) == {"window", "session"}
    encoded = msgspec.msgpack.encode(state)
    assert len(encoded) <= 4096
    assert len(state["window"]["f"]) >= 30

    restored = RateDetector()
    restored.load_state("a", msgspec.msgpack.decode(encoded))
    group = rate.group_state_of("support")
    assert group is not None
    restored.load_group_state("support", msgspec.msgpack.decode(msgspec.msgpack.encode(group)))
    for i in range(300, 320):
        probe = window(i, activity(rng, 20 + 10 * (i % 3), tools=16))
        original, again = rate.score(probe), restored.score(probe)
        assert (original is None) == (again is None)
        if original is not None and again is not None:
            assert original.p == again.p
            assert original.explanation == again.explanation
    # both counted the same probes for calibration
    assert restored.state_of("a") == rate.state_of("a")
    assert rate.state_of("nobody") is None


def test_rules_are_data() -> None:
    rules = (FeatureRule("tool_calls", "count", "low"), FeatureRule("*", side="none"))
    rate = RateDetector(RateConfig(window_rules=rules, min_windows=20))
    rng = np.random.default_rng(14)
    run(rate, rng, 10, 100)
    assert rate.rule_for("window", "bytes_out") is None
    assert rate.score(window(100, {"tool_calls": 200.0, "events": 200.0})) is None
    low = rate.score(window(101, {"tool_calls": 0.0, "events": 0.0}))
    assert low is not None
    assert [c.feature for c in low.contributions] == ["tool_calls"]


@pytest.mark.parametrize(
    ("pattern", "family", "kwargs"),
    [("x", "ratio", {}), ("x", "volume", {"offset": 0.0}), ("x", "nope", {})],
)
def test_bad_rules_are_rejected(pattern: str, family: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="rule 'x'"):
        FeatureRule(pattern, family, **kwargs)  # type: ignore[arg-type]


def test_sessions_have_their_own_baselines_and_can_be_switched_off() -> None:
    def session(i: int, events: float) -> WindowFeatures:
        start = T0 + timedelta(minutes=10 * i)
        values = {"events": events, "tool_calls": events, "actions": events}
        return WindowFeatures("a", "g", "session", f"s{i}", start, start, values, int(events))

    rate = RateDetector()
    for i in range(60):
        rate.learn(session(i, 40.0 + (i % 7)))
    assert rate.status("a") == "warming_up"  # sessions do not baseline the windows
    finding = rate.score(session(60, 4000.0))
    assert finding is not None
    assert "in session s60" in finding.explanation
    off = RateDetector(RateConfig(score_sessions=False))
    off.learn(session(0, 10.0))
    assert off.score(session(1, 4000.0)) is None
    assert off.state_of("a") is None


def session_agent(rng: np.random.Generator, windows: int) -> list[dict[str, float]]:
    """A session-driven agent as LLM agents are: a burst of work, then idle minutes.

    Sessions of 5–20 events fill one window, separated by one to five silent windows; a
    rarely used tool comes in bursts of 1–4 calls; one session in ten reads a large
    document (bimodal ``bytes_in``).
    """
    out: list[dict[str, float]] = []
    while len(out) < windows:
        n = int(rng.integers(5, 21))
        calls = n // 2
        values = {
            "events": float(n),
            "tool_calls": float(calls),
            "actions": float(n),
            "events.llm_call": float(n - calls),
            "tool.search": float(calls),
            "distinct_tools": 1.0,
            "bytes_in": float(rng.lognormal(7, 0.5) * (30 if rng.random() < 0.1 else 1)),
            "bytes_out": float(rng.lognormal(6, 0.6)),
            "duration_p95_ms": float(rng.lognormal(5, 0.5)),
        }
        if rng.random() < 0.1:
            values["tool.export"] = float(rng.integers(1, 5))
            values["distinct_tools"] = 2.0
        out.append(values)
        out.extend({"events": 0.0, "tool_calls": 0.0} for _ in range(int(rng.integers(1, 6))))
    return out[:windows]


def test_a_session_driven_agent_is_flagged_at_the_nominal_rate() -> None:
    """The engine's way: score, learn what scored p > 0.1, count the rest for calibration.

    Sparse tools in bursts and bimodal volumes used to make one active window in ten look
    like a 1e-6 event (the baseline decayed between uses and never learned its own tail).
    """
    rng = np.random.default_rng(21)
    rate = RateDetector()
    ps = []
    for i, values in enumerate(session_agent(rng, 3000)):
        w = window(i, values)
        finding = rate.score(w)
        p = finding.p if finding else 1.0
        if i >= 300:
            ps.append(p)
        if p > 0.1:
            rate.learn(w)
        else:
            rate.observe(w)
    assert np.mean(np.array(ps) <= FLAG_P) <= 0.01
    # and a real burst of the rare tool still stands out
    burst = rate.score(window(3000, {"events": 60.0, "tool_calls": 50.0, "tool.export": 50.0}))
    assert burst is not None
    assert burst.p < 1e-4
    assert any(c.feature == "tool.export" for c in burst.contributions)


def test_flagged_windows_still_count_for_calibration() -> None:
    rate = RateDetector(RateConfig(min_windows=20))
    for i in range(100):
        rate.learn(window(i, {"events": 10.0 + i % 3, "tool_calls": 10.0}))
    state = rate.state_of("a")
    assert state is not None
    before = state["window"].get("c")
    odd = window(100, {"events": 400.0, "tool_calls": 400.0})
    assert rate.score(odd) is not None
    rate.observe(odd)  # what the engine does for a window it does not learn
    after = rate.state_of("a")
    assert after is not None
    assert after["window"]["c"] != before
    assert after["window"]["f"] == state["window"]["f"]  # the baselines did not move


def test_an_agent_that_stops_is_flagged_without_its_own_next_event() -> None:
    """Silence in a live worker: the other agents of the partition move event time on, the
    aggregator emits the quiet agent's zero windows, and a run of them is flagged."""
    from agentwatch.models.base import build_detectors
    from agentwatch.models.engine import DetectionEngine
    from agentwatch.schemas.events import Event

    settings = DetectSettings()
    engine = DetectionEngine(settings, detectors=build_detectors(settings, ["rate"]))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    found = []
    n = 0
    for minute in range(240):
        agents = ["chatty", "other"] if minute < 200 else ["other"]
        for agent in agents:
            for k in range(3):
                n += 1
                event = Event(
                    schema_version="1",
                    event_id=f"e{n}",
                    agent_id=agent,
                    session_id=f"{agent}-s",
                    ts=t0 + timedelta(minutes=minute, seconds=5 + 17 * k),
                    type="tool_call",
                    tool_name="poll",
                )
                found += [a for a in engine.process(event).anomalies if a.agent_id == "chatty"]
    assert found, "a silence of 40 minutes went unnoticed"
    first = min(found, key=lambda a: a.ts)
    assert first.ts <= t0 + timedelta(minutes=205)
    assert all(a.ts > t0 + timedelta(minutes=200) for a in found)
    assert "rate" in first.detectors


def test_a_whole_group_busier_at_once_is_not_news_but_one_agent_is() -> None:
    rate = RateDetector(RateConfig(min_windows=20))
    rng = np.random.default_rng(5)
    agents = [f"a{i}" for i in range(8)]

    def batch(minute: int, level: float, odd: float | None = None) -> list[WindowFeatures]:
        out = []
        for i, agent in enumerate(agents):
            lam = odd if (odd is not None and i == 0) else level
            calls = float(rng.poisson(lam))
            start = T0 + timedelta(minutes=minute)
            out.append(
                WindowFeatures(
                    agent,
                    "g",
                    "window",
                    start.isoformat(),
                    start,
                    start + timedelta(minutes=1),
                    {"events": calls, "tool_calls": calls},
                    int(calls),
                )
            )
        return out

    def run(windows: list[WindowFeatures], learn: bool = True) -> list[str]:
        rate.prepare(windows)
        flagged = []
        for w in windows:
            f = rate.score(w)
            if f is not None and f.p <= 0.001:
                flagged.append(w.agent_id)
                rate.observe(w)
            elif learn:
                rate.learn(w)
        return flagged

    for minute in range(120):
        run(batch(minute, 10.0))
    peak = [a for minute in range(120, 150) for a in run(batch(minute, 35.0))]
    assert peak == []
    alone = run(batch(150, 35.0, odd=200.0))  # one agent running away during the peak
    assert alone == ["a0"]
