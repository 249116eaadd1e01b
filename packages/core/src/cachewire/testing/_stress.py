"""A randomised check of read-your-invalidations, for any cache adapter.

Writers bump a source of truth for a key, then invalidate the key (or its partition). Readers call
``get_or_create`` with a creator that returns the truth's current version. The promise checked:
a read that *starts* after an invalidation has returned never returns a version older than the one
that invalidation published. Times come from ``time.monotonic()``, which on Linux is one clock for
every process, so records of several processes can be checked together.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs

from cachewire.cache import BaseCacheAdapter

__all__ = [
    "Invalidation",
    "LocalTruth",
    "ReadRecord",
    "Records",
    "RedisTruth",
    "Truth",
    "describe",
    "find_violations",
    "redis_process",
    "stress_async",
    "stress_threads",
]


@attrs.frozen
class ReadRecord:
    key: str
    started: float
    version: int
    where: str  # which process and kind of caller


@attrs.frozen
class Invalidation:
    key: str
    version: int  # the truth's version the writer published before invalidating
    done: float  # when the invalidation returned
    how: str  # "key" or "partition"


@attrs.define
class Records:
    reads: list[ReadRecord] = attrs.field(factory=list)
    invalidations: list[Invalidation] = attrs.field(factory=list)
    cancelled: int = 0

    def extend(self, other: Records) -> None:
        self.reads.extend(other.reads)
        self.invalidations.extend(other.invalidations)
        self.cancelled += other.cancelled


class Truth(Protocol):
    """The data behind the cache: a version per key."""

    def read(self, key: str) -> int: ...

    def bump(self, key: str) -> int: ...

    async def aread(self, key: str) -> int: ...

    async def abump(self, key: str) -> int: ...


class LocalTruth:
    """A source of truth in this process's memory."""

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()

    def read(self, key: str) -> int:
        with self._lock:
            return self._versions.get(key, 0)

    def bump(self, key: str) -> int:
        with self._lock:
            self._versions[key] = version = self._versions.get(key, 0) + 1
            return version

    async def aread(self, key: str) -> int:
        return self.read(key)

    async def abump(self, key: str) -> int:
        return self.bump(key)


def _partition(key: str, partitions: int) -> str:
    return f"p{int(key[1:]) % partitions}"


def find_violations(records: Records) -> list[str]:
    """Every read that returned a version older than an invalidation finished before it began."""
    by_key: dict[str, list[Invalidation]] = {}
    for invalidation in records.invalidations:
        by_key.setdefault(invalidation.key, []).append(invalidation)
    newest: dict[str, tuple[list[float], list[Invalidation]]] = {}
    for key, found in by_key.items():
        found.sort(key=lambda item: item.done)
        best: list[Invalidation] = []
        for item in found:  # the highest version published by each moment
            best.append(item if not best or item.version >= best[-1].version else best[-1])
        newest[key] = ([item.done for item in found], best)
    violations = []
    for read in records.reads:
        times, best = newest.get(read.key, ([], []))
        index = bisect.bisect_left(times, read.started) - 1
        if index >= 0 and read.version < best[index].version:
            required = best[index]
            violations.append(
                f"key {read.key!r}: a read by {read.where} that started at {read.started:.6f} "
                f"returned version {read.version}, but version {required.version} was published "
                f"and the {required.how} invalidated at {required.done:.6f} "
                f"({(read.started - required.done) * 1000:.3f} ms earlier)"
            )
    return violations


async def stress_async(
    cache: BaseCacheAdapter,
    truth: Truth,
    *,
    keys: int,
    partitions: int,
    operations: int,
    concurrency: int = 16,
    cancel_rate: float = 0.1,
    seed: int = 0,
    where: str = "asyncio",
) -> Records:
    """``operations`` random reads, writes and cancellations, ``concurrency`` at a time."""
    rng = random.Random(seed)
    records = Records()
    names = [f"k{i}" for i in range(keys)]

    async def creator(key: str) -> int:
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(0)
        version = await truth.aread(key)
        if rng.random() < 0.3:
            await asyncio.sleep(rng.random() / 1000)  # a slow computation
        return version

    async def one() -> None:
        key = rng.choice(names)
        tag = _partition(key, partitions)
        if rng.random() < 0.25:
            version = await truth.abump(key)
            how = "key" if rng.random() < 0.5 else "partition"
            if how == "key":
                await cache.invalidate(key)
            else:
                await cache.invalidate_tags([tag])
            records.invalidations.append(Invalidation(key, version, time.monotonic(), how))
            return
        started = time.monotonic()
        value = await cache.get_or_create(key, lambda: creator(key), tags=[tag])
        records.reads.append(ReadRecord(key, started, value, where))

    running: set[asyncio.Task[None]] = set()
    for _ in range(operations):
        task = asyncio.create_task(one())
        running.add(task)
        if rng.random() < cancel_rate:
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)
            if not task.done():
                task.cancel()
        if len(running) >= concurrency:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            _count(done, records)
    if running:
        done, _ = await asyncio.wait(running)
        _count(done, records)
    return records


