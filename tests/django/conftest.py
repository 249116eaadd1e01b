"""Fixtures of the Django tests; the settings and helpers live in cwdj_support."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cwdj_support import (
    DATABASE_URL,
    IN_CI,
    PG_UP,
    REDIS_KEY_PREFIX,
    RecordingDispatcher,
    restore_test_app_rules,
)

from cachewire.dispatch import dispatch_stats


@pytest.fixture(autouse=True)
def _test_app_rules() -> None:
    """The conformance suites forget every rule after each of their tests."""
    restore_test_app_rules()


@pytest.fixture(autouse=True)
def _recorded() -> Iterator[None]:
    RecordingDispatcher.calls.clear()
    RecordingDispatcher.contexts.clear()
    RecordingDispatcher.fail_with = None
    dispatch_stats.reset()
    yield
    RecordingDispatcher.fail_with = None


@pytest.fixture
def recorded() -> list[tuple[list[str], dict[str, list[dict[str, Any]]]]]:
    return RecordingDispatcher.calls


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # In CI the alias is configured anyway, so a missing server fails the run.
        if item.get_closest_marker("postgres") and not PG_UP and not IN_CI:
            message = f"PostgreSQL is not reachable at {DATABASE_URL}"
            item.add_marker(pytest.mark.skip(reason=message))


@pytest.fixture(scope="session")
def django_redis(redis_url: str) -> Iterator[str]:
    """The ``redis`` Django cache alias; the keys this run wrote are removed at the end."""
    yield "redis"
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{REDIS_KEY_PREFIX}:*", count=1000):
            client.delete(key)
    finally:
        client.close()
