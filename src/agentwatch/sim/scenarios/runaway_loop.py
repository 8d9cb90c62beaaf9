"""Runaway loop / model denial of service: the agent gets stuck calling the same tool with
the same arguments, each time after an LLM call whose context has grown — a burst of tool
calls and tokens, and a cost spike — until an operator stops the session.

Signature: many calls of one tool with identical arguments in a few minutes, interleaved
with LLM calls whose ``tokens_in`` grows call after call; cost per minute far above the
agent's usual.
"""

from __future__ import annotations

import random

import msgspec

from agentwatch.schemas.events import Event
from agentwatch.sim.agent import Episode, SimAgent
from agentwatch.sim.scenarios.base import Scenario, ScenarioContext, register
from agentwatch.sim.truth import Instance

_MAX_CONTEXT = 120_000


class _Loop(Episode):
    def __init__(
        self, instance: Instance, tool: str, iterations: int, limit_ms: int, growth: int
    ) -> None:
        super().__init__(instance)
        self.tool = tool
        self.iterations = iterations
        self.limit_ms = limit_ms
        self.growth = growth
        self.done_iterations = 0
        self.args: tuple[tuple[str, object], ...] | None = None
        self.context = 0
        self.trace = ""
        self.tokens = 0
        self.cost = 0.0
        self.started_ms = 0

    def step(self, agent: SimAgent) -> list[tuple[int, Event]]:
        rng = agent.rng
        ms = agent.action_ms
        _, tool = agent.tool(self.tool)
        if self.args is None:  # the call it will repeat, arguments and all
            self.started_ms = ms
            self.limit_ms += ms
            self.trace = agent.new_trace()
            self.args = tuple(agent.compile_args(tool.spec.args).items())
            model = agent.profile.models[0]
            self.context = int(model.tokens_in.median)
        out: list[tuple[int, Event]] = []
        self.context = min(_MAX_CONTEXT, self.context + self.growth + rng.randint(0, 400))
        event, duration = agent.llm(
            ms, self.trace, tokens_in=self.context, tokens_out=rng.randint(15, 90)
        )
        self.tokens += (event.tokens_in or 0) + (event.tokens_out or 0)
        self.cost += event.cost_usd or 0.0
        out.append((ms, event))
        ms += duration + rng.randint(5, 40)
        dest = tool.dests[0] if tool.dests else None
        event, duration = agent.custom_call(ms, self.trace, tool.spec, dest, args=self.args)
        if rng.random() < 0.7:  # the same quick failure, retried again and again
            duration = rng.randint(4, 80)
            event = msgspec.structs.replace(
                event,
                status="error",
                duration_ms=float(duration),
                bytes_in=min(event.bytes_in or 0, 400),
                attributes={"error.type": "invalid_argument"},
            )
        out.append((ms, event))
        ms += duration
        self.done_iterations += 1
        if self.done_iterations >= self.iterations or ms >= self.limit_ms:
            self.done = True
            agent.actions_left = 0  # an operator stops the session
            minutes = (ms - self.started_ms) / 60_000
            self.instance.description += (
                f": {self.done_iterations} iterations in {minutes:.1f} min, "
                f"{self.tokens:,} tokens, ${self.cost:,.2f}"
            )
        agent.action_ms = ms + rng.randint(20, 400)
        return out


@register
class RunawayLoop(Scenario):
    name = "runaway_loop"
    attack = True
    summary = "the agent repeats one tool call with a growing context: tool-call, token, cost burst"

    def place(self, ctx: ScenarioContext, rng: random.Random) -> bool:
        span = ctx.span(rng.uniform(600, 1500), 0.25)
        slot = ctx.find_slot(rng, span + 120_000)
        if slot is None:
            return False
        agent, t0 = slot
        tool = rng.choice(agent.spec.profile.tools).name
        iterations = rng.randint(120, 400)
        growth = rng.randint(800, 2500)
        instance = ctx.instance(
            self,
            agent,
            f"{agent.spec.agent_id} looped on {tool} with identical arguments and a growing "
            "LLM context",
        )
        episode = _Loop(instance, tool, iterations, span, growth)
        ctx.at(t0, lambda ms: ctx.run_episode(agent, episode, ms))
        return True
