from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

from cachewire import Rule, cached, changed
from cachewire.cache import InMemoryCacheAdapter, get_cached_function
from cachewire.errors import ConfigurationError


def counting(cache: InMemoryCacheAdapter, **options: Any) -> Any:
    calls: list[tuple[int, int]] = []

    @cached(cache=cache, partition=("user_id",), name=f"t.orders.{id(calls)}", **options)
    def orders(user_id: int, page: int = 1) -> tuple[int, int] | None:
        calls.append((user_id, page))
        return None if page == 0 else (user_id, page)

    return orders, calls


def test_hit_after_miss_and_default_arguments_share_a_key() -> None:
    orders, calls = counting(InMemoryCacheAdapter())
    assert orders(1) == (1, 1)
    assert orders(user_id=1, page=1) == (1, 1)
    assert orders(1, 1) == (1, 1)
    assert calls == [(1, 1)]


def test_cached_none_is_a_hit() -> None:
    orders, calls = counting(InMemoryCacheAdapter())
    assert orders(1, 0) is None
    assert orders(1, 0) is None
    assert calls == [(1, 0)]


def test_partition_invalidation_touches_only_that_partition() -> None:
    cache = InMemoryCacheAdapter()
    orders, calls = counting(cache)
    for user in (1, 2):
        for page in (1, 2, 3):
            orders(user, page)
    calls.clear()
    orders.invalidate(user_id=1)
    for user in (1, 2):
        for page in (1, 2, 3):
            orders(user, page)
    assert calls == [(1, 1), (1, 2), (1, 3)]


def test_exact_entry_and_whole_function_invalidation() -> None:
    orders, calls = counting(InMemoryCacheAdapter())
    orders(1, 1)
    orders(1, 2)
    calls.clear()
    orders.invalidate(user_id=1, page=2)
    orders(1, 1)
    orders(1, 2)
    assert calls == [(1, 2)]
    calls.clear()
    orders.invalidate_all()
    orders(1, 1)
    assert calls == [(1, 1)]


def test_partition_invalidation_is_a_constant_amount_of_work() -> None:
    cache = InMemoryCacheAdapter()
    orders, _ = counting(cache)
    for page in range(1000):
        orders(1, page + 1)
    tags_before = cache.get_stats()["tags"]
    orders.invalidate(user_id=1)
    # One tag version bumped; no entry was visited or deleted.
    assert cache.get_stats()["size"] == 1000
    assert cache.get_stats()["tags"] == tags_before + 1


async def test_async_functions_and_async_invalidation() -> None:
    cache = InMemoryCacheAdapter()
    calls = 0

    @cached(cache=cache, partition=("user_id",), name="t.async_profile")
    async def profile(user_id: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return {"id": user_id}

    assert await profile(1) == {"id": 1}
    assert await profile(1) == {"id": 1}
    assert calls == 1
    await profile.ainvalidate(user_id=1)
    assert await profile(1) == {"id": 1}
    assert calls == 2


async def test_partition_invalidation_during_a_computation_prevents_stale_write_back() -> None:
    cache = InMemoryCacheAdapter()
    started, release = asyncio.Event(), asyncio.Event()
    version = 0

    @cached(cache=cache, partition=("user_id",), name="t.slow_profile")
    async def profile(user_id: int) -> int:
        nonlocal version
        version += 1
        started.set()
        await release.wait()
        return version

    first = asyncio.create_task(profile(1))
    await started.wait()
    await profile.ainvalidate(user_id=1)
    release.set()
    assert await first == 1
    assert await profile(1) == 2


def test_bad_declarations_fail_early() -> None:
    with pytest.raises(ConfigurationError, match="names no parameter"):

        @cached(partition=("nope",), name="t.bad1")
        def f(a: int) -> int:
            return a

    with pytest.raises(ConfigurationError, match="needs name="):
        cached()(lambda a: a)

    orders, _ = counting(InMemoryCacheAdapter())
    with pytest.raises(ConfigurationError, match="unmapped"):
        orders.invalidate(page=1)
    with pytest.raises(ConfigurationError, match="no parameter"):
        orders.invalidate(nobody=1)


def test_functions_are_registered_by_stable_id() -> None:
    orders, _ = counting(InMemoryCacheAdapter())
    assert get_cached_function(orders.cache_id) is orders
    with pytest.raises(ConfigurationError, match="no cached function"):
        get_cached_function("missing.id")


@attrs.define
class Post:
    author_id: int
    title: str


def test_rules_invalidate_the_right_partition_end_to_end() -> None:
    cache = InMemoryCacheAdapter()
    calls: list[int] = []

    @cached(
        cache=cache,
        partition=("author_id",),
        name="t.posts_by_author",
        invalidates_on=[Rule(model=Post, field_mapping={"author_id": "author_id"})],
    )
    def posts_by_author(author_id: int, page: int = 1) -> str:
        calls.append(author_id)
        return f"{author_id}:{page}"

    for author in (1, 2, 3):
        posts_by_author(author)
    calls.clear()
    # The post moved from author 1 to author 2.
    changed(Post, Post(author_id=2, title="x"), old={"author_id": 1})
    for author in (1, 2, 3):
        posts_by_author(author)
    assert sorted(calls) == [1, 2]


def test_a_rule_mapping_a_missing_parameter_fails_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="no parameter"):

        @cached(
            partition=("author_id",),
            name="t.bad_rule",
            invalidates_on=[Rule(model=Post, field_mapping={"writer": "author_id"})],
        )
        def f(author_id: int) -> int:
            return author_id


@pytest.mark.redis
def test_partition_invalidation_on_redis_is_one_command_whatever_the_partition_size(
    redis_db_url: str,
) -> None:
    import redis

    from cachewire.cache import RedisCacheAdapter

    cache = RedisCacheAdapter(redis_db_url, namespace="cached")
    calls: list[tuple[int, int]] = []

    @cached(cache=cache, partition=("user_id",), name="t.redis_orders")
    def orders(user_id: int, page: int) -> list[int]:
        calls.append((user_id, page))
        return [user_id, page]

    for page in range(1000):
        orders(1, page)
    orders(2, 0)
    sent: list[str] = []
    client = cache._sync_client
    assert client is not None
    original = client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return original(*args, **kwargs)

    client.execute_command = counting  # type: ignore[method-assign]
    original_pipeline = client.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = original_pipeline(*args, **kwargs)
        original_execute = pipe.execute

        def execute(*a: Any, **k: Any) -> Any:
            sent.extend(str(cmd[0][0]) for cmd in pipe.command_stack)
            return original_execute(*a, **k)

        pipe.execute = execute
        return pipe

    client.pipeline = counting_pipeline  # type: ignore[method-assign]
    orders.invalidate(user_id=1)
    assert sent == ["EVALSHA"]  # one version bump (a script); no SCAN, KEYS or DEL over entries
    client.execute_command = original  # type: ignore[method-assign]
    client.pipeline = original_pipeline  # type: ignore[method-assign]
    calls.clear()
    orders(1, 5)
    orders(2, 0)
    assert calls == [(1, 5)]
    server = redis.Redis.from_url(redis_db_url)
    assert server.dbsize() >= 1001  # the stale entries were left to expire, not scanned
    server.close()
    asyncio.run(cache.aclose())
