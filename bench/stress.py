"""Read-your-invalidations under load: a longer run of the randomised stress test.

Run: uv run python bench/stress.py [--operations N] [--processes P] [--keys K]
Writes the "stress" section of bench/RESULTS.md. Exits 1 if any read returned a value older than
an invalidation that had finished before the read began (each violation is printed with the key,
the versions and the times).

The in-memory adapter runs asyncio callers and threads in this process; Redis (a private
redis-server) runs the same in this process, then in P spawned processes at once.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# These scripts are named after what they measure, and bench/queue.py after a standard module:
# their folder goes last on sys.path, so `import queue` or `import celery` finds the real one.
_BENCH = _os.path.dirname(_os.path.abspath(__file__))
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _BENCH] + [_BENCH]

import argparse
import asyncio
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import private_redis, write_section
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


async def one_process(cache: object, operations: int, keys: int, seed: int) -> Records:
    truth = LocalTruth()
    size = {"keys": keys, "partitions": max(1, keys // 4)}
    records = Records()
    parts = await asyncio.gather(
        stress_async(cache, truth, operations=operations, seed=seed, **size),  # type: ignore[arg-type]
        asyncio.to_thread(
            stress_threads,
            cache,  # type: ignore[arg-type]
            truth,
            operations=operations // 2,
            seed=seed,
            **size,
        ),
    )
    for part in parts:
        records.extend(part)
    return records


async def redis_in_process(url: str, operations: int, keys: int) -> Records:
    cache = RedisCacheAdapter(url, namespace="stress-local")
    try:
        return await one_process(cache, operations, keys, seed=2)
    finally:
        await cache.aclose()


def across_processes(url: str, processes: int, operations: int, keys: int) -> Records:
    context = multiprocessing.get_context("spawn")
    records = Records()
    with context.Manager() as manager:
        start = manager.Event()
        with context.Pool(processes) as pool:
            pending = [
                pool.apply_async(
                    redis_process,
                    (url, "stress-xproc", start, seed, operations, keys, max(1, keys // 4)),
                )
                for seed in range(processes)
            ]
            start.set()
            for result in pending:
                records.extend(result.get(3600))
    return records


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--operations", type=int, default=20_000, help="per adapter and process")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--keys", type=int, default=8)
    args = parser.parse_args()
    rows: list[tuple[str, Records, float]] = []
    failed = False

    def run(label: str, work: object) -> None:
        nonlocal failed
        started = time.monotonic()
        records = work() if callable(work) else work  # type: ignore[operator]
        elapsed = time.monotonic() - started
        violations = find_violations(records)
        print(f"{label}: {describe(records, violations)}", flush=True)
        failed = failed or bool(violations)
        rows.append((label, records, elapsed))

    run(
        "InMemory, asyncio + 4 threads",
        lambda: asyncio.run(
            one_process(InMemoryCacheAdapter(), args.operations, args.keys, seed=1)
        ),
    )
    with private_redis() as url:
        run(
            "Redis, asyncio + 4 threads, one process",
            lambda: asyncio.run(redis_in_process(url, args.operations, args.keys)),
        )
        run(
            f"Redis, {args.processes} spawned processes (asyncio + 2 threads each)",
            lambda: across_processes(url, args.processes, args.operations, args.keys),
        )
    lines = [
        f"Command: `uv run python bench/stress.py --operations {args.operations} "
        f"--processes {args.processes} --keys {args.keys}`",
        "",
        "Readers, writers that bump a source of truth then invalidate the key or its partition, "
        "and cancelled callers, at random. A violation is a read that returned a version older "
        "than one an invalidation had published before the read began.",
        "",
        "| run | reads | invalidations | cancelled | violations | wall s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, records, elapsed in rows:
        lines.append(
            f"| {label} | {len(records.reads)} | {len(records.invalidations)} | "
            f"{records.cancelled} | {len(find_violations(records))} | {elapsed:.1f} |"
        )
    write_section("stress", "\n".join(lines))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
