"""`DjangoCacheAdapter` passes the cache contract on LocMem and on Django's Redis backend."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable

import pytest

from cachewire import Rule, cached
from cachewire.errors import ConfigurationError
from cachewire.testing import CacheAdapterContract
from cachewire_django import DjangoCacheAdapter

_names = itertools.count()


def fresh_prefix() -> str:
    return f"contract-{os.getpid()}-{next(_names)}"


class _MovableClock:
    """Wall-clock seconds that a test moves forward, so a stored key expires without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def stale_adapter(alias: str) -> tuple[DjangoCacheAdapter, Callable[[str], None]]:
    clock = _MovableClock()
    adapter = DjangoCacheAdapter(alias, key_prefix=fresh_prefix(), stale_ttl=600, clock=clock)

    def expire(key: str) -> None:
        clock.offset += 31  # the contract stores with a TTL of 30 seconds

    return adapter, expire


class TestLocMem(CacheAdapterContract):
    @pytest.fixture
    def adapter(self) -> DjangoCacheAdapter:
        return DjangoCacheAdapter("default", key_prefix=fresh_prefix())

    @pytest.fixture
    def stale_setup(self) -> tuple[DjangoCacheAdapter, Callable[[str], None]]:
        return stale_adapter("default")


@pytest.mark.redis
class TestDjangoRedis(CacheAdapterContract):
    @pytest.fixture
    def adapter(self, django_redis: str) -> DjangoCacheAdapter:
        return DjangoCacheAdapter(django_redis, key_prefix=fresh_prefix())

    @pytest.fixture
    def stale_setup(self, django_redis: str) -> tuple[DjangoCacheAdapter, Callable[[str], None]]:
        return stale_adapter(django_redis)


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


@pytest.fixture(params=["default", pytest.param("redis", marks=pytest.mark.redis)])
def shared_alias(request: pytest.FixtureRequest) -> str:
    """A Django cache that two adapters share, standing for two processes."""
    if request.param == "redis":
        return str(request.getfixturevalue("django_redis"))
    return "default"


def _computing_in_background(
    adapter: DjangoCacheAdapter, key: str, tags: list[str]
) -> tuple[threading.Thread, threading.Event, threading.Event, list[str]]:
    started, release, results = threading.Event(), threading.Event(), []

    def old() -> str:
        started.set()
        assert release.wait(20)
        return "old"

    thread = threading.Thread(
        target=lambda: results.append(adapter.sync.get_or_create(key, old, tags=tags))
    )
    thread.start()
    assert started.wait(20)
    return thread, release, results


@pytest.mark.parametrize("how", ["key", "tag"])
def test_an_invalidation_in_another_process_overtakes_a_computation(
    shared_alias: str, how: str
) -> None:
    """The computation started before the invalidation never becomes readable, and a caller in
    the invalidating process does not wait for it."""
    prefix = fresh_prefix()
    first = DjangoCacheAdapter(shared_alias, key_prefix=prefix)
    second = DjangoCacheAdapter(shared_alias, key_prefix=prefix)
    thread, release, results = _computing_in_background(first, "k", ["t"])
    if how == "key":
        second.sync.invalidate("k")
    else:
        second.sync.invalidate_tags(["t"])
    assert second.sync.get_or_create("k", lambda: "new", tags=["t"]) == "new"
    release.set()
    thread.join(20)
    assert results == ["old"]  # its caller still gets its value
    assert second.sync.get("k", tags=["t"]) == "new"
    assert first.sync.get("k", tags=["t"]) == "new"


def test_a_computation_stored_after_an_invalidation_is_refused_and_taken_back(
    shared_alias: str,
) -> None:
    """The invalidation lands between the lease holder's last look and its store (Django's cache
    cannot store only-if-unchanged): readers refuse the value, and its writer deletes it."""
    prefix = fresh_prefix()
    first = DjangoCacheAdapter(shared_alias, key_prefix=prefix)
    second = DjangoCacheAdapter(shared_alias, key_prefix=prefix)

    def creator() -> str:
        second.sync.invalidate("k")  # another process, while this one computes
        return "old"

    assert first.sync.get_or_create("k", creator) == "old"
    assert first.get_stats()["writes_rejected"] == 1
    assert second.sync.get("k", "absent") == "absent"
    assert first.backend.get(first._key("v", "k")) is None  # taken back, not merely refused


def test_another_process_is_answered_with_the_stale_value_during_a_refresh(
    shared_alias: str,
) -> None:
    prefix = fresh_prefix()
    clock = _MovableClock()
    first = DjangoCacheAdapter(shared_alias, key_prefix=prefix, stale_ttl=600, clock=clock)
    second = DjangoCacheAdapter(shared_alias, key_prefix=prefix, stale_ttl=600, clock=clock)
    first.sync.set("k", "old", 30)
    clock.offset += 31
    started, release = threading.Event(), threading.Event()

    def refresh() -> str:
        started.set()
        assert release.wait(20)
        return "new"

    assert first.sync.get_or_create("k", refresh, 30) == "old"
    assert started.wait(20)
    assert second.sync.get_or_create("k", lambda: "unexpected", 30) == "old"
    assert second.get_stats()["stale_hits"] == 1
    release.set()
    pause = threading.Event()
    while second.sync.get("k") != "new":
        pause.wait(0.005)


def test_early_refresh_answers_with_the_value_and_refreshes_it() -> None:
    adapter = DjangoCacheAdapter(
        "default", key_prefix=fresh_prefix(), early_refresh_beta=1e9, jitter=0.1
    )
    refreshed = threading.Event()

    def slow_creator() -> str:
        return "first"

    def refresh() -> str:
        refreshed.set()
        return "second"

    assert adapter.sync.get_or_create("k", slow_creator, 60) == "first"
    # The creator's time times a huge beta puts every read past the soft deadline (XFetch):
    # unless the first creator took no measurable time at all, the read refreshes early.
    if adapter.get_stats()["creator_time_total"] == 0:
        pytest.skip("the creator's time was not measurable on this clock")
    assert adapter.sync.get_or_create("k", refresh, 60) == "first"
    assert refreshed.wait(20)
    assert adapter.get_stats()["early_refreshes"] == 1


def test_bad_refresh_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="jitter"):
        DjangoCacheAdapter(jitter=1.5)
    with pytest.raises(ConfigurationError, match="early_refresh_beta"):
        DjangoCacheAdapter(early_refresh_beta=0)
    with pytest.raises(ConfigurationError, match="stale_ttl"):
        DjangoCacheAdapter(stale_ttl=-1)
    with pytest.raises(ConfigurationError, match="poll_interval"):
        DjangoCacheAdapter(poll_interval=0)
