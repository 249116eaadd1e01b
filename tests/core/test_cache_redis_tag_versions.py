"""`RedisCacheAdapter(local_tag_versions=True)`: tag versions kept in the process, dropped by
Redis's invalidation messages (client tracking), trusted only while the tracking connection is up.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from cachewire.cache import RedisCacheAdapter
from cachewire.cache._redis._tracking import LocalTagVersions
from cachewire.errors import ConfigurationError

pytestmark = pytest.mark.redis

TAGS = ("f:fn", "p:fn|i7~")
WAIT = 10.0  # seconds a condition may take at most before the test fails


@pytest.fixture
async def cache(redis_db_url: str) -> AsyncIterator[RedisCacheAdapter]:
    adapter = RedisCacheAdapter(redis_db_url, namespace="ltv", local_tag_versions=True)
    yield adapter
    await adapter.aclose()


@pytest.fixture
def plain(redis_db_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_db_url)
    yield client
    client.close()


def tracker(cache: RedisCacheAdapter) -> LocalTagVersions:
    local = cache._tag_versions
    assert local is not None
    return local


def settle(cache: RedisCacheAdapter) -> LocalTagVersions:
    """Wait until the tracking connection is up and every change made so far was applied here:
    a change of a tag key nothing carries is sent after them, so once it is applied, they were.
    """
    local = tracker(cache)
    local.start()
    assert local.wait_for(lambda: local.trusted, WAIT)
    sentinel = cache.core.tag_key("~settle")
    local.versions[sentinel] = b"0"
    client = cache._sync_client
    assert client is not None
    client.incr(sentinel)
    assert local.wait_for(lambda: sentinel not in local.versions, WAIT)
    return local


async def known_locally(cache: RedisCacheAdapter, key: str, tags: Any = TAGS) -> LocalTagVersions:
    """Settle, then read ``key`` once so that this process keeps its tags' versions."""
    local = await asyncio.to_thread(settle, cache)
    await cache.get(key, tags=tags)
    assert local.covers(cache.core.tag_keys(tags))
    return local


def counter() -> Any:
    calls = 0

    def creator() -> int:
        nonlocal calls
        calls += 1
        return calls

    return creator


async def test_a_tagged_hit_is_one_get_once_the_versions_are_known(
    cache: RedisCacheAdapter, sent_commands: Any
) -> None:
    creator = counter()
    assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 1
    await known_locally(cache, "k")
    sent = sent_commands(cache)
    assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 1
    assert await cache.get("k", tags=TAGS) == 1
    assert sent == ["GET", "GET"]
    assert cache.get_stats()["local_tag_versions"]["tracking"] is True


def test_the_blocking_twin_reads_one_key_too(cache: RedisCacheAdapter, sent_commands: Any) -> None:
    twin = cache.sync
    creator = counter()
    assert twin.get_or_create("k", creator, 60, tags=TAGS) == 1
    local = settle(cache)
    twin.get("k", tags=TAGS)  # fills
    assert local.covers(cache.core.tag_keys(TAGS))
    sent = sent_commands(cache, blocking=True)
    assert twin.get_or_create("k", creator, 60, tags=TAGS) == 1
    assert sent == ["GET"]


@pytest.mark.parametrize("change", ["incr", "del"])
async def test_a_change_by_another_client_drops_the_local_version(
    cache: RedisCacheAdapter, plain: redis.Redis, change: str
) -> None:
    creator = counter()
    assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 1
    local = await known_locally(cache, "k")
    tag_key = cache.core.tag_key(TAGS[1])
    if change == "incr":
        plain.incr(tag_key)
    else:
        plain.delete(tag_key)
    assert await asyncio.to_thread(local.wait_for, lambda: tag_key not in local.versions, WAIT)
    assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 2


@pytest.mark.parametrize("other_keeps_versions", [False, True])
async def test_another_adapter_instance_invalidating_is_seen(
    cache: RedisCacheAdapter, redis_db_url: str, other_keeps_versions: bool
) -> None:
    creator = counter()
    assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 1
    local = await known_locally(cache, "k")
    other = RedisCacheAdapter(
        redis_db_url, namespace="ltv", local_tag_versions=other_keeps_versions
    )
    try:
        await other.invalidate_tags([TAGS[0]])
        tag_key = cache.core.tag_key(TAGS[0])
        assert await asyncio.to_thread(local.wait_for, lambda: tag_key not in local.versions, WAIT)
        assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 2
    finally:
        await other.aclose()


async def test_own_invalidation_is_read_at_once(cache: RedisCacheAdapter) -> None:
    creator = counter()
    assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 1
    local = await known_locally(cache, "k")
    await cache.invalidate_tags([TAGS[1]])  # no waiting for the server's message
    assert cache.core.tag_key(TAGS[1]) not in local.versions
    assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 2
    cache.sync.invalidate_tags([TAGS[0]])
    assert cache.sync.get_or_create("k", creator, 60, tags=TAGS) == 3


