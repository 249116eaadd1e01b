"""Brokers and tasks the taskiq tests import, in the test process and in `taskiq worker`.

Queue names and key prefixes come from the environment so each test run has its own.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from taskiq import TaskiqMessage, TaskiqMiddleware, TaskiqResult
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

import cachewire
from cachewire.cache import RedisCacheAdapter
from cachewire_taskiq import CacheMiddleware, register_worker_task

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("CW_TASKIQ_QUEUE", "cachewire-taskiq-unset")
PREFIX = os.environ.get("CW_TASKIQ_PREFIX", "cachewire-taskiq-unset")


class Progress(TaskiqMiddleware):
    """Counts messages sent and finished, so tests wait for the worker instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.condition = threading.Condition()
        self.sent = 0
        self.finished = 0

    def post_send(self, message: TaskiqMessage) -> None:
        with self.condition:
            self.sent += 1

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        with self.condition:
            self.finished += 1
            self.condition.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.condition:
            return self.condition.wait_for(lambda: self.finished >= count, timeout)


# The contract: rule work and tasks from this process, consumed by a receiver in this process.
progress = Progress()
producer = ListQueueBroker(REDIS_URL, queue_name=f"{QUEUE}-contract").with_middlewares(progress)
consumer = ListQueueBroker(REDIS_URL, queue_name=f"{QUEUE}-contract").with_middlewares(progress)
register_worker_task(consumer)


class Done(TaskiqMiddleware):
    """In the worker process: announce each finished message on a Redis list per task."""

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        client = _counter()
        try:
            client.rpush(f"{PREFIX}:done:{message.task_name}", "1")
        finally:
            client.close()


# The worker process: `taskiq worker cw_taskiq_apps:broker`.
results: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(
    REDIS_URL, prefix_str=f"{PREFIX}:results"
)
shared_cache = RedisCacheAdapter(REDIS_URL, namespace=f"{PREFIX}:cache")
broker = (
    ListQueueBroker(REDIS_URL, queue_name=f"{QUEUE}-worker")
    .with_result_backend(results)
    .with_middlewares(CacheMiddleware(cache=shared_cache, default_ttl=300), Done())
)
register_worker_task(broker)
# The same queue without the middleware: how a sender that skips the label check looks.
raw_sender = ListQueueBroker(REDIS_URL, queue_name=f"{QUEUE}-worker").with_result_backend(results)


def _counter() -> Any:
    import redis

    # Blocking pops below wait longer than redis-py's default 5 s socket timeout.
    return redis.Redis.from_url(REDIS_URL, socket_timeout=60)


@broker.task(task_name="cw.slow_square")
def slow_square(x: int, gate: str) -> int:
    """Counts its runs in Redis and waits until the test opens ``gate``."""
    client = _counter()
    try:
        client.incr(f"{PREFIX}:runs:{x}")
        client.rpush(f"{PREFIX}:started", x)
        if client.blpop([gate], timeout=30) is None:
            raise TimeoutError("the test never opened the gate")
        client.rpush(gate, "open")  # the next waiter (if any) passes too
        return x * x
    finally:
        client.close()


@broker.task(task_name="cw.fails")
async def fails(x: int) -> int:
    client = _counter()
    try:
        client.incr(f"{PREFIX}:fails")
    finally:
        client.close()
    raise ValueError(f"no luck with {x}")


# Rule work handled by the worker process: a cached function on the shared Redis cache.
@cachewire.cached(cache=shared_cache, ttl=300, partition=("shop_id",))
def shop_total(shop_id: int) -> int:
    client = _counter()
    try:
        return int(client.incr(f"{PREFIX}:computed:{shop_id}"))
    finally:
        client.close()


cachewire.Rule(
    model="shop.Order", field_mapping={"shop_id": "shop_id"}, function=shop_total, name="cw-shop"
)


@cachewire.task(name="cw.bound", bind=True, dispatcher="taskiq")
def bound(ctx: Any, x: int) -> dict[str, Any]:
    return {"uuid": ctx.uuid, "attempt": ctx.attempt, "x": x}


@cachewire.task(name="cw.too_slow", dispatcher="taskiq", timeout=0.5)
async def too_slow() -> None:
    import asyncio

    await asyncio.sleep(30)