def _count(done: Iterable[asyncio.Task[None]], records: Records) -> None:
    for task in done:
        if task.cancelled():
            records.cancelled += 1
        else:
            task.result()  # a failure of the adapter fails the run


def stress_threads(
    cache: BaseCacheAdapter,
    truth: Truth,
    *,
    keys: int,
    partitions: int,
    operations: int,
    threads: int = 4,
    seed: int = 0,
    where: str = "thread",
) -> Records:
    """The same mix through the blocking twin, on ``threads`` threads."""
    twin = cache.sync
    results = [Records() for _ in range(threads)]
    errors: list[BaseException] = []
    names = [f"k{i}" for i in range(keys)]
    start = threading.Barrier(threads)

    def work(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        records = results[number]

        def creator(key: str) -> Callable[[], int]:
            def compute() -> int:
                version = truth.read(key)
                if rng.random() < 0.3:
                    time.sleep(rng.random() / 1000)  # a slow computation
                return version

            return compute

        start.wait()
        try:
            for _ in range(operations // threads):
                key = rng.choice(names)
                tag = _partition(key, partitions)
                if rng.random() < 0.25:
                    version = truth.bump(key)
                    how = "key" if rng.random() < 0.5 else "partition"
                    if how == "key":
                        twin.invalidate(key)
                    else:
                        twin.invalidate_tags([tag])
                    records.invalidations.append(Invalidation(key, version, time.monotonic(), how))
                    continue
                started = time.monotonic()
                value = twin.get_or_create(key, creator(key), tags=[tag])
                records.reads.append(ReadRecord(key, started, value, f"{where}-{number}"))
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if errors:
        raise errors[0]
    merged = Records()
    for records in results:
        merged.extend(records)
    return merged


def describe(records: Records, violations: list[str], *, limit: int = 20) -> str:
    """A report of a run: counts, then the first violations."""
    lines = [
        f"{len(records.reads)} reads, {len(records.invalidations)} invalidations, "
        f"{records.cancelled} cancelled, {len(violations)} violations"
    ]
    lines.extend(violations[:limit])
    return "\n".join(lines)


class RedisTruth:
    """A source of truth in Redis, shared by processes: one counter per key under ``prefix``."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis
        import redis.asyncio as aioredis

        self._url, self._prefix = url, prefix
        self._client = redis.Redis.from_url(url)
        self._aclients: dict[asyncio.AbstractEventLoop, Any] = {}
        self._aioredis = aioredis

    def _name(self, key: str) -> str:
        return f"{self._prefix}:truth:{key}"

    def _async(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = self._aclients[loop] = self._aioredis.Redis.from_url(self._url)
        return client

    def read(self, key: str) -> int:
        return int(self._client.get(self._name(key)) or 0)

    def bump(self, key: str) -> int:
        return int(self._client.incr(self._name(key)))

    async def aread(self, key: str) -> int:
        return int(await self._async().get(self._name(key)) or 0)

    async def abump(self, key: str) -> int:
        return int(await self._async().incr(self._name(key)))

    async def aclose(self) -> None:
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        self._client.close()


def redis_process(
    url: str,
    namespace: str,
    start: Any,
    seed: int,
    operations: int,
    keys: int,
    partitions: int,
    *,
    options: dict[str, Any] | None = None,
) -> Records:
    """One process of a cross-process run on Redis: asyncio callers and blocking threads at once.

    Importable, so ``multiprocessing`` with the spawn method can run it; ``start`` is an event
    every process waits for, so they begin together. ``options`` go to `RedisCacheAdapter`.
    """
    from cachewire.cache import RedisCacheAdapter

    async def main() -> Records:
        cache = RedisCacheAdapter(url, namespace=namespace, **(options or {}))
        truth = RedisTruth(url, namespace)
        where = f"process {seed}"
        try:
            start.wait()
            threads = asyncio.to_thread(
                stress_threads,
                cache,
                truth,
                keys=keys,
                partitions=partitions,
                operations=operations // 2,
                threads=2,
                seed=seed,
                where=f"{where} thread",
            )
            coroutines = stress_async(
                cache,
                truth,
                keys=keys,
                partitions=partitions,
                operations=operations // 2,
                seed=seed,
                where=f"{where} asyncio",
            )
            records = Records()
            for part in await asyncio.gather(threads, coroutines):
                records.extend(part)
            return records
        finally:
            await truth.aclose()
            truth.close()
            await cache.aclose()

    return asyncio.run(main())