async def test_killing_the_tracking_connection_empties_the_copy_and_falls_back(
    cache: RedisCacheAdapter, plain: redis.Redis, sent_commands: Any
) -> None:
    creator = counter()
    assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 1
    local = await known_locally(cache, "k")
    resets, connections = local.resets, local.connections
    plain.client_kill_filter(_id=local.client_id)
    assert await asyncio.to_thread(local.wait_for, lambda: local.resets > resets, WAIT)
    assert not local.covers(cache.core.tag_keys(TAGS))
    sent = sent_commands(cache)
    assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 1
    assert sent == ["MGET"]  # the versions come from Redis again
    # A new tracking connection is made, and the versions are kept again.
    assert await asyncio.to_thread(local.wait_for, lambda: local.connections > connections, WAIT)
    await cache.get("k", tags=TAGS)
    sent.clear()
    assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 1
    assert sent == ["GET"]


async def test_a_message_read_but_not_yet_applied_is_not_overtaken(
    cache: RedisCacheAdapter, plain: redis.Redis
) -> None:
    creator = counter()
    assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 1
    local = await known_locally(cache, "k")
    entered, proceed = threading.Event(), threading.Event()
    apply = local._apply

    def held(message: Any) -> None:
        entered.set()
        proceed.wait(WAIT)
        apply(message)

    local._apply = held  # type: ignore[method-assign]
    try:
        plain.incr(cache.core.tag_key(TAGS[0]))
        assert await asyncio.to_thread(entered.wait, WAIT)
        # The old versions are still here, but a message is being applied: not trusted.
        assert local.covers(cache.core.tag_keys(TAGS))
        assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 2
    finally:
        proceed.set()


async def test_a_fill_overtaken_by_an_invalidation_is_not_kept(
    cache: RedisCacheAdapter, plain: redis.Redis
) -> None:
    await cache.set("k", 1, 60, tags=TAGS)
    local = await known_locally(cache, "k")
    tag_key = cache.core.tag_key(TAGS[0])
    local.drop([tag_key])
    read_before = plain.get(tag_key)
    mark = local.begin_fill([tag_key])  # a read of the versions is prepared, then sent ...
    messages = local.messages
    plain.incr(tag_key)  # ... and an invalidation comes in before its answer is kept
    assert await asyncio.to_thread(local.wait_for, lambda: local.messages > messages, WAIT)
    local.end_fill(mark, [tag_key], [read_before])
    assert tag_key not in local.versions


async def test_the_copy_is_bounded(cache: RedisCacheAdapter) -> None:
    local = await asyncio.to_thread(settle, cache)
    local.MAX_TAGS = 2
    for index in range(5):
        await cache.set(f"k{index}", index, 60, tags=[f"t{index}"])
    await asyncio.to_thread(settle, cache)
    for index in range(5):
        assert await cache.get(f"k{index}", tags=[f"t{index}"]) == index
        assert 1 <= len(local.versions) <= 2


async def test_flushdb_empties_the_copy(private_redis: Any) -> None:
    cache = RedisCacheAdapter(private_redis.url, namespace="flush", local_tag_versions=True)
    client = redis.Redis.from_url(private_redis.url)
    try:
        await cache.set("k", 1, 60, tags=TAGS)
        local = await known_locally(cache, "k")
        resets = local.resets
        client.flushdb()  # a server of this test's own
        assert await asyncio.to_thread(local.wait_for, lambda: local.resets > resets, WAIT)
        assert local.versions == {}
        assert await cache.get("k", "gone", tags=TAGS) == "gone"
    finally:
        client.close()
        await cache.aclose()


async def test_a_forked_child_does_not_trust_the_parents_copy(cache: RedisCacheAdapter) -> None:
    creator = counter()
    assert await cache.get_or_create("k", creator, 60, tags=TAGS) == 1
    local = await known_locally(cache, "k")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report on the pipe, never return into pytest
        code = 1
        try:
            fresh = not local.trusted and local.versions == {} and local.client_id is None
            twin = cache.sync
            value = twin.get_or_create("k", lambda: -1, 60, tags=TAGS)
            tracking = local.wait_for(lambda: local.trusted, WAIT)
            code = 0 if (fresh and value == 1 and tracking) else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    try:
        result = await asyncio.to_thread(os.read, read, 1)
    finally:
        os.close(read)
        await asyncio.to_thread(os.waitpid, pid, 0)
    assert result == b"\x00"
    assert local.trusted  # the parent's copy is untouched


async def test_closing_stops_the_reader(redis_db_url: str) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="ltv-close", local_tag_versions=True)
    await cache.set("k", 1, 60, tags=TAGS)
    local = await known_locally(cache, "k")
    thread = local._thread
    await cache.aclose()
    assert thread is not None and not thread.is_alive()
    assert not local.trusted and local.versions == {}


def test_an_adapter_dropped_without_closing_stops_its_reader(redis_db_url: str) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="ltv-drop", local_tag_versions=True)
    twin = cache.sync
    twin.set("k", 1, 60, tags=TAGS)
    local = settle(cache)
    twin.get("k", tags=TAGS)
    thread = local._thread
    assert thread is not None and thread.is_alive()
    twin.invalidate("k")
    del cache, twin
    gc.collect()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert not local.trusted


async def test_it_needs_a_blocking_client(redis_db_url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_db_url)
    with pytest.raises(ConfigurationError, match="local_tag_versions=True needs redis_url="):
        RedisCacheAdapter(client=client, local_tag_versions=True)
    await client.aclose()
