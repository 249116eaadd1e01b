"""Fixtures of the Dramatiq adapter's tests: real brokers, each with a worker of the run's own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from urllib.parse import quote, urlparse

import pytest
from dramatiq_support import (
    AMQP_URL,
    REDIS_URL,
    RunningWorker,
    make_broker,
    rabbitmqctl,
)

from cachewire.testing import in_ci, redis_namespace, require_service, reset_state, unique_name


@pytest.fixture(scope="session")
def run_namespace() -> Iterator[str]:
    """This run's Redis key prefix; every broker and cache of the tests lives under it, and its
    keys (only those) are deleted at the end."""
    require_service("Redis", REDIS_URL)
    with redis_namespace(REDIS_URL, "cwtest-dramatiq") as namespace:
        yield namespace


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """An AMQP URL on a virtual host of this run's own, deleted at the end."""
    require_service("RabbitMQ", AMQP_URL)
    if shutil.which("rabbitmqctl") is None:
        message = "rabbitmqctl is not installed; the RabbitMQ tests need it to make a vhost"
        if in_ci():
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
            kind, redis_namespace=request.getfixturevalue("run_namespace")
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
    reset_state()
    yield
    reset_state()
