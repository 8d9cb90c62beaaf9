"""An agent of the scenario simulation: the fleet's agent plus the hooks scenarios act through.

A :class:`SimAgent` behaves exactly like the demo fleet's agent (sessions of tool calls, LLM
calls, secret reads, metrics) until a scenario changes something:

* an :class:`Episode` — scripted steps the agent performs in place of its usual actions,
  inside a session (an injected prompt, a runaway loop, a network sweep ...);
* a rate boost (``boosts``), a profile and version change (:meth:`SimAgent.deploy_now`),
  an extra destination in one of its pools;
* a :class:`MetricEffect` that alters its resource metrics for a while;
* a :class:`Watch` that labels the agent's events matching a predicate in an interval.

The helpers here (:meth:`SimAgent.llm`, :meth:`SimAgent.call`, :meth:`SimAgent.network`,
...) build events the same way benign behaviour does, so scripted events look like the
agent's own.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from agentwatch.schemas.events import Destination, DestinationKind, Event, Status
from agentwatch.sim.fleet import (
    _EPOCH,
    _MS,
    AgentSpec,
    _Agent,
    _compile_args,
    _Tool,
    _uuid4,
    random_destination,
)
from agentwatch.sim.profiles import Profile, ToolSpec
from agentwatch.sim.truth import Instance

__all__ = ["Episode", "MetricEffect", "SimAgent", "Watch"]


class Episode(ABC):
    """Scripted behaviour of one scenario instance, run step by step inside a session.

    :meth:`step` returns the next chunk of events, starting at ``agent.action_ms`` and in
    time order, moves ``agent.action_ms`` past them and sets :attr:`done` after the last.
    Every event of every chunk is recorded as the instance's.
    """

    force_session = True  # an idle agent starts a session for it (a task arrives)

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.done = False

    @abstractmethod
    def step(self, agent: SimAgent) -> list[tuple[int, Event]]:
        """The next chunk of events (never empty)."""


class MetricEffect(ABC):
    """Alters an agent's metric samples from ``start_ms`` to ``end_ms`` (inclusive)."""

    def __init__(self, instance: Instance, start_ms: int, end_ms: int) -> None:
        self.instance = instance
        self.start_ms = start_ms
        self.end_ms = end_ms

    @abstractmethod
    def apply(self, ms: int, metrics: dict[str, float], rng: random.Random) -> None:
        """Change ``metrics`` (a sample taken at ``ms``) in place."""


@dataclass(slots=True)
class Watch:
    """Labels the agent's events with ``start_ms <= ts <= end_ms`` that match ``accept``."""

    instance: Instance
    start_ms: int
    end_ms: int
    accept: Callable[[Event], bool]


@dataclass(slots=True)
class Deploy:
    """A new version and profile, applied when the agent next starts a session."""

    version: str
    profile: Profile
    on_apply: Callable[[SimAgent, int], None]


