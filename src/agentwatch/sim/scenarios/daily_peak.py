"""Benign: a peer group's daily peak — at its busiest hour of a day (any hour in runs too
short to contain one) every agent of the group works 2–3.5 times as fast for about an hour.

Ground truth per agent: the peak interval; ``event_ids`` are all of its events in it except
metric samples (which the peak does not change).
"""

from __future__ import annotations

import random
from functools import partial

from agentwatch.schemas.events import Event
from agentwatch.sim.agent import SimAgent, Watch
from agentwatch.sim.scenarios.base import Scenario, ScenarioContext, register

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS


def _not_metric(event: Event) -> bool:
    return event.type != "metric"


def peak_hour(agents: list[SimAgent]) -> int:
    """The UTC hour at which the agents' daily curves add up highest."""

    def load(hour: int) -> float:
        return sum(a.spec.profile.daily_curve[(hour + a.spec.utc_offset_h) % 24] for a in agents)

    return max(range(24), key=load)


@register
class DailyPeak(Scenario):
    name = "daily_peak"
    attack = False
    summary = "a peer group's busiest hour of the day, with 2–3.5× its usual activity"
    order = 0

    def place(self, ctx: ScenarioContext, rng: random.Random) -> bool:
        duration = ctx.span(rng.uniform(2700, 5400), 0.25)
        factor = rng.uniform(2.0, 3.5)
        groups = sorted({a.spec.agent_type for a in ctx.agents})
        lo, hi = ctx.attack_from_ms, ctx.end_ms - duration
        if hi < lo:
            return False
        for _ in range(50):
            group = rng.choice(groups)
            agents = [a for a in ctx.agents if a.spec.agent_type == group]
            centre = peak_hour(agents) * _HOUR_MS + _HOUR_MS // 2
            first_day = lo - lo % _DAY_MS
            starts = [
                day + centre - duration // 2
                for day in range(first_day, ctx.end_ms, _DAY_MS)
                if lo <= day + centre - duration // 2 <= hi
            ]
            t0 = rng.choice(starts) if starts else rng.randint(lo, hi)
            if ctx.reserve(agents, t0, t0 + duration):
                break
        else:
            return False
        t1 = t0 + duration
        for agent in agents:
            instance = ctx.instance(
                self,
                agent,
                f"daily peak of {group}: {factor:.1f}× the usual activity for "
                f"{duration / 60_000:.0f} min (benign)",
                window=(t0, t1),
            )
            agent.boosts.append((t0, t1, factor))
            ctx.watch(agent, Watch(instance, t0, t1, _not_metric))
            ctx.at(t0, partial(ctx.wake, agent))
        return True
