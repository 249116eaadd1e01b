"""Django settings and jobs of bench/queue.py (also the worker processes' settings module).

The database is the benchmark's own, named by ``BENCH_QUEUE_DB``.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from django_tasks import task

_pg = urlparse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"))

SECRET_KEY = "cachewire-bench-queue"
USE_TZ = True
DEBUG = False
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_tasks",
    "django_tasks_db",
    "cachewire_django",
    "cachewire_django.queue",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_QUEUE_DB", "cachewire_bench_queue"),
        "USER": _pg.username or "postgres",
        "PASSWORD": _pg.password or "",
        "HOST": _pg.hostname or "127.0.0.1",
        "PORT": str(_pg.port or 5432),
        # persistent connections: db_worker closes its connection after every task otherwise
        "CONN_MAX_AGE": 600,
    }
}
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
CACHEWIRE_QUEUE = {"ALLOWED_MODULES": ["queue_bench_app"], "POLL_SECONDS": 0.1}
LOGGING_CONFIG = None


def noop() -> None:
    """The cachewire queue's job."""


@task()
def peer_noop() -> None:
    """django-tasks-db's job."""
