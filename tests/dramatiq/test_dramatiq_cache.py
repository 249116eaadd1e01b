"""`cachewire_dramatiq.CacheMiddleware` on a real Redis broker and worker, with cachewire's
stampede-safe cache adapters."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq_support import (
    REDIS_URL,
    RunningWorker,
    make_broker,
    wait_until,
)

from cachewire import InMemoryCacheAdapter, Rule, changed
from cachewire.cache import RedisCacheAdapter
from cachewire.testing import RecordingFunction, unique_name
from cachewire_dramatiq import CacheMiddleware

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryCacheAdapter()
        return
    # Under the run's namespace, so its keys go with it; skips (or fails in CI) without Redis.
    namespace = unique_name(request.getfixturevalue("run_namespace"))
    yield RedisCacheAdapter(REDIS_URL, namespace=namespace, lock_timeout=10)


@pytest.fixture(scope="module")
def caching_worker(cache: Any, run_namespace: str) -> Iterator[RunningWorker]:
    broker, pending = make_broker("redis", redis_namespace=unique_name(run_namespace))
    broker.add_middleware(CacheMiddleware(cache, default_ttl=60))
    running = RunningWorker("redis", broker, pending)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def running(caching_worker: RunningWorker) -> RunningWorker:
    dramatiq.set_broker(caching_worker.broker)
    caching_worker.pending.processed.clear()
    return caching_worker


def results_of(running: RunningWorker, messages: list[Any]) -> list[Any]:
    return [running.pending.results[m.message_id] for m in messages]


def errors_of(running: RunningWorker, actor_name: str) -> list[BaseException | None]:
    return [e for m, e in running.pending.processed if m.actor_name == actor_name]


def new_actor(broker: Any, fn: Any, **options: Any) -> Any:
    return dramatiq.actor(fn, actor_name=unique_name("act"), broker=broker, **options)


async def test_identical_messages_run_the_actor_once(running: RunningWorker) -> None:
    calls: list[int] = []

    def square(x: int) -> dict[str, int]:
        calls.append(x)
        return {"square": x * x}

    actor = new_actor(running.broker, square)
    messages = [actor.send(4)]
    await running.wait_idle()
    messages += [actor.send(4), actor.send(5)]
    await running.wait_idle()
    assert calls == [4, 5]
    assert results_of(running, messages) == [{"square": 16}, {"square": 16}, {"square": 25}]


async def test_concurrent_identical_messages_share_one_run(
    running: RunningWorker, cache: Any
) -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow(x: int) -> int:
        calls.append(x)
        started.set()
        release.wait(20)
        return x + 1

    actor = new_actor(running.broker, slow)
    before = cache.get_stats()
    messages = [actor.send(1) for _ in range(4)]
    await asyncio.to_thread(started.wait, 20)

    def waiting() -> int:
        stats = cache.get_stats()
        return sum(stats.get(k, 0) - before.get(k, 0) for k in ("coalesced", "lock_waits"))

    await asyncio.to_thread(wait_until, lambda: waiting() >= 3, 20, "three waiting messages")
    release.set()
    await running.wait_idle()
    assert calls == [1]
    assert results_of(running, messages) == [2, 2, 2, 2]


async def test_cache_ttl_zero_per_message_runs_again(running: RunningWorker) -> None:
    calls: list[int] = []

    def count(x: int) -> int:
        calls.append(x)
        return len(calls)

    actor = new_actor(running.broker, count)
    actor.send(1)
    await running.wait_idle()
    actor.send_with_options(args=(1,), cache_ttl=0)
    await running.wait_idle()
    actor.send(1)
    await running.wait_idle()
    assert calls == [1, 1]


async def test_cache_ttl_zero_per_actor_never_caches(running: RunningWorker) -> None:
    calls: list[int] = []
    actor = new_actor(running.broker, calls.append, cache_ttl=0)
    actor.send(1)
    actor.send(1)
    await running.wait_idle()
    assert calls == [1, 1]


async def test_a_message_option_wins_over_the_actor(running: RunningWorker) -> None:
    calls: list[int] = []

    def record(x: int) -> None:
        calls.append(x)

    actor = new_actor(running.broker, record, cache_ttl=0)
    actor.send_with_options(args=(1,), cache_ttl=60)
    await running.wait_idle()
    actor.send_with_options(args=(1,), cache_ttl=60)
    await running.wait_idle()
    assert calls == [1]


async def test_cache_errors_replays_a_failure_without_running(running: RunningWorker) -> None:
    calls: list[int] = []

    def fail(x: int) -> None:
        calls.append(x)
        raise ValueError(f"bad input {x}")

    actor = new_actor(running.broker, fail, cache_errors=True, max_retries=0)
    actor.send(3)
    await running.wait_idle()
    actor.send(3)
    await running.wait_idle()
    first, second = errors_of(running, actor.actor_name)
    assert isinstance(first, ValueError)
    assert type(second).__name__ == "CachedTaskError"
    assert "bad input 3" in str(second)
    assert calls == [3]


async def test_failures_are_not_cached_by_default(running: RunningWorker) -> None:
    calls: list[int] = []

    def fail(x: int) -> None:
        calls.append(x)
        raise ValueError("transient")

    actor = new_actor(running.broker, fail, max_retries=0)
    actor.send(3)
    await running.wait_idle()
    actor.send(3)
    await running.wait_idle()
    assert calls == [3, 3]


async def test_cachewire_rule_work_is_never_cached(running: RunningWorker) -> None:
    model = f"app.Item{uuid.uuid4().hex}"
    target = RecordingFunction(f"fn.{uuid.uuid4().hex}", ("key",))
    Rule(model=model, field_mapping={"key": "key"}, dispatcher="dramatiq", function=target)
    changed(model, {"key": 1})
    await running.wait_idle()
    changed(model, {"key": 1})
    await running.wait_idle()
    assert target.calls == [{"key": 1}, {"key": 1}]
