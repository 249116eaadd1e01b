"""Redis adapter: serve-stale, early refresh, jitter, invalidation and unreadable values."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis

from cachewire.cache import RedisCacheAdapter
from cachewire.cache._codec import JsonCodec
from cachewire.errors import ConfigurationError

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_db_url: str) -> Any:
    connection = redis.Redis.from_url(redis_db_url)
    yield connection
    connection.close()


def _rewrite(client: Any, name: str, *, soft: int | None = None, delta: int | None = None) -> None:
    """Change the soft expiry (server ms) or the creator time of a stored record in place."""
    fields = client.get(name).split(b"\n", 4)
    if soft is not None:
        fields[0] = str(soft).encode()
    if delta is not None:
        fields[1] = str(delta).encode()
    client.set(name, b"\n".join(fields), keepttl=True)


async def _until(predicate: Callable[[], Any], limit: int = 2000) -> None:
    for _ in range(limit):
        if await predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


@pytest.fixture
async def stale_cache(redis_db_url: str) -> AsyncIterator[RedisCacheAdapter]:
    cache = RedisCacheAdapter(redis_db_url, namespace="st", stale_ttl=60)
    yield cache
    await cache.aclose()


async def test_a_stale_value_is_served_while_one_caller_refreshes_it(
    stale_cache: RedisCacheAdapter, client: Any
) -> None:
    await stale_cache.get_or_create("k", lambda: "old", 30)
    _rewrite(client, "st:v:k", soft=1)  # past its TTL, within its stale window
    started, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def refresh() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "new"

    assert await stale_cache.get_or_create("k", refresh, 30) == "old"
    await started.wait()
    # Everyone else is answered with the stale value while the refresh holds the lease.
    for _ in range(5):
        assert await stale_cache.get_or_create("k", refresh, 30) == "old"
    release.set()
    await _until(lambda: stale_cache.get("k"))
    assert await stale_cache.get_or_create("k", refresh, 30) == "new"
    assert calls == 1
    stats = stale_cache.get_stats()
    assert stats["stale_hits"] == 6
    assert stats["creator_calls"] == 2  # the first fill and the refresh


async def test_a_caller_can_refuse_stale_values(
    stale_cache: RedisCacheAdapter, client: Any
) -> None:
    await stale_cache.get_or_create("k", lambda: "old", 30)
    _rewrite(client, "st:v:k", soft=1)
    assert await stale_cache.get_or_create("k", lambda: "new", 30, stale_ttl=0) == "new"
    assert stale_cache.get_stats()["stale_hits"] == 0


def test_the_blocking_twin_serves_stale_and_refreshes_in_the_background(
    stale_cache: RedisCacheAdapter, client: Any
) -> None:
    twin = stale_cache.sync
    twin.get_or_create("k", lambda: "old", 30)
    _rewrite(client, "st:v:k", soft=1)
    release = threading.Event()

    def refresh() -> str:
        release.wait(10)
        return "new"

    assert twin.get_or_create("k", refresh, 30) == "old"
    release.set()
    for _ in range(2000):
        if twin.get("k") == "new":
            break
        threading.Event().wait(0.005)
    assert twin.get("k") == "new"


async def test_early_refresh_answers_with_the_current_value_and_refreshes_once(
    redis_db_url: str, client: Any
) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="xf", early_refresh_beta=1e9)
    await cache.get_or_create("k", lambda: "v1", 300)
    # A creator that took a second makes the record due at once with such a beta.
    _rewrite(client, "xf:v:k", delta=1000)
    release = asyncio.Event()

    async def refresh() -> str:
        await release.wait()
        return "v2"

    assert await cache.get_or_create("k", refresh, 300) == "v1"
    assert await cache.get_or_create("k", refresh, 300) == "v1"  # the refresh holds the lease
    release.set()
    await _until(lambda: _is(cache, "k", "v2"))
    stats = cache.get_stats()
    assert stats["early_refreshes"] == 1
    assert stats["creator_calls"] == 2
    await cache.aclose()


async def _is(cache: RedisCacheAdapter, key: str, expected: Any) -> bool:
    return bool(await cache.get(key) == expected)


async def test_without_early_refresh_a_fresh_value_is_never_recomputed(
    redis_db_url: str, client: Any
) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="nx")
    await cache.get_or_create("k", lambda: "v1", 300)
    _rewrite(client, "nx:v:k", delta=10**9)
    assert await cache.get_or_create("k", lambda: "v2", 300) == "v1"
    assert cache.get_stats()["early_refreshes"] == 0
    await cache.aclose()


async def test_jitter_shortens_ttls_at_random_within_the_fraction(
    redis_db_url: str, client: Any
) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="j", jitter=0.5)
    for index in range(20):
        await cache.get_or_create(f"k{index}", lambda: 1, 100)
    ttls = [client.pttl(f"j:v:k{index}") for index in range(20)]
    assert all(49_000 <= ttl <= 100_000 for ttl in ttls)
    assert len(set(ttls)) > 1
    await cache.aclose()


async def test_invalidate_is_one_atomic_command_that_also_fences_the_lease(
    redis_db_url: str, client: Any, sent_commands: Any
) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="inv")
    await cache.set("k", 1)
    client.set("inv:l:k", "someone")
    sent = sent_commands(cache)
    assert await cache.invalidate("k") is True
    assert sent == ["EVALSHA"]
    assert not client.exists("inv:v:k", "inv:l:k")
    assert await cache.invalidate("k") is False
    await cache.aclose()


async def test_an_unreadable_value_is_counted_recomputed_and_replaced(
    redis_db_url: str, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="bad")
    await cache.set("k", {"a": 1})
    raw = client.get("bad:v:k")
    client.set("bad:v:k", raw.rsplit(b"\n", 1)[0] + b"\n{not json", keepttl=True)
    assert await cache.get_or_create("k", lambda: {"a": 2}) == {"a": 2}
    assert await cache.get("k") == {"a": 2}
    assert cache.get_stats()["decode_errors"] >= 1
    assert "could not be decoded" in caplog.text
    await cache.aclose()


async def test_cancelling_the_caller_whose_read_others_wait_for_cancels_nobody_else(
    redis_db_url: str,
) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="cr")
    await cache.set("k", "v")
    entered, release = asyncio.Event(), asyncio.Event()
    original = cache._command  # what a read sends its GET with

    async def slow_get(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await release.wait()
        return await original(*args, **kwargs)

    cache._command = slow_get
    first = asyncio.create_task(cache.get_or_create("k", lambda: "computed"))
    await entered.wait()
    others = [asyncio.create_task(cache.get_or_create("k", lambda: "computed")) for _ in range(5)]
    while cache.get_stats()["coalesced"] < 5:
        await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await asyncio.gather(*others) == ["v"] * 5
    with pytest.raises(asyncio.CancelledError):
        await first
    await cache.aclose()


class _BadCodec(JsonCodec):
    codec_id = "json\n1"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"codec": _BadCodec()}, "codec_id"),
        ({"jitter": 1.0}, "jitter"),
        ({"early_refresh_beta": 0}, "early_refresh_beta"),
        ({"lock_timeout": 0}, "lock_timeout"),
        ({"max_connections": 0}, "max_connections"),
    ],
)
def test_bad_options_are_refused_by_name(
    redis_db_url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisCacheAdapter(redis_db_url, **options)


def test_a_client_that_decodes_responses_is_refused(redis_db_url: str) -> None:
    import redis.asyncio as aioredis

    with pytest.raises(ConfigurationError, match="decode_responses=False"):
        RedisCacheAdapter(client=aioredis.Redis.from_url(redis_db_url, decode_responses=True))


async def test_many_distinct_keys_share_a_small_pool_and_leave_no_per_key_state(
    redis_db_url: str,
) -> None:
    # redis-py refuses a command when its pool is exhausted; callers must wait for a connection
    # instead of taking that for an outage (which would make each of them compute).
    cache = RedisCacheAdapter(redis_db_url, namespace="many", max_connections=5)
    for round_ in range(2):  # misses, then hits
        results = await asyncio.gather(
            *(cache.get_or_create(f"k{index}", lambda index=index: index) for index in range(500))
        )
        assert results == list(range(500))
        assert len(cache._local) == 0, f"round {round_}"
        assert cache._background == set()
    stats = cache.get_stats()
    assert stats["backend_errors"] == 0
    assert stats["creator_calls"] == 500
    assert stats["hits"] == 500
    twin_results = await asyncio.gather(
        *(asyncio.to_thread(cache.sync.get, f"k{index}") for index in range(40))
    )
    assert twin_results == list(range(40))
    await cache.aclose()


async def test_a_waiter_in_another_process_is_woken_when_the_value_is_published(
    redis_db_url: str, sent_commands: Any
) -> None:
    leader = RedisCacheAdapter(redis_db_url, namespace="wake")
    waiter = RedisCacheAdapter(redis_db_url, namespace="wake")
    # Without a wake-up this waiter would sleep for minutes between looks at the lease.
    waiter.WAIT_FIRST = waiter.WAIT_MAX = waiter.WAIT_MAX_SUBSCRIBED = 600
    started, release = asyncio.Event(), asyncio.Event()

    async def creator() -> str:
        started.set()
        await release.wait()
        return "v"

    first = asyncio.create_task(leader.get_or_create("k", creator))
    await started.wait()
    second = asyncio.create_task(waiter.get_or_create("k", lambda: "not me"))
    wakeups = await _subscribed(waiter)
    sent = sent_commands(waiter)
    release.set()
    assert await asyncio.wait_for(asyncio.gather(first, second), 30) == ["v", "v"]
    assert sent == ["EVALSHA"]  # one look at the lease after the wake-up, then the value
    assert wakeups._listener is None  # nobody waits any more: the subscription is gone
    await leader.aclose()
    await waiter.aclose()


async def test_a_waiter_takes_over_at_once_when_the_creator_fails(redis_db_url: str) -> None:
    leader = RedisCacheAdapter(redis_db_url, namespace="wake-fail")
    waiter = RedisCacheAdapter(redis_db_url, namespace="wake-fail")
    waiter.WAIT_FIRST = waiter.WAIT_MAX = waiter.WAIT_MAX_SUBSCRIBED = 600
    started, release = asyncio.Event(), asyncio.Event()

    async def failing() -> str:
        started.set()
        await release.wait()
        raise ValueError("boom")

    first = asyncio.create_task(leader.get_or_create("k", failing))
    await started.wait()
    second = asyncio.create_task(waiter.get_or_create("k", lambda: "recovered"))
    await _subscribed(waiter)
    release.set()
    with pytest.raises(ValueError, match="boom"):
        await first
    assert await asyncio.wait_for(second, 30) == "recovered"  # the released lease woke it
    await leader.aclose()
    await waiter.aclose()


async def _subscribed(cache: RedisCacheAdapter) -> Any:
    """The adapter's wake-ups on this loop, once their subscription is in place."""
    loop = asyncio.get_running_loop()
    while loop not in cache._wakeups or cache._wakeups[loop]._listener is None:
        await asyncio.sleep(0)
    wakeups = cache._wakeups[loop]
    await asyncio.wait_for(wakeups.subscribed.wait(), 30)
    return wakeups


@pytest.mark.parametrize(
    "stored",
    [b"garbage", b"x\n0\njson1\n\n1", b"1\nx\njson1\n\n1", b"\n\n\n\n", b"9" * 30],
)
async def test_a_damaged_record_is_replaced_and_hangs_nobody(
    redis_db_url: str, client: Any, stored: bytes
) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="dmg", stale_ttl=5, early_refresh_beta=1.0)
    client.set("dmg:v:k", stored)
    results = await asyncio.wait_for(
        asyncio.gather(*(cache.get_or_create("k", lambda: "fresh") for _ in range(5))), 30
    )
    assert results == ["fresh"] * 5
    assert len(cache._local) == 0
    assert await cache.get_or_create("k", lambda: "again") == "fresh"
    await cache.aclose()
