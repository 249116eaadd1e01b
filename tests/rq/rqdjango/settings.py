"""A minimal Django project for the django_rq tests: django-rq and one app, no database."""

from __future__ import annotations

import os

URL = os.environ.get("CW_RQ_TEST_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("CW_RQ_TEST_QUEUE", "default")

SECRET_KEY = "cachewire-rq-tests"
INSTALLED_APPS = ["django_rq", "rqdjango"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
RQ_QUEUES = {QUEUE: {"URL": URL}}
