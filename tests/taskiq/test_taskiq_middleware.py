"""`CacheMiddleware` on taskiq's in-memory broker: seed 003's promises and pitfalls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from taskiq import InMemoryBroker

from cachewire.cache import InMemoryCacheAdapter
from cachewire.errors import CachedTaskError, ConfigurationError
from cachewire_taskiq import CacheMiddleware

pytestmark = pytest.mark.timeout(30)


def _broker(**options: Any) -> tuple[InMemoryBroker, CacheMiddleware]:
    middleware = CacheMiddleware(**options)
    return InMemoryBroker().with_middlewares(middleware), middleware


async def _result(task: Any, *args: Any, **labels: Any) -> Any:
    kicker = task.kicker().with_labels(**labels) if labels else task.kicker()
    sent = await kicker.kiq(*args)
    return await sent.wait_result(timeout=10)


async def test_a_second_identical_call_is_a_hit() -> None:
    broker, middleware = _broker(default_ttl=60)
    runs: list[int] = []

    @broker.task(task_name="t.add")
    async def add(a: int, b: int) -> int:
        runs.append(a + b)
        return a + b

    first = await _result(add, 1, 2)
    second = await _result(add, 1, 2)
    assert (first.return_value, second.return_value) == (3, 3)
    assert runs == [3]
    assert middleware.cache.get_stats()["hits"] == 1


async def test_different_arguments_never_share_an_entry() -> None:
    broker, _ = _broker()
    runs: list[Any] = []

    @broker.task(task_name="t.echo")
    def echo(value: Any) -> Any:
        runs.append(value)
        return value

    values: list[Any] = [1, "1", 1.5, [1], {"a": 1}, None, True]
    results = [(await _result(echo, v)).return_value for v in values]
    assert results == values
    assert runs == values


async def test_concurrent_identical_calls_compute_once() -> None:
    broker, _ = _broker()
    started = asyncio.Event()
    release = asyncio.Event()
    runs: list[int] = []

    @broker.task(task_name="t.slow")
    async def slow(x: int) -> int:
        runs.append(x)
        started.set()
        await release.wait()
        return x * 10

    sends = [await slow.kiq(7) for _ in range(10)]
    await started.wait()
    release.set()
    results = await asyncio.gather(*(s.wait_result(timeout=10) for s in sends))
    assert [r.return_value for r in results] == [70] * 10
    assert runs == [7]


async def test_a_failure_is_not_cached_unless_cache_errors_says_so() -> None:
    broker, _ = _broker()
    runs: list[int] = []

    @broker.task(task_name="t.fails")
    async def fails(x: int) -> int:
        runs.append(x)
        raise ValueError("no")

    assert (await _result(fails, 1)).is_err
    assert (await _result(fails, 1)).is_err
    assert runs == [1, 1]

    first = await _result(fails, 2, cache_errors="true")
    second = await _result(fails, 2, cache_errors="true")
    assert isinstance(first.error, ValueError)
    assert isinstance(second.error, CachedTaskError)
    assert second.error.error_type == "ValueError"
    assert runs == [1, 1, 2]


async def test_cache_ttl_zero_does_not_cache_and_a_ttl_label_is_used() -> None:
    cache = InMemoryCacheAdapter()
    broker, _ = _broker(cache=cache)
    runs: list[int] = []

    @broker.task(task_name="t.count")
    def count(x: int) -> int:
        runs.append(x)
        return x

    await _result(count, 1, cache_ttl=0)
    await _result(count, 1, cache_ttl="0")
    assert runs == [1, 1]
    await _result(count, 2, cache_ttl="120")
    await _result(count, 2)
    assert runs == [1, 1, 2]


@pytest.mark.parametrize(
    "labels", [{"cache_ttl": "soon"}, {"cache_ttl": -5}, {"cache_errors": "perhaps"}]
)
async def test_a_label_with_a_bad_value_is_a_clear_error(labels: dict[str, Any]) -> None:
    broker, _ = _broker()

    @broker.task(task_name="t.labelled")
    async def labelled() -> int:
        return 1

    with pytest.raises(ConfigurationError, match=next(iter(labels))):
        await labelled.kicker().with_labels(**labels).kiq()


async def test_disabled_middleware_runs_every_time() -> None:
    broker, middleware = _broker(enabled=False)
    runs: list[int] = []

    @broker.task(task_name="t.off")
    async def off() -> int:
        runs.append(1)
        return 1

    await _result(off)
    await _result(off)
    assert runs == [1, 1]
    middleware.enabled = True
    await _result(off)
    await _result(off)
    assert runs == [1, 1, 1]


async def test_calling_the_function_directly_is_never_cached() -> None:
    broker, _ = _broker()
    runs: list[int] = []

    @broker.task(task_name="t.direct")
    async def direct(x: int) -> int:
        runs.append(x)
        return x

    await _result(direct, 4)  # routes the task's body through the cache
    assert await direct(4) == 4
    assert await direct(4) == 4
    assert runs == [4, 4, 4]
