"""`DjangoCacheAdapter` passes the cache contract on LocMem and on Django's Redis backend."""

from __future__ import annotations

import itertools
import os
import threading

import pytest

from cachewire import Rule, cached
from cachewire.testing import CacheAdapterContract
from cachewire_django import DjangoCacheAdapter

_names = itertools.count()


def fresh_prefix() -> str:
    return f"contract-{os.getpid()}-{next(_names)}"


class TestLocMem(CacheAdapterContract):
    supports_stale = False
    # Not kept by the Django adapter yet (see CacheAdapterContract's flags).
    supports_read_your_invalidations = False
    ttl_zero_set_removes = False
    refuses_non_str_keys = False

    @pytest.fixture
    def adapter(self) -> DjangoCacheAdapter:
        return DjangoCacheAdapter("default", key_prefix=fresh_prefix())


@pytest.mark.redis
class TestDjangoRedis(CacheAdapterContract):
    supports_stale = False
    # Not kept by the Django adapter yet (see CacheAdapterContract's flags).
    supports_read_your_invalidations = False
    ttl_zero_set_removes = False
    refuses_non_str_keys = False

    @pytest.fixture
    def adapter(self, django_redis: str) -> DjangoCacheAdapter:
        return DjangoCacheAdapter(django_redis, key_prefix=fresh_prefix())


@pytest.mark.redis
def test_a_second_process_waits_for_the_lease_holder(django_redis: str) -> None:
    """Two adapters stand for two processes: they share only the Redis lease and values."""
    prefix = fresh_prefix()
    first = DjangoCacheAdapter(django_redis, key_prefix=prefix)
    second = DjangoCacheAdapter(django_redis, key_prefix=prefix, poll_interval=0.001)
    calls: list[str] = []
    results: list[str] = []
    started = threading.Event()
    release = threading.Event()

    def creator() -> str:
        started.set()
        assert release.wait(10)
        calls.append("first")
        return "v"

    def other() -> str:
        calls.append("second")
        return "other"

    leader = threading.Thread(target=lambda: results.append(first.sync.get_or_create("k", creator)))
    leader.start()
    assert started.wait(10)
    waiter = threading.Thread(target=lambda: results.append(second.sync.get_or_create("k", other)))
    waiter.start()
    while second.get_stats()["lock_waits"] == 0:
        assert waiter.is_alive()
    release.set()
    leader.join(10)
    waiter.join(10)
    assert results == ["v", "v"]
    assert calls == ["first"]


def test_cached_functions_on_a_django_cache_are_invalidated_by_rules() -> None:
    adapter = DjangoCacheAdapter("default", key_prefix=fresh_prefix())
    calls: list[int] = []

    @cached(adapter, name="tests.django.by_city", partition=["city"])
    def by_city(city: str) -> int:
        calls.append(1)
        return len(calls)

    Rule(model="tests.Thing", field_mapping={"city": "city"}, function="tests.django.by_city")
    assert by_city("Oslo") == by_city("Oslo") == 1
    by_city.invalidate(city="Oslo")
    assert by_city("Oslo") == 2
