"""The scenario simulation: a seeded fleet over a simulated period, with labelled scenarios.

>>> config = SimConfig(agents=8, hours=1, seed=3, scenarios={"credential_theft": 1})
>>> sim = Simulation(config)
>>> events = list(sim)
>>> [r.scenario for r in sim.truth()]
['credential_theft']
>>> ids = {e.event_id for e in events}
>>> all(i in ids for i in sim.truth()[0].event_ids)
True

Every agent is the demo fleet's agent (:mod:`agentwatch.sim.fleet`) with scenario hooks
(:mod:`agentwatch.sim.agent`); scenarios (:mod:`agentwatch.sim.scenarios`) are placed
before the run with a random generator seeded from the seed, so the same configuration
always gives the same events, byte for byte, and the same ground truth.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from heapq import heapify, heappop, heappush, heapreplace
from itertools import count

from agentwatch.schemas.events import Event
from agentwatch.sim.agent import Episode, SimAgent, Watch
from agentwatch.sim.fleet import _METRIC_EVERY_MS, AgentSpec, _to_ms, build_agents
from agentwatch.sim.profiles import PROFILE_BY_GROUP, PROFILES, Profile
from agentwatch.sim.scenarios import SCENARIOS, Scenario
from agentwatch.sim.truth import Instance, TruthRecord

__all__ = ["DEFAULT_START", "SimConfig", "Simulation", "generate", "simulate"]

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, 00:00 UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMER = -1
_MARGIN_MS = 60_000  # kept free around a reservation
_HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate.

    ``scenarios`` maps scenario names to placements (see
    :func:`agentwatch.sim.scenarios.select`). ``warmup_hours`` is the time before any
    scenario that needs a baseline may start (default: 20 % of the run, at most 2 h).
    ``groups`` restricts the fleet to some peer groups (default: all four).
    """

    agents: int = 50
    hours: float = 24.0
    seed: int = 1
    start: datetime = DEFAULT_START
    scenarios: Mapping[str, int] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    warmup_hours: float | None = None

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValueError("agents must be >= 1")
        if not self.hours > 0:
            raise ValueError("hours must be > 0")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")
        if self.warmup_hours is not None and not 0 <= self.warmup_hours < self.hours:
            raise ValueError("warmup_hours must be >= 0 and shorter than the run")
        unknown = sorted(set(self.scenarios) - set(SCENARIOS))
        if unknown:
            raise ValueError(f"unknown scenarios: {', '.join(unknown)}")
        if any(n < 0 for n in self.scenarios.values()):
            raise ValueError("scenario counts must be >= 0")
        bad = sorted(set(self.groups) - set(PROFILE_BY_GROUP))
        if bad:
            known = ", ".join(sorted(PROFILE_BY_GROUP))
            raise ValueError(f"unknown groups: {', '.join(bad)} (known: {known})")

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.hours)

    @property
    def warmup(self) -> timedelta:
        hours = self.warmup_hours if self.warmup_hours is not None else min(2.0, self.hours / 5)
        return timedelta(hours=hours)


