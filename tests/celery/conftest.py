"""Celery test rigs: one embedded worker per broker for the session, and worker processes.

Every rig uses queues named for this run only and deletes only those at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis
from celery import Celery, current_app
from celery.contrib.testing.worker import start_worker
from celery.signals import before_task_publish, task_postrun
from celery.worker import state as worker_state
from kombu import Queue

import cachewire_celery.tasks  # noqa: F401  (registers the worker task on every app)
from cachewire.testing import TcpProxy, require_service, reset_state, unique_name
from cachewire.wire import encode_rule_work
from cachewire_celery import TASK_NAME

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
HERE = Path(__file__).parent

#: The queue names the task contract passes per call; each rig maps them onto queues of its own.
CONTRACT_QUEUES = ("contract",)


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    """Each test starts from cachewire's defaults (no rules, settings, counters or instances)
    and leaves Celery's current app as it found it."""
    app = current_app._get_current_object()
    reset_state()
    yield
    reset_state()
    app.set_current()
    app.set_default()


class Inflight:
    """Counts worker-task messages published to a rig's queues and the runs that finished."""

    def __init__(self, app: Celery, routing_keys: set[str]) -> None:
        self.app = app
        self.routing_keys = routing_keys
        self.published = 0
        self.finished = 0
        self._changed = threading.Condition()
        before_task_publish.connect(self._on_publish, weak=False)
        task_postrun.connect(self._on_postrun, weak=False)

    def _on_publish(self, sender: Any = None, routing_key: Any = None, **_: Any) -> None:
        if sender == TASK_NAME and routing_key in self.routing_keys:
            with self._changed:
                self.published += 1

    def _on_postrun(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "name", None) == TASK_NAME and getattr(sender, "app", None) is self.app:
            with self._changed:
                self.finished += 1
                self._changed.notify_all()

    def wait_idle(self, timeout: float = 20) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.finished >= self.published, timeout):
                raise AssertionError(
                    f"the worker finished {self.finished} of {self.published} messages in time"
                )

    def disconnect(self) -> None:
        before_task_publish.disconnect(self._on_publish)
        task_postrun.disconnect(self._on_postrun)


class Rig:
    """An app on one broker, its per-run queue, and an embedded worker consuming it."""

    def __init__(self, broker: str, broker_url: str) -> None:
        self.broker = broker
        self.queue = unique_name(f"cw-celery-{broker}")
        #: Where the broker puts messages the worker rejects (RabbitMQ only).
        self.dead_letters = unique_name(f"cw-celery-{broker}-dead")
        self.app = Celery(f"cachewire-test-{broker}", broker=broker_url, set_as_current=False)
        dead_lettering = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dead_letters,
        }
        self.app.conf.update(
            task_default_queue=self.queue,
            task_queues=[
                Queue(self.queue, queue_arguments=dead_lettering if broker == "amqp" else None)
            ],
            broker_connection_retry_on_startup=True,
            worker_hijack_root_logger=False,
            worker_enable_remote_control=False,
            task_acks_late=False,
            # The contract counts one raise per failing message; retries have tests of their own.
            task_annotations={TASK_NAME: {"max_retries": 0}},
        )
        own = self.app.amqp.queues[self.queue]
        for alias in CONTRACT_QUEUES:
            # The contract's queue names land on this run's queue (Celery expands a queue name
            # through its declarations), so no shared queue is used or purged.
            self.app.amqp.queues[alias] = own
        self.inflight = Inflight(self.app, {self.queue})

    def make_current(self) -> None:
        self.app.set_current()
        self.app.set_default()

    def wake(self) -> None:
        """Send empty rule work and wait for it: the embedded worker's event loop takes a turn."""
        self.app.tasks[TASK_NAME].apply_async(args=(encode_rule_work([], {}),))
        self.inflight.wait_idle()

    def stop_soon(self) -> None:
        """Ask the embedded worker to stop and wake its loop, so it need not wait for the loop's
        poll timeout (10 s on RabbitMQ) to notice."""
        worker_state.should_terminate = 0
        self.app.tasks[TASK_NAME].apply_async(args=(encode_rule_work([], {}),))

    def delete_queues(self) -> None:
        with self.app.connection_for_write() as conn:
            channel = conn.default_channel
            Queue(self.queue, channel=channel).delete()
            Queue(self.dead_letters, channel=channel).delete()


class Rigs:
    """At most one embedded worker at a time (two in one process share Celery's worker state):
    asking for another broker's rig stops the running one first."""

    URLS = {"redis": REDIS_URL, "amqp": AMQP_URL}
    NAMES = {"redis": "Redis", "amqp": "RabbitMQ"}

    def __init__(self) -> None:
        self._running: tuple[Rig, contextlib.ExitStack] | None = None

    def get(self, broker: str) -> Rig:
        if self._running is not None:
            if self._running[0].broker == broker:
                return self._running[0]
            self.stop()
        url = self.URLS[broker]
        require_service(self.NAMES[broker], url)
        rig = Rig(broker, url)
        stack = contextlib.ExitStack()
        stack.callback(rig.delete_queues)
        stack.callback(rig.inflight.disconnect)
        stack.enter_context(
            start_worker(
                rig.app,
                pool="solo",
                perform_ping_check=False,
                shutdown_timeout=30,
                loglevel="WARNING",
            )
        )
        stack.callback(rig.stop_soon)  # runs before start_worker's exit joins the thread
        self._running = (rig, stack)
        return rig

    def stop(self) -> None:
        if self._running is not None:
            _, stack = self._running
            self._running = None
            stack.close()


