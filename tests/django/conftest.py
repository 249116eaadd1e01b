"""Django test settings: SQLite as ``default`` and PostgreSQL as the second alias ``pg``."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

import django
import pytest
from django.conf import settings

from cachewire import DispatchContext, Dispatcher, register_dispatcher, run_rules
from cachewire.dispatch import dispatch_stats

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
IN_CI = bool(os.environ.get("CI"))
_pg = urlparse(DATABASE_URL)
#: The test database of this run; pytest-django creates and drops it.
PG_TEST_NAME = f"test_cachewire_django_{os.getpid()}"


def pg_reachable() -> bool:
    try:
        with socket.create_connection((_pg.hostname or "127.0.0.1", _pg.port or 5432), 1):
            return True
    except OSError:
        return False


PG_UP = pg_reachable()
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
#: Every key this run writes to Redis through Django starts with it; removed at the end.
REDIS_KEY_PREFIX = f"cachewire-django-test-{os.getpid()}"

if not settings.configured:
    databases: dict[str, Any] = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    }
    if PG_UP or IN_CI:
        databases["pg"] = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": (_pg.path or "/test").lstrip("/"),
            "USER": _pg.username or "postgres",
            "PASSWORD": _pg.password or "",
            "HOST": _pg.hostname or "127.0.0.1",
            "PORT": str(_pg.port or 5432),
            "TEST": {"NAME": PG_TEST_NAME},
        }
    settings.configure(
        DEBUG=False,
        SECRET_KEY="cachewire-tests",
        USE_TZ=True,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="testapp.urls",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "cachewire_django",
            "testapp",
        ],
        DATABASES=databases,
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "redis": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": REDIS_KEY_PREFIX,
            },
        },
        CACHEWIRE={"DEFAULT_DISPATCHER": "recording"},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        MIDDLEWARE=[],
    )


@register_dispatcher
class RecordingDispatcher(Dispatcher):
    """Runs the work inline and records every dispatch call."""

    name = "recording"
    supports_batching = True
    calls: list[tuple[list[str], dict[str, list[dict[str, Any]]]]] = []
    fail_with: Exception | None = None

    contexts: list[DispatchContext] = []

    def dispatch(
        self, *, rule_ids: Sequence[str], rule_kwargs: Any, context: DispatchContext
    ) -> None:
        RecordingDispatcher.contexts.append(context)
        if RecordingDispatcher.fail_with is not None:
            raise RecordingDispatcher.fail_with
        RecordingDispatcher.calls.append(
            (list(rule_ids), {k: [dict(x) for x in v] for k, v in rule_kwargs.items()})
        )
        run_rules(rule_ids, rule_kwargs, dispatcher_name=self.name)


django.setup()


def all_aliases() -> list[Any]:
    return [
        "default",
        pytest.param("pg", marks=pytest.mark.postgres),
    ]


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


def invalidated(
    calls: Any,
    only: tuple[str, ...] = (
        "orders_of",
        "totals_of",
        "places_in",
        "post_page",
        "posts_with_tag",
        "watched",
    ),
) -> set[tuple[str, tuple[tuple[str, Any], ...]]]:
    """(function name, sorted kwargs) of every recorded invalidation of the ``only`` functions."""
    out = set()
    for rule_ids, rule_kwargs in calls:
        for rule_id in rule_ids:
            for kwargs in rule_kwargs[rule_id]:
                name = rule_id.split("@")[0].rsplit(".", 1)[-1]
                if name in only:
                    out.add((name, tuple(sorted(kwargs.items()))))
    return out


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
