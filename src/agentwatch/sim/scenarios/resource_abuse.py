"""Resource abuse: something in the agent's process burns CPU and eats memory (a miner, a
leak it was tricked into) — CPU pinned near 100 %, memory climbing, threads multiplied —
until the process is restarted.

Signature: the agent's ``metric`` events in the interval have ``cpu_pct`` ≥ 85, rising
``memory_mb`` far above its usual and many more ``threads``; all of them are listed.
"""

from __future__ import annotations

import random

from agentwatch.sim.agent import MetricEffect
from agentwatch.sim.scenarios.base import Scenario, ScenarioContext, register
from agentwatch.sim.truth import Instance


class _Burn(MetricEffect):
    def __init__(
        self,
        instance: Instance,
        start_ms: int,
        end_ms: int,
        cpu_floor: float,
        memory_mb: float,
        threads: float,
    ) -> None:
        super().__init__(instance, start_ms, end_ms)
        self.cpu_floor = cpu_floor
        self.memory_mb = memory_mb
        self.threads = threads

    def apply(self, ms: int, metrics: dict[str, float], rng: random.Random) -> None:
        progress = (ms - self.start_ms) / max(1, self.end_ms - self.start_ms)
        metrics["cpu_pct"] = round(rng.uniform(self.cpu_floor, 100.0), 2)
        extra = self.memory_mb * (0.25 + 0.75 * progress)
        metrics["memory_mb"] = round(metrics["memory_mb"] + extra, 1)
        metrics["threads"] = float(round(metrics["threads"] * self.threads))


@register
class ResourceAbuse(Scenario):
    name = "resource_abuse"
    attack = True
    summary = "CPU pinned near 100 % and memory climbing in the agent's process"

    def place(self, ctx: ScenarioContext, rng: random.Random) -> bool:
        duration = ctx.span(rng.uniform(1200, 5400), 0.3)
        slot = ctx.find_slot(rng, duration)
        if slot is None:
            return False
        agent, t0 = slot
        t1 = t0 + duration
        cpu_floor = rng.uniform(85.0, 95.0)
        memory = rng.uniform(1_500.0, 6_000.0)
        threads = rng.uniform(3.0, 8.0)
        instance = ctx.instance(
            self,
            agent,
            f"{agent.spec.agent_id} burned CPU (≥ {cpu_floor:.0f} %) and memory (+{memory:,.0f}"
            f" MB by the end) with {threads:.1f}× its threads for {duration / 60_000:.0f} min",
            window=(t0, t1),
        )
        agent.metric_effects.append(_Burn(instance, t0, t1, cpu_floor, memory, threads))
        return True
