"""Large values are staged under a key of their own with a plain SET and published by a script
that moves them into place: the same outcomes as any write, without the value passing through
the script."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from cachewire.cache import RedisCacheAdapter
from cachewire.cache._redis._core import RedisCore

pytestmark = pytest.mark.redis

LARGE = {"rows": ["x" * 100] * (RedisCore.STAGE_BYTES // 100 + 10)}  # over the threshold


@pytest.fixture
async def cache(redis_db_url: str) -> AsyncIterator[RedisCacheAdapter]:
    adapter = RedisCacheAdapter(redis_db_url, namespace="stg")
    yield adapter
    await adapter.aclose()


@pytest.fixture
def plain(redis_db_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_db_url)
    yield client
    client.close()


def staged_keys(plain: redis.Redis) -> list[bytes]:
    return list(plain.scan_iter(match="stg:s:*"))


def sent_scripts(cache: RedisCacheAdapter) -> list[str]:
    """Records which script each EVALSHA of ``cache`` ran, by name."""
    from cachewire.cache._redis import SCRIPTS

    names = {script.sha: name for name, script in SCRIPTS.items()}
    sent: list[str] = []
    original = cache._eval

    async def recording(step: Any) -> Any:
        sent.append(names[step.script.sha] + ("+stage" if step.stage else ""))
        return await original(step)

    cache._eval = recording  # type: ignore[method-assign]
    return sent


async def test_a_large_set_and_a_large_leader_miss_are_staged_then_published(
    cache: RedisCacheAdapter, plain: redis.Redis
) -> None:
    sent = sent_scripts(cache)
    await cache.set("big", LARGE, 300, tags=["t1"])
    assert await cache.get_or_create("miss", lambda: LARGE, 300, tags=["t1", "t2"]) == LARGE
    # One read of the versions before each publish, even under tags that did not exist yet.
    assert sent == ["read", "write+stage", "read", "write+stage"]
    assert await cache.get("big", tags=["t1"]) == LARGE
    assert await cache.get_or_create("miss", lambda: "again", 300, tags=["t1", "t2"]) == LARGE
    assert staged_keys(plain) == []  # moved into place, nothing left behind
    # The record's soft expiry was written over its zeros, and the key expires with its TTL.
    soft = int(plain.get("stg:v:big").split(b"\n", 1)[0])  # type: ignore[union-attr]
    server_ms = int(plain.time()[0]) * 1000
    assert server_ms < soft <= server_ms + 300_000 + 1000
    assert 0 < plain.pttl("stg:v:big") <= 300_000
    assert cache.get_stats()["writes_rejected"] == 0


async def test_a_small_value_is_written_by_the_one_script(cache: RedisCacheAdapter) -> None:
    sent = sent_scripts(cache)
    await cache.set("small", {"a": 1}, 300, tags=["t1"])
    assert sent == ["write"]


async def test_a_large_value_without_expiry_stays(redis_db_url: str, plain: redis.Redis) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="stg", stale_ttl=60)  # clock checks on
    await cache.set("forever", LARGE, None, tags=["t1"])
    assert plain.pttl("stg:v:forever") == -1
    assert plain.get("stg:v:forever").startswith(b"0" * 15 + b"\n")  # type: ignore[union-attr]
    assert await cache.get("forever", tags=["t1"]) == LARGE
    assert cache.sync.get("forever", tags=["t1"]) == LARGE
    await cache.aclose()


@pytest.mark.parametrize("interruption", ["invalidation", "lost lease"])
async def test_a_large_publish_is_refused_after_an_invalidation_or_without_its_lease(
    cache: RedisCacheAdapter, plain: redis.Redis, interruption: str
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def creator() -> dict[str, Any]:
        started.set()
        await release.wait()
        return LARGE

    caller = asyncio.create_task(cache.get_or_create("k", creator, 300, tags=["t1"]))
    await started.wait()
    if interruption == "invalidation":
        await cache.invalidate_tags(["t1"])
    else:
        plain.delete("stg:l:k")  # the lease expired, or another process took it over
    release.set()
    assert await caller == LARGE  # the caller gets its value; nobody else will
    assert await cache.get("k", "absent", tags=["t1"]) == "absent"
    assert cache.get_stats()["writes_rejected"] == 1
    assert staged_keys(plain) == []
    assert plain.exists("stg:l:k") == 0  # no lease is left behind


async def test_a_large_set_whose_tags_moved_reads_them_again(
    cache: RedisCacheAdapter, plain: redis.Redis
) -> None:
    """A bump between the set's read of the versions and its publish: read again, publish."""
    sent = sent_scripts(cache)
    stage = cache.core.staged_write
    bumped: list[bool] = []

    def bump_first(*args: Any, **kwargs: Any) -> Any:
        if not bumped:
            plain.incr(cache.core.tag_key("t1"))
            bumped.append(True)
        return stage(*args, **kwargs)

    cache.core.staged_write = bump_first  # type: ignore[method-assign]
    await cache.set("k", LARGE, 300, tags=["t1"])
    assert sent == ["read", "write+stage", "read", "write+stage"]
    assert await cache.get("k", tags=["t1"]) == LARGE
    assert staged_keys(plain) == []


def test_the_blocking_twin_stages_large_values(redis_db_url: str, plain: redis.Redis) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="stg")
    twin = cache.sync
    twin.set("big", LARGE, 300, tags=["t1"])
    assert twin.get_or_create("miss", lambda: LARGE, 300, tags=["t2"]) == LARGE
    assert twin.get("big", tags=["t1"]) == LARGE
    assert twin.get_or_create("miss", lambda: "again", 300, tags=["t2"]) == LARGE
    assert staged_keys(plain) == []
    assert plain.get("stg:v:big").split(b"\n", 4)[4].startswith(b'{"rows"')  # type: ignore[union-attr]
    twin.close()
