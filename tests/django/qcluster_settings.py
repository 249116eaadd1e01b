"""Settings of the qcluster process the django_q tests start: the test run's PostgreSQL database,
Redis key prefix and queue name, given through the environment."""

from __future__ import annotations

import os

_db = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": os.environ["CW_PG_NAME"],
    "USER": os.environ.get("CW_PG_USER", "postgres"),
    "PASSWORD": os.environ.get("CW_PG_PASSWORD", ""),
    "HOST": os.environ.get("CW_PG_HOST", "127.0.0.1"),
    "PORT": os.environ.get("CW_PG_PORT", "5432"),
}
SECRET_KEY = "cachewire-tests"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "cachewire_django",
    "django_q",
    "testapp",
]
DATABASES = {"default": _db, "pg": _db}
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "redis": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["CW_REDIS_URL"],
        "KEY_PREFIX": os.environ["CW_REDIS_KEY_PREFIX"],
    },
}
CACHEWIRE = {"DEFAULT_DISPATCHER": "inline"}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
Q_CLUSTER = {
    "name": os.environ["CW_Q_CLUSTER"],
    "orm": "pg",
    "workers": 1,
    "timeout": 20,
    "retry": 30,
    "max_attempts": 1,
    "poll": 0.05,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 0,
}
