"""A small LRU cache of loaded models, safe to use from several threads.

Loading a model takes seconds and memory, so each key is loaded once even when several requests ask
for it at the same time, and the least recently used entries are dropped beyond ``capacity``. A
request keeps a reference to the objects it got, so eviction never pulls a model out from under a
running synthesis; it only stops the cache from holding it.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class ModelCache(Generic[T]):
    def __init__(self, capacity: int, loader: Callable[[Hashable], T], name: str = "model"):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._loader = loader
        self._name = name
        self._items: collections.OrderedDict[Hashable, T] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # one loader per key; others wait for it
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            log.info("loading %s %s", self._name, key)
            value = self._loader(key)
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.capacity:
                    evicted, _ = self._items.popitem(last=False)
                    log.info("evicted %s %s (least recently used)", self._name, evicted)
                self._loading.pop(key, None)
            return value

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items
