from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable

import pytest

from cachewire.cache import InMemoryCacheAdapter, JsonCodec
from cachewire.testing import CacheAdapterContract


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestInMemoryContract(CacheAdapterContract):
    @pytest.fixture
    def adapter(self) -> InMemoryCacheAdapter:
        return InMemoryCacheAdapter()

    @pytest.fixture
    def stale_setup(self) -> tuple[InMemoryCacheAdapter, Callable[[str], None]]:
        clock = Clock()
        cache = InMemoryCacheAdapter(stale_ttl=3600, clock=clock)

        def expire(key: str) -> None:
            clock.now += 31  # the contract's entries live 30 s

        return cache, expire


class TestInMemoryWithCodecContract(TestInMemoryContract):
    """The same promises with values making a round trip through the JSON codec."""

    @pytest.fixture
    def adapter(self) -> InMemoryCacheAdapter:
        return InMemoryCacheAdapter(codec=JsonCodec())


async def test_entries_expire_on_the_given_clock() -> None:
    clock = Clock()
    cache = InMemoryCacheAdapter(clock=clock)
    await cache.set("k", "v", 10)
    clock.now = 9.9
    assert await cache.get("k") == "v"
    clock.now = 10.0
    assert await cache.get("k", "absent") == "absent"


async def test_serve_stale_while_exactly_one_refresh_runs() -> None:
    clock = Clock()
    cache = InMemoryCacheAdapter(default_ttl=10, stale_ttl=30, clock=clock)
    refreshes = 0
    release = asyncio.Event()

    async def creator() -> str:
        nonlocal refreshes
        refreshes += 1
        if refreshes > 1:
            await release.wait()
        return f"v{refreshes}"

    assert await cache.get_or_create("k", creator) == "v1"
    clock.now = 15
    answers = [await cache.get_or_create("k", creator) for _ in range(20)]
    assert answers == ["v1"] * 20
    for _ in range(100):
        await asyncio.sleep(0)  # let the background refresh start
    assert refreshes == 2
    assert cache.get_stats()["stale_hits"] == 20
    release.set()
    for _ in range(100):
        if await cache.get("k") == "v2":
            break
        await asyncio.sleep(0)
    assert await cache.get("k") == "v2"


async def test_stale_ttl_zero_per_call_blocks_instead() -> None:
    clock = Clock()
    cache = InMemoryCacheAdapter(default_ttl=10, stale_ttl=30, clock=clock)
    await cache.get_or_create("k", lambda: "old")
    clock.now = 15
    assert await cache.get_or_create("k", lambda: "new", stale_ttl=0) == "new"


async def test_many_distinct_keys_leave_no_flight_state() -> None:
    cache = InMemoryCacheAdapter()
    for i in range(100_000):
        await cache.get_or_create(f"k{i}", lambda i=i: i)
    stats = cache.get_stats()
    assert stats["in_flight"] == 0
    assert stats["size"] == 100_000
    await cache.clear()
    gc.collect()
    assert cache.get_stats()["size"] == 0


async def test_max_entries_evicts_least_recently_used_but_never_a_flight() -> None:
    cache = InMemoryCacheAdapter(max_entries=3)
    for key in "abc":
        await cache.set(key, key)
    await cache.get("a")  # a is now the most recent
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "x"

    flight = asyncio.create_task(cache.get_or_create("x", slow))
    await asyncio.sleep(0)
    await cache.set("d", "d")  # evicts b
    assert await cache.get("b", "gone") == "gone"
    assert cache.get_stats()["in_flight"] == 1
    release.set()
    assert await flight == "x"
    assert cache.get_stats()["evictions"] >= 1
    assert len(cache.get_stats()["keys"]) == 3


async def test_sync_creator_and_coroutine_creator() -> None:
    cache = InMemoryCacheAdapter()

    async def make() -> int:
        return 2

    assert await cache.get_or_create("a", lambda: 1) == 1
    assert await cache.get_or_create("b", make) == 2


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        InMemoryCacheAdapter(max_entries=0)
    with pytest.raises(ValueError, match="default_ttl"):
        InMemoryCacheAdapter(default_ttl=-1)


async def test_a_coroutine_joins_a_thread_computing_the_same_key() -> None:
    cache = InMemoryCacheAdapter()
    started, release = threading.Event(), threading.Event()
    calls = 0

    def slow() -> str:
        nonlocal calls
        calls += 1
        started.set()
        release.wait(10)
        return "from thread"

    thread = threading.Thread(target=cache.sync.get_or_create, args=("k", slow))
    thread.start()
    await asyncio.to_thread(started.wait, 10)
    waiter = asyncio.create_task(cache.get_or_create("k", lambda: "from loop"))
    while cache.get_stats()["coalesced"] < 1:
        await asyncio.sleep(0)
    release.set()
    assert await waiter == "from thread"
    thread.join()
    assert calls == 1


def test_a_thread_joins_a_coroutine_computing_the_same_key() -> None:
    cache = InMemoryCacheAdapter()
    started = threading.Event()
    results: list[str] = []

    async def main() -> None:
        release = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def slow() -> str:
            started.set()
            await release.wait()
            return "from loop"

        first = asyncio.create_task(cache.get_or_create("k", slow))
        await asyncio.to_thread(started.wait, 10)
        thread = threading.Thread(
            target=lambda: results.append(cache.sync.get_or_create("k", lambda: "from thread"))
        )
        thread.start()
        while cache.get_stats()["coalesced"] < 1:
            await asyncio.sleep(0)
        loop.call_soon(release.set)
        assert await first == "from loop"
        await asyncio.to_thread(thread.join)

    asyncio.run(main())
    assert results == ["from loop"]


def test_partition_invalidations_of_nothing_cached_keep_no_state() -> None:
    import tracemalloc

    cache = InMemoryCacheAdapter()
    cache.sync.invalidate_tags(["warm-up"])
    tags = [f"p:{index}" for index in range(200_000)]
    # Only what the cache package allocates counts (other tests' threads may still be running).
    mine = [tracemalloc.Filter(True, "*/cachewire/cache/*")]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(mine)
        for tag in tags:
            cache.sync.invalidate_tags([tag])
        after = tracemalloc.take_snapshot().filter_traces(mine)
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 64 * 1024, f"{grown} bytes kept after 200,000 invalidations"
    assert cache.get_stats()["tags"] == 0


async def test_a_tag_version_lives_only_while_an_entry_or_computation_carries_it() -> None:
    cache = InMemoryCacheAdapter()
    await cache.set("a", 1, tags=["t"])
    await cache.invalidate_tags(["t"])
    assert cache.get_stats()["tags"] == 1  # "a" still carries the old version
    assert await cache.get("a", "stale", tags=["t"]) == "stale"  # dropped on sight
    assert cache.get_stats()["tags"] == 0
    # A computation carries its tags: a bump during it is remembered, and it does not write.
    release = asyncio.Event()

    async def slow() -> int:
        await release.wait()
        return 2

    task = asyncio.create_task(cache.get_or_create("b", slow, tags=["u"]))
    await asyncio.sleep(0)
    await cache.invalidate_tags(["u"])
    assert cache.get_stats()["tags"] == 1
    release.set()
    assert await task == 2
    assert await cache.get("b", "absent", tags=["u"]) == "absent"
    assert cache.get_stats()["tags"] == 0
    await cache.set("c", 3, tags=["u"])
    assert await cache.get("c", tags=["u"]) == 3  # a later entry is current again
