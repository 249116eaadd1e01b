"""The hit's reader: a pooled connection, the read, its reply; failures go back to the client."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

pytestmark = pytest.mark.redis

redis = pytest.importorskip("redis")
aioredis = pytest.importorskip("redis.asyncio")

from cachewire.cache import RedisCacheAdapter  # noqa: E402
from cachewire.cache._redis._connect import async_reader, sync_reader  # noqa: E402


def _in_use(pool: Any) -> int:
    return len(pool._in_use_connections)


def test_a_read_whose_connection_fails_is_sent_again_by_the_client(redis_db_url: str) -> None:
    client = redis.Redis.from_url(redis_db_url)
    client.set("reader:k", b"v")
    read = sync_reader(client)
    assert read("GET", "reader:k", keys=("reader:k",)) == b"v"
    pool = client.connection_pool
    connection = pool.get_connection()
    original = connection.read_response
    failed = []

    def fail_once(*args: Any, **kwargs: Any) -> Any:
        connection.read_response = original
        connection.disconnect()  # as redis-py does before it raises
        failed.append(True)
        raise redis.ConnectionError("dropped")

    connection.read_response = fail_once
    pool.release(connection)
    assert read("MGET", "reader:k", "reader:none", keys=("reader:k", "reader:none")) == [
        b"v",
        None,
    ]
    assert failed == [True]
    assert _in_use(pool) == 0  # the failed connection went back to the pool
    client.delete("reader:k")
    client.close()


def test_a_reply_error_is_raised_and_the_connection_given_back(redis_db_url: str) -> None:
    client = redis.Redis.from_url(redis_db_url)
    client.rpush("reader:list", b"x")
    read = sync_reader(client)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        read("GET", "reader:list", keys=("reader:list",))
    assert _in_use(client.connection_pool) == 0
    client.set("reader:k", b"v")
    assert read("GET", "reader:k", keys=("reader:k",)) == b"v"  # the next reply is its own
    client.delete("reader:list", "reader:k")
    client.close()


def test_a_single_connection_client_is_read_through_its_own_call(redis_db_url: str) -> None:
    client = redis.Redis.from_url(redis_db_url, single_connection_client=True)
    assert sync_reader(client) == client.execute_command
    client.close()


async def test_an_async_read_whose_connection_fails_is_sent_again(redis_db_url: str) -> None:
    client = aioredis.Redis.from_url(redis_db_url)
    await client.set("reader:ak", b"v")
    read = async_reader(client)
    assert await read("GET", "reader:ak", keys=("reader:ak",)) == b"v"
    pool = client.connection_pool
    connection = await pool.get_connection()
    original = connection.read_response
    failed = []

    async def fail_once(*args: Any, **kwargs: Any) -> Any:
        connection.read_response = original
        await connection.disconnect()
        failed.append(True)
        raise redis.ConnectionError("dropped")

    connection.read_response = fail_once
    await pool.release(connection)
    assert await read("GET", "reader:ak", keys=("reader:ak",)) == b"v"
    assert failed == [True]
    assert _in_use(pool) == 0
    await client.delete("reader:ak")
    await client.aclose()


async def test_a_hit_cancelled_while_it_waits_leaves_no_reply_for_the_next(
    private_redis: Any,
) -> None:
    """A cancelled read's late reply must never answer the next read on that connection."""
    cache = RedisCacheAdapter(private_redis.url, namespace="rd", max_connections=2)
    await cache.set("first", "first value")
    await cache.set("second", "second value")
    pool = cache._client.connection_pool
    connection = await pool.get_connection()
    sent = asyncio.Event()
    original = connection.send_command

    async def noting(*args: Any, **kwargs: Any) -> Any:
        await original(*args, **kwargs)
        sent.set()

    connection.send_command = noting
    await pool.release(connection)
    os.kill(private_redis.process.pid, signal.SIGSTOP)  # frozen: replies wait
    try:
        first = asyncio.create_task(cache.get("first"))
        await sent.wait()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    for _ in range(3):  # whichever connection each takes, each gets its own reply
        assert await cache.get("second") == "second value"
        assert await cache.get("first") == "first value"
    assert cache.get_stats()["backend_errors"] == 0
    await cache.aclose()


async def test_the_blocking_twin_without_a_blocking_client_says_what_it_needs(
    redis_db_url: str,
) -> None:
    from cachewire.errors import ConfigurationError

    client = aioredis.Redis.from_url(redis_db_url)
    cache = RedisCacheAdapter(client=client, namespace="reader-twin")
    with pytest.raises(ConfigurationError, match="needs redis_url= or sync_client="):
        cache.sync.get("k")
    with pytest.raises(ConfigurationError, match="needs redis_url= or sync_client="):
        cache.sync.set("k", 1)
    await cache.aclose()
