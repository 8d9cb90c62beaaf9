"""Per-agent size baselines by slot: what the size detectors share.

A slot is a named place sizes go through (an argument ``tool.argument``, a tool's
payload); each keeps ``[location, variance, n]`` of ``log(1 + size)`` (see
:mod:`agentwatch.models.robust`), keyed by a 32-bit hash of the slot name, at most
``max_slots`` per agent, least recently used evicted. Analyst feedback widens a slot;
snapshots store it in fixed point.

>>> store = SizeSlots(max_slots=2, min_scale=0.25)
>>> for name in ("a", "b", "c"):
...     _ = store.slot("agent", slot_id(name), 1.0, 0.0)
>>> store.get("agent", slot_id("a")) is None, store.get("agent", slot_id("c"))  # a evicted
(True, [1.0, 0.0, 0.0])
>>> restored = SizeSlots(2, 0.25)
>>> restored.load_state("agent", store.state_of("agent"))
>>> restored.state_of("agent") == store.state_of("agent")
True
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

__all__ = ["SizeSlots", "slot_id"]


def slot_id(slot: str) -> int:
    return zlib.crc32(slot.encode())


class SizeSlots:
    """The slots of every agent: lookup, creation with eviction, feedback and snapshots."""

    def __init__(self, max_slots: int, min_scale: float) -> None:
        self.max_slots = max_slots
        self.min_scale = min_scale
        self._agents: dict[str, OrderedDict[int, list[float]]] = {}

    def __len__(self) -> int:
        return len(self._agents)

    def of(self, agent_id: str) -> OrderedDict[int, list[float]] | None:
        return self._agents.get(agent_id)

    def get(self, agent_id: str, sid: int) -> list[float] | None:
        slots = self._agents.get(agent_id)
        return slots.get(sid) if slots else None

    def slot(self, agent_id: str, sid: int, y: float, n0: float) -> tuple[list[float], bool]:
        """The agent's slot ``sid``, made most recently used; a new one starts at
        ``[y, 0, n0]`` (the second value says whether it is new)."""
        slots = self._agents.get(agent_id)
        if slots is None:
            slots = self._agents[agent_id] = OrderedDict()
        stat = slots.get(sid)
        if stat is None:
            stat = slots[sid] = [y, 0.0, n0]
            while len(slots) > self.max_slots:
                slots.popitem(last=False)
            return stat, True
        if len(slots) > 1:
            slots.move_to_end(sid)
        return stat, False

    def widen(self, agent_id: str, keys: Iterable[str], prefix: str) -> None:
        """Analyst feedback: the slots named by ``<prefix><slot>`` keys are benign."""
        slots = self._agents.get(agent_id)
        if not slots:
            return
        for key in keys:
            if key.startswith(prefix):
                stat = slots.get(slot_id(key[len(prefix) :]))
                if stat is not None:
                    stat[1] = max(stat[1], self.min_scale**2) * 4.0

    def forget(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)

    def state_of(self, agent_id: str) -> Any:
        slots = self._agents.get(agent_id)
        if not slots:
            return None
        # fixed point (location in thousandths, variance in ten-thousandths of log units²):
        # integers take a third of the bytes of floats in a snapshot
        return [
            [sid, round(s[0] * 1000), round(s[1] * 10000), int(s[2])] for sid, s in slots.items()
        ]

    def load_state(self, agent_id: str, state: Any) -> None:
        if state:
            self._agents[agent_id] = OrderedDict(
                (int(row[0]), [row[1] / 1000.0, row[2] / 10000.0, float(row[3])]) for row in state
            )
