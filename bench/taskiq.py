"""taskiq: a cached task's round trip through a real worker, and the dispatcher's costs.

1. The same stream of task calls (20 distinct argument sets, each called 10 times) through a
   `taskiq worker` process with cachewire's `CacheMiddleware` (on Redis) and with taskiq-flow's
   `CacheMiddleware` (on its Redis adapter), on the same broker: hit rate and time per call.
2. The cost of dispatching one change (`changed()` with one rule on the ``taskiq`` dispatcher)
   against the raw client's send of the same body (`AsyncKicker.kiq` on the same loop).
3. End-to-end invalidations per second through a worker for 10,000 changes, one message per
   change and in batches of 100 (`collect()`).

    uv run python bench/taskiq.py [--quick]
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
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file is named after the runtime: keep its folder off the path so `import taskiq` finds
# taskiq, and import the neighbours it needs by their own folders.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
APP_DIR = HERE / "taskiq_worker"
sys.path.insert(0, str(APP_DIR))


def _load_common() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_common", HERE / "_common.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


write_section = _load_common().write_section

from cachewire.testing import unique_name

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = unique_name("cw-bench-taskiq-q")
PREFIX = unique_name("cw-bench-taskiq")
os.environ.update(CW_BENCH_QUEUE=QUEUE, CW_BENCH_PREFIX=PREFIX)


def _redis() -> Any:
    import redis

    return redis.Redis.from_url(REDIS_URL, socket_timeout=60)


def _cleanup() -> None:
    client = _redis()
    for pattern in (f"{QUEUE}*", f"{PREFIX}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    client.close()


@contextmanager
def worker(middleware: str) -> Iterator[None]:
    env = {**os.environ, "CW_BENCH_MIDDLEWARE": middleware, "PYTHONPATH": str(APP_DIR)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskiq",
            "worker",
            "cw_bench_taskiq_app:broker",
            "--workers",
            "1",
            "--log-level",
            "ERROR",
            "--no-configure-logging",
            "--max-async-tasks",
            "50",
        ],
        cwd=APP_DIR,
        env=env,
    )
    try:
        yield
    finally:
        process.terminate()
        process.wait(30)


async def _round_trips(calls: list[tuple[int, int]]) -> tuple[float, int, int]:
    import cw_bench_taskiq_app as apps

    client = _redis()
    client.delete(f"{PREFIX}:runs")
    await apps.broker.startup()
    try:
        # One warm-up call proves the worker is up.
        await (await apps.report.kiq(-1, -1)).wait_result(timeout=60)
        client.delete(f"{PREFIX}:runs")
        times: list[float] = []
        errors = 0
        for shop, year in calls:
            start = time.perf_counter()
            result = await (await apps.report.kiq(shop, year)).wait_result(
                timeout=60, check_interval=0.001
            )
            times.append(time.perf_counter() - start)
            errors += bool(result.is_err)
        runs = int(client.get(f"{PREFIX}:runs") or 0)
        return statistics.median(times), runs, errors
    finally:
        await apps.broker.shutdown()
        client.close()


def cached_round_trip(quick: bool) -> list[list[str]]:
    distinct = 10 if quick else 20
    repeat = 5 if quick else 10
    calls = [(shop, 2026) for _ in range(repeat) for shop in range(distinct)]
    rows = []
    for label, middleware in (
        ("no cache middleware", "none"),
        ("cachewire CacheMiddleware (Redis)", "cachewire"),
        ("taskiq-flow CacheMiddleware (Redis)", "taskiq-flow"),
    ):
        with worker(middleware):
            median, runs, errors = asyncio.run(_round_trips(calls))
        hit_rate = 1 - runs / len(calls)
        rows.append(
            [label, f"{median * 1e3:.2f}", f"{runs}/{len(calls)}", f"{hit_rate:.0%}", str(errors)]
        )
        _cleanup()
    return rows


def dispatch_cost(quick: bool) -> list[list[str]]:
    import cw_bench_taskiq_app as apps
    from taskiq.kicker import AsyncKicker

    import cachewire
    from cachewire.testing import override_settings
    from cachewire_taskiq import TaskiqDispatcher

    n = 300 if quick else 2000
    rounds = 5
    ratios = []
    ours_us, raw_us = [], []
    settings = {"taskiq": {"BROKER": "cw_bench_taskiq_app:broker"}}
    with override_settings(dispatcher_settings=settings):
        dispatcher = cachewire.resolve_dispatcher("taskiq")
        body = dispatcher.encode_rules(
            ["bench-taskiq-order"],
            {"bench-taskiq-order": [{"shop_id": 1, "page": 2}]},
            cachewire.DispatchContext(),
        )
        kicker = AsyncKicker("cachewire.run_work", apps.broker, {})
        sends = TaskiqDispatcher._sends
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(n):
                sends.submit(kicker.kiq(body)).result(10)
            raw = (time.perf_counter() - start) / n
            start = time.perf_counter()
            for i in range(n):
                cachewire.changed("bench.Order", {"shop_id": 1, "page": i % 7})
            ours = (time.perf_counter() - start) / n
            ratios.append(ours / raw)
            ours_us.append(ours * 1e6)
            raw_us.append(raw * 1e6)
    _cleanup()
    return [
        [
            "raw `AsyncKicker.kiq` of the same body, waited",
            f"{statistics.median(raw_us):.1f}",
            "1.00x",
        ],
        [
            "`changed()`, 1 rule, taskiq dispatcher",
            f"{statistics.median(ours_us):.1f}",
            f"{statistics.median(ratios):.2f}x",
        ],
    ]


def end_to_end(quick: bool) -> list[list[str]]:
    import cachewire
    from cachewire.testing import override_settings
    from cachewire_taskiq import TaskiqDispatcher

    total = 2000 if quick else 10_000
    rows = []
    client = _redis()
    settings = {"taskiq": {"BROKER": "cw_bench_taskiq_app:broker"}}
    with worker("none"), override_settings(dispatcher_settings=settings):
        for label, batch in (("one message per change", 1), ("batches of 100 changes", 100)):
            client.delete(f"{PREFIX}:done")
            start = time.perf_counter()
            messages = 0
            for first in range(0, total, batch):
                with cachewire.collect():
                    for i in range(first, first + batch):
                        cachewire.changed("bench.Order", {"shop_id": i % 50, "page": i})
                messages += 1
            assert TaskiqDispatcher.flush(120)
            while int(client.get(f"{PREFIX}:done") or 0) < messages:
                client.blpop([f"{PREFIX}:never"], timeout=0.05)  # a short blocking wait
            elapsed = time.perf_counter() - start
            rows.append(
                [label, str(total), str(messages), f"{elapsed:.2f}", f"{total / elapsed:,.0f}"]
            )
    client.close()
    _cleanup()
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args()
    try:
        round_trip = cached_round_trip(args.quick)
        cost = dispatch_cost(args.quick)
        e2e = end_to_end(args.quick)
    finally:
        _cleanup()
    body = "\n\n".join(
        [
            "`uv run python bench/taskiq.py"
            + (" --quick" if args.quick else "")
            + "`: one `taskiq worker` process, "
            "taskiq-redis `ListQueueBroker` and result backend on the local Redis.",
            "**A cached task's round trip** (`kiq()` then `wait_result()`; the same calls in the same "
            "order for each middleware; body runs counted in Redis):",
            table(
                ["worker middleware", "median ms per call", "body runs", "hit rate", "errors"],
                round_trip,
            ),
            "taskiq-flow keys its entries on the task id, which is new for every message, so it never hits.",
            "**Dispatching one change** (µs per change, median of 5 rounds; target at most 1.2x):",
            table(["path", "µs", "vs raw"], cost),
            "**End to end**: changes until the worker has run every message:",
            table(["mode", "changes", "messages", "seconds", "invalidations/s"], e2e),
        ]
    )
    print(body)
    write_section("taskiq", body)


if __name__ == "__main__":
    main()
