"""An agent going silent: it stops mid-session (no session end) and sends nothing at all —
no events, no metrics — for a while, then starts again with a new session.

Ground truth: ``start``/``end`` are the silent interval, ``event_ids`` is empty and
``session_ids`` names the session it dropped, if it was in one.
"""

from __future__ import annotations

import random

from agentwatch.sim.scenarios.base import Scenario, ScenarioContext, register


@register
class AgentSilent(Scenario):
    name = "agent_silent"
    attack = True
    summary = "the agent stops sending anything (events and metrics) for a while"

    def place(self, ctx: ScenarioContext, rng: random.Random) -> bool:
        duration = ctx.span(rng.uniform(1800, 4 * 3600), 0.3)
        slot = ctx.find_slot(rng, duration)
        if slot is None:
            return False
        agent, t0 = slot
        t1 = t0 + duration
        instance = ctx.instance(
            self,
            agent,
            f"{agent.spec.agent_id} went silent for {duration / 60_000:.0f} min: no events and "
            "no metrics, its open session dropped without an end",
            window=(t0, t1),
            requires_events=False,
        )

        def go_silent(ms: int) -> None:
            instance.add_session(ctx.silence(agent, t1))

        ctx.at(t0 - 1, go_silent)  # whatever it would emit from t0 on is dropped
        return True
