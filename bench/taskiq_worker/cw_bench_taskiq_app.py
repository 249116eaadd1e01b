"""The worker side of bench/taskiq.py: `taskiq worker cw_bench_taskiq_app:broker`.

``CW_BENCH_MIDDLEWARE`` picks the cache middleware (``cachewire``, ``taskiq-flow`` or ``none``);
``CW_BENCH_QUEUE`` and ``CW_BENCH_PREFIX`` keep the run's keys apart from everything else.
"""

from __future__ import annotations

import os
from typing import Any

from taskiq import TaskiqMessage, TaskiqMiddleware, TaskiqResult
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

import cachewire
from cachewire.cache import RedisCacheAdapter
from cachewire_taskiq import CacheMiddleware, register_worker_task

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("CW_BENCH_QUEUE", "cachewire-bench-taskiq")
PREFIX = os.environ.get("CW_BENCH_PREFIX", "cachewire-bench-taskiq")
MIDDLEWARE = os.environ.get("CW_BENCH_MIDDLEWARE", "cachewire")


def _client() -> Any:
    import redis

    return redis.Redis.from_url(REDIS_URL, socket_timeout=60)


class Done(TaskiqMiddleware):
    """Counts finished messages in Redis, for the benchmark to wait on."""

    def __init__(self) -> None:
        super().__init__()
        self.client = _client()

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        self.client.incr(f"{PREFIX}:done")


def _middlewares() -> list[TaskiqMiddleware]:
    if MIDDLEWARE == "cachewire":
        cache = RedisCacheAdapter(REDIS_URL, namespace=f"{PREFIX}:cw")
        return [CacheMiddleware(cache=cache, default_ttl=600), Done()]
    if MIDDLEWARE == "taskiq-flow":
        from taskiq_flow.cache import RedisCacheAdapter as FlowRedis
        from taskiq_flow.middlewares import CacheMiddleware as FlowMiddleware

        return [
            FlowMiddleware(cache=FlowRedis(REDIS_URL, default_ttl=600), default_ttl=600),
            Done(),
        ]
    return [Done()]


broker = (
    ListQueueBroker(REDIS_URL, queue_name=QUEUE)
    .with_result_backend(RedisAsyncResultBackend(REDIS_URL, prefix_str=f"{PREFIX}:r"))
    .with_middlewares(*_middlewares())
)
register_worker_task(broker)
runs = _client()


@broker.task(task_name="bench.report")
async def report(shop_id: int, year: int) -> dict[str, Any]:
    """A task worth caching: it counts its runs so the benchmark can tell hits from runs."""
    runs.incr(f"{PREFIX}:runs")
    return {"shop": shop_id, "year": year, "rows": list(range(50))}


@cachewire.cached(
    cache=RedisCacheAdapter(REDIS_URL, namespace=f"{PREFIX}:fn"), partition=("shop_id",)
)
def shop_page(shop_id: int, page: int) -> int:
    return shop_id * page


cachewire.Rule(
    model="bench.Order",
    field_mapping={"shop_id": "shop_id", "page": "page"},
    function=shop_page,
    name="bench-taskiq-order",
    dispatcher="taskiq",
)
