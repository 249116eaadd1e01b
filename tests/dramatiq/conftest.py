"""Fixtures of the Dramatiq adapter's tests: real brokers, each with a worker of the run's own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from urllib.parse import quote, urlparse

import pytest
from dramatiq_support import (
    AMQP_URL,
    IN_CI,
    REDIS_URL,
    RunningWorker,
    delete_namespace,
    make_broker,
    rabbitmqctl,
    require,
    reset_settings,
    unique_name,
)

from cachewire.dispatch import dispatch_stats
from cachewire.tasks import reset_task_stats


@pytest.fixture(scope="session")
def redis_namespace() -> Iterator[str]:
    require("Redis", REDIS_URL, 6379)
    namespace = unique_name("cwtest")
    yield namespace
    delete_namespace(namespace)


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """An AMQP URL on a virtual host of this run's own, deleted at the end."""
    require("RabbitMQ", AMQP_URL, 5672)
    if shutil.which("rabbitmqctl") is None:
        message = "rabbitmqctl is not installed; the RabbitMQ tests need it to make a vhost"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    parsed = urlparse(AMQP_URL)
    vhost = unique_name("cwtest")
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, parsed.username or "guest", ".*", ".*", ".*")
        yield parsed._replace(path="/" + quote(vhost, safe="")).geturl()
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="class", params=["redis", "rabbitmq"])
def running_worker(request: pytest.FixtureRequest) -> Iterator[RunningWorker]:
    """An in-process worker on each broker the machine runs (the class's tests run per broker)."""
    kind = request.param
    if kind == "redis":
        broker, pending = make_broker(
            kind, redis_namespace=request.getfixturevalue("redis_namespace")
        )
    else:
        broker, pending = make_broker(kind, rabbitmq_url=request.getfixturevalue("rabbitmq_url"))
    running = RunningWorker(kind, broker, pending)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    reset_settings()
    dispatch_stats.reset()
    reset_task_stats()
    yield
    reset_settings()
