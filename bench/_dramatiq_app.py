"""The application both sides of bench/dramatiq.py load: the broker, one cached function on Redis
and its rule on the ``dramatiq`` dispatcher. A Dramatiq worker process loads it with
``python -m dramatiq _dramatiq_app --path bench``; it reports the invalidations it ran to Redis."""

from __future__ import annotations

import os
import threading
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from cachewire import Rule, cached
from cachewire.cache import RedisCacheAdapter
from cachewire.dispatch import dispatch_stats

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
NAMESPACE = os.environ["CW_BENCH_NS"]
QUEUE = "cw_bench"
DONE_KEY = f"{NAMESPACE}:invalidations"

client = redis.Redis.from_url(REDIS_URL)


class ReportInvalidations(dramatiq.Middleware):
    """After each message, publish how many invalidations this worker process has run."""

    def __init__(self) -> None:
        # One report at a time, so a late write never replaces a higher count.
        self.lock = threading.Lock()

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        with self.lock:
            client.set(DONE_KEY, dispatch_stats.snapshot()["invalidations"])


broker = RedisBroker(url=REDIS_URL, namespace=NAMESPACE)
if os.environ.get("CW_BENCH_WORKER"):
    broker.add_middleware(ReportInvalidations())
dramatiq.set_broker(broker)

cache = RedisCacheAdapter(REDIS_URL, namespace=f"{NAMESPACE}:cache")
rule = Rule(
    model="bench.Order",
    field_mapping={"customer_id": "customer_id"},
    dispatcher="dramatiq",
    dispatcher_config={"queue": QUEUE},
    name="bench.orders",
)


@cached(cache=cache, partition=("customer_id",), name="bench.orders", invalidates_on=[rule])
def orders(customer_id: int) -> list[int]:
    return [customer_id]


import cachewire_dramatiq

cachewire_dramatiq.register_actor(queue=QUEUE)
