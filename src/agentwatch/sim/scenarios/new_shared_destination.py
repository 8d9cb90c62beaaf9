"""Benign: a new legitimate destination (a second help desk, a package index, a new data
source) is added to every agent of a peer group within a few minutes, and they start
using it right away.

Ground truth per agent: from its rollout for a settling period (2 h, less in short runs);
``event_ids`` are its events that use the new destination in that interval.
"""

from __future__ import annotations

import random
from functools import partial

from agentwatch.schemas.events import Destination, Event
from agentwatch.sim.agent import SimAgent, Watch
from agentwatch.sim.scenarios.base import ForcedCall, Scenario, ScenarioContext, register
from agentwatch.sim.truth import Instance


def _uses(dest: Destination, event: Event) -> bool:
    return event.destinations is not None and dest in event.destinations


@register
class NewSharedDestination(Scenario):
    name = "new_shared_destination"
    attack = False
    summary = "a new legitimate destination rolled out to a whole peer group at once"
    order = 0

    def __init__(self) -> None:
        self.rolled_out: set[tuple[str, str]] = set()

    def place(self, ctx: ScenarioContext, rng: random.Random) -> bool:
        groups = sorted({a.spec.agent_type for a in ctx.agents})
        settle = ctx.span(2 * 3600, 0.3)
        spread = ctx.span(rng.uniform(60, 600), 0.05)
        lo, hi = ctx.attack_from_ms, ctx.end_ms - spread - settle
        if hi < lo:
            return False
        for _ in range(50):
            group = rng.choice(groups)
            agents = [a for a in ctx.agents if a.spec.agent_type == group]
            choice = self._destination(agents, rng)
            if choice is None:
                continue
            t0 = rng.randint(lo, hi)
            if ctx.reserve(agents, t0, t0 + spread + settle):
                break
        else:
            return False
        pool, dest = choice
        self.rolled_out.add((group, dest.value))
        for agent in agents:
            t = t0 + rng.randint(0, spread)
            instance = ctx.instance(
                self,
                agent,
                f"new {dest.kind} {dest.value} rolled out to all {len(agents)} {group} agents "
                f"(benign; pool {pool})",
                window=(t, t + settle),
            )
            ctx.watch(agent, Watch(instance, t, t + settle, partial(_uses, dest)))
            ctx.at(t, partial(_roll_out, ctx, agent, instance, pool, dest))
        return True

    def _destination(
        self, agents: list[SimAgent], rng: random.Random
    ) -> tuple[str, Destination] | None:
        profile = agents[0].spec.profile
        options = [
            (pool, value)
            for pool, values in sorted(profile.rollout_destinations.items())
            for value in values
            if (profile.group, value) not in self.rolled_out
            and all(value not in a.pool_values.get(pool, ()) for a in agents)
        ]
        if not options:
            return None
        pool, value = rng.choice(options)
        return pool, Destination(kind=profile.pools[pool].kind, value=value)


def _roll_out(
    ctx: ScenarioContext, agent: SimAgent, instance: Instance, pool: str, dest: Destination, ms: int
) -> None:
    agent.dests[pool].append(dest)
    agent.usual.add((dest.kind, dest.value))
    users = [i for i, t in enumerate(agent.tools) if t.spec.pool == pool]
    ctx.run_episode(agent, ForcedCall(instance, agent.rng.choice(users), dest), ms)
