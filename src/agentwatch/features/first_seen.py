"""A bounded first-seen set: which keys an agent has used, capped with LRU eviction.

Pure code. Memory is bounded by ``capacity`` keys per set; when full, the key used longest
ago is evicted (and would count as new again if it returned).

>>> s = FirstSeenSet(capacity=2)
>>> s.add("a"), s.add("b"), "a" in s
(None, None, True)
>>> s.add("c"); "b" in s, "a" in s, len(s)
(False, True, 2)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class FirstSeenSet:
    __slots__ = ("_items", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._items: OrderedDict[Hashable, None] = OrderedDict()

    def __contains__(self, key: Hashable) -> bool:
        if key in self._items:
            self._items.move_to_end(key)
            return True
        return False

    def __len__(self) -> int:
        return len(self._items)

    def add(self, key: Hashable) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
