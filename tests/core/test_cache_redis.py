from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis

from cachewire.cache import RedisCacheAdapter
from cachewire.cache._redis import SCRIPTS
from cachewire.errors import CacheBackendError, SerializationError
from cachewire.testing import CacheAdapterContract

pytestmark = pytest.mark.redis


class TestRedisContract(CacheAdapterContract):
    """The contract, with tag versions read from Redis on every hit, kept in the process, and
    with every value written the way large ones are (staged, then published)."""

    @pytest.fixture(
        params=["fetched-versions", "local-tag-versions", "staged-writes"],
    )
    def mode(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @staticmethod
    def _adapter(url: str, mode: str, **options: Any) -> RedisCacheAdapter:
        cache = RedisCacheAdapter(url, local_tag_versions=mode == "local-tag-versions", **options)
        if mode == "staged-writes":
            cache.core.STAGE_BYTES = 0
        return cache

    @pytest.fixture
    async def adapter(self, redis_db_url: str, mode: str) -> AsyncIterator[RedisCacheAdapter]:
        cache = self._adapter(redis_db_url, mode, namespace="contract")
        yield cache
        await cache.aclose()

    @pytest.fixture
    async def stale_setup(
        self, redis_db_url: str, mode: str
    ) -> AsyncIterator[tuple[RedisCacheAdapter, Callable[[str], None]]]:
        cache = self._adapter(redis_db_url, mode, namespace="contract-stale", stale_ttl=3600)
        client = redis.Redis.from_url(redis_db_url)

        def expire(key: str) -> None:
            # The soft expiry (server ms) is the record's first field: put it in the past.
            name = f"contract-stale:v:{key}"
            fields = client.get(name).split(b"\n", 4)
            client.set(name, b"\n".join([b"1", *fields[1:]]), keepttl=True)

        yield cache, expire
        client.close()
        await cache.aclose()


@pytest.fixture
async def cache(redis_db_url: str) -> AsyncIterator[RedisCacheAdapter]:
    adapter = RedisCacheAdapter(redis_db_url, namespace="t")
    yield adapter
    await adapter.aclose()


async def test_a_hit_is_one_round_trip_and_a_miss_two_around_the_creator(
    cache: RedisCacheAdapter, sent_commands: Any
) -> None:
    await cache.get_or_create("k", lambda: {"a": 1})  # loads the scripts
    await cache.get_or_create("tagged", lambda: 1, tags=["t1", "t2"])
    sent = sent_commands(cache)
    assert await cache.get_or_create("k", lambda: {"a": 2}) == {"a": 1}
    assert sent == ["GET"]
    sent.clear()
    assert await cache.get_or_create("tagged", lambda: 2, tags=["t1", "t2"]) == 1
    assert sent == ["MGET"]  # the value and its tag versions together
    sent.clear()

    def creator() -> int:
        sent.append("creator")
        return 1

    await cache.get_or_create("other", creator)
    # The read that missed, then one script that takes the lease and one that publishes.
    assert sent == ["GET", "EVALSHA", "creator", "EVALSHA"]


async def test_user_keys_cannot_reach_lock_or_tag_namespaces(
    cache: RedisCacheAdapter, redis_db_url: str
) -> None:
    await cache.set("x", "value")
    await cache.set("l:x", "lock-like")
    await cache.set(":t:x", "tag-like")
    assert await cache.get("x") == "value"
    client = redis.Redis.from_url(redis_db_url)
    names = sorted(n.decode() for n in client.keys("t:*"))
    client.close()
    assert all(name.startswith("t:v:") for name in names)


async def test_strict_json_refuses_values_that_would_change(
    cache: RedisCacheAdapter, redis_db_url: str
) -> None:
    client = redis.Redis.from_url(redis_db_url)
    for value in ["\ud800", {1: "a"}, {"when": object()}]:
        with pytest.raises(SerializationError):
            await cache.get_or_create("k", lambda value=value: value)
        assert not client.exists("t:l:k")  # the lease is released, nobody waits for it
    client.close()
    assert await cache.get("k", "absent") == "absent"


async def test_lease_deleted_mid_flight_means_no_write_back_and_no_error(
    cache: RedisCacheAdapter, redis_db_url: str
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def creator() -> str:
        started.set()
        await release.wait()
        return "late"

    caller = asyncio.create_task(cache.get_or_create("k", creator))
    await started.wait()
    client = redis.Redis.from_url(redis_db_url)
    client.delete("t:l:k")  # the lease expired or someone took it over
    client.close()
    release.set()
    assert await caller == "late"
    assert await cache.get("k", "absent") == "absent"
    assert cache.get_stats()["writes_rejected"] == 1


async def test_slow_creator_keeps_its_lease_with_the_heartbeat(redis_db_url: str) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="hb", lock_timeout=0.15)
    other = RedisCacheAdapter(redis_db_url, namespace="hb", lock_timeout=0.15)
    calls = 0
    started, release, renewed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    renewals = 0
    original_eval = cache._eval

    async def counting_eval(step: Any) -> Any:
        nonlocal renewals
        result = await original_eval(step)
        if step.script is SCRIPTS["extend"] and result:
            renewals += 1
            if renewals >= 6:  # the lease has been renewed over two lease lifetimes
                renewed.set()
        return result

    cache._eval = counting_eval  # type: ignore[method-assign]

    async def creator() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "v"

    first = asyncio.create_task(cache.get_or_create("k", creator))
    await started.wait()
    second = asyncio.create_task(other.get_or_create("k", creator))
    await asyncio.wait_for(renewed.wait(), 30)
    release.set()
    assert await asyncio.gather(first, second) == ["v", "v"]
    assert calls == 1  # the other adapter waited all along instead of taking over
    assert cache.get_stats()["lock_lost"] == 0
    await cache.aclose()
    await other.aclose()


def _contender(url: str, start: Any, count: int) -> list[str]:
    async def main() -> list[str]:
        cache = RedisCacheAdapter(url, namespace="xproc")

        async def creator() -> str:
            client = redis.Redis.from_url(url)
            client.incr("xproc-calls")
            client.close()
            await asyncio.sleep(0.3)
            return "computed"

        start.wait()
        try:
            return list(
                await asyncio.gather(*(cache.get_or_create("hot", creator) for _ in range(count)))
            )
        finally:
            await cache.aclose()

    return asyncio.run(main())


@pytest.mark.timeout(60)
def test_four_processes_one_computation(redis_db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    manager = ctx.Manager()
    start = manager.Event()
    with ctx.Pool(4) as pool:
        results = [pool.apply_async(_contender, (redis_db_url, start, 50)) for _ in range(4)]
        start.set()
        values = [r.get(50) for r in results]
    manager.shutdown()
    assert all(v == ["computed"] * 50 for v in values)
    client = redis.Redis.from_url(redis_db_url)
    assert int(client.get("xproc-calls") or 0) == 1
    client.close()


async def test_fail_open_computes_and_counts_when_redis_is_down(private_redis: Any) -> None:
    cache = RedisCacheAdapter(private_redis.url, namespace="down")
    assert await cache.get_or_create("k", lambda: 1) == 1
    private_redis.stop()
    assert await cache.get_or_create("k2", lambda: 2) == 2
    assert cache.get_stats()["backend_errors"] >= 1
    closed = RedisCacheAdapter(private_redis.url, namespace="down", fail_open=False)
    with pytest.raises(CacheBackendError):
        await closed.get_or_create("k3", lambda: 3)


def test_blocking_twin_across_adapters_shares_entries(redis_db_url: str) -> None:
    a = RedisCacheAdapter(redis_db_url, namespace="s")
    b = RedisCacheAdapter(redis_db_url, namespace="s")
    assert a.sync.get_or_create("k", lambda: [1, 2]) == [1, 2]
    assert b.sync.get_or_create("k", lambda: "other") == [1, 2]
    b.sync.invalidate_tags(["none"])
    a.sync.invalidate("k")
    assert b.sync.get("k", "absent") == "absent"


async def test_redis_going_down_while_the_creator_runs_does_not_reach_the_caller(
    private_redis: Any,
) -> None:
    cache = RedisCacheAdapter(private_redis.url, namespace="mid")

    def creator() -> str:
        private_redis.stop()  # the lease can be neither published nor released now
        return "computed"

    assert await cache.get_or_create("k", creator, 0) == "computed"
    assert cache.get_stats()["backend_errors"] >= 1
