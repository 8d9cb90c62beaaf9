"""First-seen memory with decayed discovery rates, per owner (an agent or a peer group).

Pure code. For each owner it keeps a bounded map of keys to the time they were last
used (past ``capacity`` the least recently used tenth is evicted; a key unused for
``forget_after_s`` counts as new again) and two exponentially decayed counters:
observations ``n`` and discoveries ``d`` (observations that were new).
``p_new = (d + 1) / (n + 2)`` is the
owner's current chance that an observation is new — small for a stable agent, large for
one that keeps adding places — which is what makes one novelty rarer than another.

**Contexts.** An agent that finds new URLs in its searches all day and has pushed to the
same two remotes for months should not find a third remote ordinary. Observations may
carry a context (a tool, a kind of destination); each context keeps its own decayed
``n_c`` and ``d_c`` (at most ``MAX_CONTEXTS`` per owner, keyed by a 32-bit hash, least
recently used evicted; a context's first observation is not counted: it is new by
construction, whatever the context's rate), and its rate is shrunk towards the owner's:
a Beta prior with the owner's rate as its mean and the weight of one discovery (one new
observation in ``1 / p_new``)::

    p_new(context) = (d_c + 1) / (n_c + 1 / p_new)

A context seen far fewer than ``1 / p_new`` times reads as the owner; one seen far more
often as itself.

>>> mem = NoveltyMemory(capacity=8, forget_after_s=3600, half_life=1000)
>>> mem.unseen("a", ["x"], now=0.0)
['x']
>>> mem.learn("a", ["x", "x", "x"], now=0.0)
>>> mem.unseen("a", ["x", "y"], now=10.0), round(mem.p_new("a"), 3)
(['y'], 0.4)
>>> mem.unseen("a", ["x"], now=7200.0)  # unused for longer than forget_after_s
['x']
>>> for i in range(50):  # a search that finds new pages, a push to one remote
...     mem.learn("b", [f"page{i}"], now=i, contexts=["search"])
...     mem.learn("b", ["remote"], now=i, contexts=["push"])
>>> round(mem.p_new("b"), 2), round(mem.p_new("b", "push"), 3), round(mem.p_new("b", "new"), 2)
(0.51, 0.02, 0.51)

:class:`PeerUse` counts the distinct agents of a peer group that used a key recently: a
key several peers took up is a fleet change, not one agent's deviation.

>>> peers = PeerUse(capacity=100, forget_after_s=3600)
>>> for agent in ("a", "b", "c"):
...     users = peers.add("bots", "mail/new-pool", agent, now=0.0)
>>> users, peers.others("bots", "mail/new-pool", "a", 10.0), peers.others("bots", "x", "a", 10.0)
(3, 2, 0)
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_CONTEXTS = 24  # per owner: ≈ 25 bytes each in a msgpack snapshot
MAX_PEERS = 8  # distinct agents remembered per group key (more adds no evidence)


def context_id(context: str) -> int:
    """The 32-bit id a context is kept under."""
    return zlib.crc32(context.encode())


@dataclass(slots=True)
class _Memory:
    keys: OrderedDict[str, float] = field(default_factory=OrderedDict)
    n: float = 0.0
    d: float = 0.0
    contexts: OrderedDict[int, list[float]] = field(default_factory=OrderedDict)  # [n, d]


class NoveltyMemory:
    def __init__(self, capacity: int, forget_after_s: float, half_life: float) -> None:
        self.capacity = capacity
        self.forget_after_s = forget_after_s
        self._decay = math.exp(-math.log(2) / half_life) if half_life > 0 else 1.0
        self._owners: dict[str, _Memory] = {}

    def __len__(self) -> int:
        return len(self._owners)

    def _get(self, owner: str) -> _Memory:
        memory = self._owners.get(owner)
        if memory is None:
            memory = self._owners[owner] = _Memory()
        return memory

    def known(self, owner: str) -> int:
        memory = self._owners.get(owner)
        return len(memory.keys) if memory else 0

    def observations(self, owner: str) -> float:
        memory = self._owners.get(owner)
        return memory.n if memory else 0.0

    def p_new(self, owner: str, context: str | None = None) -> float:
        """The chance that an observation of ``owner`` (in ``context``) is new."""
        memory = self._owners.get(owner)
        if memory is None:
            return 0.5
        p = (memory.d + 1.0) / (memory.n + 2.0)
        if context is None:
            return p
        stat = memory.contexts.get(context_id(context))
        if stat is None:
            return p
        return (stat[1] + 1.0) / (stat[0] + 1.0 / p)

    def context_observations(self, owner: str, context: str) -> float:
        memory = self._owners.get(owner)
        stat = memory.contexts.get(context_id(context)) if memory else None
        return stat[0] if stat else 0.0

    def unseen(self, owner: str, keys: Iterable[str], now: float) -> list[str]:
        """Keys that are new for ``owner`` at ``now`` (never used, evicted, or forgotten)."""
        memory = self._owners.get(owner)
        out: list[str] = []
        for key in keys:
            last = memory.keys.get(key) if memory else None
            if (last is None or now - last > self.forget_after_s) and key not in out:
                out.append(key)
        return out

    def learn(
        self,
        owner: str,
        keys: Iterable[str],
        now: float,
        *,
        count: bool = True,
        contexts: Sequence[str | None] | None = None,
    ) -> None:
        """Record that ``owner`` used ``keys`` at ``now`` (each key one observation, in the
        context of the same position of ``contexts``, if given)."""
        memory = self._owners.get(owner)
        if memory is None:
            memory = self._get(owner)
        store = memory.keys
        if not count:  # remembering only (no discovery statistics)
            for key in keys:
                last = store.get(key)
                if last is None or now > last:
                    store[key] = now
            if len(store) > self.capacity:
                self._evict(memory)
            return
        forget = self.forget_after_s
        decay = self._decay
        for i, key in enumerate(keys):
            last = store.get(key)
            new = last is None or now - last > forget
            memory.n = memory.n * decay + 1.0
            memory.d = memory.d * decay + (1.0 if new else 0.0)
            context = contexts[i] if contexts is not None and i < len(contexts) else None
            if context is not None:
                self._count_context(memory, context, new)
            if last is None or now > last:
                store[key] = now
        if len(store) > self.capacity:
            self._evict(memory)

    def _count_context(self, memory: _Memory, context: str, new: bool) -> None:
        cid = context_id(context)
        table = memory.contexts
        stat = table.get(cid)
        if stat is None:  # a context's first observation is new by construction (nothing
            # was known in it yet): it says nothing about the context's rate, and is not counted
            table[cid] = [0.0, 0.0]
            while len(table) > MAX_CONTEXTS:
                table.popitem(last=False)
            return
        if len(table) > 1:
            table.move_to_end(cid)
        decay = self._decay
        stat[0] = stat[0] * decay + 1.0
        stat[1] = stat[1] * decay + (1.0 if new else 0.0)

    def _evict(self, memory: _Memory) -> None:
        """Drop the least recently used tenth (amortised: not on every insert)."""
        keep = self.capacity - max(1, self.capacity // 10)
        ranked = sorted(memory.keys.items(), key=lambda item: item[1], reverse=True)[:keep]
        memory.keys = OrderedDict(sorted(ranked, key=lambda item: item[1]))

    def forget(self, owner: str) -> None:
        """Drop an owner's memory."""
        self._owners.pop(owner, None)

    def state_of(self, owner: str) -> dict[str, Any] | None:
        memory = self._owners.get(owner)
        if memory is None:
            return None
        state: dict[str, Any] = {"keys": list(memory.keys.items()), "n": memory.n, "d": memory.d}
        if memory.contexts:  # exact, as n and d: a restore continues where it left off
            state["c"] = [[c, v[0], v[1]] for c, v in memory.contexts.items()]
        return state

    def load_state(self, owner: str, state: dict[str, Any]) -> None:
        """Restore an owner; snapshots taken before contexts were kept have none (every
        context then starts from the owner's rate)."""
        memory = _Memory(n=float(state["n"]), d=float(state["d"]))
        for key, last in state["keys"][-self.capacity :]:
            memory.keys[str(key)] = float(last)
        for cid, n, d in state.get("c", ())[-MAX_CONTEXTS:]:
            memory.contexts[int(cid)] = [float(n), float(d)]
        self._owners[owner] = memory


