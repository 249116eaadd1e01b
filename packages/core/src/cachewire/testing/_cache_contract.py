"""`CacheAdapterContract`: the behaviour every cache adapter promises.

Subclass it in a module pytest collects (name the subclass ``Test...``) and override the ``adapter``
fixture to return a fresh, empty adapter. Capability flags:

- ``supports_read_your_invalidations``, ``ttl_zero_set_removes``, ``refuses_non_str_keys``:
  the promises of the second contract revision (see the class attributes); an adapter that does
  not keep one yet declares it False, and the test says so when it skips;
- ``supports_stale``: the adapter serves stale values during a refresh (``stale_ttl``); then
  override the ``stale_setup`` fixture to return ``(adapter, expire)``: an adapter built with a
  grace period, and ``expire(key)``, which puts a stored key past its TTL (but within the grace
  period) without waiting, for example by moving the adapter's clock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from cachewire.cache import BaseCacheAdapter
from cachewire.errors import ConfigurationError, ReentrantCallError

__all__ = ["CacheAdapterContract"]

#: (an adapter with a grace period, ``expire(key)`` that puts a stored key past its TTL)
StaleSetup = tuple[BaseCacheAdapter, Callable[[str], None]]


def _eventually(predicate: Callable[[], bool], limit: int = 4000) -> None:
    """Block until ``predicate()`` holds, re-checking on a short wait (bounded)."""
    pause = threading.Event()
    for _ in range(limit):
        if predicate():
            return
        pause.wait(0.005)
    raise AssertionError("condition never became true")


async def _until(predicate: Any, limit: int = 100_000) -> None:
    """Yield to the loop until ``predicate()`` holds (bounded)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


