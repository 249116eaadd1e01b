"""Redis failures are loud and bounded: every client error translated, a circuit breaker, strict
invalidation, no lease left behind, and a clear error without redis-py."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis import exceptions as redis_errors

from cachewire.cache import PickleCodec, RedisCacheAdapter
from cachewire.errors import CacheBackendError, SerializationError

pytestmark = pytest.mark.redis


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(redis_db_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_db_url)
    yield connection
    connection.close()


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_wrong_type_key_is_a_backend_error_not_a_redis_one(
    redis_db_url: str, client: redis.Redis, fail_open: bool, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCacheAdapter(redis_db_url, namespace="wt", fail_open=fail_open)
    client.rpush("wt:v:k", "not a string")  # GET on a list: WRONGTYPE
    for call in (
        lambda: cache.get_or_create("k", lambda: "computed"),
        lambda: cache.get("k", "default"),
    ):
        if fail_open:
            assert await call() in ("computed", "default")
        else:
            with pytest.raises(CacheBackendError) as raised:
                await call()
            assert isinstance(raised.value.__cause__, redis_errors.ResponseError)
    if fail_open:
        assert cache.get_stats()["backend_errors"] == 2
        assert "WRONGTYPE" in caplog.text
    await cache.aclose()


async def test_out_of_memory_refusal_reaches_the_caller_and_leaves_no_lease(
    private_redis: Any,
) -> None:
    admin = redis.Redis.from_url(private_redis.url)
    closed = RedisCacheAdapter(private_redis.url, namespace="oom", fail_open=False)
    opened = RedisCacheAdapter(private_redis.url, namespace="oom")
    await opened.get_or_create("warm", lambda: 1)  # connections and scripts in place
    await closed.get_or_create("warm2", lambda: 1)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    try:
        with pytest.raises(CacheBackendError, match="OOM|memory") as raised:
            await closed.get_or_create("k", lambda: "v")
        assert isinstance(raised.value.__cause__, redis_errors.RedisError)
        assert await opened.get_or_create("k", lambda: "v") == "v"  # fail-open: computed
        assert opened.get_stats()["backend_errors"] >= 1
        assert not admin.exists("oom:l:k")  # nobody waits for a lease of a failed write
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()
        await opened.aclose()
        await closed.aclose()


async def test_a_read_only_replica_is_a_backend_error(private_redis: Any) -> None:
    admin = redis.Redis.from_url(private_redis.url)
    cache = RedisCacheAdapter(private_redis.url, namespace="ro", fail_open=False)
    await cache.get_or_create("warm", lambda: 1)
    admin.config_set("replica-read-only", "yes")
    admin.replicaof("127.0.0.1", "1")  # a master that never answers: stays a read-only replica
    try:
        with pytest.raises(CacheBackendError) as raised:
            await cache.set("k", "v")
        assert isinstance(raised.value.__cause__, redis_errors.RedisError)
    finally:
        admin.replicaof("NO", "ONE")
        admin.close()
        await cache.aclose()


async def test_strict_invalidation_raises_even_when_failing_open(private_redis: Any) -> None:
    cache = RedisCacheAdapter(private_redis.url, namespace="strict", socket_timeout=2)
    await cache.set("k", 1)
    private_redis.stop()
    assert await cache.invalidate("k") is False  # counted and logged, not raised
    with pytest.raises(CacheBackendError):
        await cache.invalidate("k", strict=True)
    with pytest.raises(CacheBackendError):
        await cache.invalidate_tags(["t"], strict=True)
    with pytest.raises(CacheBackendError):
        cache.sync.invalidate("k", strict=True)
    with pytest.raises(CacheBackendError):
        cache.sync.invalidate_tags(["t"], strict=True)
    assert cache.sync.invalidate("k") is False
    await cache.invalidate_tags(["t"])  # fail-open: counted only
    assert cache.get_stats()["backend_errors"] >= 6
    await cache.aclose()


@pytest.mark.timeout(60)
async def test_a_frozen_redis_costs_a_bounded_time_then_the_breaker_skips_it(
    private_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cachewire.cache")
    cache = RedisCacheAdapter(
        private_redis.url,
        namespace="frozen",
        socket_timeout=0.2,
        breaker_threshold=3,
        breaker_cool_down=30,
    )
    clock = FakeClock()
    cache.core.breaker._clock = clock
    assert await cache.get_or_create("k", lambda: "v") == "v"
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)  # frozen: connections hang, not refused
    try:
        for index in range(3):  # each call ends at the socket timeout and computes
            assert await cache.get_or_create(f"a{index}", lambda: "computed") == "computed"
        stats = cache.get_stats()
        assert stats["breaker_opens"] == 1
        assert stats["breaker_open"] is True
        assert "skipping it for 30.0 s" in caplog.text
        sent: list[Any] = []
        original_command = cache._command  # what a read sends its GET or MGET with

        async def counting(*args: Any, **kwargs: Any) -> Any:
            sent.append(args)
            return await original_command(*args, **kwargs)

        cache._command = counting
        for index in range(20):  # skipped without I/O while the breaker is open
            assert await cache.get_or_create(f"b{index}", lambda: "computed") == "computed"
        assert sent == []
        assert cache.core.breaker.failures == 3
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    clock.now += 31  # the cool-down is over: one call tries Redis again and closes the breaker
    assert await cache.get_or_create("k", lambda: "other") == "v"
    assert cache.get_stats()["breaker_open"] is False
    assert "circuit breaker is closed" in caplog.text
    await cache.aclose()


def test_failures_are_logged_at_most_once_per_period(
    private_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cachewire.cache")
    cache = RedisCacheAdapter(private_redis.url, namespace="quiet", breaker_threshold=0)
    private_redis.stop()
    for _ in range(50):
        assert cache.sync.get("k", "default") == "default"
    failures = [r for r in caplog.records if "failed:" in r.getMessage()]
    assert len(failures) == 1
    assert cache.get_stats()["backend_errors"] == 50


async def test_a_pickled_value_copied_under_another_key_does_not_verify(
    redis_db_url: str, client: redis.Redis
) -> None:
    codec = PickleCodec("a secret of sixteen bytes or more")
    assert codec.decode(codec.encode((1, 2), key="a"), key="a") == (1, 2)
    with pytest.raises(SerializationError, match="signature"):
        codec.decode(codec.encode((1, 2), key="a"), key="b")
    cache = RedisCacheAdapter(redis_db_url, namespace="pk", codec=codec)
    await cache.set("mine", {"admin": True})
    client.set("pk:v:yours", client.get("pk:v:mine"))  # copied by someone with write access
    assert await cache.get("yours", "refused") == "refused"
    assert cache.get_stats()["decode_errors"] == 1
    assert await cache.get("mine") == {"admin": True}
    await cache.aclose()


def test_without_redis_py_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from cachewire.errors import ConfigurationError\n"
        "try:\n"
        "    from cachewire.cache import RedisCacheAdapter\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "cachewire[redis]" in done.stdout, done.stderr
