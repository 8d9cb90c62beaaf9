"""Excessive agency: the agent starts using privileged tools that are not part of its job
(refunds, role changes, shell commands, payment approvals ...), some of them refused by
policy.

Signature: tool calls whose ``tool_name`` the agent (and its group) never used, from the
group's list of privileged tools, several in one session; some ``status: denied``.
"""

from __future__ import annotations

import random

from agentwatch.schemas.events import Event
from agentwatch.sim.agent import Episode, SimAgent
from agentwatch.sim.scenarios.base import Scenario, ScenarioContext, register
from agentwatch.sim.truth import Instance


class _Overreach(Episode):
    def __init__(self, instance: Instance, tools: list[str]) -> None:
        super().__init__(instance)
        self.tools = tools
        self.trace = ""

    def step(self, agent: SimAgent) -> list[tuple[int, Event]]:
        rng = agent.rng
        ms = agent.action_ms
        if not self.trace:
            self.trace = agent.new_trace()
        tool = agent.privileged_tools()[self.tools.pop(0)]
        out: list[tuple[int, Event]] = []
        event, duration = agent.llm(ms, self.trace)
        out.append((ms, event))
        ms += duration + rng.randint(5, 60)
        dest = rng.choice(tool.dests) if tool.dests else None
        event, duration = agent.call(ms, self.trace, tool, dest)
        out.append((ms, event))
        ms += duration
        self.done = not self.tools
        agent.action_ms = ms + rng.randint(1500, 20_000)
        return out


@register
class ExcessiveAgency(Scenario):
    name = "excessive_agency"
    attack = True
    summary = "the agent calls privileged tools outside its usual set"

    def place(self, ctx: ScenarioContext, rng: random.Random) -> bool:
        eligible = [a for a in ctx.agents if a.spec.profile.privileged_tools]
        slot = ctx.find_slot(rng, ctx.span(900, 0.2), agents=eligible)
        if slot is None:
            return False
        agent, t0 = slot
        names = [t.name for t in agent.spec.profile.privileged_tools]
        chosen = rng.sample(names, min(len(names), rng.randint(2, 4)))
        chosen += rng.choices(chosen, k=rng.randint(0, 2))  # some tried twice
        instance = ctx.instance(
            self,
            agent,
            f"{agent.spec.agent_id} called privileged tools outside its usual set: "
            f"{', '.join(chosen)}",
        )
        episode = _Overreach(instance, chosen)
        ctx.at(t0, lambda ms: ctx.run_episode(agent, episode, ms))
        return True