@pytest.mark.timeout(30)
class CacheAdapterContract:
    """Conformance tests for `BaseCacheAdapter` implementations."""

    supports_stale: ClassVar[bool] = True
    #: Invalidations detach work in flight: a caller arriving afterwards never joins it.
    supports_read_your_invalidations: ClassVar[bool] = True
    #: ``set(key, value, 0)`` removes what was stored under ``key``.
    ttl_zero_set_removes: ClassVar[bool] = True
    #: Keys other than ``str`` (and strings with lone surrogates) are a `ConfigurationError`.
    refuses_non_str_keys: ClassVar[bool] = True

    def _requires(self, capability: str) -> None:
        if not getattr(self, capability):
            pytest.skip(f"this adapter declares {capability} = False")

    @pytest.fixture
    def adapter(self) -> BaseCacheAdapter:
        raise NotImplementedError("override the `adapter` fixture")

    @pytest.fixture
    def stale_setup(self) -> StaleSetup:
        if not self.supports_stale:
            pytest.skip("this adapter does not serve stale values")
        raise NotImplementedError("override the `stale_setup` fixture (or supports_stale=False)")

    # -------------------------------------------------------------- TTL contract

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "ttl", [-1, -0.5, float("nan"), float("inf"), 10**10, 1e300, "10", True]
    )
    async def test_bad_ttls_are_refused(self, adapter: BaseCacheAdapter, ttl: Any) -> None:
        with pytest.raises(ConfigurationError, match="ttl"):
            await adapter.get_or_create("k", lambda: 1, ttl)
        with pytest.raises(ConfigurationError, match="ttl"):
            await adapter.set("k", 1, ttl)
        # A hit is refused too: the mistake shows on the first call, not on the first miss.
        await adapter.set("hit", 1)
        with pytest.raises(ConfigurationError, match="ttl"):
            await adapter.get_or_create("hit", lambda: 1, ttl)

    @pytest.mark.asyncio
    async def test_ttl_zero_computes_without_storing(self, adapter: BaseCacheAdapter) -> None:
        calls: list[int] = []

        def creator() -> str:
            calls.append(1)
            return "v"

        for _ in range(2):
            assert await adapter.get_or_create("k", creator, 0) == "v"
        assert len(calls) == 2
        assert await adapter.get("k", "absent") == "absent"

    @pytest.mark.asyncio
    @pytest.mark.parametrize("ttl", [None, 30, 12.5])
    async def test_ttl_none_and_floats_store(self, adapter: BaseCacheAdapter, ttl: Any) -> None:
        await adapter.get_or_create("k", lambda: "v", ttl)
        assert await adapter.get("k") == "v"

    @pytest.mark.asyncio
    async def test_cached_none_is_a_hit(self, adapter: BaseCacheAdapter) -> None:
        calls: list[int] = []

        def creator() -> None:
            calls.append(1)

        for _ in range(3):
            assert await adapter.get_or_create("k", creator) is None
        assert len(calls) == 1
        assert adapter.get_stats()["hits"] == 2
        assert await adapter.get("k", "absent") is None

    @pytest.mark.asyncio
    async def test_hit_returns_what_the_miss_returned(self, adapter: BaseCacheAdapter) -> None:
        value = {"a": [1, 2.5, "x", None, True], "b": {"c": "d"}}
        first = await adapter.get_or_create("k", lambda: value)
        second = await adapter.get_or_create("k", lambda: "other")
        assert first == second == value

    # ------------------------------------------------------------- single flight

    @pytest.mark.asyncio
    async def test_concurrent_callers_share_one_computation(
        self, adapter: BaseCacheAdapter
    ) -> None:
        calls = 0
        release = asyncio.Event()

        async def creator() -> str:
            nonlocal calls
            calls += 1
            await release.wait()
            return "v"

        callers = [asyncio.create_task(adapter.get_or_create("k", creator)) for _ in range(1000)]
        await _until(lambda: adapter.get_stats()["coalesced"] >= 999)
        release.set()
        assert set(await asyncio.gather(*callers)) == {"v"}
        assert calls == 1

    @pytest.mark.asyncio
    async def test_creator_error_reaches_every_waiter_once(self, adapter: BaseCacheAdapter) -> None:
        calls = 0
        release = asyncio.Event()

        async def creator() -> str:
            nonlocal calls
            calls += 1
            await release.wait()
            raise ValueError("boom")

        callers = [asyncio.create_task(adapter.get_or_create("k", creator)) for _ in range(100)]
        await _until(lambda: adapter.get_stats()["coalesced"] >= 99)
        release.set()
        results = await asyncio.gather(*callers, return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)
        assert calls == 1
        stats = adapter.get_stats()
        assert stats["misses"] >= 1
        assert stats["creator_errors"] == 1
        # The next wave retries.
        assert await adapter.get_or_create("k", lambda: "ok") == "ok"

    @pytest.mark.asyncio
    async def test_same_key_call_inside_its_creator_fails_fast(
        self, adapter: BaseCacheAdapter
    ) -> None:
        async def creator() -> Any:
            return await adapter.get_or_create("k", lambda: "inner")

        with pytest.raises(ReentrantCallError, match="'k'"):
            await adapter.get_or_create("k", creator)

    @pytest.mark.asyncio
    async def test_cancelling_the_first_caller_does_not_cancel_the_others(
        self, adapter: BaseCacheAdapter
    ) -> None:
        started = asyncio.Event()
        release = asyncio.Event()

        async def creator() -> str:
            started.set()
            await release.wait()
            return "v"

        first = asyncio.create_task(adapter.get_or_create("k", creator))
        await started.wait()
        others = [asyncio.create_task(adapter.get_or_create("k", creator)) for _ in range(5)]
        await _until(lambda: adapter.get_stats()["coalesced"] >= 5)
        first.cancel()
        release.set()
        assert await asyncio.gather(*others) == ["v"] * 5
        with pytest.raises(asyncio.CancelledError):
            await first

    @pytest.mark.asyncio
    @pytest.mark.parametrize("how", ["invalidate", "clear", "tag"])
    async def test_no_write_back_after_invalidation_during_the_computation(
        self, adapter: BaseCacheAdapter, how: str
    ) -> None:
        started = asyncio.Event()
        release = asyncio.Event()

        async def creator() -> str:
            started.set()
            await release.wait()
            return "stale"

        caller = asyncio.create_task(adapter.get_or_create("k", creator, tags=["t"]))
        await started.wait()
        if how == "invalidate":
            await adapter.invalidate("k")
        elif how == "clear":
            await adapter.clear()
        else:
            await adapter.invalidate_tags(["t"])
        release.set()
        assert await caller == "stale"  # the caller still gets its value
        assert await adapter.get("k", "absent", tags=["t"]) == "absent"

    # ---------------------------------------------------------- invalidation

    @pytest.mark.asyncio
    async def test_invalidate_and_tags(self, adapter: BaseCacheAdapter) -> None:
        await adapter.set("a", 1, tags=["red"])
        await adapter.set("b", 2, tags=["blue"])
        await adapter.set("c", 3)
        assert await adapter.invalidate("c") is True
        assert await adapter.invalidate("c") is False
        await adapter.invalidate_tags(["red"])
        assert await adapter.get("a", "absent", tags=["red"]) == "absent"
        assert await adapter.get("b", tags=["blue"]) == 2
        assert await adapter.get_or_create("a", lambda: 10, tags=["red"]) == 10
        await adapter.clear()
        assert await adapter.get("b", "absent", tags=["blue"]) == "absent"

    @pytest.mark.asyncio
    async def test_stats_are_counted_and_keys_bounded(self, adapter: BaseCacheAdapter) -> None:
        for i in range(150):
            await adapter.set(f"k{i}", i)
        await adapter.get("k1")
        await adapter.get("missing")
        stats = adapter.get_stats()
        for name in ("hits", "misses", "hit_rate", "size", "keys"):
            assert name in stats
        assert stats["hits"] >= 1
        assert stats["misses"] >= 1
        assert stats["keys"] is None or len(stats["keys"]) <= 100

    # ------------------------------------------------------------ blocking twin

    def test_blocking_twin_basics(self, adapter: BaseCacheAdapter) -> None:
        sync = adapter.sync
        assert sync.get_or_create("k", lambda: "v") == "v"
        assert sync.get_or_create("k", lambda: "other") == "v"
        assert sync.get("k") == "v"
        sync.set("j", [1, 2])
        assert sync.get("j") == [1, 2]
        assert sync.invalidate("j") is True
        assert sync.get("j", "absent") == "absent"
        sync.clear()
        assert sync.get("k", "absent") == "absent"

    def test_blocking_twin_single_flight_across_threads(self, adapter: BaseCacheAdapter) -> None:
        threads = 8
        barrier = threading.Barrier(threads)
        release = threading.Event()
        calls = 0
        results: list[Any] = []

        def creator() -> str:
            nonlocal calls
            calls += 1
            assert release.wait(20)
            return "v"

        def worker() -> None:
            barrier.wait()
            results.append(adapter.sync.get_or_create("k", creator))

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for _ in range(2_000_000):
            if adapter.get_stats()["coalesced"] >= threads - 1:
                break
        release.set()
        for thread in pool:
            thread.join(20)
        assert results == ["v"] * threads
        assert calls == 1

    def test_blocking_twin_reentry_fails_fast(self, adapter: BaseCacheAdapter) -> None:
        with pytest.raises(ReentrantCallError):
            adapter.sync.get_or_create("k", lambda: adapter.sync.get_or_create("k", lambda: 1))

    def test_blocking_twin_stats(self, adapter: BaseCacheAdapter) -> None:
        sync = adapter.sync
        sync.get_or_create("k", lambda: "v")
        sync.get_or_create("k", lambda: "other")
        sync.get("missing")
        stats = sync.get_stats()
        for name in ("hits", "misses", "hit_rate", "size", "keys", "creator_calls"):
            assert name in stats
        assert stats["hits"] >= 1
        assert stats["misses"] >= 2
        assert stats["creator_calls"] == 1
        assert stats == adapter.get_stats()  # one set of counters for both twins

    # ------------------------------------------------------------ serve stale

    @pytest.mark.asyncio
    async def test_stale_value_is_served_while_one_refresh_runs(
        self, stale_setup: StaleSetup
    ) -> None:
        (cache, expire), release = stale_setup, asyncio.Event()
        calls = 0

        async def refresh() -> str:
            nonlocal calls
            calls += 1
            await release.wait()
            return "new"

        await cache.get_or_create("k", lambda: "old", 30)
        expire("k")
        answers = [await cache.get_or_create("k", refresh, 30) for _ in range(5)]
        assert answers == ["old"] * 5  # answered at once, not after the refresh
        assert cache.get_stats()["stale_hits"] >= 1
        release.set()
        for _ in range(2000):
            if await cache.get("k") == "new":
                break
            await asyncio.sleep(0.005)
        assert await cache.get("k") == "new"
        assert calls == 1

    def test_blocking_twin_serves_stale_while_one_refresh_runs(
        self, stale_setup: StaleSetup
    ) -> None:
        (cache, expire), release = stale_setup, threading.Event()
        twin = cache.sync
        calls = 0

        def refresh() -> str:
            nonlocal calls
            calls += 1
            assert release.wait(20)
            return "new"

        twin.get_or_create("k", lambda: "old", 30)
        expire("k")
        assert twin.get_or_create("k", refresh, 30) == "old"  # the caller does not wait
        assert twin.get_or_create("k", refresh, 30) == "old"
        assert twin.get_stats()["stale_hits"] >= 1
        release.set()
        _eventually(lambda: twin.get("k") == "new")
        assert calls == 1

    @pytest.mark.asyncio
    async def test_stale_ttl_zero_refuses_stale_values(self, stale_setup: StaleSetup) -> None:
        cache, expire = stale_setup
        await cache.get_or_create("k", lambda: "old", 30)
        expire("k")
        assert await cache.get_or_create("k", lambda: "new", 30, stale_ttl=0) == "new"
        cache.sync.set("j", "old", 30)
        expire("j")
        assert cache.sync.get_or_create("j", lambda: "new", 30, stale_ttl=0) == "new"

    # ---------------------------------------------------- read your invalidations

    @pytest.mark.asyncio
    @pytest.mark.parametrize("how", ["key", "tag"])
    async def test_a_caller_after_an_invalidation_does_not_join_older_work(
        self, adapter: BaseCacheAdapter, how: str
    ) -> None:
        self._requires("supports_read_your_invalidations")
        started, release = asyncio.Event(), asyncio.Event()

        async def old() -> str:
            started.set()
            await release.wait()
            return "old"

        first = asyncio.create_task(adapter.get_or_create("k", old, tags=["t"]))
        await started.wait()
        if how == "key":
            await adapter.invalidate("k")
        else:
            await adapter.invalidate_tags(["t"])
        later = await asyncio.wait_for(adapter.get_or_create("k", lambda: "new", tags=["t"]), 30)
        assert later == "new"
        release.set()
        assert await first == "old"  # it started before the invalidation
        assert await adapter.get("k", tags=["t"]) == "new"

    def test_blocking_twin_after_an_invalidation_does_not_join_older_work(
        self, adapter: BaseCacheAdapter
    ) -> None:
        self._requires("supports_read_your_invalidations")
        twin, started, release = adapter.sync, threading.Event(), threading.Event()
        results: list[str] = []

        def old() -> str:
            started.set()
            assert release.wait(20)
            return "old"

        thread = threading.Thread(target=lambda: results.append(twin.get_or_create("k", old)))
        thread.start()
        assert started.wait(20)
        twin.invalidate("k")
        assert twin.get_or_create("k", lambda: "new") == "new"
        release.set()
        thread.join(20)
        assert results == ["old"]
        assert twin.get("k") == "new"

    @pytest.mark.asyncio
    async def test_ttl_zero_set_removes_the_previous_value(self, adapter: BaseCacheAdapter) -> None:
        self._requires("ttl_zero_set_removes")
        await adapter.set("k", "old")
        await adapter.set("k", "ignored", 0)
        assert await adapter.get("k", "absent") == "absent"
        adapter.sync.set("j", "old")
        adapter.sync.set("j", "ignored", 0)
        assert adapter.sync.get("j", "absent") == "absent"

    @pytest.mark.asyncio
    @pytest.mark.parametrize("key", [b"bytes", 1, ("a",), None, "lone \udc80 surrogate"])
    async def test_keys_other_than_str_are_refused_alike(
        self, adapter: BaseCacheAdapter, key: Any
    ) -> None:
        self._requires("refuses_non_str_keys")
        with pytest.raises(ConfigurationError, match="key"):
            await adapter.get_or_create(key, lambda: 1)
        with pytest.raises(ConfigurationError, match="key"):
            await adapter.set(key, 1)
        with pytest.raises(ConfigurationError, match="key"):
            adapter.sync.get_or_create(key, lambda: 1)
        with pytest.raises(ConfigurationError, match="key"):
            await adapter.invalidate(key)
