"""A small LRU cache of loaded models, safe to use from several threads.

Loading a model takes seconds and memory, so each key is loaded once even when several requests ask
for it at the same time, and the least recently used entries are dropped beyond ``capacity``. Room is
made *before* a new model loads, so a switch between two big models (a v3 SoVITS is 1.5 GB) never
holds ``capacity + 1`` of them. A request keeps a reference to the objects it got, so eviction never
pulls a model out from under a running synthesis; it only stops the cache from holding it.
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
    def __init__(
        self,
        capacity: int,
        loader: Callable[[Hashable], T],
        name: str = "model",
        on_evict: Callable[[Hashable], None] | None = None,
        on_event: Callable[[str], None] | None = None,
    ):
        """``on_evict(key)`` runs (outside the cache's lock) after an entry is dropped, so objects
        built on top of it (a voice holds its models) can be dropped too and the memory comes back.
        ``on_event(event)`` is told of every "hit", "load" and "eviction" (for monitoring)."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._loader = loader
        self._name = name
        self._on_evict = on_evict
        self._on_event = on_event or (lambda event: None)
        self._items: collections.OrderedDict[Hashable, T] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self._on_event("hit")
                return self._items[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # one loader per key; others wait for it
            with self._lock:
                if key in self._items:  # another caller loaded it meanwhile
                    self._items.move_to_end(key)
                    self._on_event("hit")
                    return self._items[key]
                evicted = self._evict(keep=self.capacity - 1)
            self._notify(evicted)
            log.info("loading %s %s", self._name, key)
            try:
                value = self._loader(key)
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            self._on_event("load")
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                evicted = self._evict(keep=self.capacity)  # another key may have loaded meanwhile
                self._loading.pop(key, None)
            self._notify(evicted)
            return value

    def peek(self, key: Hashable) -> T | None:
        """The entry if it is loaded (marked as recently used), else None; never loads."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            self._on_event("hit")
            return self._items[key]

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> None:
        """Drop every entry whose key satisfies ``predicate``."""
        with self._lock:
            for key in [k for k in self._items if predicate(k)]:
                del self._items[key]
                self._on_event("eviction")
                log.info("dropped %s %s", self._name, key)

    def clear(self) -> None:
        """Let every entry go (the owner shuts down; not an eviction, so nobody is told)."""
        with self._lock:
            self._items.clear()

    def _evict(self, keep: int) -> list[Hashable]:
        """Drop least recently used entries until at most ``keep`` remain (caller holds the lock)."""
        evicted = []
        while len(self._items) > keep:
            key, _ = self._items.popitem(last=False)
            log.info("evicted %s %s (least recently used)", self._name, key)
            self._on_event("eviction")
            evicted.append(key)
        return evicted

    def _notify(self, evicted: list[Hashable]) -> None:
        if self._on_evict is not None:
            for key in evicted:
                self._on_evict(key)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items
