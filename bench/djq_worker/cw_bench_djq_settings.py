"""Django settings of bench/django.py's ``qcluster`` (and of its producer's broker alias): the
ORM broker in a PostgreSQL database of the benchmark's own, named by ``CW_DJQ_BENCH_DB``."""

from __future__ import annotations

import os
from urllib.parse import urlparse

_pg = urlparse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"))

#: The broker database, for the producer's ``qbroker`` alias as well.
BROKER_DB = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": os.environ.get("CW_DJQ_BENCH_DB", "cachewire_bench_djq"),
    "USER": _pg.username or "postgres",
    "PASSWORD": _pg.password or "",
    "HOST": _pg.hostname or "127.0.0.1",
    "PORT": str(_pg.port or 5432),
    # The ORM broker calls close_old_connections() on every enqueue and dequeue: with Django's
    # default CONN_MAX_AGE of 0 that is a new PostgreSQL connection per task on both sides.
    "CONN_MAX_AGE": None,
}
#: The cluster's settings, the producer's as well (its name is the queue's).
CLUSTER = {
    "name": "bench",
    "orm": "default",
    "workers": 2,
    "bulk": 10,
    "poll": 0.05,
    "timeout": 60,
    "retry": 120,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": -1,  # no result rows for successful tasks: only the queue is measured
}

SECRET_KEY = "bench-only"
USE_TZ = True
DEBUG = False
INSTALLED_APPS = ["django.contrib.contenttypes", "django_q", "cachewire_django"]
DATABASES = {"default": BROKER_DB}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
Q_CLUSTER = CLUSTER
CACHEWIRE = {"DEFAULT_DISPATCHER": "inline", "MODULES": ["cw_bench_djq_rules"]}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING = {"version": 1, "loggers": {"django-q": {"level": "WARNING"}}}
