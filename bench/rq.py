"""RQ dispatcher: the cost of dispatching one change against RQ's own enqueue of the same
message, and invalidations per second through real ``rq worker`` processes.

Writes the "rq" section of bench/RESULTS.md. Uses a private ``redis-server`` on a free port.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# These scripts are named after what they measure, and bench/queue.py after a standard module:
# their folder goes last on sys.path, so `import queue` or `import celery` finds the real one.
_BENCH = _os.path.dirname(_os.path.abspath(__file__))
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _BENCH] + [_BENCH]

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# This file is named rq.py: keep its folder from shadowing the rq package while importing it.
_bench = (
    sys.path.pop(0)
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent
    else None
)
import redis
from rq import Queue
from rq.serializers import JSONSerializer

if _bench is not None:
    sys.path.insert(0, _bench)

import cachewire
from cachewire import changed, collect
from cachewire.dispatch import dispatch_stats, get_dispatcher
from cachewire.dispatch import DispatchContext
from cachewire.wire import encode_rule_work

from _common import private_redis, write_section
from _rq_worker import DONE, RULE

HERE = Path(__file__).resolve().parent
TARGET = 1.2


def interleaved_us(cases: dict[str, Callable[[int], Any]], n: int) -> dict[str, float]:
    """Mean µs per call of each case, the cases taking turns call by call (in a rotating order),
    so a load change on a busy machine hits every case alike."""
    total = dict.fromkeys(cases, 0.0)
    order = list(cases.items())
    clock = time.perf_counter
    for i in range(n):
        shift = i % len(order)
        for name, call in order[shift:] + order[:shift]:
            start = clock()
            call(i)
            total[name] += clock() - start
    return {name: value / n * 1e6 for name, value in total.items()}


def dispatch_cost(url: str, n: int, repeats: int) -> list[list[str]]:
    """µs per change: ``changed()`` and ``dispatch()`` on the rq dispatcher, raw ``enqueue``."""
    queue_name = "bench-cost"
    cachewire.configure(dispatcher_settings={"rq": {"URL": url, "QUEUE": queue_name}})
    dispatcher = get_dispatcher("rq")
    context = DispatchContext()
    client = redis.Redis.from_url(url)
    queue = Queue(queue_name, connection=client, serializer=JSONSerializer)
    bodies = [encode_rule_work([RULE.id], {RULE.id: [{"user_id": i}]}) for i in range(n)]

    def raw(i: int) -> None:
        # What an application would write by hand: the same message, the same job options.
        queue.enqueue_call(
            "cachewire_rq.run_job",
            args=(bodies[i],),
            result_ttl=0,
            description=f"cachewire rules {RULE.id}",
        )

    def via_dispatch(i: int) -> None:
        dispatcher.dispatch(
            rule_ids=[RULE.id], rule_kwargs={RULE.id: [{"user_id": i}]}, context=context
        )

    def via_changed(i: int) -> None:
        changed("bench.User", {"id": i})

    cases = {"raw `queue.enqueue_call`": raw, "`dispatcher.dispatch`": via_dispatch}
    cases["`changed()` (one rule)"] = via_changed
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, value in interleaved_us(cases, n).items():
            samples[name].append(value)
        queue.empty()
    if dispatch_stats.snapshot()["dispatch_errors"]:
        raise RuntimeError("a dispatch failed during the cost run")
    floor = statistics.median(samples["raw `queue.enqueue_call`"])
    rows = []
    for name, values in samples.items():
        value = statistics.median(values)
        rows.append(
            [
                name,
                f"{value:.0f}",
                f"{min(values):.0f} to {max(values):.0f}",
                f"{value / floor:.2f}x",
            ]
        )
    client.close()
    return rows


class Worker:
    def __init__(self, url: str, queue: str, worker_class: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rq.cli",
                "worker",
                "--url",
                url,
                "--serializer",
                "json",
                "--path",
                str(HERE),
                "--config",
                "_rq_worker",
                "--worker-class",
                worker_class,
                "--logging_level",
                "WARNING",
                queue,
            ],
            cwd=HERE,
            env={**os.environ, "CW_RQ_BENCH_URL": url},
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def end_to_end(
    url: str, events: int, batch: int, worker_class: str, *, floor: bool = False
) -> tuple[float, int]:
    """Invalidations per second from the first change until a running worker did them all.

    With ``floor``, the changes are plain RQ jobs that only do the INCR (no cachewire on either
    side): RQ's own cost per job.
    """
    queue_name = f"bench-e2e-{batch}-{floor}"
    cachewire.configure(dispatcher_settings={"rq": {"URL": url, "QUEUE": queue_name}})
    client = redis.Redis.from_url(url)
    client.delete(DONE)
    worker = Worker(url, queue_name, worker_class)
    try:
        deadline = time.monotonic() + 30
        while not client.smembers(f"rq:workers:{queue_name}"):  # registered and listening
            if time.monotonic() > deadline:
                raise RuntimeError("the rq worker did not start")
            time.sleep(0.05)
        queue = Queue(queue_name, connection=client, serializer=JSONSerializer)
        start = time.perf_counter()
        for first in range(0, events, batch):
            if floor:
                queue.enqueue_call("_rq_worker.count_one", result_ttl=0)
            elif batch == 1:
                changed("bench.User", {"id": first})
            else:
                with collect():
                    for i in range(first, first + batch):
                        changed("bench.User", {"id": i})
        while int(client.get(DONE) or 0) < events:
            time.sleep(0.005)
            if time.perf_counter() - start > 600:
                raise RuntimeError("the worker did not finish within 600 s")
        elapsed = time.perf_counter() - start
        done = int(client.get(DONE) or 0)
    finally:
        worker.stop()
        client.close()
    if done != events:
        raise RuntimeError(f"{done} invalidations for {events} changes")
    return events / elapsed, events // batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, repeats, events, forked = (500, 3, 2_000, 500) if args.quick else (3_000, 5, 10_000, 2_000)
    with private_redis() as url:
        cost = dispatch_cost(url, n, repeats)
        print("dispatch cost done", flush=True)
        runs = []
        simple, forking = "rq.worker.SimpleWorker", "rq.worker.Worker"
        for label, worker_class, count, batch, floor in (
            ("SimpleWorker, RQ jobs doing only the INCR (floor)", simple, events, 1, True),
            ("SimpleWorker, no batching", simple, events, 1, False),
            ("SimpleWorker, collect() of 100", simple, events, 100, False),
            ("forking Worker, RQ jobs doing only the INCR (floor)", forking, forked, 1, True),
            ("forking Worker, no batching", forking, forked, 1, False),
            ("forking Worker, collect() of 100", forking, events, 100, False),
        ):
            rate, jobs = end_to_end(url, count, batch, worker_class, floor=floor)
            runs.append([label, f"{count:,}", f"{jobs:,}", f"{rate:,.0f}"])
            print(f"{label}: {rate:,.0f}/s", flush=True)

    ours = float(cost[2][3].rstrip("x"))
    verdict = f"Target at most {TARGET}x raw enqueue: " + (
        "**met**" if ours <= TARGET else "**not met**"
    )
    lines = [f"Command: `uv run python bench/rq.py{' --quick' if args.quick else ''}`", ""]
    lines += ["### Cost of dispatching one change", ""]
    lines += [
        f"µs per call, median of {repeats} runs of {n:,} calls of each case on a private",
        "redis-server; the cases take turns call by call. The raw row enqueues the same",
        "already-encoded JSON body with the same job options; the cachewire rows also find the",
        "rule, build its arguments, encode the envelope and read the dispatcher's options.",
        "",
        f"{verdict} (`changed()` costs {ours:.2f}x).",
        "",
        "| case | µs per change | spread | x raw |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in cost]
    lines += ["", "### Invalidations per second through a real worker", ""]
    lines += [
        "From the first change until a running `rq worker` (JSON serializer) has done every",
        "invalidation; each invalidation is one Redis INCR in the worker. No batching: one job per",
        "change. collect() of 100: one job carries 100 changes. The floor rows enqueue plain RQ",
        "jobs whose function only does the INCR: what RQ itself costs per job. The forking",
        "`Worker` forks a work horse per job, so its unbatched runs are shorter.",
        "",
        "| worker | changes | jobs | invalidations/s |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in runs]
    write_section("rq", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
