"""RQ fixtures: this run's own Redis database, per-test queue names, real RQ workers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty
from rq_helpers import remove_queue

from cachewire.testing import reset_state, unique_name

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.redis


@pytest.fixture(scope="session")
def rq_url(redis_url: str, _test_database: int) -> str:
    """A URL on this test run's own database (claimed, never flushed: tests remove their keys)."""
    parsed = urlparse(redis_url)
    return f"redis://{parsed.hostname}:{parsed.port or 6379}/{_test_database}"


@pytest.fixture
def rq_client(rq_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(rq_url)
    yield client
    client.close()


@pytest.fixture
def queue_name(rq_client: redis.Redis) -> Iterator[str]:
    """A queue name of this test's own, removed (with its jobs) afterwards."""
    name = unique_name("cw-rq")
    yield name
    remove_queue(rq_client, name)


@pytest.fixture
def clean_state() -> Iterator[None]:
    """Default settings, no rules, zeroed counters, before and after the test."""
    reset_state()
    yield
    reset_state()


class InProcessWorker(SimpleWorker):
    """A real RQ `SimpleWorker` that can run in a helper thread of the test process.

    Signal handlers belong to the main thread, so it installs none, and it enforces job
    timeouts with RQ's timer-based death penalty.
    """

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass


WaitIdle = Callable[[], Awaitable[None]]


@pytest.fixture
def run_worker(rq_url: str) -> Callable[..., WaitIdle]:
    """``run_worker(*queue_names)`` -> an async callable that runs a burst of an in-process
    worker on those queues, returning once they are empty."""

    def make(*names: str) -> WaitIdle:
        client = redis.Redis.from_url(rq_url)
        queues = [Queue(n, connection=client, serializer=JSONSerializer) for n in names]

        def burst() -> None:
            worker = InProcessWorker(queues, connection=client, serializer=JSONSerializer)
            worker.work(burst=True, logging_level="WARNING")

        async def idle() -> None:
            await asyncio.to_thread(burst)

        return idle

    return make


class WorkerProcess:
    """``rq worker`` in a process of its own (the forking `Worker` unless told otherwise)."""

    def __init__(self, url: str, queues: list[str], *, worker_class: str | None = None) -> None:
        self.url = url
        self.queues = queues
        self.worker_class = worker_class
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--url",
            self.url,
            "--serializer",
            "rq.serializers.JSONSerializer",
            "--path",
            str(HERE),
            "--config",
            "rq_worker_app",
            "--with-scheduler",
            "--logging_level",
            "WARNING",
        ]
        if self.worker_class:
            command += ["--worker-class", self.worker_class]
        env = {**os.environ, "CW_RQ_TEST_URL": self.url}
        self.process = subprocess.Popen([*command, *self.queues], cwd=HERE, env=env)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None


@pytest.fixture
def worker_process(rq_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*queues: str, worker_class: str | None = None) -> WorkerProcess:
        worker = WorkerProcess(rq_url, list(queues), worker_class=worker_class)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(client: redis.Redis, key: str, timeout: float = 30) -> Any:
    """Block until an item is pushed on the list ``key`` and return it (decoded).

    Waits in one-second BLPOPs: redis-py's default socket timeout is shorter than ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = client.blpop([key], timeout=1)
        if item is not None:
            return item[1].decode()
    raise AssertionError(f"nothing arrived on {key} within {timeout}s")
