"""The Celery app of bench/celery.py, for both the benchmark (producer) and its worker process.

Configured from the environment that bench/celery.py sets: CW_BENCH_BROKER, CW_BENCH_QUEUE,
CW_BENCH_CACHE (a Redis URL) and CW_BENCH_NAMESPACE.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery
from celery.signals import task_postrun, worker_ready

from cachewire import Rule, cached
from cachewire.cache import RedisCacheAdapter
from cachewire.dispatch import dispatch_stats
from cachewire_celery import TASK_NAME

NAMESPACE = os.environ["CW_BENCH_NAMESPACE"]
MODEL = "bench.CeleryOrder"

app = Celery(
    "bench-celery",
    broker=os.environ["CW_BENCH_BROKER"],
    include=["cachewire_celery.tasks"],
)
app.conf.update(
    task_default_queue=os.environ["CW_BENCH_QUEUE"],
    task_ignore_result=True,
    worker_prefetch_multiplier=16,
    broker_connection_retry_on_startup=True,
)

cache = RedisCacheAdapter(os.environ["CW_BENCH_CACHE"], namespace=NAMESPACE)


@cached(
    cache=cache,
    partition=("customer_id",),
    name="bench-celery.orders",
    invalidates_on=[
        Rule(
            model=MODEL,
            field_mapping={"customer_id": "customer_id"},
            dispatcher="celery",
            name="bench-celery.orders",
        )
    ],
)
def orders(customer_id: int, page: int = 1) -> list[int]:
    return [customer_id, page]


_progress = redis.Redis.from_url(os.environ["CW_BENCH_CACHE"])
_noops = 0


@app.task(name="bench-celery.noop")
def noop(i: int) -> None:
    """The floor: a task that does nothing, sent with the raw client."""
    global _noops
    _noops += 1


@task_postrun.connect
def _report(sender: Any = None, **_: Any) -> None:
    # One HSET per message: what this worker process has done so far (the same for both paths).
    name = getattr(sender, "name", None)
    if name == TASK_NAME:
        _progress.hset(
            f"{NAMESPACE}:progress", str(os.getpid()), dispatch_stats.snapshot()["invalidations"]
        )
    elif name == "bench-celery.noop":
        _progress.hset(f"{NAMESPACE}:noops", str(os.getpid()), _noops)


@worker_ready.connect
def _ready(**_: Any) -> None:
    _progress.rpush(f"{NAMESPACE}:ready", os.getpid())
