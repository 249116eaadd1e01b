"""Damaged records and failures at every step of a read never crash, hang or leave state behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from redis import exceptions as redis_errors

from cachewire.cache import InMemoryCacheAdapter, JsonCodec, RedisCacheAdapter
from cachewire.cache._redis._record import SCRIPTS, parse_record

pytestmark = pytest.mark.redis

DAMAGED = [
    b"+1\n0\njson1\n\n1",  # a sign
    b" 1\n0\njson1\n\n1",  # a space
    b"\t1\n0\njson1\n\n1",  # a tab
    b"1 \n0\njson1\n\n1",  # trailing space
    b"9" * 400 + b"\n0\njson1\n\n1",  # too long to be exact (OverflowError in a float)
    b"1\n" + b"9" * 400 + b"\njson1\n\n1",
    b"1\n-5\njson1\n\n1",
    b"1_000\n0\njson1\n\n1",
    b"\xd9\xa1\n0\njson1\n\n1",  # a non-ASCII digit
    b"garbage",
    b"\n\n\n\n",
]


@pytest.fixture
def client(redis_db_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_db_url)
    yield connection
    connection.close()


@pytest.fixture
async def cache(redis_db_url: str) -> AsyncIterator[RedisCacheAdapter]:
    adapter = RedisCacheAdapter(
        redis_db_url, namespace="hostile", stale_ttl=5, early_refresh_beta=1.0
    )
    yield adapter
    await adapter.aclose()


@pytest.mark.parametrize("stored", DAMAGED)
def test_the_parser_refuses_damaged_records(stored: bytes) -> None:
    assert parse_record(stored) is None


@pytest.mark.parametrize("stored", DAMAGED)
@pytest.mark.parametrize("tagged", [False, True])
async def test_a_damaged_record_is_replaced_on_both_twins(
    cache: RedisCacheAdapter, client: redis.Redis, stored: bytes, tagged: bool
) -> None:
    tags = ["t"] if tagged else []
    client.set("hostile:v:k", stored)
    results = await asyncio.wait_for(
        asyncio.gather(*(cache.get_or_create("k", lambda: "fresh", tags=tags) for _ in range(5))),
        30,
    )
    assert results == ["fresh"] * 5
    assert len(cache._local) == 0
    client.set("hostile:v:j", stored)
    assert await asyncio.to_thread(cache.sync.get_or_create, "j", lambda: "fresh", tags=tags) == (
        "fresh"
    )
    assert await cache.get("k", tags=tags) == "fresh"
    assert await cache.get_or_create("k", lambda: "again", tags=tags) == "fresh"


# ----------------------------------------------------------- failure at each step


class Boom(Exception):
    pass


def _inject(cache: RedisCacheAdapter, where: str, error: BaseException) -> Callable[[], None]:
    """Make the step ``where`` of the next read fail once with ``error``; returns an undo."""
    core = cache.core
    fired = [False]

    def once() -> bool:
        if fired[0]:
            return False
        fired[0] = True
        return True

    if where == "fetch":
        original_fetch = cache._fetch

        async def fetch(*args: Any) -> Any:
            if once():
                raise error
            return await original_fetch(*args)

        cache._fetch = fetch  # type: ignore[method-assign]
        return lambda: setattr(cache, "_fetch", original_fetch)
    if where == "fresh":
        original_fresh = core.fresh

        def fresh(*args: Any, **kwargs: Any) -> Any:
            if once():
                raise error
            return original_fresh(*args, **kwargs)

        core.fresh = fresh  # type: ignore[method-assign]
        return lambda: setattr(core, "fresh", original_fresh)
    if where == "encode":
        original_encode = core.encode

        def encode(*args: Any) -> Any:
            if once():
                raise error
            return original_encode(*args)

        core.encode = encode  # type: ignore[method-assign]
        return lambda: setattr(core, "encode", original_encode)
    script = SCRIPTS[where]
    original_eval = cache._eval

    async def failing_eval(step: Any) -> Any:
        if step.script is script and once():
            raise error
        return await original_eval(step)

    cache._eval = failing_eval  # type: ignore[method-assign]
    return lambda: setattr(cache, "_eval", original_eval)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["fetch", "fresh", "read", "encode", "write", "release"])
@pytest.mark.parametrize(
    "error",
    [Boom("unexpected"), redis_errors.ResponseError("script"), asyncio.CancelledError()],
    ids=["unexpected", "redis", "cancelled"],
)
async def test_a_failure_at_any_step_of_a_read_leaves_nothing_behind(
    cache: RedisCacheAdapter, client: redis.Redis, where: str, error: BaseException
) -> None:
    # "release" is reached when the creator fails; the others on a plain miss.
    creator_fails = where == "release"
    undo = _inject(cache, where, error)

    async def creator() -> str:
        if creator_fails:
            raise Boom("creator")
        return "v"

    callers = [asyncio.create_task(cache.get_or_create("k", creator)) for _ in range(3)]
    await asyncio.wait(callers, timeout=30)
    assert all(task.done() for task in callers)
    undo()
    assert len(cache._local) == 0
    assert cache._background == set() or all(t.done() for t in cache._background)
    # The next call completes, and computes if nothing was stored.
    assert await asyncio.wait_for(cache.get_or_create("k", lambda: "next"), 30) in ("v", "next")
    assert len(cache._local) == 0
    if where in ("encode", "release"):
        assert not client.exists("hostile:l:k")  # no lease left for anyone to wait on


@pytest.mark.parametrize("fail", ["creator", "codec"])
async def test_memory_failures_leave_no_flight(fail: str) -> None:
    cache = InMemoryCacheAdapter(codec=JsonCodec())

    def creator() -> Any:
        if fail == "creator":
            raise Boom("creator")
        return {1: "int keys do not survive JSON"}

    for twin in ("async", "sync"):
        with pytest.raises(Exception):
            if twin == "async":
                await cache.get_or_create("k", creator)
            else:
                cache.sync.get_or_create("k", creator)
        assert cache.get_stats()["in_flight"] == 0
        assert await cache.get_or_create("k", lambda: "next") == "next"
        await cache.invalidate("k")
