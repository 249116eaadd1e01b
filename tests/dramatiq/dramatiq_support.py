"""Helpers of the Dramatiq adapter's tests: brokers of the run's own and in-process workers.

Each run owns what it touches: a Redis namespace of its own (its keys are deleted at the end) and
a RabbitMQ virtual host of its own (deleted at the end). Nothing else is flushed or purged.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


class PendingMessages(dramatiq.Middleware):
    """Counts messages enqueued through this process's broker and not yet acked or rejected.

    Every enqueued message ends in exactly one ack or nack (a delayed message is acked when it is
    moved to its queue, as a new message), so zero means all work handed over so far is done.
    (An enqueue that fails is counted all the same: tests that break the broker do not use it.)
    """

    def __init__(self) -> None:
        self.pending = 0
        self.condition = threading.Condition()
        #: (message, exception or None) of every message this process's worker processed.
        self.processed: list[tuple[Any, BaseException | None]] = []
        #: message id -> what the actor returned
        self.results: dict[str, Any] = {}

    def _add(self, amount: int) -> None:
        with self.condition:
            self.pending += amount
            self.condition.notify_all()

    def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        # Before, not after: a worker may ack the message before `enqueue` returns.
        self._add(1)

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        self.processed.append((message, exception))
        self.results[message.message_id] = result

    def after_ack(self, broker: Any, message: Any) -> None:
        self._add(-1)

    def after_nack(self, broker: Any, message: Any) -> None:
        self._add(-1)

    def wait(self, timeout: float = 20.0) -> None:
        with self.condition:
            if not self.condition.wait_for(lambda: self.pending <= 0, timeout):
                raise TimeoutError(f"{self.pending} Dramatiq message(s) still pending")


class RunningWorker:
    """A broker of this run's own with an in-process `dramatiq.Worker` consuming it."""

    def __init__(self, kind: str, broker: dramatiq.Broker, pending: PendingMessages) -> None:
        self.kind = kind
        self.broker = broker
        self.pending = pending
        self.worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=50)

    def start(self) -> None:
        dramatiq.set_broker(self.broker)
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop(timeout=5000)
        self.broker.close()

    async def wait_idle(self) -> None:
        await asyncio.to_thread(self.pending.wait)


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "a condition") -> None:
    """Return once ``predicate()`` is true (checked every 20 ms); `TimeoutError` after ``timeout``."""
    event = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        event.wait(0.02)


def dead_letters(running: RunningWorker, queue: str) -> int:
    """How many messages of ``queue`` sit in the broker's dead-letter queue."""
    broker: Any = running.broker
    if running.kind == "redis":
        return int(broker.client.zcard(f"{broker.namespace}:{queue}.XQ"))
    return int(broker.get_queue_message_counts(queue)[2])


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def make_broker(kind: str, *, redis_namespace: str = "", rabbitmq_url: str = "") -> Any:
    pending = PendingMessages()
    if kind == "redis":
        broker: dramatiq.Broker = RedisBroker(url=REDIS_URL, namespace=redis_namespace)
    else:
        broker = RabbitmqBroker(url=rabbitmq_url, confirm_delivery=True)
    broker.add_middleware(pending)
    return broker, pending
