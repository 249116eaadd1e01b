"""Tasks of Django's own task framework, for the queue's backend tests."""

from __future__ import annotations

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task


@task()
def double(value: int) -> int:
    return value * 2


@task(priority=10)
def broken() -> None:
    raise ValueError("a task that fails")
