"""The shared shape of the novelty detectors (new destination, new tool, new transition).

Each keeps a :class:`~agentwatch.features.novelty.NoveltyMemory` per agent and one per peer
group. An event whose keys are new for its agent is scored with the agent's discovery rate
``p_new`` (the chance that one observation is new) in the key's *context* (see
:meth:`NoveltyDetector.context`: for destinations, the tool and the kind of place), shrunk
towards the agent-wide rate while the context has few observations: a new remote for a
tool that has pushed to the same two for months is rarer than a new page for a search
tool, even when the agent discovers pages all day. ``k`` new keys at once multiply (the
``MAX_JOINT`` rarest).

A key other agents of the peer group took up recently is a fleet change rather than one
agent's deviation: with ``m`` other agents using it (distinct agents, counted from learned
and flagged uses alike, at least 1 when the group's memory knows it), the key scores
``p ** (1 / (1 + m))`` — each independent adopter weighs as much as the agent's own
history. Uses by the agent itself never count, so a key one agent alone keeps repeating
stays as rare as on its first use.

While an agent is warming up (fewer than ``warmup_events`` events) it is scored against its
peer group instead: keys its peers use are not news, keys new to the whole group are scored
with the group's rate. Keys are learned only when the engine says so (never from flagged
events) or when an analyst accepts them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from agentwatch.config import DetectSettings
from agentwatch.features.context import EventContext
from agentwatch.features.novelty import NoveltyMemory, PeerUse
from agentwatch.models.base import Finding
from agentwatch.schemas.anomaly import Contribution
from agentwatch.schemas.events import Event

MAX_JOINT = 3  # at most this many new keys multiply into one event's probability
MAX_PEER_KEYS = 20_000  # group keys whose adopters are counted (LRU, fleet-wide)


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
        self.peers = PeerUse(MAX_PEER_KEYS, settings.novelty_forget_after_s)
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

    def context(self, key: str, event: Event, ctx: EventContext) -> str | None:
        """The context whose own discovery rate scores ``key`` (None: the agent's)."""
        return None

    def _contexts(self, keys: list[str], event: Event, ctx: EventContext) -> list[str | None]:
        return [self.context(k, event, ctx) for k in keys]

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
        if ctx.agent_events < self.warmup:
            new = self.groups_memory.unseen(ctx.peer_group, new, now)
            if not new:
                return None
            p_group = self.groups_memory.p_new(ctx.peer_group)
            known = self.groups_memory.known(ctx.peer_group)
            rate = f"{p_group:.2%} of its uses are new"
            return self._finding(
                event,
                new,
                [p_group] * len(new),
                f"{known} known to peer group {ctx.peer_group!r} (agent warming up), {rate}",
            )
        memory = self.agents_memory
        p_agent = memory.p_new(ctx.agent_id)
        scored: list[tuple[float, float, int, str | None]] = []  # p, p in context, peers, ctx
        for key in new:
            context = self.context(key, event, ctx)
            p_key = memory.p_new(ctx.agent_id, context)
            others = self.peers.others(ctx.peer_group, key, ctx.agent_id, now)
            if not others and not self.groups_memory.unseen(ctx.peer_group, [key], now):
                others = 1  # the group's memory knows it: at least one peer used it
            scored.append((p_key ** (1.0 / (1.0 + others)), p_key, others, context))
        best = min(range(len(new)), key=lambda i: scored[i][0])
        _, p_best, others, context = scored[best]
        if context is not None and memory.context_observations(ctx.agent_id, context) >= 1:
            rate = f"{p_best:.2%} of its {context} uses are new, {p_agent:.2%} of all its uses"
        else:
            rate = f"{p_agent:.2%} of uses are new"
        whose = f"{memory.known(ctx.agent_id)} known to this agent, {rate}"
        if others:
            whose += (
                f"; {others} other agent{'s' if others > 1 else ''} of peer group "
                f"{ctx.peer_group!r} use{'' if others > 1 else 's'} "
                f"{'it' if len(new) == 1 else 'some'} (a fleet change weighs less)"
            )
        return self._finding(event, new, [item[0] for item in scored], whose, best)

    def _finding(
        self, event: Event, new: list[str], ps: list[float], whose: str, first: int = 0
    ) -> Finding:
        p = 1.0
        for p_key in sorted(ps)[:MAX_JOINT]:
            p *= p_key
        if first:  # the rarest key first in the explanation
            new = [new[first], *new[:first], *new[first + 1 :]]
            ps = [ps[first], *ps[:first], *ps[first + 1 :]]
        listed = ", ".join(self.label(k) for k in new[:5]) + (
            f" and {len(new) - 5} more" if len(new) > 5 else ""
        )
        noun = self.noun[0] if len(new) == 1 else self.noun[1]
        explanation = f"{self.verb()} {len(new)} new {noun} ({listed}); typical 0 new — {whose}"
        contributions = tuple(
            Contribution(
                feature=f"{self.family}",
                value=self.label(k),
                typical=whose.split(",", 1)[0],
                unusual=f"first use; p(new)={p_key:.2g}",
            )
            for k, p_key in zip(new[:10], ps[:10], strict=True)
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
            for key in self.agents_memory.unseen(ctx.agent_id, keys, now):
                self.peers.add(ctx.peer_group, key, ctx.agent_id, now)  # a new adopter
            self.agents_memory.learn(
                ctx.agent_id, keys, now, contexts=self._contexts(keys, event, ctx)
            )
            self.groups_memory.learn(ctx.peer_group, keys, now)
            if self.parts is not None:
                self.parts.learn(ctx.agent_id, [self.part(k) for k in keys], now, count=False)

    def witness(self, event: Event, ctx: EventContext) -> None:
        """A flagged event: not learned, but its new keys count as adopted by this agent
        (for the peers' scores) and towards the group's consensus."""
        keys = self.keys(event, ctx)
        if not keys:
            return
        now = event.ts.timestamp()
        for key in self.agents_memory.unseen(ctx.agent_id, keys, now):
            users = self.peers.add(ctx.peer_group, key, ctx.agent_id, now)
            if 0 < self.consensus <= users and self.groups_memory.unseen(
                ctx.peer_group, [key], now
            ):
                self.groups_memory.learn(ctx.peer_group, [key], now)

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
