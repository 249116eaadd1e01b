"""Helpers of the Dramatiq adapter's tests: brokers of the run's own and in-process workers.

Each run owns what it touches: a Redis namespace of its own (its keys are deleted at the end) and
a RabbitMQ virtual host of its own (deleted at the end). Nothing else is flushed or purged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlparse

import dramatiq
import pytest
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from cachewire import configure

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
IN_CI = bool(os.environ.get("CI"))


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def require(name: str, url: str, default_port: int) -> None:
    if _reachable(url, default_port):
        return
    message = f"{name} is not reachable at {url}; start it or set the URL variable"
    if IN_CI:
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
    pytest.skip(message)


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


def delete_namespace(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


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


def reset_settings() -> None:
    configure(
        default_dispatcher="inline",
        dispatcher_raise_exception=False,
        dispatcher_settings={},
        default_cache=None,
        task_guard=None,
        task_defaults={},
    )


class TcpProxy:
    """A TCP proxy to ``host:port`` on a port of its own that a test can cut and restore.

    `cut` drops every open connection and refuses new ones; `restore` listens again on the
    same port. (To be replaced by ``cachewire.testing.TcpProxy``.)
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, 5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._sockets -= {source, sink}

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = set(self._sockets), set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        if self._listener is None:
            self.start()

    def close(self) -> None:
        self.cut()
