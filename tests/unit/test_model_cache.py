import threading
import time

import pytest

from app.engine.model_cache import ModelCache


def test_loads_once_and_evicts_least_recently_used():
    loads = []
    cache = ModelCache(2, lambda k: loads.append(k) or f"model-{k}")
    assert cache.get("a") == "model-a"
    cache.get("b")
    cache.get("a")  # a is now most recent
    cache.get("c")  # evicts b
    assert cache.keys() == ["a", "c"]
    cache.get("a")
    assert loads == ["a", "b", "c"]


def test_concurrent_requests_for_one_key_load_it_once():
    loads = []

    def slow(key):
        loads.append(key)
        time.sleep(0.1)
        return object()

    cache = ModelCache(2, slow)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("x"))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == ["x"] and len({id(r) for r in results}) == 1


def test_a_failed_load_is_not_cached():
    attempts = []

    def flaky(key):
        attempts.append(key)
        if len(attempts) == 1:
            raise OSError("disk hiccup")
        return "ok"

    cache = ModelCache(1, flaky)
    with pytest.raises(OSError):
        cache.get("k")
    assert cache.get("k") == "ok" and len(attempts) == 2


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        ModelCache(0, lambda k: k)


def test_room_is_made_before_a_new_model_loads():
    """Switching between big models must never hold capacity + 1 of them at once."""
    cache: ModelCache[str] = ModelCache(1, lambda k: (held_during_load.append(cache.keys()), k)[1])
    held_during_load: list[list] = []
    cache.get("a")
    cache.get("b")
    assert held_during_load == [[], []]
    assert cache.keys() == ["b"]


def test_a_failed_load_after_eviction_leaves_the_cache_consistent():
    def loader(key):
        if key == "bad":
            raise OSError("unreadable")
        return key

    cache = ModelCache(1, loader)
    cache.get("a")
    with pytest.raises(OSError):
        cache.get("bad")
    assert cache.keys() == []
    assert cache.get("a") == "a"


def test_evicting_a_model_drops_what_was_built_on_it():
    voices = ModelCache(4, lambda key: f"voice-{key}")
    models = ModelCache(1, lambda k: k, on_evict=lambda k: voices.discard_where(lambda key: key[1] == k))
    models.get("a")
    voices.get(("gpt", "a"))
    voices.get(("gpt", "other"))
    models.get("b")  # evicts a
    assert voices.keys() == [("gpt", "other")]
