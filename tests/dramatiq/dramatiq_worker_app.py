"""The module a Dramatiq worker process of the tests loads:
``python -m dramatiq dramatiq_worker_app --path tests/dramatiq``."""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


class ReportToTests(dramatiq.Middleware):
    """Tells the test process that the worker is up and how each message ended."""

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        from dramatiq_app import client, key

        client.set(key(f"ready-{KIND}"), os.getpid())

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        from dramatiq_app import client, key

        outcome = "ok" if exception is None else type(exception).__name__
        client.rpush(key("outcomes"), f"{message.actor_name}:{outcome}")


KIND = os.environ.get("CW_DRAMATIQ_BROKER", "redis")
broker: dramatiq.Broker
if KIND == "rabbitmq":
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=os.environ["CW_DRAMATIQ_AMQP_URL"])
else:
    broker = RedisBroker(url=REDIS_URL, namespace=os.environ["CW_DRAMATIQ_NS"])
broker.add_middleware(ReportToTests())
dramatiq.set_broker(broker)

import dramatiq_app  # noqa: E402,F401  (rules and tasks, after the broker is set)

import cachewire_dramatiq.actors  # noqa: E402,F401
from cachewire_dramatiq import register_actor  # noqa: E402

register_actor(queue=os.environ.get("CW_DRAMATIQ_QUEUE", "cw_tests"))
