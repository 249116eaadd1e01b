"""Read-side benchmarks: cachewire against the peers and the physical limits, in one run.

Run: uv run python bench/cache.py [--quick]
Writes the "cache" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis

sys.path.insert(0, os.path.dirname(__file__))
from _common import write_section
from cachewire.cache import InMemoryCacheAdapter, RedisCacheAdapter

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def best_of(repeats: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(repeats))


async def per_op_async(op: Callable[[], Awaitable[Any]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await op()
    return (time.perf_counter() - start) / n * 1e6


def per_op_sync(op: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        op()
    return (time.perf_counter() - start) / n * 1e6


async def memory_hits(n: int, repeats: int) -> list[tuple[str, float]]:
    from aiocache import SimpleMemoryCache
    from cashews import Cache
    from dogpile.cache import make_region
    from taskiq_flow.cache import InMemoryCacheAdapter as TaskiqMemory

    store = {"k": 1}

    async def floor() -> Any:
        return store.get("k")

    ours = InMemoryCacheAdapter()
    await ours.set("k", 1)
    taskiq = TaskiqMemory()
    await taskiq.get_or_create("k", lambda: 1, ttl_seconds=300)
    region = make_region().configure("dogpile.cache.memory", expiration_time=300)
    region.get_or_create("k", lambda: 1)
    cashews = Cache()
    cashews.setup("mem://")
    await cashews.set("k", 1)
    aio = SimpleMemoryCache()
    await aio.set("k", 1)

    def creator() -> int:
        return 1

    rows: list[tuple[str, float]] = []

    async def measure(label: str, op: Callable[[], Awaitable[Any]]) -> None:
        samples = [await per_op_async(op, n) for _ in range(repeats)]
        rows.append((label, statistics.median(samples)))

    await measure("floor: await coroutine doing a dict lookup", floor)
    await measure("cachewire InMemory get_or_create hit", lambda: ours.get_or_create("k", creator))
    await measure(
        "taskiq-flow InMemory get_or_create hit",
        lambda: taskiq.get_or_create("k", creator, ttl_seconds=300),
    )
    await measure("cashews mem:// get", lambda: cashews.get("k"))
    await measure("aiocache SimpleMemoryCache get", lambda: aio.get("k"))
    sync_rows = [
        (
            "floor: bare dict lookup (sync)",
            best_of(repeats, lambda: per_op_sync(lambda: store.get("k"), n)),
        ),
        (
            "cachewire InMemory .sync.get_or_create hit",
            best_of(repeats, lambda: per_op_sync(lambda: ours.sync.get_or_create("k", creator), n)),
        ),
        (
            "dogpile.cache memory region get_or_create hit (sync)",
            best_of(repeats, lambda: per_op_sync(lambda: region.get_or_create("k", creator), n)),
        ),
    ]
    return rows + sync_rows


async def redis_hits(n: int, repeats: int) -> list[tuple[str, float]]:
    from aiocache import RedisCache
    from cashews import Cache
    from taskiq_flow.cache import RedisCacheAdapter as TaskiqRedis

    raw = aioredis.Redis.from_url(REDIS)
    await raw.set("rawkey", b"1")
    ours = RedisCacheAdapter(REDIS, namespace="bench")
    await ours.set("k", 1)
    taskiq = TaskiqRedis(redis_url=REDIS, default_ttl=300, lock_timeout=10)
    await taskiq.get_or_create("tk", lambda: 1, ttl_seconds=300)
    cashews = Cache()
    cashews.setup(REDIS)
    await cashews.set("ck", 1)
    aio = RedisCache(endpoint="127.0.0.1", port=6379, db=13)
    await aio.set("ak", 1)
    rows: list[tuple[str, float]] = []

    async def measure(label: str, op: Callable[[], Awaitable[Any]]) -> None:
        samples = [await per_op_async(op, n) for _ in range(repeats)]
        rows.append((label, statistics.median(samples)))

    await measure("floor: raw redis-py asyncio GET", lambda: raw.get("rawkey"))
    await measure("cachewire Redis get_or_create hit", lambda: ours.get_or_create("k", lambda: 2))
    await measure(
        "taskiq-flow Redis get_or_create hit",
        lambda: taskiq.get_or_create("tk", lambda: 2, ttl_seconds=300),
    )
    await measure("cashews redis get", lambda: cashews.get("ck"))
    await measure("aiocache RedisCache get", lambda: aio.get("ak"))
    await ours.aclose()
    await raw.aclose()
    return rows


async def stampede(
    label: str, adapter: Any, call: Callable[..., Awaitable[Any]], callers: int, fail: bool = False
) -> tuple[str, int, float, int]:
    calls = 0

    async def creator() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        if fail:
            raise ValueError("creator failed")
        return 42

    start = time.perf_counter()
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(call(adapter, f"stampede-{fail}", creator) for _ in range(callers)),
                return_exceptions=True,
            ),
            timeout=20,
        )
        errors = sum(isinstance(r, BaseException) for r in results)
    except TimeoutError:
        return (label + " (hung: stopped after 20 s)", calls, 20.0, callers)
    return (label, calls, time.perf_counter() - start, errors)


async def stampedes(callers: int) -> list[tuple[str, int, float, int]]:
    from taskiq_flow.cache import RedisCacheAdapter as TaskiqRedis

    redis.Redis.from_url(REDIS).flushdb()
    ours_call = lambda a, k, c: a.get_or_create(k, c, 300)  # noqa: E731
    taskiq_call = lambda a, k, c: a.get_or_create(k, c, ttl_seconds=300)  # noqa: E731
    rows = []
    for fail in (False, True):
        suffix = f" ({'failing creator, ' if fail else ''}{callers} callers)"
        rows.append(
            await stampede(
                "cachewire InMemory" + suffix, InMemoryCacheAdapter(), ours_call, callers, fail
            )
        )
        redis_ours = RedisCacheAdapter(REDIS, namespace=f"st{fail}")
        rows.append(
            await stampede("cachewire Redis" + suffix, redis_ours, ours_call, callers, fail)
        )
        await redis_ours.aclose()
        # taskiq-flow's in-memory adapter holds a threading.Lock across the awaited creator, which
        # blocks the whole event loop with an async creator: it is not run here.
        rows.append(
            ("taskiq-flow InMemory" + suffix + ": not run, blocks the event loop", 0, 0.0, 0)
        )
        rows.append(
            await stampede(
                "taskiq-flow Redis" + suffix,
                TaskiqRedis(redis_url=REDIS, default_ttl=300, lock_timeout=10),
                taskiq_call,
                callers,
                fail,
            )
        )
    return rows


def memory_per_entry(count: int) -> list[tuple[str, float, float]]:
    from taskiq_flow.cache import InMemoryCacheAdapter as TaskiqMemory

    rows = []
    for label, factory, ttl_kw in (
        ("cachewire InMemory", InMemoryCacheAdapter, {}),
        ("taskiq-flow InMemory", TaskiqMemory, {"ttl_seconds": 300}),
    ):
        gc.collect()
        tracemalloc.start()
        adapter = factory()

        async def fill(adapter: Any = adapter, ttl_kw: dict[str, Any] = ttl_kw) -> None:
            for i in range(count):
                await adapter.get_or_create(f"key-{i}", lambda i=i: i, **ttl_kw)

        asyncio.run(fill())
        used = tracemalloc.get_traced_memory()[0]
        asyncio.run(adapter.clear())
        gc.collect()
        left = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        rows.append((label, used / count, left))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, repeats, callers = (2_000, 3, 200) if args.quick else (20_000, 5, 1000)
    mem = asyncio.run(memory_hits(n, repeats))
    print("memory hits done", flush=True)
    red = asyncio.run(redis_hits(max(n // 10, 500), repeats))
    print("redis hits done", flush=True)
    stam = asyncio.run(stampedes(callers))
    print("stampedes done", flush=True)
    per_entry = memory_per_entry(10_000 if args.quick else 100_000)

    lines = [f"Command: `uv run python bench/cache.py{' --quick' if args.quick else ''}`", ""]
    lines += [
        "### Hit latency, in memory",
        "",
        "| path | µs/op | ratio to floor |",
        "| --- | ---: | ---: |",
    ]
    async_floor = mem[0][1]
    sync_floor = next(v for k, v in mem if k.startswith("floor: bare"))
    for label, value in mem:
        floor = sync_floor if "sync" in label else async_floor
        lines.append(f"| {label} | {value:.3f} | {value / floor:.1f}x |")
    lines += [
        "",
        "### Hit latency, Redis on loopback",
        "",
        "| path | µs/op | ratio to raw GET |",
        "| --- | ---: | ---: |",
    ]
    for label, value in red:
        lines.append(f"| {label} | {value:.1f} | {value / red[0][1]:.2f}x |")
    lines += [
        "",
        "### Same-key misses in one process (creator sleeps 0.2 s)",
        "",
        "| case | creator calls | wall s | callers that got an error |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, calls, wall, errors in stam:
        lines.append(f"| {label} | {calls} | {wall:.2f} | {errors} |")
    lines += [
        "",
        "### Memory",
        "",
        "| adapter | bytes per entry | bytes left after clear() |",
        "| --- | ---: | ---: |",
    ]
    for label, per, left in per_entry:
        lines.append(f"| {label} | {per:.0f} | {left:.0f} |")
    text = "\n".join(lines)
    print(text)
    write_section("cache", text)


if __name__ == "__main__":
    main()