@pytest.fixture(scope="session")
def rigs() -> Iterator[Rigs]:
    pool = Rigs()
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture
def redis_rig(rigs: Rigs) -> Rig:
    return rigs.get("redis")


@pytest.fixture
def amqp_rig(rigs: Rigs) -> Rig:
    return rigs.get("amqp")


class WorkerProcess:
    """``celery worker`` (prefork, one child) in a process of its own, on celery_worker_app.py.

    The worker reaches its broker directly; the test process's producers go through a
    `TcpProxy` the tests cut, so an outage is the producer's. (A cut between the worker and
    RabbitMQ can drop an ack the worker already sent, and the broker then delivers that message
    again, which AMQP allows.)"""

    def __init__(self, *, broker: str, broker_url: str, record_url: str) -> None:
        self.broker = broker
        self.queue = unique_name(f"cw-celery-proc-{broker}")
        self.record_key = unique_name("cw-celery-record")
        self.record_url = record_url
        self.direct_url = broker_url
        self.proxy = TcpProxy.for_url(broker_url).start()
        self.broker_url = self.proxy.url_through(broker_url)
        self.redis = redis.Redis.from_url(record_url, socket_timeout=120)
        self.process: subprocess.Popen[bytes] | None = None

    def pop(self, event: str, timeout: float = 30) -> dict[str, Any]:
        """The next record of ``event``, waiting for it (AssertionError if none comes)."""
        got = self.redis.blpop([f"{self.record_key}:{event}"], timeout=timeout)
        if got is None:
            raise AssertionError(f"no {event!r} record within {timeout}s")
        return json.loads(got[1])  # type: ignore[no-any-return]

    def records(self, event: str) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.redis.lrange(f"{self.record_key}:{event}", 0, -1)]

    def start(self) -> None:
        env = {
            **os.environ,
            "CW_BROKER_URL": self.direct_url,
            "CW_QUEUE": self.queue,
            "CW_RECORD_URL": self.record_url,
            "CW_RECORD_KEY": self.record_key,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        command = [sys.executable, "-m", "celery", "-A", "celery_worker_app", "worker"]
        # A node name of this run's own: test runs on one machine share the broker.
        command += ["-n", f"{self.queue}@%h", "-Q", self.queue]
        command += ["-P", "prefork", "-c", "1", "-l", "WARNING"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=HERE,
        )
        self.pop("ready", timeout=60)

    def producer(self) -> Celery:
        """An app of the test process that sends to this worker through the proxy."""
        app = Celery(
            f"cachewire-producer-{self.broker}",
            broker=self.broker_url,
            backend=self.record_url,
            set_as_current=False,
        )
        app.conf.update(task_default_queue=self.queue, broker_connection_timeout=2)
        return app

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None
        self.proxy.close()
        for key in self.redis.scan_iter(f"{self.record_key}:*"):
            self.redis.delete(key)
        cleaner = Celery(broker=self.direct_url, set_as_current=False)
        with cleaner.connection_for_write() as conn:
            Queue(self.queue, channel=conn.default_channel).delete()
        self.redis.close()


class WorkerProcesses:
    URLS = Rigs.URLS

    def __init__(self, record_url: str) -> None:
        self.record_url = record_url
        self._started: dict[str, WorkerProcess] = {}

    def get(self, broker: str) -> WorkerProcess:
        if broker not in self._started:
            require_service(Rigs.NAMES[broker], self.URLS[broker])
            worker = WorkerProcess(
                broker=broker, broker_url=self.URLS[broker], record_url=self.record_url
            )
            self._started[broker] = worker
            worker.start()
        return self._started[broker]

    def stop(self) -> None:
        for worker in self._started.values():
            worker.stop()


@pytest.fixture(scope="session")
def record_url(redis_url: str, _test_database: int) -> str:
    """This run's own Redis database (never flushed here: tests delete only their own keys)."""
    parsed = urlparse(redis_url)
    return f"redis://{parsed.hostname}:{parsed.port or 6379}/{_test_database}"


@pytest.fixture(scope="session")
def worker_processes(record_url: str) -> Iterator[WorkerProcesses]:
    workers = WorkerProcesses(record_url)
    try:
        yield workers
    finally:
        workers.stop()


@pytest.fixture
def producer_for() -> Iterator[Any]:
    """``producer_for(worker)``: a producer app for a worker process, current for the test."""
    made: list[Celery] = []

    def make(worker: WorkerProcess) -> Celery:
        app = worker.producer()
        app.set_current()
        app.set_default()
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()
