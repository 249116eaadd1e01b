"""Redis: invalidations fence and hand over work in flight in every process, and wake waiters."""

from __future__ import annotations

import asyncio

import pytest
import redis

from cachewire.cache import InMemoryCacheAdapter, RedisCacheAdapter

pytestmark = pytest.mark.redis


async def _subscribed(cache: RedisCacheAdapter) -> None:
    loop = asyncio.get_running_loop()
    while loop not in cache._wakeups or cache._wakeups[loop]._listener is None:
        await asyncio.sleep(0)
    await asyncio.wait_for(cache._wakeups[loop].subscribed.wait(), 30)


@pytest.mark.parametrize("how", ["key", "partition"])
async def test_an_invalidation_hands_the_lease_to_a_waiter_in_another_process_at_once(
    redis_db_url: str, how: str
) -> None:
    # Two adapters stand for two processes; the waiter would sleep ten minutes between looks,
    # so only a wake-up and a lease it may take over let it finish.
    leader = RedisCacheAdapter(redis_db_url, namespace="handover")
    waiter = RedisCacheAdapter(redis_db_url, namespace="handover")
    waiter.WAIT_FIRST = waiter.WAIT_MAX = waiter.WAIT_MAX_SUBSCRIBED = 600
    started, release = asyncio.Event(), asyncio.Event()

    async def old() -> str:
        started.set()
        await release.wait()
        return "old"

    first = asyncio.create_task(leader.get_or_create("k", old, tags=["t"]))
    await started.wait()
    second = asyncio.create_task(waiter.get_or_create("k", lambda: "not this", tags=["t"]))
    await _subscribed(waiter)
    if how == "key":
        assert await leader.invalidate("k") is False  # nothing was stored yet
    else:
        await leader.invalidate_tags(["t"])
    third = await asyncio.wait_for(waiter.get_or_create("k", lambda: "new", tags=["t"]), 30)
    assert await asyncio.wait_for(second, 30) == "not this"  # it took over the fenced lease
    assert third == "not this"
    release.set()
    assert await first == "old"  # that caller started before the invalidation
    assert leader.get_stats()["writes_rejected"] == 1
    assert await leader.get("k", tags=["t"]) == "not this"
    await leader.aclose()
    await waiter.aclose()


async def test_a_partition_invalidation_of_nothing_cached_creates_no_keys(
    redis_db_url: str,
) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="bounded")
    client = redis.Redis.from_url(redis_db_url)
    for index in range(200):
        await cache.invalidate_tags([f"p{index}"])
    assert client.keys("bounded:*") == []
    client.close()
    await cache.aclose()


async def test_tag_keys_live_as_long_as_the_entries_that_carry_them(redis_db_url: str) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="tagttl", stale_ttl=5)
    client = redis.Redis.from_url(redis_db_url)
    await cache.set("short", 1, 10, tags=["a", "b"])
    assert 14_000 < client.pttl("tagttl:t:a") <= 15_000  # TTL + stale_ttl of the entry
    await cache.set("long", 1, 100, tags=["a"])
    assert client.pttl("tagttl:t:a") > 100_000  # raised to the longest carrier
    assert 14_000 < client.pttl("tagttl:t:b") <= 15_000
    await cache.set("forever", 1, None, tags=["b"])
    assert client.pttl("tagttl:t:b") == -1  # an entry without expiry keeps its tags
    # A bump keeps the tag's lifetime and makes the entries stale.
    await cache.invalidate_tags(["a"])
    assert client.pttl("tagttl:t:a") > 100_000
    assert await cache.get("long", "stale", tags=["a"]) == "stale"
    # While a computation carries a tag, the tag outlives its lease.
    release = asyncio.Event()

    async def slow() -> int:
        await release.wait()
        return 2

    task = asyncio.create_task(cache.get_or_create("c", slow, 10, tags=["fresh"]))
    while not client.exists("tagttl:l:c"):
        await asyncio.sleep(0.001)
    assert client.pttl("tagttl:t:fresh") > 0
    release.set()
    assert await task == 2
    client.close()
    await cache.aclose()


async def test_invalidate_returns_false_for_an_entry_already_expired_in_memory() -> None:
    now = [0.0]
    cache = InMemoryCacheAdapter(clock=lambda: now[0])
    await cache.set("k", 1, 10)
    now[0] = 11
    assert await cache.invalidate("k") is False
    await cache.set("k", 1, 10)
    assert await cache.invalidate("k") is True
