"""First-seen memory with a decayed discovery rate, per owner (an agent or a peer group).

Pure code. For each owner it keeps a bounded map of keys to the time they were last
used (past ``capacity`` the least recently used tenth is evicted; a key unused for
``forget_after_s`` counts as new again) and two exponentially decayed counters:
observations ``n`` and discoveries ``d`` (observations that were new).
``p_new = (d + 1) / (n + 2)`` is the
owner's current chance that an observation is new — small for a stable agent, large for
one that keeps adding places — which is what makes one novelty rarer than another.

>>> mem = NoveltyMemory(capacity=8, forget_after_s=3600, half_life=1000)
>>> mem.unseen("a", ["x"], now=0.0)
['x']
>>> mem.learn("a", ["x", "x", "x"], now=0.0)
>>> mem.unseen("a", ["x", "y"], now=10.0), round(mem.p_new("a"), 3)
(['y'], 0.4)
>>> mem.unseen("a", ["x"], now=7200.0)  # unused for longer than forget_after_s
['x']
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class _Memory:
    keys: OrderedDict[str, float] = field(default_factory=OrderedDict)
    n: float = 0.0
    d: float = 0.0


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

    def p_new(self, owner: str) -> float:
        memory = self._owners.get(owner)
        if memory is None:
            return 0.5
        return (memory.d + 1.0) / (memory.n + 2.0)

    def unseen(self, owner: str, keys: Iterable[str], now: float) -> list[str]:
        """Keys that are new for ``owner`` at ``now`` (never used, evicted, or forgotten)."""
        memory = self._owners.get(owner)
        out: list[str] = []
        for key in keys:
            last = memory.keys.get(key) if memory else None
            if (last is None or now - last > self.forget_after_s) and key not in out:
                out.append(key)
        return out

    def learn(self, owner: str, keys: Iterable[str], now: float, *, count: bool = True) -> None:
        """Record that ``owner`` used ``keys`` at ``now`` (each key one observation)."""
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
        for key in keys:
            last = store.get(key)
            if count:
                memory.n = memory.n * decay + 1.0
                memory.d *= decay
                if last is None or now - last > forget:
                    memory.d += 1.0
            if last is None or now > last:
                store[key] = now
        if len(store) > self.capacity:
            self._evict(memory)

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
        return {"keys": list(memory.keys.items()), "n": memory.n, "d": memory.d}

    def load_state(self, owner: str, state: dict[str, Any]) -> None:
        memory = _Memory(n=float(state["n"]), d=float(state["d"]))
        for key, last in state["keys"][-self.capacity :]:
            memory.keys[str(key)] = float(last)
        self._owners[owner] = memory
