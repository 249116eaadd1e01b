"""Read-your-invalidations under fire: random readers, writers and cancellations.

Every run checks that no read starting after an invalidation returned a value older than the one
that invalidation published (see `cachewire.testing._stress`). bench/stress.py runs the same at a
larger size.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator

import pytest

from cachewire.cache import InMemoryCacheAdapter, RedisCacheAdapter
from cachewire.testing._stress import (
    LocalTruth,
    Records,
    describe,
    find_violations,
    redis_process,
    stress_async,
    stress_threads,
)

SIZE = {"keys": 4, "partitions": 2}


def _check(records: Records) -> None:
    violations = find_violations(records)
    assert not violations, describe(records, violations)
    assert len(records.reads) > 100 and len(records.invalidations) > 30, describe(records, [])


@pytest.fixture(params=["fetched-versions", "local-tag-versions", "staged-writes"])
async def redis_cache(
    redis_db_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[RedisCacheAdapter]:
    cache = RedisCacheAdapter(
        redis_db_url, namespace="stress", local_tag_versions=request.param == "local-tag-versions"
    )
    if request.param == "staged-writes":
        cache.core.STAGE_BYTES = 0  # every value takes the path of large ones
    yield cache
    await cache.aclose()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [1, 2])
async def test_memory_asyncio_and_threads_read_their_invalidations(seed: int) -> None:
    cache, truth = InMemoryCacheAdapter(), LocalTruth()
    records = Records()
    parts = await asyncio.gather(
        stress_async(cache, truth, operations=3000, seed=seed, **SIZE),
        asyncio.to_thread(stress_threads, cache, truth, operations=2000, seed=seed, **SIZE),
    )
    for part in parts:
        records.extend(part)
    _check(records)
    assert cache.get_stats()["in_flight"] == 0


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_redis_asyncio_and_threads_read_their_invalidations(
    redis_cache: RedisCacheAdapter,
) -> None:
    truth = LocalTruth()
    records = Records()
    parts = await asyncio.gather(
        stress_async(redis_cache, truth, operations=1500, seed=3, **SIZE),
        asyncio.to_thread(stress_threads, redis_cache, truth, operations=600, seed=3, **SIZE),
    )
    for part in parts:
        records.extend(part)
    _check(records)
    assert len(redis_cache._local) == 0


@pytest.mark.redis
@pytest.mark.timeout(180)
@pytest.mark.parametrize("local_tag_versions", [False, True])
def test_redis_across_processes_reads_its_invalidations(
    redis_db_url: str, local_tag_versions: bool
) -> None:
    # With local tag versions, another process's bump is seen through Redis's invalidation
    # message, which the server sends before it answers any later read.
    context = multiprocessing.get_context("spawn")
    options = {"local_tag_versions": local_tag_versions}
    with context.Manager() as manager:
        start = manager.Event()
        with context.Pool(3) as pool:
            pending = [
                pool.apply_async(
                    redis_process,
                    (redis_db_url, "xstress", start, seed, 600, 4, 2),
                    {"options": options},
                )
                for seed in range(3)
            ]
            start.set()
            records = Records()
            for result in pending:
                records.extend(result.get(150))
    _check(records)


def test_a_violation_names_the_key_versions_and_times() -> None:
    from cachewire.testing._stress import Invalidation, ReadRecord

    records = Records(
        reads=[ReadRecord("k1", 2.0, 3, "thread-0")],
        invalidations=[Invalidation("k1", 4, 1.5, "key"), Invalidation("k1", 9, 2.5, "key")],
    )
    (violation,) = find_violations(records)
    assert "'k1'" in violation and "version 3" in violation and "version 4" in violation
    assert "1.500000" in violation and "2.000000" in violation
