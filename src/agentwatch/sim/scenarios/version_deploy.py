"""Benign: a rolling deploy of a new ``agent_version`` to a whole peer group. Each agent
picks it up at its next session start (an idle agent at once) and behaves slightly
differently afterwards: longer prompts, a different mix of tools, faster tools.

Ground truth per agent: from the moment it runs the new version, for a settling period
(2 h, less in short runs); ``event_ids`` are all of its events in that interval.
"""

from __future__ import annotations

import random
from dataclasses import replace
from functools import partial

from agentwatch.schemas.events import Event
from agentwatch.sim.agent import Deploy, SimAgent, Watch
from agentwatch.sim.profiles import LogNormal, Profile
from agentwatch.sim.scenarios.base import Scenario, ScenarioContext, register
from agentwatch.sim.truth import Instance


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def bump(version: str, times: int = 1) -> str:
    """``1.4.2`` → ``1.5.0`` (``times`` minor releases later)."""
    parts = [*_version_key(version), 0, 0][:3]
    return f"{parts[0]}.{parts[1] + times}.0"


def _scaled(dist: LogNormal, factor: float) -> LogNormal:
    return replace(dist, median=dist.median * factor)


def shifted(profile: Profile, rng: random.Random) -> tuple[Profile, str]:
    """The profile after a release: prompts grow, two tools trade weight, tools get faster."""
    tokens = rng.uniform(1.1, 1.35)
    models = tuple(
        replace(m, tokens_in=_scaled(m.tokens_in, tokens), tokens_out=_scaled(m.tokens_out, 1.1))
        for m in profile.models
    )
    tools = [replace(t, duration_ms=_scaled(t.duration_ms, 0.85)) for t in profile.tools]
    change = f"prompts ×{tokens:.2f}, tools 15 % faster"
    if len(tools) >= 2:
        up, down = rng.sample(range(len(tools)), 2)
        tools[up] = replace(tools[up], weight=tools[up].weight * 1.6)
        tools[down] = replace(tools[down], weight=tools[down].weight * 0.7)
        change += f", more {tools[up].name}, less {tools[down].name}"
    return replace(profile, models=models, tools=tuple(tools)), change


def _everything(event: Event) -> bool:
    return True


@register
class VersionDeploy(Scenario):
    name = "version_deploy"
    attack = False
    summary = "rolling deploy of a new agent_version to a peer group; behaviour shifts slightly"
    order = 0

    def __init__(self) -> None:
        self.deploys: dict[str, int] = {}

    def place(self, ctx: ScenarioContext, rng: random.Random) -> bool:
        groups = sorted({a.spec.agent_type for a in ctx.agents})
        settle = ctx.span(2 * 3600, 0.3)
        rollout = ctx.span(rng.uniform(300, 1800), 0.1)
        slack = ctx.span(1800, 0.1)  # an agent in a session deploys when it ends
        lo, hi = ctx.attack_from_ms, ctx.end_ms - rollout - settle - slack
        if hi < lo:
            return False
        for _ in range(50):
            group = rng.choice(groups)
            agents = [a for a in ctx.agents if a.spec.agent_type == group]
            t0 = rng.randint(lo, hi)
            if ctx.reserve(agents, t0, t0 + rollout + settle + slack):
                break
        else:
            return False
        profile = agents[0].spec.profile
        n = self.deploys[group] = self.deploys.get(group, 0) + 1
        version = bump(max(profile.versions, key=_version_key), n)
        new_profile, change = shifted(profile, rng)
        order = list(agents)
        rng.shuffle(order)
        for agent in order:
            instance = ctx.instance(
                self,
                agent,
                f"rolling deploy of {group} {version} reached {agent.spec.agent_id} "
                f"(benign; {change})",
            )
            on_apply = partial(_applied, ctx, instance, settle)
            deploy = Deploy(version, new_profile, on_apply)
            ctx.at(t0 + rng.randint(0, rollout), partial(_start, ctx, agent, deploy))
        return True


def _start(ctx: ScenarioContext, agent: SimAgent, deploy: Deploy, ms: int) -> None:
    agent.deploy = deploy
    ctx.restart(agent)


def _applied(
    ctx: ScenarioContext, instance: Instance, settle: int, agent: SimAgent, ms: int
) -> None:
    # The agent's last old-version event was emitted at ``ms``; what follows is new.
    instance.window = (ms + 1, ms + 1 + settle)
    ctx.watch(agent, Watch(instance, ms + 1, ms + 1 + settle, _everything))
