"""Fixtures of the queue tests (imported by each module: a conftest here would shadow tests/django's)."""

from __future__ import annotations

from typing import Any

import pytest
import queue_jobs


@pytest.fixture(autouse=True)
def queue_settings(settings: Any) -> Any:
    settings.CACHEWIRE_QUEUE = {"ALLOWED_MODULES": ["queue_jobs"]}
    queue_jobs.calls.clear()
    return settings
