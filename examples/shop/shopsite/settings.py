"""Settings of the example shop: SQLite and the local-memory cache, no other service."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "shopsite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "cachewire_django",  # one line: settings, signal wiring, checks
    "cachewire_django.queue",  # the durable queue: the db dispatcher, schedule(), workers
    "catalog",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DATABASE", str(BASE_DIR / "db.sqlite3")),
    }
}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CACHEWIRE = {
    # Rule work runs inside the commit's on_commit callback, in the request's thread.
    "DEFAULT_DISPATCHER": "inline",
    # Cached functions with no cache of their own use this Django cache.
    "DEFAULT_CACHE": "default",
}
