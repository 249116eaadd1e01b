"""Tasks of Django's own task framework, for the queue's backend tests.

The test settings make `QueueBackend` the default backend before this module is imported, so
``@task`` builds its `QueueTask` and takes the queue's options.
"""

from __future__ import annotations

import threading

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


@task(max_attempts=1)
def broken_once() -> None:
    raise ValueError("a task that fails once, for good")


@task(timeout=0.5, max_attempts=1)
def never_finishes() -> None:
    threading.Event().wait()


@task(dedup_key="rebuild-index", max_attempts=4, timeout=120, atomic=True)
def rebuild_index() -> str:
    return "rebuilt"


def not_a_task_yet(value: int) -> int:
    """Made a task inside the tests (to check what the backend refuses)."""
    return value
