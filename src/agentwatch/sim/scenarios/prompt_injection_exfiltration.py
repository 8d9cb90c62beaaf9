"""Prompt injection → exfiltration: content the agent fetched (a ticket, a web page, a file)
carries instructions; the agent follows them, gathers data and sends it to a destination
it has never used — without reading any secret first.

Signature: a call of one of the group's untrusted-content tools, an LLM call reading it,
optionally a read of sensitive data, then a large send (through one of the group's own
tools or a raw network request) to a never-used destination, all in one session.
"""

from __future__ import annotations

import random

from agentwatch.schemas.events import Destination, Event
from agentwatch.sim.agent import Episode, SimAgent
from agentwatch.sim.profiles import ExfilChannel
from agentwatch.sim.scenarios.base import Scenario, ScenarioContext, human_bytes, register
from agentwatch.sim.truth import Instance


class _Injection(Episode):
    def __init__(
        self,
        instance: Instance,
        source: str,
        collect: str | None,
        channel: ExfilChannel,
        dest: Destination,
        bytes_out: int,
    ) -> None:
        super().__init__(instance)
        self.source = source
        self.collect = collect
        self.channel = channel
        self.dest = dest
        self.bytes_out = bytes_out
        self.phase = 0
        self.trace = ""

    def step(self, agent: SimAgent) -> list[tuple[int, Event]]:
        rng = agent.rng
        ms = agent.action_ms
        out: list[tuple[int, Event]] = []
        if self.phase == 0:  # the poisoned content arrives and the model reads it
            self.trace = agent.new_trace()
            _, tool = agent.tool(self.source)
            dest = rng.choice(tool.dests) if tool.dests else None
            event, duration = agent.call(ms, self.trace, tool, dest)
            out.append((ms, event))
            ms += duration + rng.randint(5, 60)
            tokens_in, tokens_out = rng.randint(6_000, 24_000), rng.randint(80, 400)
            event, duration = agent.llm(ms, self.trace, tokens_in=tokens_in, tokens_out=tokens_out)
            out.append((ms, event))
            ms += duration
            self.phase = 1 if self.collect else 2
        elif self.phase == 1:  # it gathers what the instructions ask for
            _, tool = agent.tool(self.collect or "")
            dest = rng.choice(tool.dests) if tool.dests else None
            event, duration = agent.call(ms, self.trace, tool, dest)
            out.append((ms, event))
            ms += duration
            self.phase = 2
        else:  # and sends it out
            event, duration = agent.llm(ms, self.trace)
            out.append((ms, event))
            ms += duration + rng.randint(5, 60)
            out.append(self._send(agent, ms))
            ms += int(out[-1][1].duration_ms or 0)
            self.done = True
        agent.action_ms = ms + rng.randint(300, 2500)
        return out

    def _send(self, agent: SimAgent, ms: int) -> tuple[int, Event]:
        rng = agent.rng
        channel = self.channel
        duration_f = 150.0 + self.bytes_out / 8_000.0 * (0.7 + 0.6 * rng.random())
        if channel.event_type == "tool_call" and channel.tool is not None:
            _, tool = agent.tool(channel.tool)
            event, _ = agent.custom_call(
                ms,
                self.trace,
                tool.spec,
                self.dest,
                args=channel.args,
                reliable=True,
                bytes_out=self.bytes_out,
                duration_ms=duration_f,
            )
            return ms, event
        event = agent.network(
            ms,
            self.trace,
            self.dest,
            bytes_out=self.bytes_out,
            bytes_in=rng.randint(200, 900),
            duration_ms=duration_f,
            attributes={"network.protocol.name": "https", "http.request.method": "POST"},
        )
        return ms, event


@register
class PromptInjectionExfiltration(Scenario):
    name = "prompt_injection_exfiltration"
    attack = True
    summary = "untrusted content hijacks the agent, which sends data to a new destination"

    def place(self, ctx: ScenarioContext, rng: random.Random) -> bool:
        eligible = [a for a in ctx.agents if a.spec.profile.untrusted_tools]
        slot = ctx.find_slot(rng, ctx.span(600, 0.2), agents=eligible)
        if slot is None:
            return False
        agent, t0 = slot
        profile = agent.spec.profile
        source = rng.choice(profile.untrusted_tools)
        collect = rng.choice(profile.sensitive_tools) if profile.sensitive_tools else None
        channel = rng.choices(profile.exfil, [c.weight for c in profile.exfil])[0]
        dest = agent.fresh_destination(channel.kind, rng)
        bytes_out = max(200, int(channel.bytes_out.sample(rng)))
        via = channel.tool or "a raw HTTPS POST"
        instance = ctx.instance(
            self,
            agent,
            f"{agent.spec.agent_id} read injected instructions through {source}"
            + (f", collected data with {collect}" if collect else "")
            + f" and sent {human_bytes(bytes_out)} via {via} to {channel.kind} {dest.value}, "
            "a destination it had never used",
        )
        episode = _Injection(instance, source, collect, channel, dest, bytes_out)
        ctx.at(t0, lambda ms: ctx.run_episode(agent, episode, ms))
        return True
