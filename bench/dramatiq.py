"""Dramatiq adapter benchmarks: what dispatching one change costs against Dramatiq's own enqueue,
and end-to-end invalidations per second through a real worker process.

Run: uv run python bench/dramatiq.py [--quick]
Writes the "dramatiq" section of bench/RESULTS.md. Uses a Redis namespace of its own on
BENCH_REDIS_URL (default redis://127.0.0.1:6379/13) and deletes its keys at the end.
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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
# This script's name hides the dramatiq library while its folder leads sys.path: import the
# library first, then make the folder's helpers importable.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE.resolve()]
import dramatiq

sys.path.append(str(HERE))
os.environ.setdefault("CW_BENCH_NS", f"cwbench_{uuid.uuid4().hex[:10]}")

import _dramatiq_app as app
import _restflow
from _common import write_section
from cachewire import changed, collect
from cachewire.dispatch import DispatchContext, dispatch_stats, resolve_dispatcher

TARGET_RATIO = 1.2
WORKER_THREADS = 8


class Order:
    def __init__(self, customer_id: int) -> None:
        self.customer_id = customer_id


def dispatch_costs(n: int, repeats: int) -> list[tuple[str, float]]:
    """µs per enqueue: Dramatiq's own send of an equivalent message, then cachewire's paths.

    Nothing consumes the queue meanwhile; its messages are deleted with the namespace.
    """
    raw_actor = dramatiq.actor(
        lambda rule_id, kwargs: None, actor_name="bench.raw", queue_name=app.QUEUE
    )
    dispatcher = resolve_dispatcher("dramatiq", {"queue": app.QUEUE})
    context = DispatchContext()
    rule_id = app.rule.id
    _restflow._setup()
    from restflow.caching.dispatchers.dramatiq import DramatiqDispatcher as RestflowDispatcher

    # Its `queue` setting does not reach the message (it lands on "default"), in this namespace.
    peer = RestflowDispatcher(queue=app.QUEUE)
    orders = [Order(i) for i in range(n)]
    paths: dict[str, Callable[[int], Any]] = {
        "floor: Dramatiq actor.send(rule id, {customer_id}) of the same facts": lambda i: (
            raw_actor.send(rule_id, {"customer_id": i})
        ),
        "cachewire dispatcher.dispatch(rule_ids, rule_kwargs)": lambda i: dispatcher.dispatch(
            rule_ids=[rule_id], rule_kwargs={rule_id: [{"customer_id": i}]}, context=context
        ),
        "cachewire changed(model, row): rule lookup, payload, enqueue": lambda i: changed(
            "bench.Order", orders[i]
        ),
        "drf-restflow DramatiqDispatcher.dispatch (same facts)": lambda i: peer.dispatch(
            rule_ids=[rule_id], rule_kwargs={rule_id: [{"customer_id": i}]}
        ),
    }
    costs = measure(paths, n, repeats)
    if dispatch_stats.snapshot()["dispatch_errors"]:
        raise SystemExit("a dispatch failed during the cost runs")
    return costs


def measure(
    paths: dict[str, Callable[[int], Any]], n: int, repeats: int
) -> list[tuple[str, float]]:
    """The median µs of one call of each path, over ``repeats * n`` calls taken in turns (one
    call of each path, then the next round), so load that comes and goes hits every path alike."""
    samples: dict[str, list[float]] = {label: [] for label in paths}
    for call in paths.values():  # warm up: connections, scripts, lazy declarations
        for i in range(min(n, 200)):
            call(i)
    clock = time.perf_counter
    for _ in range(repeats):
        for i in range(n):
            for label, call in paths.items():
                start = clock()
                call(i)
                samples[label].append(clock() - start)
    return [(label, statistics.median(values) * 1e6) for label, values in samples.items()]


def python_costs(n: int, repeats: int) -> list[tuple[str, float]]:
    """The same paths on Dramatiq's in-memory StubBroker: what each costs in Python alone,
    which is what the network round trip of a real broker is added to."""
    from dramatiq.brokers.stub import StubBroker

    previous, stub = dramatiq.get_broker(), StubBroker()
    dramatiq.set_broker(stub)
    try:
        raw_actor = dramatiq.actor(
            lambda rule_id, kwargs: None, actor_name="bench.raw", queue_name=app.QUEUE, broker=stub
        )
        dispatcher = resolve_dispatcher("dramatiq", {"queue": app.QUEUE})
        context = DispatchContext()
        rule_id = app.rule.id
        orders = [Order(i) for i in range(n)]

        def emptied(call: Callable[[int], Any]) -> Callable[[int], Any]:
            def run(i: int) -> Any:
                if i == 0:
                    stub.flush_all()
                return call(i)

            return run

        return measure(
            {
                "Dramatiq actor.send": emptied(
                    lambda i: raw_actor.send(rule_id, {"customer_id": i})
                ),
                "cachewire dispatcher.dispatch": emptied(
                    lambda i: dispatcher.dispatch(
                        rule_ids=[rule_id],
                        rule_kwargs={rule_id: [{"customer_id": i}]},
                        context=context,
                    )
                ),
                "cachewire changed()": emptied(lambda i: changed("bench.Order", orders[i])),
            },
            n,
            repeats,
        )
    finally:
        stub.flush_all()
        dramatiq.set_broker(previous)


class WorkerProcess:
    def __init__(self) -> None:
        env = {**os.environ, "CW_BENCH_WORKER": "1"}
        command = [sys.executable, "-m", "dramatiq", "_dramatiq_app", "--path", str(HERE)]
        command += ["--processes", "1", "--threads", str(WORKER_THREADS)]
        self.process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)

    def done(self) -> int:
        return int(app.client.get(app.DONE_KEY) or 0)

    def wait_for(self, total: int, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        while self.done() < total:
            if self.process.poll() is not None:
                raise SystemExit("the Dramatiq worker exited")
            if time.monotonic() > deadline:
                raise SystemExit(f"only {self.done()} of {total} invalidations after {timeout}s")
            time.sleep(0.005)
        return time.perf_counter()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def end_to_end(worker: WorkerProcess, changes: int, batch: int) -> float:
    """Invalidations per second from the first change until the worker ran all of them.

    ``batch`` > 1 sends that many changes per message (one `collect()` block each).
    """
    before = worker.done()
    app.orders(0)  # warm the cache connection
    start = time.perf_counter()
    if batch <= 1:
        for i in range(changes):
            changed("bench.Order", Order(i))
    else:
        for first in range(0, changes, batch):
            with collect():
                for i in range(first, min(first + batch, changes)):
                    changed("bench.Order", Order(i))
    end = worker.wait_for(before + changes)
    return changes / (end - start)


def delete_namespace() -> None:
    # The prefix alone: the cache adapter escapes its namespace ("...%3Acache:...").
    keys = list(app.client.scan_iter(match=f"{app.NAMESPACE}*", count=1000))
    for first in range(0, len(keys), 1000):
        app.client.delete(*keys[first : first + 1000])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, repeats = (500, 3) if args.quick else (3000, 7)
    changes = 2000 if args.quick else 10_000
    try:
        costs = dispatch_costs(n, repeats)
        python = python_costs(n, repeats)
        app.broker.flush(app.QUEUE)  # this run's own queue, in its own namespace
        worker = WorkerProcess()
        try:
            # Warm up: the worker is up and has run one change.
            changed("bench.Order", Order(-1))
            worker.wait_for(1, timeout=60)
            single = end_to_end(worker, changes, 1)
            batched = {size: end_to_end(worker, changes, size) for size in (10, 100)}
        finally:
            worker.stop()
    finally:
        delete_namespace()

    floor = costs[0][1]
    lines = [
        "Command: `uv run python bench/dramatiq.py`" + (" --quick" if args.quick else ""),
        "",
        f"### Dispatch cost on RedisBroker (loopback), median of {repeats * n} calls per path, "
        "taken in turns",
        "",
        f"Target: at most {TARGET_RATIO}x Dramatiq's own enqueue of an equivalent message.",
        "",
        "| path | µs/change | ratio to floor | within target |",
        "| --- | ---: | ---: | --- |",
    ]
    for label, value in costs:
        met = "" if value is floor else ("yes" if value / floor <= TARGET_RATIO else "**no**")
        lines.append(f"| {label} | {value:.1f} | {value / floor:.2f}x | {met} |")
    python_floor = python[0][1]
    lines += [
        "",
        "The same on Dramatiq's in-memory `StubBroker`: the Python cost of each path alone, to "
        "which a real broker adds its round trip (and which CPU contention inflates):",
        "",
        "| path | µs/change | more than Dramatiq's own send |",
        "| --- | ---: | ---: |",
    ]
    for label, value in python:
        lines.append(f"| {label} | {value:.1f} | {value - python_floor:+.1f} µs |")
    lines += [
        "",
        "drf-restflow's dispatcher sends to its actor's queue whatever its `queue` setting says "
        "(the queue goes in as a message option) and keeps only the first `actor_name` it sees; "
        "cachewire's declares the queue and an actor per name.",
    ]
    lines += [
        "",
        f"### End to end: {changes} changes through a real worker process "
        f"(`dramatiq`, 1 process x {WORKER_THREADS} threads)",
        "",
        "Each invalidation bumps the partition of a `@cached` function on `RedisCacheAdapter`; "
        "timed from the first change until the worker reports all of them done.",
        "",
        "| mode | messages | invalidations/s |",
        "| --- | ---: | ---: |",
        f"| one message per change | {changes} | {single:,.0f} |",
    ]
    for size, rate in batched.items():
        lines.append(f"| `collect()` blocks of {size} changes | {changes // size} | {rate:,.0f} |")
    text = "\n".join(lines)
    print(text)
    write_section("dramatiq", text)


if __name__ == "__main__":
    main()
