"""The durable database queue: add ``"cachewire_django.queue"`` to ``INSTALLED_APPS``.

`schedule` writes a job in the caller's transaction, `deschedule` cancels jobs that have not
started, `health` describes the queue; ``manage.py cachewire_worker`` and ``manage.py
flush_queue`` run the jobs. Names are imported lazily, so the package can be listed in
``INSTALLED_APPS`` before the app registry is ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cachewire_django.queue._api import deschedule, health, schedule
    from cachewire_django.queue._worker import QueueWorker
    from cachewire_django.queue.models import Job, JobState

__all__ = ["Job", "JobState", "QueueWorker", "deschedule", "health", "schedule"]

_WHERE = {
    "Job": "cachewire_django.queue.models",
    "JobState": "cachewire_django.queue.models",
    "QueueWorker": "cachewire_django.queue._worker",
    "deschedule": "cachewire_django.queue._api",
    "health": "cachewire_django.queue._api",
    "schedule": "cachewire_django.queue._api",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'cachewire_django.queue' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
