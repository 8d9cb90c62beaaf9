"""The shared shape of the novelty detectors (new destination, new tool, new transition).

Each keeps a :class:`~agentwatch.features.novelty.NoveltyMemory` per agent and one per peer
group. An event whose keys are new for its agent is scored with the agent's own discovery
rate ``p_new`` (the chance that one observation is new); ``k`` new keys at once score as
``p_new ** k``. While an agent is warming up (fewer than ``warmup_events`` events) it is
scored against its peer group instead: keys its peers use are not news, keys new to the
whole group are scored with the group's rate. Keys are learned only when the engine says
so (never from flagged events) or when an analyst accepts them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from agentwatch.config import DetectSettings
from agentwatch.features.context import EventContext
from agentwatch.features.novelty import NoveltyMemory
from agentwatch.models.base import Finding
from agentwatch.schemas.anomaly import Contribution
from agentwatch.schemas.events import Event

MAX_JOINT = 3  # at most this many new keys multiply into one event's probability
MAX_CANDIDATES = 100_000  # group keys waiting for peer consensus (LRU)


class NoveltyDetector:
    """Base class: subclasses set ``name``, ``family``, ``noun`` and :meth:`keys`."""

    name = "novelty"
    family = "key"
    noun = ("key", "keys")
    # Keys are ``whole>part``: when set, a key whose part the agent never used is learned
    # but not scored — the new part is another detector's finding (a new tool, a new
    # destination), and one novelty must not count twice.
    needs_known_part = False

    def __init__(self, settings: DetectSettings) -> None:
        self.warmup = settings.warmup_events
        self.agents_memory = NoveltyMemory(
            settings.novelty_capacity, settings.novelty_forget_after_s, settings.novelty_half_life
        )
        self.groups_memory = NoveltyMemory(
            settings.novelty_capacity * 4,
            settings.novelty_forget_after_s,
            settings.novelty_half_life * 4,
        )
        self.consensus = settings.peer_consensus_agents
        self._candidates: OrderedDict[tuple[str, str], set[str]] = OrderedDict()
        self.parts = (
            NoveltyMemory(
                settings.novelty_capacity,
                settings.novelty_forget_after_s,
                settings.novelty_half_life,
            )
            if self.needs_known_part
            else None
        )

    # -- what a subclass defines ----------------------------------------------------------

    def keys(self, event: Event, ctx: EventContext) -> list[str]:
        raise NotImplementedError

    @staticmethod
    def part(key: str) -> str:
        """The part of a ``whole>part`` key that must be known for the key to be scored."""
        return key.partition(">")[2]

    def scored_keys(self, event: Event, ctx: EventContext) -> list[str]:
        """The keys that are scored: all of :meth:`keys` but those whose part is new."""
        keys = self.keys(event, ctx)
        if self.parts is None or not keys:
            return keys
        parts = [self.part(k) for k in keys]
        unknown = set(self.parts.unseen(ctx.agent_id, parts, event.ts.timestamp()))
        if not unknown:
            return keys
        return [k for k, part in zip(keys, parts, strict=True) if part not in unknown]

    def label(self, key: str) -> str:
        """How a key reads in an explanation."""
        return key

    def verb(self) -> str:
        return "used"

    # -- detector protocol ----------------------------------------------------------------

    def agents(self) -> int:
        return len(self.agents_memory)

    def score(self, event: Event, ctx: EventContext) -> Finding | None:
        keys = self.scored_keys(event, ctx)
        if not keys:
            return None
        now = event.ts.timestamp()
        new = self.agents_memory.unseen(ctx.agent_id, keys, now)
        if not new:
            return None
        warming = ctx.agent_events < self.warmup
        if warming:
            new = self.groups_memory.unseen(ctx.peer_group, new, now)
            if not new:
                return None
            p_one = self.groups_memory.p_new(ctx.peer_group)
            known = self.groups_memory.known(ctx.peer_group)
            whose = f"peer group {ctx.peer_group!r} (agent warming up)"
        else:
            p_one = self.agents_memory.p_new(ctx.agent_id)
            known = self.agents_memory.known(ctx.agent_id)
            whose = "this agent"
        p = p_one ** min(len(new), MAX_JOINT)
        peers_use = not warming and not self.groups_memory.unseen(ctx.peer_group, new, now)
        if peers_use:
            p = p**0.5
            whose += " (its peer group uses them)"
        listed = ", ".join(self.label(k) for k in new[:5]) + (
            f" and {len(new) - 5} more" if len(new) > 5 else ""
        )
        noun = self.noun[0] if len(new) == 1 else self.noun[1]
        explanation = (
            f"{self.verb()} {len(new)} new {noun} ({listed}); typical 0 new — "
            f"{known} known to {whose}, {p_one:.2%} of uses are new"
        )
        contributions = tuple(
            Contribution(
                feature=f"{self.family}",
                value=self.label(k),
                typical=f"{known} known {self.noun[1]}",
                unusual=f"first use; p(new)={p_one:.2g}",
            )
            for k in new[:10]
        )
        return Finding(
            detector=self.name,
            p=p,
            explanation=explanation,
            contributions=contributions,
            event_ids=(event.event_id,),
            keys=tuple(f"{self.family}/{k}" for k in new),
        )

    def learn(self, event: Event, ctx: EventContext) -> None:
        keys = self.keys(event, ctx)
        if keys:
            now = event.ts.timestamp()
            self.agents_memory.learn(ctx.agent_id, keys, now)
            self.groups_memory.learn(ctx.peer_group, keys, now)
            if self.parts is not None:
                self.parts.learn(ctx.agent_id, [self.part(k) for k in keys], now, count=False)

    def witness(self, event: Event, ctx: EventContext) -> None:
        """A flagged event: not learned, but counted towards peer consensus."""
        keys = self.keys(event, ctx)
        if not keys or self.consensus <= 0:
            return
        now = event.ts.timestamp()
        for key in self.groups_memory.unseen(ctx.peer_group, keys, now):
            slot = (ctx.peer_group, key)
            agents = self._candidates.setdefault(slot, set())
            agents.add(ctx.agent_id)
            self._candidates.move_to_end(slot)
            if len(agents) >= self.consensus:
                self.groups_memory.learn(ctx.peer_group, [key], now)
                del self._candidates[slot]
        while len(self._candidates) > MAX_CANDIDATES:
            self._candidates.popitem(last=False)

    def accept(self, agent_id: str, keys: Iterable[str]) -> None:
        prefix = f"{self.family}/"
        mine = [k[len(prefix) :] for k in keys if k.startswith(prefix)]
        if mine:
            now = time.time()
            self.agents_memory.learn(agent_id, mine, now, count=False)
            if self.parts is not None:
                self.parts.learn(agent_id, [self.part(k) for k in mine], now, count=False)

    def forget_agent(self, agent_id: str) -> None:
        """Drop everything this detector holds about the agent (a revert to a snapshot
        taken before it had any)."""
        self.agents_memory.forget(agent_id)
        if self.parts is not None:
            self.parts.forget(agent_id)

    def state_of(self, agent_id: str) -> Any:
        """The agent's memory as plain data: ``{"keys": [[key, last used], …], "n", "d"}``,
        or ``{"memory": …, "parts": …}`` when parts are kept."""
        memory = self.agents_memory.state_of(agent_id)
        if memory is None or self.parts is None:
            return memory
        return {"memory": memory, "parts": self.parts.state_of(agent_id)}

    def load_state(self, agent_id: str, state: Any) -> None:
        if not state:
            return
        memory = state.get("memory", state)  # a snapshot without parts is the memory itself
        self.agents_memory.load_state(agent_id, memory)
        if self.parts is None:
            return
        if state.get("parts"):
            self.parts.load_state(agent_id, state["parts"])
        else:  # rebuilt from the keys
            for key, last in memory["keys"]:
                self.parts.learn(agent_id, [self.part(str(key))], float(last), count=False)
