"""agentwatch's evaluation signals: each alert is the agent's own, with its detectors."""

from __future__ import annotations

from agentwatch.config import DetectSettings
from agentwatch.evaluation.signals import engine_signals
from agentwatch.sim.engine import SimConfig, generate


def test_window_alerts_belong_to_the_agent_whose_window_was_flagged() -> None:
    # A fleet's windows are aligned: many agents close a window with the same bounds at once.
    # Only the agents whose window was flagged may get an alert for it.
    events, _ = generate(
        SimConfig(agents=8, hours=4, seed=3, scenarios={"runaway_loop": 1}, warmup_hours=2)
    )
    signals, _ = engine_signals(events, DetectSettings())
    window_alerts = [s for s in signals if s.alert and s.start is not None]
    assert window_alerts, "the runaway loop flags at least one window"
    assert all(s.detectors for s in window_alerts)
    flagged_agents = {s.agent_id for s in window_alerts}
    assert len(flagged_agents) < 8
