"""Metric samples scored as they arrive (:mod:`agentwatch.models.metric`)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest

from agentwatch.config import DetectSettings
from agentwatch.features.context import EventContext, SessionTracker
from agentwatch.models.base import REGISTRY, EventDetector
from agentwatch.models.metric import MetricConfig, MetricDetector, MetricRule
from agentwatch.schemas.events import Event

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
FLAG_P = 0.01
_ids = itertools.count()
_tracker = SessionTracker()


def sample(
    metrics: dict[str, float], agent: str = "a", group: str = "worker", i: int = 0
) -> tuple[Event, EventContext]:
    event = Event(
        schema_version="1",
        event_id=f"m{next(_ids)}",
        ts=T0 + timedelta(seconds=30 * i),
        agent_id=agent,
        type="metric",
        agent_type=group,
        metrics=metrics,
    )
    return event, _tracker.observe(event)


def jitter(rng: np.random.Generator, cpu: float = 30.0) -> dict[str, float]:
    return {
        "cpu_pct": float(min(100.0, cpu * rng.lognormal(0, 0.15))),
        "memory_mb": float(512 * rng.lognormal(0, 0.02)),
    }


def stream(
    detector: MetricDetector,
    rng: np.random.Generator,
    samples: int,
    agent: str = "a",
    cpu: float = 30.0,
) -> list[float]:
    """Score, then learn what was not flagged (the engine's rule); the samples' ps."""
    ps = []
    for i in range(samples):
        event, ctx = sample(jitter(rng, cpu), agent=agent, i=i)
        finding = detector.score(event, ctx)
        p = finding.p if finding else 1.0
        ps.append(p)
        if p > FLAG_P:
            detector.learn(event, ctx)
    return ps


def feed(detector: MetricDetector, metrics: dict[str, float], **kw: object) -> float:
    """Score one sample, then learn it or (flagged) witness it, as the engine does; its p."""
    event, ctx = sample(metrics, **kw)  # type: ignore[arg-type]
    finding = detector.score(event, ctx)
    p = finding.p if finding else 1.0
    if p > 0.1:
        detector.learn(event, ctx)
    else:
        detector.witness(event, ctx)
    return p


def test_registered_and_an_event_detector() -> None:
    detector = REGISTRY["metric_sample"](DetectSettings())
    assert isinstance(detector, MetricDetector)
    assert isinstance(detector, EventDetector)


def test_a_cpu_spike_is_flagged_and_normal_jitter_is_not() -> None:
    rng = np.random.default_rng(1)
    detector = MetricDetector()
    stream(detector, rng, 100)
    ps = stream(detector, rng, 1000)
    assert np.mean(np.array(ps) <= FLAG_P) <= 0.01
    assert detector.status("a") == "baselined"
    first = sample({"cpu_pct": 97.0, "memory_mb": 512.0})
    assert detector.score(*first) is None  # one sample is not yet a run
    detector.witness(*first)
    event, ctx = sample({"cpu_pct": 97.0, "memory_mb": 512.0})
    finding = detector.score(event, ctx)
    assert finding is not None
    assert finding.detector == "metric_sample"
    assert finding.p < 1e-4
    (contribution,) = finding.contributions
    assert contribution.feature == "metric.cpu_pct"
    assert contribution.value == 97.0
    assert isinstance(contribution.typical, float)
    assert 25 < contribution.typical < 35
    assert finding.event_ids == (event.event_id,)
    assert finding.keys == ("metric/cpu_pct",)
    assert finding.explanation.startswith("cpu_pct 97 (typical 3")
    assert "2 samples running" in finding.explanation


def test_drops_are_not_news_by_default_but_can_be() -> None:
    rng = np.random.default_rng(2)
    high_only = MetricDetector()
    both = MetricDetector(MetricConfig(rules=(MetricRule("cpu_*", "both"), MetricRule("*"))))
    for detector in (high_only, both):
        stream(detector, rng, 200)
    for detector in (high_only, both):
        detector.witness(*sample({"cpu_pct": 0.5, "memory_mb": 512.0}))
    idle = sample({"cpu_pct": 0.5, "memory_mb": 512.0})
    assert high_only.score(*idle) is None
    finding = both.score(*idle)
    assert finding is not None
    assert finding.contributions[0].unusual.startswith("low side")


def test_cold_start_scores_a_new_agent_against_its_peer_group() -> None:
    rng = np.random.default_rng(3)
    detector = MetricDetector()
    for k in range(5):
        stream(detector, rng, 40, agent=f"peer{k}", cpu=20.0 + 5 * k)
    assert detector.status("new") == "warming_up"
    assert detector.score(*sample({"cpu_pct": 31.0}, agent="new")) is None
    detector.witness(*sample({"cpu_pct": 99.0}, agent="new"))
    odd = detector.score(*sample({"cpu_pct": 99.0}, agent="new"))
    assert odd is not None
    assert odd.p < FLAG_P
    assert "peer group typical" in odd.explanation
    assert "vs peer group" in odd.contributions[0].unusual
    assert detector.score(*sample({"cpu_pct": 99.0}, agent="x", group="elsewhere")) is None


def test_own_baseline_takes_over_and_is_seeded_from_the_group() -> None:
    rng = np.random.default_rng(4)
    cfg = MetricConfig(min_samples=20)
    detector = MetricDetector(cfg)
    for k in range(5):
        stream(detector, rng, 60, agent=f"peer{k}")
    stream(detector, rng, 1, agent="b")
    state = detector.state_of("b")
    assert state is not None
    assert state["metrics"]["cpu_pct"][2] == cfg.prior_samples + 1
    stream(detector, rng, 20, agent="b")
    assert detector.status("b") == "baselined"


def test_updates_are_clipped() -> None:
    cfg = MetricConfig()
    detector = MetricDetector(cfg)
    rng = np.random.default_rng(5)
    stream(detector, rng, 200)
    before = detector.state_of("a")
    assert before is not None
    loc, var = before["metrics"]["cpu_pct"][:2]
    sd = max(var**0.5, 0.05)
    outlier = float(np.expm1(loc + 5.0 * sd))  # beyond clip_k, within hold_k
    detector.learn(*sample({"cpu_pct": outlier, "memory_mb": 512.0}))
    after = detector.state_of("a")
    assert after is not None
    moved = after["metrics"]["cpu_pct"][0] - loc
    assert 0 < moved <= cfg.alpha * cfg.clip_k * sd + 1e-12
    detector.learn(*sample({"cpu_pct": 1e9, "memory_mb": 512.0}))  # beyond hold_k: held
    held = detector.state_of("a")
    assert held is not None
    assert held["metrics"]["cpu_pct"][:2] == after["metrics"]["cpu_pct"][:2]


def test_state_is_small_and_round_trips_to_identical_scores() -> None:
    rng = np.random.default_rng(6)
    detector = MetricDetector()
    for i in range(200):
        metrics = {f"m{k}": float(rng.lognormal(k % 5, 0.2)) for k in range(20)}
        detector.learn(*sample(metrics, i=i))
    state = detector.state_of("a")
    assert state is not None
    assert len(state["metrics"]) == MetricConfig().max_metrics
    encoded = msgspec.msgpack.encode(state)
    assert len(encoded) <= 4096
    restored = MetricDetector()
    restored.load_state("a", msgspec.msgpack.decode(encoded))
    assert restored.state_of("a") == state
    for _ in range(20):
        metrics = {
            f"m{k}": float(rng.lognormal(k % 5, 0.2) * rng.choice([1, 20])) for k in range(16)
        }
        event, ctx = sample(metrics)
        original, again = detector.score(event, ctx), restored.score(event, ctx)
        assert (original is None) == (again is None)
        if original is not None and again is not None:
            assert original.p == again.p
    assert detector.state_of("nobody") is None


def test_rebaseline_and_accept_widen_and_relearn() -> None:
    rng = np.random.default_rng(7)
    cfg = MetricConfig()
    detector = MetricDetector(cfg)
    stream(detector, rng, 200)
    before = detector.state_of("a")
    detector.accept("a", ["metric/cpu_pct", "new_tool/x"])
    after = detector.state_of("a")
    assert before is not None
    assert after is not None
    assert after["metrics"]["cpu_pct"][0] == before["metrics"]["cpu_pct"][0]
    assert after["metrics"]["cpu_pct"][1] > before["metrics"]["cpu_pct"][1]
    assert after["metrics"]["cpu_pct"][2] == cfg.prior_samples
    assert after["metrics"]["memory_mb"] == before["metrics"]["memory_mb"]
    detector.rebaseline("a")
    assert detector.status("a") == "warming_up"


def test_other_events_and_odd_values_are_ignored() -> None:
    detector = MetricDetector()
    rng = np.random.default_rng(8)
    stream(detector, rng, 100)
    call = Event(
        schema_version="1",
        event_id="t1",
        ts=T0,
        agent_id="a",
        type="tool_call",
        tool_name="x",
    )
    ctx = _tracker.observe(call)
    assert detector.score(call, ctx) is None
    detector.learn(call, ctx)
    assert detector.score(*sample({"cpu_pct": float("nan")})) is None
    assert detector.agents() == 1


def test_bad_rules_are_rejected() -> None:
    with pytest.raises(ValueError, match="metric rule"):
        MetricRule("x", min_scale=0.0)


def busy_idle(rng: np.random.Generator, i: int) -> dict[str, float]:
    """A bimodal agent: busy stretches at full CPU and more threads, idle ones at 30 %."""
    busy = (i // 20) % 3 != 0
    load = 1.0 if busy else 0.3
    return {
        "cpu_pct": float(min(100.0, 30.0 * load * rng.lognormal(0, 0.25))),
        "memory_mb": float(round(600 * (1.08 if busy else 1.0) * rng.lognormal(0, 0.02), 1)),
        "threads": float(round(30 * (1.3 if busy else 1.0) * rng.lognormal(0, 0.08))),
        "open_fds": float(round(60 * (1.2 if busy else 1.0) * rng.lognormal(0, 0.1))),
    }


def test_single_spikes_are_not_news_a_run_is() -> None:
    rng = np.random.default_rng(11)
    detector = MetricDetector()
    for i in range(300):
        feed(detector, busy_idle(rng, i), i=i)
    spike = {**busy_idle(rng, 301), "threads": 300.0}
    assert feed(detector, spike) > 0.1  # one sample: not reported, not learned (held)
    assert feed(detector, busy_idle(rng, 302)) > 0.1  # back to normal: nothing to see
    ps = [feed(detector, {**busy_idle(rng, 303 + k), "threads": 300.0}) for k in range(3)]
    assert ps[0] > 0.1  # the run starts
    assert ps[1] < 1e-4  # confirmed on the second sample
    assert ps[2] < 1e-4


def test_a_bimodal_agent_with_quantised_metrics_stays_quiet() -> None:
    rng = np.random.default_rng(12)
    detector = MetricDetector()
    ps = [feed(detector, busy_idle(rng, i), i=i) for i in range(6000)]
    assert sum(p <= FLAG_P for p in ps[100:]) == 0


def test_a_small_integer_series_is_floored_at_half_a_step() -> None:
    detector = MetricDetector()
    for i in range(200):
        feed(detector, {"workers": 3.0 if i % 10 else 4.0}, i=i)
    assert max(feed(detector, {"workers": 4.0}) for _ in range(3)) > FLAG_P
    assert feed(detector, {"workers": 12.0}) > 0.1
    assert feed(detector, {"workers": 12.0}) < 1e-4


def test_sustained_abuse_stays_flagged_calibration_counts_a_streak_once() -> None:
    rng = np.random.default_rng(13)
    detector = MetricDetector()
    for i in range(500):
        feed(detector, busy_idle(rng, i), i=i)
    ps = [
        feed(detector, {**busy_idle(rng, 500 + k), "cpu_pct": 95.0, "memory_mb": 2500.0})
        for k in range(200)
    ]
    assert max(ps[1:]) < 1e-4
    state = detector.state_of("a")
    assert state is not None
    assert state["flagged"] is True
    assert state["tail"][-1] <= 1.0  # the streak's extreme samples counted once


def test_an_agent_unlike_its_peers_gets_its_own_baseline() -> None:
    rng = np.random.default_rng(14)
    detector = MetricDetector()
    for k in range(4):
        stream(detector, rng, 60, agent=f"peer{k}")
    ps = [feed(detector, jitter(rng, cpu=90.0), agent="odd", i=i) for i in range(200)]
    assert min(ps[:5]) < FLAG_P  # at first, against the peer group
    assert detector.status("odd") == "baselined"
    assert all(p > FLAG_P for p in ps[60:])  # then against its own baseline


def test_older_snapshots_load() -> None:
    detector = MetricDetector()
    detector.load_state("a", {"cpu_pct": [3.4, 0.04, 500]})
    state = detector.state_of("a")
    assert state == {"metrics": {"cpu_pct": [3.4, 0.04, 500]}}
    assert detector.status("a") == "baselined"
    feed(detector, {"cpu_pct": 97.0})
    assert feed(detector, {"cpu_pct": 97.0}) < FLAG_P


def test_rebaseline_restarts_the_runs() -> None:
    rng = np.random.default_rng(15)
    detector = MetricDetector()
    stream(detector, rng, 200)
    detector.witness(*sample({"cpu_pct": 97.0, "memory_mb": 512.0}))
    detector.rebaseline("a")
    state = detector.state_of("a")
    assert state is not None
    assert all(len(v) == 3 for v in state["metrics"].values())
