"""Settings and helpers of the Django tests: SQLite as ``default``, PostgreSQL as ``pg``.

Imported by conftest.py (which configures Django with it) and by the test modules.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import django
import pytest
from django.conf import settings

from cachewire import DispatchContext, Dispatcher, register_dispatcher, run_rules

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


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
#: Every key this run writes to Redis through Django starts with it; removed at the end.
REDIS_KEY_PREFIX = f"cachewire-django-test-{os.getpid()}"
Q_CLUSTER_NAME = f"cwtest{os.getpid()}"

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
        # The same database, for the django-q broker: the outage test reaches it through a proxy.
        databases["qbroker"] = {**databases["pg"], "TEST": {"MIRROR": "pg"}}
    settings.configure(
        DEBUG=False,
        SECRET_KEY="cachewire-tests",
        USE_TZ=True,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="testapp.urls",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            # for the queue's admin tests (their own middleware, templates and URLs)
            "django.contrib.admin",
            "django.contrib.sessions",
            "django.contrib.messages",
            "cachewire_django",
            "cachewire_django.queue",
            "django_q",
            "rest_framework",
            "testapp",
            # Django 5.2: the django-tasks backport is an app (its checks, and the signal that
            # resets the backends when a test changes TASKS); Django 6 has it built in.
            *(["django_tasks"] if django.VERSION < (6,) and _installed("django_tasks") else []),
        ],
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": [],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
            "DEFAULT_RENDERER_CLASSES": [
                "rest_framework.renderers.JSONRenderer",
                "testapp.renderers.TextRenderer",
            ],
            "UNAUTHENTICATED_USER": None,
        },
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
        # Django's tasks (django.tasks, or the django-tasks backport) land in the durable queue:
        # set before the test tasks are declared, so ``@task`` makes the backend's QueueTask.
        TASKS={"default": {"BACKEND": "cachewire_django.queue.backend.QueueBackend"}},
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        MIDDLEWARE=[],
        # django-q2 with its ORM broker on PostgreSQL; the queue name is this run's own.
        Q_CLUSTER={
            "name": Q_CLUSTER_NAME,
            "orm": "pg" if "pg" in databases else "default",
            "workers": 1,
            "timeout": 20,
            "retry": 30,
            "max_attempts": 1,
            "poll": 0.05,
            "catch_up": False,
            "ack_failures": True,
            "save_limit": 0,
        },
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


#: Flushed after each transactional test (flushing every app re-runs post_migrate: slow).
AVAILABLE_APPS = ["cachewire_django", "django_q", "testapp"]


def transactional(*databases: str) -> pytest.MarkDecorator:
    """``django_db`` for a test that commits: ``databases`` (default ``default``) are emptied
    after it."""
    return pytest.mark.django_db(
        transaction=True,
        databases=list(databases or ["default"]),
        available_apps=AVAILABLE_APPS,
    )


def all_aliases() -> list[Any]:
    """``default`` (SQLite) and ``pg`` (PostgreSQL), each test flushing only what it used."""
    return [
        pytest.param("default", marks=transactional()),
        pytest.param("pg", marks=[pytest.mark.postgres, transactional("default", "pg")]),
    ]


def restore_test_app_rules(*, force: bool = False) -> None:
    """Declare the test app's rules again (as a module reload does) if they were forgotten."""
    import importlib

    from cachewire.rules import rules_for_model

    if force or not rules_for_model("testapp.Order"):
        import testapp.cachewire
        import testapp.views

        importlib.reload(testapp.cachewire)
        importlib.reload(testapp.views)


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