class PeerUse:
    """Distinct agents of a peer group that used a key recently, bounded.

    Per ``(group, key)`` at most ``MAX_PEERS`` agents with the time each last used it;
    at most ``capacity`` group keys, least recently used dropped. A use older than
    ``forget_after_s`` no longer counts.
    """

    def __init__(self, capacity: int, forget_after_s: float) -> None:
        self.capacity = capacity
        self.forget_after_s = forget_after_s
        self._uses: OrderedDict[tuple[str, str], dict[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._uses)

    def add(self, group: str, key: str, agent: str, now: float) -> int:
        """Record a use; returns the distinct agents (this one included) that use the key."""
        slot = (group, key)
        agents = self._uses.get(slot)
        if agents is None:
            agents = self._uses[slot] = {}
            while len(self._uses) > self.capacity:
                self._uses.popitem(last=False)
        else:
            self._uses.move_to_end(slot)
        if now >= agents.get(agent, -math.inf):
            agents[agent] = now
        if len(agents) > MAX_PEERS:
            del agents[min(agents, key=agents.__getitem__)]
        return sum(1 for last in agents.values() if now - last <= self.forget_after_s)

    def others(self, group: str, key: str, agent: str, now: float) -> int:
        """Agents of ``group`` other than ``agent`` that used ``key`` recently."""
        agents = self._uses.get((group, key))
        if not agents:
            return 0
        forget = self.forget_after_s
        return sum(1 for a, last in agents.items() if a != agent and now - last <= forget)
