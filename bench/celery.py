"""The celery dispatcher: what one change costs to send, and invalidations/s through a worker.

Run: uv run python bench/celery.py [--quick]
Needs Redis (REDIS_URL, default redis://127.0.0.1:6379/0) as broker and cache. Writes the
"celery" section of bench/RESULTS.md.

- Dispatch cost: ``changed()`` of one row through the celery dispatcher (rule evaluation, the
  wire envelope, ``apply_async``) against the raw client: ``app.send_task`` of an equivalent
  message (the same task, queue and JSON body, encoded per call).
- End to end: 10,000 changes through a ``celery worker`` process (prefork, 2 children) that
  invalidates partitions of a Redis-cached function, one message per change and in batches
  (``collect()`` of 100 changes: one message each).
"""

from __future__ import annotations

import os as _os
import sys as _sys

# These scripts are named after what they measure, and bench/queue.py after a standard module:
# their folder goes last on sys.path, so `import queue` or `import celery` finds the real one.
_BENCH = _os.path.dirname(_os.path.abspath(__file__))
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _BENCH] + [_BENCH]

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file is named after the runtime it measures: keep its folder from shadowing the real
# `celery` package, and reach the helpers next to it from the end of the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.append(str(HERE))
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RUN = f"bench-celery-{os.getpid()}-{uuid.uuid4().hex[:8]}"
os.environ.update(
    CW_BENCH_BROKER=REDIS_URL,
    CW_BENCH_QUEUE=RUN,
    CW_BENCH_CACHE=REDIS_URL,
    CW_BENCH_NAMESPACE=RUN,
)

import redis
from kombu import Queue

from _celery_app import MODEL, app, cache, orders
from _common import write_section
from cachewire import changed, collect
from cachewire_celery import TASK_NAME

TARGET_RATIO = 1.2
RULE_ID = "bench-celery.orders"


class Order:
    def __init__(self, customer_id: int) -> None:
        self.customer_id = customer_id


def raw_send(i: int) -> None:
    body = json.dumps(
        {
            "kind": "rules",
            "v": [1, 0],
            "body": {"rule_ids": [RULE_ID], "rule_kwargs": {RULE_ID: [{"customer_id": i}]}},
        },
        separators=(",", ":"),
    )
    app.send_task(TASK_NAME, args=(body,), queue=RUN)


def dispatched(i: int) -> None:
    changed(MODEL, Order(i))


def purge() -> None:
    with app.connection_for_write() as conn:
        Queue(RUN, channel=conn.default_channel).purge()


def dispatch_cost(blocks: int, size: int) -> tuple[float, float, float]:
    """µs per call of each path and the median ratio of blocks of ``size`` calls, run in turn
    (in alternating order) so both paths see the same load on a shared machine."""
    totals = {raw_send: 0.0, dispatched: 0.0}
    ratios: list[float] = []
    for block in range(blocks):
        order = (raw_send, dispatched) if block % 2 == 0 else (dispatched, raw_send)
        took: dict[Any, float] = {}
        for path in order:
            start = time.perf_counter()
            for i in range(size):
                path(i)
            took[path] = time.perf_counter() - start
            totals[path] += took[path]
        ratios.append(took[dispatched] / took[raw_send])
        if block % 10 == 9:
            purge()
    purge()
    calls = blocks * size
    return (
        totals[raw_send] / calls * 1e6,
        totals[dispatched] / calls * 1e6,
        statistics.median(ratios),
    )


