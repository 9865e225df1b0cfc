"""A small thread-safe least-recently-used store: the windows a click tool keeps so the next
click nearby answers without running the network again."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, Hashable, Optional, TypeVar

Value = TypeVar("Value")


class Recent(Generic[Value]):
    """Up to ``size`` values by key; the least recently used is dropped first."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: "OrderedDict[Hashable, Value]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Optional[Value]:
        """The value for ``key`` (now the most recently used), or None."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: Hashable, value: Value) -> None:
        """Remember ``value``; forget the least recently used beyond ``size``."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