class SimAgent(_Agent):
    """The fleet's agent with scenario hooks and a richer set of resource metrics."""

    __slots__ = (
        "deploy",
        "episode",
        "episodes",
        "fds_base",
        "index",
        "mem_base",
        "mem_dev",
        "metric_effects",
        "now_ms",
        "privileged",
        "sched_seq",
        "silent_until",
        "step_tag",
        "threads_base",
        "watches",
    )

    def __init__(
        self, spec: AgentSpec, rng: random.Random, dests: dict[str, list[Destination]]
    ) -> None:
        super().__init__(spec, rng, dests)
        profile = spec.profile
        self.index = 0
        self.episodes: deque[Episode] = deque()
        self.episode: Episode | None = None
        self.step_tag: Instance | None = None
        self.watches: list[Watch] = []
        self.metric_effects: list[MetricEffect] = []
        self.deploy: Deploy | None = None
        self.silent_until = -1
        self.sched_seq = -1
        self.now_ms = 0  # when the simulation asked for the current step
        self.mem_base = self.mem_mb
        self.mem_dev = 0.0
        self.threads_base = profile.threads.sample(rng)
        self.fds_base = profile.open_fds.sample(rng)
        self.privileged: dict[str, _Tool] | None = None

    # -- stepping --------------------------------------------------------------------------

    def step(self) -> list[tuple[int, Event]]:
        if self.in_session:
            episode = self.episode
            if episode is None and self.episodes:
                episode = self.episode = self.episodes.popleft()
            if episode is not None:
                out = episode.step(self)
                if episode.done:
                    self.episode = None
                if out:
                    self.step_tag = episode.instance
                    return out
        elif self.deploy is not None:
            deploy, self.deploy = self.deploy, None
            self.deploy_now(deploy, self.now_ms)
        self.step_tag = None
        return super().step()

    def deploy_now(self, deploy: Deploy, ms: int) -> None:
        self.version = deploy.version
        self.use_profile(deploy.profile, self.dests)
        self.prev_tool = min(self.prev_tool, len(self.tools) - 1)
        deploy.on_apply(self, ms)

    def metric_event(self, ms: int) -> tuple[Event, Instance | None]:
        """A resource sample at ``ms`` and the instance that altered it, if any."""
        rng = self.rng
        busy = self.in_session
        load = 1.0 if busy else 0.3
        cpu = min(100.0, self.cpu_base * load * rng.lognormvariate(0.0, 0.25))
        self.mem_dev = 0.9 * self.mem_dev + rng.gauss(0.0, 0.01)  # mean-reverting wander
        memory = self.mem_base * math.exp(self.mem_dev) * (1.08 if busy else 1.0)
        threads = self.threads_base * (1.3 if busy else 1.0) * rng.lognormvariate(0.0, 0.08)
        fds = self.fds_base * (1.2 if busy else 1.0) * rng.lognormvariate(0.0, 0.1)
        metrics = {
            "cpu_pct": round(cpu, 2),
            "memory_mb": round(memory, 1),
            "threads": float(round(threads)),
            "open_fds": float(round(fds)),
        }
        tag: Instance | None = None
        for effect in self.metric_effects:
            if effect.start_ms <= ms <= effect.end_ms:
                effect.apply(ms, metrics, rng)
                tag = effect.instance
                break
        event = Event(
            schema_version="1",
            event_id=_uuid4(rng),
            ts=_EPOCH + ms * _MS,
            agent_id=self.spec.agent_id,
            type="metric",
            agent_version=self.version,
            agent_type=self.spec.agent_type,
            metrics=metrics,
        )
        return event, tag

    # -- building blocks for scenarios -----------------------------------------------------

    def new_trace(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def llm(
        self,
        ms: int,
        trace_id: str,
        *,
        model_index: int = 0,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
    ) -> tuple[Event, int]:
        """An LLM call (usage drawn from the model unless given) and its duration in ms."""
        model = self.profile.models[model_index]
        if tokens_in is None:
            tokens_in = int(model.tokens_in.sample(self.rng))
        if tokens_out is None:
            tokens_out = max(1, int(model.tokens_out.sample(self.rng)))
        return self._llm_event(ms, trace_id, model_index, tokens_in, tokens_out)

    def secret(self, ms: int, trace_id: str, name: str) -> tuple[Event, int]:
        """A read of the secret ``name`` and its duration in ms."""
        return self._secret(ms, trace_id, name)

    def tool(self, name: str) -> tuple[int, _Tool]:
        """One of the agent's usual tools by name, with its index."""
        for index, tool in enumerate(self.tools):
            if tool.spec.name == name:
                return index, tool
        raise KeyError(name)

    def call(
        self, ms: int, trace_id: str, tool: _Tool, dest: Destination | None
    ) -> tuple[Event, int]:
        """A call of ``tool`` to ``dest`` (outcome, sizes and arguments as the tool's)."""
        return self._tool_call(ms, trace_id, tool, dest)

    def custom_call(
        self,
        ms: int,
        trace_id: str,
        spec: ToolSpec,
        dest: Destination | None,
        *,
        args: tuple[tuple[str, Any], ...] | None = None,
        reliable: bool = False,
        bytes_out: int | None = None,
        duration_ms: float | None = None,
    ) -> tuple[Event, int]:
        """A call of a tool that is not (or not used as) one of the agent's own: other
        arguments, never failing (``reliable``), or with a given size and duration."""
        if args is not None:
            spec = replace(spec, args=args)
        if reliable:
            spec = replace(spec, error_rate=0.0, denied_rate=0.0)
        event, duration = self._tool_call(ms, trace_id, _Tool(spec, []), dest)
        changes: dict[str, Any] = {}
        if bytes_out is not None:
            changes["bytes_out"] = bytes_out
        if duration_ms is not None:
            changes["duration_ms"] = round(duration_ms, 1)
            duration = int(duration_ms)
        if changes:
            event = msgspec.structs.replace(event, **changes)
        return event, duration

    def network(
        self,
        ms: int,
        trace_id: str,
        dest: Destination,
        *,
        bytes_out: int,
        bytes_in: int,
        duration_ms: float,
        status: Status = "ok",
        attributes: dict[str, Any] | None = None,
    ) -> Event:
        """A raw network event (a connection or request outside any tool)."""
        return self.event(
            ms,
            "network",
            trace_id,
            destinations=[dest],
            status=status,
            duration_ms=round(duration_ms, 1),
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            attributes=attributes,
        )

    def forced_action(self, tool_index: int, dest: Destination) -> list[tuple[int, Event]]:
        """One of the agent's usual actions, with this tool and destination."""
        return self._action(force=(tool_index, dest))

    def privileged_tools(self) -> dict[str, _Tool]:
        """The profile's privileged tools, bound to where they reach for this agent."""
        if self.privileged is None:
            profile = self.spec.profile
            tools: dict[str, _Tool] = {}
            for spec in profile.privileged_tools:
                dests: list[Destination] = []
                if spec.pool is not None:
                    if spec.pool in self.dests:
                        dests = self.dests[spec.pool]
                    else:
                        pool = profile.admin_pools[spec.pool]
                        dests = [Destination(kind=pool.kind, value=v) for v in pool.shared]
                tools[spec.name] = _Tool(spec, dests)
            self.privileged = tools
        return self.privileged

    def fresh_destination(self, kind: DestinationKind, rng: random.Random) -> Destination:
        """A destination of ``kind`` the agent has never used (freshly generated)."""
        while True:
            value = random_destination(rng, kind)
            if (kind, value) not in self.usual:
                return Destination(kind=kind, value=value)

    def compile_args(self, args: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
        """Tool arguments from templates, as the agent fills them."""
        return self.args(_compile_args(args))
