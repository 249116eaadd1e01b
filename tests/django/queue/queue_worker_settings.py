"""Settings of the worker processes the queue tests start (``DJANGO_SETTINGS_MODULE``).

The PostgreSQL database is the test run's own, named by ``CWQ_DB_NAME``.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

_pg = urlparse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"))

SECRET_KEY = "cachewire-queue-worker"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "cachewire_django",
    "cachewire_django.queue",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("CWQ_DB_NAME", (_pg.path or "/test").lstrip("/")),
        "USER": _pg.username or "postgres",
        "PASSWORD": _pg.password or "",
        "HOST": _pg.hostname or "127.0.0.1",
        "PORT": str(_pg.port or 5432),
    }
}
CACHEWIRE_QUEUE = {
    "ALLOWED_MODULES": ["queue_jobs"],
    "LEASE_SECONDS": float(os.environ.get("CWQ_LEASE_SECONDS", "2")),
    "POLL_SECONDS": float(os.environ.get("CWQ_POLL_SECONDS", "0.5")),
    "KILL_GRACE_SECONDS": 1.0,
    "MAX_ATTEMPTS": int(os.environ.get("CWQ_MAX_ATTEMPTS", "5")),
    "RETRY_BASE_DELAY": 0.05,
    "RETRY_MAX_DELAY": 0.2,
}
LOGGING_CONFIG = None
