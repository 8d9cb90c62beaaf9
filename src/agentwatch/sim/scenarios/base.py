"""What a scenario is, what the simulation offers it, and the registry.

A scenario is a class with a fixed ``name``, whether it is an ``attack``, and
:meth:`Scenario.place`, which picks agents and times (with the planning random generator,
so placement is seeded), reserves them, creates the :class:`~agentwatch.sim.truth.Instance`
records and schedules what happens at run time through the :class:`ScenarioContext`:
timers, episodes, silences, watches. Registering is one decorator; the simulation never
names a scenario.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol, TypeVar

from agentwatch.schemas.events import Destination, Event
from agentwatch.sim.agent import Episode, SimAgent, Watch
from agentwatch.sim.truth import Instance

__all__ = [
    "SCENARIOS",
    "ForcedCall",
    "Scenario",
    "ScenarioContext",
    "human_bytes",
    "register",
]


class ScenarioContext(Protocol):
    """The simulation as a scenario sees it (times are epoch milliseconds)."""

    @property
    def agents(self) -> Sequence[SimAgent]: ...

    @property
    def start_ms(self) -> int: ...

    @property
    def end_ms(self) -> int:
        """End of the run (exclusive)."""

    @property
    def attack_from_ms(self) -> int:
        """Earliest time for scenarios that need agents with a baseline (after the warm-up)."""

    def span(self, nominal_s: float, share: float = 0.25) -> int:
        """``nominal_s`` in ms, at most ``share`` of the time after the warm-up."""

    def find_slot(
        self,
        rng: random.Random,
        duration_ms: int,
        *,
        agents: Sequence[SimAgent] | None = None,
        earliest: int | None = None,
        latest: int | None = None,
    ) -> tuple[SimAgent, int] | None:
        """Pick and reserve an agent (of ``agents``) and a start time with ``duration_ms``
        free before ``latest`` (default: the end); ``None`` if nothing fits."""

    def reserve(self, agents: Sequence[SimAgent], start_ms: int, end_ms: int) -> bool:
        """Reserve all of ``agents`` for the interval, or none of them if one is busy."""

    def instance(
        self,
        scenario: Scenario,
        agent: SimAgent,
        description: str,
        *,
        window: tuple[int, int] | None = None,
        requires_events: bool = True,
    ) -> Instance:
        """A new ground-truth instance of ``scenario`` at ``agent``."""

    def at(self, ms: int, action: Callable[[int], None]) -> None:
        """Call ``action(ms)`` when the run reaches ``ms``."""

    def run_episode(self, agent: SimAgent, episode: Episode, now_ms: int) -> None:
        """Have ``agent`` perform ``episode`` next (starting a session if it is idle)."""

    def silence(self, agent: SimAgent, until_ms: int) -> str | None:
        """Stop ``agent`` now (no session end, no metrics) until ``until_ms``; returns the
        session it dropped, if any."""

    def watch(self, agent: SimAgent, watch: Watch) -> None:
        """Label ``agent``'s events as ``watch`` says."""

    def restart(self, agent: SimAgent) -> None:
        """Regenerate an idle agent's next session start (after a change at its start)."""

    def wake(self, agent: SimAgent, now_ms: int) -> None:
        """An idle agent starts its next session within a few seconds (work arrives)."""


class Scenario(ABC):
    """One kind of labelled situation; :meth:`place` adds one occurrence to a run."""

    name: ClassVar[str]
    attack: ClassVar[bool]
    summary: ClassVar[str]
    # Placement order: group-wide scenarios (0) before long ones (1) before short ones (2).
    order: ClassVar[int] = 2

    @abstractmethod
    def place(self, ctx: ScenarioContext, rng: random.Random) -> bool:
        """Plan one occurrence; ``False`` if there is no room for it in this run."""


SCENARIOS: dict[str, type[Scenario]] = {}

_S = TypeVar("_S", bound=type[Scenario])


def register(cls: _S) -> _S:
    """Class decorator: add a scenario to :data:`SCENARIOS` under its ``name``."""
    if cls.name in SCENARIOS:
        raise ValueError(f"scenario {cls.name!r} is registered twice")
    SCENARIOS[cls.name] = cls
    return cls


def human_bytes(n: float) -> str:
    """``1536`` → ``1.5 kB`` (decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


class ForcedCall(Episode):
    """One ordinary action of the agent, but with the given tool and destination."""

    def __init__(self, instance: Instance, tool_index: int, dest: Destination) -> None:
        super().__init__(instance)
        self.tool_index = tool_index
        self.dest = dest

    def step(self, agent: SimAgent) -> list[tuple[int, Event]]:
        self.done = True
        return agent.forced_action(self.tool_index, self.dest)
