"""taskiq tests: each run has its own queues and key prefix on the real Redis."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachewire.testing import redis_namespace, require_service, reset_state, unique_name

HERE = Path(__file__).parent
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# Names of this run, fixed before the app module is imported here or in a worker process.
os.environ.setdefault("CW_TASKIQ_QUEUE", unique_name("cw-taskiq-q"))
os.environ.setdefault("CW_TASKIQ_PREFIX", unique_name("cw-taskiq"))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    reset_state()
    yield
    reset_state()


@pytest.fixture(scope="session")
def taskiq_redis() -> Iterator[str]:
    """The Redis URL; at the end, the keys of this run's queues and prefix are deleted."""
    require_service("Redis", REDIS_URL)
    yield REDIS_URL
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for pattern in (f"{os.environ['CW_TASKIQ_QUEUE']}*", f"{os.environ['CW_TASKIQ_PREFIX']}*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_prefix(taskiq_redis: str) -> Iterator[str]:
    with redis_namespace(taskiq_redis, "cw-taskiq-t") as namespace:
        yield namespace