class Worker:
    def __init__(self) -> None:
        self.redis = redis.Redis.from_url(REDIS_URL, socket_timeout=120)
        launcher = (
            f"import sys; sys.path.append({str(HERE)!r}); from celery.__main__ import main; main()"
        )
        command = [sys.executable, "-c", launcher, "-A", "_celery_app", "worker", "-Q", RUN]
        command += ["-n", f"{RUN}@%h", "-P", "prefork", "-c", "2", "-l", "WARNING"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.process = subprocess.Popen(command, cwd=HERE.parent, env=os.environ.copy())
        if self.redis.blpop([f"{RUN}:ready"], timeout=60) is None:
            self.stop()
            raise SystemExit("the celery worker did not start")

    def invalidations(self) -> int:
        return self.done("progress")

    def done(self, what: str) -> int:
        return sum(int(v) for v in self.redis.hvals(f"{RUN}:{what}"))

    def wait_for(self, total: int, what: str = "progress", limit: float = 600) -> None:
        deadline = time.monotonic() + limit
        while self.done(what) < total:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {self.done(what)} of {total} {what} done")
            time.sleep(0.02)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def end_to_end(worker: Worker, changes: int, batch: int) -> float:
    """Invalidations per second from the first change to the last invalidation."""
    before = worker.invalidations()
    start = time.perf_counter()
    if batch == 1:
        for i in range(changes):
            changed(MODEL, Order(i))
    else:
        for first in range(0, changes, batch):
            with collect():
                for i in range(first, min(first + batch, changes)):
                    changed(MODEL, Order(i))
    worker.wait_for(before + changes)
    return changes / (time.perf_counter() - start)


def floor(worker: Worker, changes: int) -> float:
    """No-op tasks per second through the same worker, sent with ``app.send_task``."""
    start = time.perf_counter()
    for i in range(changes):
        app.send_task("bench-celery.noop", args=(i,), queue=RUN)
    worker.wait_for(changes, "noops")
    return changes / (time.perf_counter() - start)


def check_invalidates(worker: Worker) -> None:
    """A change through the worker makes the cached function compute again."""
    orders(424242)
    hits = cache.get_stats()["hits"]
    orders(424242)
    if cache.get_stats()["hits"] != hits + 1:
        raise SystemExit("the cached function did not cache")
    before = worker.invalidations()
    changed(MODEL, Order(424242))
    worker.wait_for(before + 1)
    misses = cache.get_stats()["misses"]
    orders(424242)
    if cache.get_stats()["misses"] != misses + 1:
        raise SystemExit("a change through the worker did not invalidate the cached entry")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    blocks, size = (10, 50) if args.quick else (60, 100)
    changes = 1000 if args.quick else 10_000

    raw_us, ours_us, ratio = dispatch_cost(blocks, size)
    worker = Worker()
    try:
        check_invalidates(worker)
        raw_floor = floor(worker, changes)
        single = end_to_end(worker, changes, 1)
        batched = end_to_end(worker, changes, 100)
    finally:
        worker.stop()
        with app.connection_for_write() as conn:
            Queue(RUN, channel=conn.default_channel).delete()
        keys = list(worker.redis.scan_iter(f"{RUN}*"))
        if keys:
            worker.redis.delete(*keys)

    verdict = "within" if ratio <= TARGET_RATIO else "OVER"
    text = "\n".join(
        [
            "Broker and cache: the machine's Redis. Command: `uv run python bench/celery.py`"
            + (" --quick" if args.quick else ""),
            "",
            f"### Dispatching one change ({blocks} blocks of {size} calls per path, in turn)",
            "",
            "| path | µs per change | ratio (median of blocks) |",
            "| --- | ---: | ---: |",
            f"| raw `app.send_task` of an equivalent JSON message | {raw_us:.0f} | 1.00x |",
            f"| `changed()` through the celery dispatcher | {ours_us:.0f} | {ratio:.2f}x |",
            "",
            f"Target: at most {TARGET_RATIO}x the raw client ({verdict} target). Both paths "
            "publish to the same Redis queue; `changed()` also evaluates the rule and builds the "
            "versioned envelope, and goes through `apply_async` (which honours "
            "`task_always_eager`) rather than `send_task`.",
            "",
            f"### End to end: {changes:,} changes through a `celery worker` (prefork, 2 children)",
            "",
            "| how the changes travel | messages | per second |",
            "| --- | ---: | ---: |",
            f"| floor: raw `send_task` of a no-op task (tasks/s) | {changes:,} | {raw_floor:,.0f} |",
            f"| one message per change (invalidations/s) | {changes:,} | {single:,.0f} |",
            f"| `collect()` batches of 100 changes (invalidations/s) | {changes // 100:,} "
            f"| {batched:,.0f} |",
            "",
            f"One message per change runs at {single / raw_floor:.2f}x the floor of Celery itself "
            f"on this machine; batching gives {batched / single:.1f}x the invalidations per second. "
            "Each invalidation makes one partition of a Redis-cached function stale (one "
            "generation bump in Redis).",
        ]
    )
    print(text)
    write_section("celery", text)


if __name__ == "__main__":
    main()