class Simulation:
    """A run of :class:`SimConfig`: iterate it (or call :meth:`events_until`) for events in
    time order; :meth:`truth` gives the ground truth of what was emitted so far (complete
    once the run is done)."""

    def __init__(self, config: SimConfig, profiles: Sequence[Profile] | None = None) -> None:
        if profiles is None:
            profiles = [PROFILE_BY_GROUP[g] for g in config.groups] or list(PROFILES)
        if not profiles:
            raise ValueError("at least one profile is needed")
        self.config = config
        self.start = config.start
        self.end = config.end
        self._start_ms = _to_ms(config.start)
        self._end_ms = _to_ms(config.end)
        self._attack_from_ms = min(_to_ms(config.start + config.warmup), self._end_ms - 1)
        self._last_ms = self._start_ms
        self.emitted = 0
        self._seq = count()
        self._heap: list[tuple[int, int, int]] = []
        self._timers: dict[int, Callable[[int], None]] = {}
        self._agents = build_agents(SimAgent, config.agents, config.seed, profiles)
        for i, agent in enumerate(self._agents):
            agent.index = i
            agent.action_ms = self._start_ms + agent.rng.randint(50, 8000)
            self._refill(agent, self._start_ms)
            agent.sched_seq = next(self._seq)
            self._heap.append((agent.pending[0][0], agent.sched_seq, 2 * i))
            metric_ms = self._start_ms + agent.rng.randint(1000, _METRIC_EVERY_MS)
            self._heap.append((metric_ms, next(self._seq), 2 * i + 1))
        heapify(self._heap)
        self._busy: list[list[tuple[int, int]]] = [[] for _ in self._agents]
        self._instances: list[Instance] = []
        self.skipped: list[str] = []
        self._plan(random.Random(f"agentwatch-sim:{config.seed}:plan"))

    # -- what scenarios see (ScenarioContext) ----------------------------------------------

    @property
    def agents(self) -> Sequence[SimAgent]:
        return self._agents

    @property
    def start_ms(self) -> int:
        return self._start_ms

    @property
    def end_ms(self) -> int:
        return self._end_ms

    @property
    def attack_from_ms(self) -> int:
        return self._attack_from_ms

    def span(self, nominal_s: float, share: float = 0.25) -> int:
        return max(1000, int(min(nominal_s * 1000, share * (self._end_ms - self._attack_from_ms))))

    def find_slot(
        self,
        rng: random.Random,
        duration_ms: int,
        *,
        agents: Sequence[SimAgent] | None = None,
        earliest: int | None = None,
        latest: int | None = None,
    ) -> tuple[SimAgent, int] | None:
        pool = list(agents if agents is not None else self._agents)
        lo = max(self._attack_from_ms if earliest is None else earliest, self._start_ms)
        hi = (self._end_ms if latest is None else min(latest, self._end_ms)) - duration_ms
        if not pool or hi < lo:
            return None
        for _ in range(300):
            agent = rng.choice(pool)
            t = rng.randint(lo, hi)
            if self.reserve([agent], t, t + duration_ms):
                return agent, t
        return None

    def reserve(self, agents: Sequence[SimAgent], start_ms: int, end_ms: int) -> bool:
        for agent in agents:
            for s, e in self._busy[agent.index]:
                if s < end_ms + _MARGIN_MS and start_ms - _MARGIN_MS < e:
                    return False
        for agent in agents:
            self._busy[agent.index].append((start_ms, end_ms))
        return True

    def instance(
        self,
        scenario: Scenario,
        agent: SimAgent,
        description: str,
        *,
        window: tuple[int, int] | None = None,
        requires_events: bool = True,
    ) -> Instance:
        created = Instance(
            scenario.name,
            scenario.attack,
            agent.spec.agent_id,
            agent.spec.agent_type,
            description,
            order=len(self._instances),
            window=window,
            requires_events=requires_events,
        )
        self._instances.append(created)
        return created

    def at(self, ms: int, action: Callable[[int], None]) -> None:
        ms = max(ms, self._last_ms + 1)
        seq = next(self._seq)
        self._timers[seq] = action
        heappush(self._heap, (ms, seq, _TIMER))

    def run_episode(self, agent: SimAgent, episode: Episode, now_ms: int) -> None:
        agent.episodes.append(episode)
        if episode.force_session:
            self._wake(agent, now_ms)

    def silence(self, agent: SimAgent, until_ms: int) -> str | None:
        dropped: str | None = None
        if agent.pending and agent.pending[0][1].type != "session_start":
            dropped = agent.pending[0][1].session_id
        agent.pending.clear()
        agent.in_session = False
        agent.session_id = None
        agent.episode = None
        agent.episodes.clear()
        agent.silent_until = until_ms
        agent.action_ms = until_ms + agent.rng.randint(1000, 60_000)
        self._reschedule(agent, until_ms)
        return dropped

    def watch(self, agent: SimAgent, watch: Watch) -> None:
        agent.watches.append(watch)

    def restart(self, agent: SimAgent) -> None:
        if agent.pending and agent.pending[0][1].type == "session_start":
            ms = agent.pending[0][0]
            agent.pending.clear()
            agent.in_session = False
            agent.session_id = None
            agent.action_ms = ms
            self._reschedule(agent, self._last_ms + 1)

    def wake(self, agent: SimAgent, now_ms: int) -> None:
        self._wake(agent, now_ms)

    # -- planning --------------------------------------------------------------------------

    def _plan(self, rng: random.Random) -> None:
        wanted = {name: n for name, n in self.config.scenarios.items() if n > 0}
        scenarios = sorted((SCENARIOS[name]() for name in wanted), key=lambda s: (s.order, s.name))
        rounds = max(wanted.values(), default=0)
        for k in range(rounds):
            for scenario in scenarios:
                if k < wanted[scenario.name] and not scenario.place(self, rng):
                    self.skipped.append(f"{scenario.name} #{k + 1}: no room in this run")

    # -- scheduling ------------------------------------------------------------------------

    def _refill(self, agent: SimAgent, now_ms: int) -> None:
        agent.now_ms = now_ms
        events = agent.step()
        tag = agent.step_tag
        pending = agent.pending
        for ms, event in events:
            pending.append((ms, event, tag))

    def _reschedule(self, agent: SimAgent, now_ms: int) -> None:
        """Queue an agent whose pending events were dropped (its old heap entry goes stale)."""
        self._refill(agent, now_ms)
        agent.sched_seq = next(self._seq)
        heappush(self._heap, (agent.pending[0][0], agent.sched_seq, 2 * agent.index))

    def _wake(self, agent: SimAgent, now_ms: int) -> None:
        """A task arrives: an idle agent starts its next session within a few seconds."""
        soon = now_ms + agent.rng.randint(200, 3000)
        first_ms, first, _ = agent.pending[0]
        if first.type == "session_start" and first_ms > soon and len(agent.pending) == 1:
            agent.pending.clear()
            agent.in_session = False
            agent.session_id = None
            agent.action_ms = soon
            self._reschedule(agent, now_ms)
        elif not agent.in_session:  # its session ends with the pending events
            last_ms = agent.pending[-1][0]
            agent.action_ms = min(agent.action_ms, max(last_ms, now_ms) + soon - now_ms)

    # -- driving ---------------------------------------------------------------------------

    @property
    def last_t(self) -> datetime:
        """The end of the last interval returned (``start`` before the first call)."""
        return _EPOCH + timedelta(milliseconds=self._last_ms)

    @property
    def done(self) -> bool:
        return self._last_ms >= self._end_ms - 1

    @property
    def specs(self) -> list[AgentSpec]:
        return [a.spec for a in self._agents]

    def events_until(self, t: datetime) -> list[Event]:
        """All events with ``last_t < ts <= t`` (and before the end) in time order."""
        limit = min(_to_ms(t), self._end_ms - 1)
        if limit <= self._last_ms:
            return []
        out: list[Event] = []
        append = out.append
        heap = self._heap
        agents = self._agents
        seq = self._seq
        timers = self._timers
        while heap and heap[0][0] <= limit:
            ms, seq_no, source = heap[0]
            if source < 0:
                heappop(heap)
                self._last_ms = ms - 1  # timers may schedule from here on
                timers.pop(seq_no)(ms)
                continue
            agent = agents[source >> 1]
            if source & 1:
                if ms < agent.silent_until:
                    again = agent.silent_until + agent.rng.randint(1000, 30_000)
                    heapreplace(heap, (again, next(seq), source))
                    continue
                event, tag = agent.metric_event(ms)
                append(event)
                if tag is not None:
                    tag.record(ms, event)
                if agent.watches:
                    self._watch(agent, ms, event)
                heapreplace(heap, (ms + agent.rng.randint(28_000, 32_000), next(seq), source))
                continue
            if seq_no != agent.sched_seq:  # superseded by a reschedule
                heappop(heap)
                continue
            _, event, tag = agent.pending.popleft()
            append(event)
            if tag is not None:
                tag.record(ms, event)
            if agent.watches:
                self._watch(agent, ms, event)
            if not agent.pending:
                self._refill(agent, ms)
            agent.sched_seq = next(seq)
            heapreplace(heap, (agent.pending[0][0], agent.sched_seq, source))
        self._last_ms = limit
        self.emitted += len(out)
        return out

    @staticmethod
    def _watch(agent: SimAgent, ms: int, event: Event) -> None:
        for watch in agent.watches:
            if watch.start_ms <= ms <= watch.end_ms and watch.accept(event):
                watch.instance.record(ms, event)

    def advance(self, seconds: float) -> list[Event]:
        return self.events_until(self.last_t + timedelta(seconds=seconds))

    def __iter__(self) -> Iterator[Event]:
        while not self.done:
            yield from self.advance(600)

    # -- ground truth ----------------------------------------------------------------------

    def truth(self) -> list[TruthRecord]:
        """One record per scenario instance that happened, ordered by start (ids follow)."""
        end = self._last_ms
        happened: list[tuple[int, int, Instance]] = []
        for inst in self._instances:
            bounds = inst.bounds(end)
            if bounds is not None and inst.happened(end):
                happened.append((bounds[0], inst.order, inst))
        happened.sort(key=lambda x: (x[0], x[1]))
        return [
            inst.to_record(f"s{n:04d}", _EPOCH, end) for n, (_, _, inst) in enumerate(happened, 1)
        ]


def simulate(config: SimConfig) -> Simulation:
    """A simulation of ``config``: iterate it for the events, then call ``truth()``."""
    return Simulation(config)


def generate(config: SimConfig) -> tuple[list[Event], list[TruthRecord]]:
    """All events of ``config`` and their ground truth, in memory."""
    sim = Simulation(config)
    events = list(sim)
    return events, sim.truth()
