"""A real Dramatiq worker process (``python -m dramatiq``): broker outage while dispatching, the
task time limit, bind context and the cluster-wide duplicate guard across processes."""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq_support import REDIS_URL, wait_until

from cachewire import changed
from cachewire.dispatch import dispatch_stats
from cachewire.testing import TcpProxy, unique_name

pytestmark = pytest.mark.timeout(60)

HERE = Path(__file__).parent


class WorkerProcess:
    def __init__(self, namespace: str, queue: str, kind: str = "redis", amqp_url: str = "") -> None:
        self.namespace = namespace
        self.queue = queue
        self.kind = kind
        self.client = redis.Redis.from_url(REDIS_URL)
        env = {**os.environ, "CW_DRAMATIQ_NS": namespace, "CW_DRAMATIQ_QUEUE": queue}
        env |= {"CW_DRAMATIQ_BROKER": kind, "CW_DRAMATIQ_AMQP_URL": amqp_url}
        command = [sys.executable, "-m", "dramatiq", "dramatiq_worker_app"]
        command += ["--processes", "1", "--threads", "4", "--path", str(HERE)]
        command += ["--worker-shutdown-timeout", "3000"]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def key(self, name: str) -> str:
        return f"{self.namespace}:app:{name}"

    def wait_ready(self) -> int:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the worker exited: {self.process.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
                )
            return bool(self.client.get(self.key(f"ready-{self.kind}")))

        wait_until(ready, 30, "the worker process to boot")
        return int(self.client.get(self.key(f"ready-{self.kind}")))  # type: ignore[arg-type]

    def pop(self, name: str, timeout: float = 20) -> str:
        """The next item the worker pushed to list ``name`` (waits for it)."""
        # Short blocking reads: a blocked connection idle for several seconds can be cut.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = self.client.blpop([self.key(name)], timeout=1)
            if item is not None:
                return item[1].decode()  # type: ignore[no-any-return]
        raise TimeoutError(f"nothing arrived on {name!r} within {timeout}s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.client.close()


@pytest.fixture(scope="module")
def worker(run_namespace: str) -> Iterator[WorkerProcess]:
    namespace, queue = unique_name(run_namespace), unique_name("cw")
    os.environ["CW_DRAMATIQ_NS"], os.environ["CW_DRAMATIQ_QUEUE"] = namespace, queue
    running = WorkerProcess(namespace, queue)
    try:
        running.pid = running.wait_ready()  # type: ignore[attr-defined]
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy.for_url(REDIS_URL, 6379) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def app(worker: WorkerProcess, proxy: TcpProxy) -> Iterator[Any]:
    """The shared rules and tasks in this process, sending through the proxy."""
    broker = RedisBroker(url=proxy.url_through(REDIS_URL), namespace=worker.namespace)
    dramatiq.set_broker(broker)
    module = importlib.import_module("dramatiq_app")
    yield module
    broker.close()


@pytest.fixture(autouse=True)
def _declared_rules(app: Any, worker: WorkerProcess) -> Iterator[None]:
    app.declare_rules()  # again: conftest resets the state before each test
    for recorder in (app.logged, app.raised, app.fallback):
        worker.client.delete(recorder.list_key)
    yield
    # Each test consumed every outcome it caused; anything left would leak into the next test.
    assert worker.client.lrange(worker.key("outcomes"), 0, -1) == []


class RetryingLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.retrying = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.retrying.set()


@pytest.fixture(params=["redis", "rabbitmq"])
def outage(
    request: pytest.FixtureRequest, app: Any, worker: WorkerProcess, proxy: TcpProxy
) -> Iterator[tuple[WorkerProcess, TcpProxy]]:
    """A worker process and a proxy in front of its broker, which this process sends through."""
    if request.param == "redis":
        yield worker, proxy
        return
    amqp_url = request.getfixturevalue("rabbitmq_url")
    rabbit = WorkerProcess(worker.namespace, worker.queue, "rabbitmq", amqp_url)
    redis_broker = dramatiq.get_broker()
    try:
        rabbit.pid = rabbit.wait_ready()  # type: ignore[attr-defined]
        with TcpProxy.for_url(amqp_url, 5672) as amqp_proxy:
            # confirm_delivery: a publish on a connection the proxy dropped fails instead of
            # vanishing.
            broker = RabbitmqBroker(url=amqp_proxy.url_through(amqp_url), confirm_delivery=True)
            dramatiq.set_broker(broker)
            try:
                yield rabbit, amqp_proxy
            finally:
                dramatiq.set_broker(redis_broker)
                broker.close()
    finally:
        rabbit.stop()


def test_broker_outage_fails_no_change_and_raised_work_completes_once(
    app: Any, outage: tuple[WorkerProcess, TcpProxy]
) -> None:
    worker, proxy = outage
    changed("tests.Logged", {"key": 0})
    assert worker.pop("outcomes") == "cachewire.run_rules:ok"
    proxy.cut()
    try:
        for key in (1, 2, 3):
            changed("tests.Logged", {"key": key})  # policy False: logged and counted, no error
        changed("tests.Fallback", {"key": 1})  # FALLBACK "inline": it runs here instead
    finally:
        proxy.restore()
    assert dispatch_stats.snapshot()["dispatch_errors"] == 4
    assert dispatch_stats.snapshot()["fallbacks"] == 1
    assert app.fallback.seen() == [{"key": 1}]

    handler = RetryingLog()
    logging.getLogger("cachewire.dispatch").addHandler(handler)
    proxy.cut()
    errors: list[BaseException] = []

    def change() -> None:
        try:
            changed("tests.Raised", {"key": 100})
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=change)
    try:
        thread.start()
        assert handler.retrying.wait(20), "the dispatcher did not retry the enqueue"
    finally:
        proxy.restore()
        logging.getLogger("cachewire.dispatch").removeHandler(handler)
    thread.join(30)
    assert errors == []
    assert worker.pop("outcomes") == "cachewire.run_rules:ok"
    changed("tests.Logged", {"key": 4})
    assert worker.pop("outcomes") == "cachewire.run_rules:ok"
    assert app.raised.seen() == [{"key": 100}]
    assert app.logged.seen() == [{"key": 0}, {"key": 4}]


def test_time_limit_stops_a_task_with_the_timeout_error(app: Any, worker: WorkerProcess) -> None:
    app.slow.delay()
    assert worker.pop("slow-started") == "1"
    assert worker.pop("outcomes") == "cachewire.run_task:TaskTimeoutError"


def test_bind_context_comes_from_the_worker_message(app: Any, worker: WorkerProcess) -> None:
    submitted = app.whoami.delay()
    seen = json.loads(worker.pop("whoami"))
    assert worker.pop("outcomes") == "cachewire.run_task:ok"
    assert seen["uuid"] == submitted.uuid
    assert f":{worker.pid}:" in seen["worker_id"]  # type: ignore[attr-defined]


def test_discard_is_cluster_wide(app: Any, worker: WorkerProcess) -> None:
    assert app.guarded.delay(1).outcome == "accepted"
    assert worker.pop("guarded-started") == "1"
    assert [app.guarded.delay(1).outcome for _ in range(2)] == ["discarded", "discarded"]
    worker.client.rpush(worker.key("guarded-release"), "go")
    assert worker.pop("guarded-done") == "1"
    assert worker.pop("outcomes") == "cachewire.run_task:ok"
    assert app.guarded.delay(1).outcome == "accepted"
    assert worker.pop("guarded-started") == "1"
    worker.client.rpush(worker.key("guarded-release"), "go")
    assert worker.pop("outcomes") == "cachewire.run_task:ok"
