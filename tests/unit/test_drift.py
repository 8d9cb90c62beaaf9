"""Fast-vs-slow baseline drift (:mod:`agentwatch.models.drift`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest

from agentwatch.config import DetectSettings
from agentwatch.features.windows import WindowFeatures
from agentwatch.models.base import REGISTRY, Finding, WindowDetector
from agentwatch.models.drift import DriftConfig, DriftDetector
from agentwatch.models.rate import FeatureRule, RateDetector

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
FLAG_P = 0.01


def window(i: int, values: dict[str, float], agent: str = "a") -> WindowFeatures:
    start = T0 + timedelta(minutes=i)
    return WindowFeatures(
        agent,
        "support",
        "window",
        start.isoformat(),
        start,
        start + timedelta(minutes=1),
        values,
        int(values.get("events", 0)),
    )


Values = Callable[[int], dict[str, float]]


def engine_loop(
    detectors: list[RateDetector | DriftDetector],
    values: Values,
    windows: int,
    watch_from: int = 0,
) -> dict[str, list[int]]:
    """Score every window with every detector, learn only unflagged ones (the engine's rule).

    Returns, per detector, the windows from ``watch_from`` on that it flagged.
    """
    flags: dict[str, list[int]] = {}
    for i in range(windows):
        w = window(i, values(i))
        findings = [f for d in detectors if (f := d.score(w)) is not None]
        flagged = [f for f in findings if f.p <= FLAG_P]
        for finding in flagged:
            if i >= watch_from:
                flags.setdefault(finding.detector, []).append(i)
        if not flagged:
            for detector in detectors:
                detector.learn(w)
    return flags


def poisson_activity(rng: np.random.Generator, calls: Callable[[int], float]) -> Values:
    def values(i: int) -> dict[str, float]:
        n = float(rng.poisson(calls(i)))
        return {
            "events": n + float(rng.poisson(2)),
            "tool_calls": n,
            "actions": n,
            "bytes_out": float(rng.lognormal(10, 0.6)),
        }

    return values


def test_registered_and_a_window_detector() -> None:
    detector = REGISTRY["baseline_drift"](DetectSettings())
    assert isinstance(detector, DriftDetector)
    assert isinstance(detector, WindowDetector)


@pytest.mark.parametrize("calls", [0.5, 5.0, 40.0])
def test_stable_behaviour_raises_no_drift(calls: float) -> None:
    rng = np.random.default_rng(1)
    drift = DriftDetector()
    flags = engine_loop([drift], poisson_activity(rng, lambda i: calls), 2000)
    assert "baseline_drift" not in flags


def test_two_percent_per_window_growth_of_bytes_out_is_found_by_drift_first() -> None:
    """Each window alone stays within the rate baseline's reach (it follows, clipped): until
    drift fires, rate flags no more than chance would; drift fires on a sustained walk."""
    rng = np.random.default_rng(2)

    def values(i: int) -> dict[str, float]:
        growth = 1.02 ** max(0, i - 200)
        return {"events": 10.0, "bytes_out": float(rng.lognormal(10, 0.5)) * growth}

    flags = engine_loop([RateDetector(), DriftDetector()], values, 320, watch_from=200)
    first_drift = flags["baseline_drift"][0]
    assert 200 < first_drift < 245
    assert len(flags["baseline_drift"]) >= (320 - first_drift) / 2  # and keeps finding it
    assert len([i for i in flags.get("rate", []) if i < first_drift]) <= 1


def test_slow_growth_of_tool_calls_is_found_by_drift_before_rate() -> None:
    wins = 0
    for seed in range(5):
        rng = np.random.default_rng(10 + seed)
        calls = poisson_activity(rng, lambda i: 20.0 * 1.02 ** max(0, i - 200))
        flags = engine_loop([RateDetector(), DriftDetector()], calls, 400, watch_from=200)
        first_drift = flags["baseline_drift"][0]
        assert 200 < first_drift < 240
        wins += first_drift < flags.get("rate", [10**6])[0]
    assert wins >= 4


def test_finding_explains_recent_and_long_run_levels() -> None:
    drift = DriftDetector()
    for i in range(200):
        drift.learn(window(i, {"tool_calls": 20.0 + i % 3}))
    finding: Finding | None = None
    level = 21.0
    for i in range(200, 260):
        level *= 1.04
        finding = drift.score(window(i, {"tool_calls": round(level)}))
        if finding is not None:
            break
        drift.learn(window(i, {"tool_calls": round(level)}))
    assert finding is not None
    assert finding.detector == "baseline_drift"
    assert finding.explanation.startswith("tool_calls drifting up for 3 windows")
    (contribution,) = finding.contributions
    assert contribution.feature == "tool_calls"
    assert isinstance(contribution.value, float)
    assert isinstance(contribution.typical, float)
    assert contribution.value > 1.25 * contribution.typical
    assert 19 < contribution.typical < 23
    assert finding.keys == ("baseline_drift/tool_calls",)


def test_a_flagged_excursion_does_not_freeze_the_detector() -> None:
    """Windows flagged (and so never learned) still move the fast mean: once the agent is
    back to normal the findings stop instead of repeating from a frozen state."""
    rng = np.random.default_rng(3)
    drift = DriftDetector()
    base = poisson_activity(rng, lambda i: 10.0)
    for i in range(300):
        drift.learn(window(i, base(i)))
    flagged = []
    for i in range(300, 400):
        values = base(i)
        if i < 315:  # a plateau at three times the level, then back to normal
            values = {k: v * 3 for k, v in values.items()}
        finding = drift.score(window(i, values))
        if finding is not None and finding.p <= FLAG_P:
            flagged.append(i)
        else:
            drift.learn(window(i, values))
    assert flagged
    assert flagged[0] < 310
    assert max(flagged) < 330


def test_observe_moves_the_fast_mean_only() -> None:
    drift = DriftDetector()
    for i in range(100):
        drift.learn(window(i, {"tool_calls": 10.0}))
    before = drift.state_of("a")
    drift.observe(window(100, {"tool_calls": 100.0}))
    after = drift.state_of("a")
    assert before is not None
    assert after is not None
    fast, slow, noise, gap, n, _ = after["tool_calls"]
    assert fast > before["tool_calls"][0]
    assert (slow, noise, gap, n) == tuple(before["tool_calls"][1:5])


def test_sparse_features_have_no_level_to_drift() -> None:
    rng = np.random.default_rng(4)

    def values(i: int) -> dict[str, float]:
        burst = i % 97 < 4  # secrets read in a short cluster now and then
        return {"events": 10.0, "secret_accesses": float(rng.poisson(0.6 if burst else 0.01))}

    assert "baseline_drift" not in engine_loop([DriftDetector()], values, 2000)


def test_small_changes_of_a_very_regular_feature_are_not_findings() -> None:
    drift = DriftDetector()
    for i in range(300):
        drift.learn(window(i, {"tool_calls": 1000.0 + (i % 3)}))
    for i in range(300, 320):
        assert drift.score(window(i, {"tool_calls": 1150.0})) is None  # +15 %: below min_change
        drift.learn(window(i, {"tool_calls": 1150.0}))


def test_low_side_drift_when_configured() -> None:
    rules = (FeatureRule("tool_calls", "volume", "low"),)
    drift = DriftDetector(DriftConfig(rules=rules))
    rng = np.random.default_rng(5)
    calls = poisson_activity(rng, lambda i: 30.0 * 0.97 ** max(0, i - 200))
    flags = engine_loop([drift], calls, 300)
    assert 200 < flags["baseline_drift"][0] < 250


def test_accepting_a_new_level_stops_the_finding() -> None:
    drift = DriftDetector()
    for i in range(200):
        drift.learn(window(i, {"tool_calls": 20.0 + i % 3}))
    level, i = 21.0, 200
    while drift.score(window(i, {"tool_calls": level})) is None:
        drift.learn(window(i, {"tool_calls": level}))
        level, i = level * 1.04, i + 1
    drift.accept_keys("a", ["baseline_drift/tool_calls", "rate/tool_calls"])
    assert drift.score(window(i, {"tool_calls": level})) is None


def test_rebaseline_relearns_before_testing_again() -> None:
    cfg = DriftConfig()
    drift = DriftDetector(cfg)
    for i in range(200):
        drift.learn(window(i, {"tool_calls": 20.0 + i % 3}))
    drift.rebaseline("a")
    state = drift.state_of("a")
    assert state is not None
    assert state["tool_calls"][4] == cfg.prior_windows
    assert drift.score(window(200, {"tool_calls": 200.0})) is None  # untested while re-learning


def test_state_is_small_and_round_trips_to_identical_scores() -> None:
    rng = np.random.default_rng(6)
    drift = DriftDetector()
    full = {
        name: 1.0
        for name in (
            "events",
            "tool_calls",
            "distinct_tools",
            "distinct_destinations",
            "new_destinations",
            "secret_accesses",
            "bytes_in",
            "bytes_out",
            "tokens_in",
            "tokens_out",
            "cost_usd",
            "duration_p95_ms",
        )
    }
    for i in range(300):
        values = {k: float(rng.lognormal(3, 0.3)) for k in full}
        values.update(actions=10.0, error_rate=0.1, denied_rate=0.05)
        drift.learn(window(i, values))
    state = drift.state_of("a")
    assert state is not None
    assert len(state) == 14
    encoded = msgspec.msgpack.encode(state)
    assert len(encoded) <= 4096
    restored = DriftDetector()
    restored.load_state("a", msgspec.msgpack.decode(encoded))
    assert restored.state_of("a") == state
    level = 20.0
    for i in range(300, 340):
        level *= 1.05
        values = {k: float(rng.lognormal(3, 0.3)) * level / 20 for k in full}
        w = window(i, values)
        original, again = drift.score(w), restored.score(w)
        assert (original is None) == (again is None)
        if original is not None and again is not None:
            assert original.p == again.p
            assert original.explanation == again.explanation
        if original is None or original.p > FLAG_P:
            drift.learn(w)
            restored.learn(w)
        elif i % 2:  # a snapshot between flagged windows carries the pending catch-up
            restored = DriftDetector()
            restored.load_state(
                "a", msgspec.msgpack.decode(msgspec.msgpack.encode(drift.state_of("a")))
            )
    assert drift.state_of("nobody") is None


def test_sessions_are_not_watched() -> None:
    drift = DriftDetector()
    session = WindowFeatures("a", "g", "session", "s", T0, T0, {"tool_calls": 5.0}, 5)
    drift.learn(session)
    assert drift.score(session) is None
    assert drift.agents() == 0


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="slow_alpha"):
        DriftConfig(fast_alpha=0.01, slow_alpha=0.1)
