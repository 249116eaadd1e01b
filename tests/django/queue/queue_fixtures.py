"""Fixtures of the queue tests (imported by each module: a conftest here would shadow tests/django's)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import queue_jobs
from django.apps import apps

from cachewire.rules import rules_for_model, unregister_all


@pytest.fixture(autouse=True)
def queue_settings(settings: Any) -> Any:
    settings.CACHEWIRE_QUEUE = {"ALLOWED_MODULES": ["queue_jobs"]}
    queue_jobs.calls.clear()
    return settings


@pytest.fixture
def kept_rules() -> Iterator[None]:
    """Rules a test declares are dropped after it; the Django test app's rules, which other
    modules of the session rely on, are registered again."""
    kept = [
        rule
        for model in apps.get_models(include_auto_created=True)
        for rule in rules_for_model(model)
    ]
    yield
    unregister_all()
    for rule in kept:
        rule.attach(rule.resolve_target())
