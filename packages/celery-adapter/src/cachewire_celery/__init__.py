"""cachewire on Celery: the ``celery`` dispatcher, its worker task and a cached task base.

Importing the package registers the worker task (a ``shared_task``) on every Celery app, so a
producer's app sends it with ``apply_async`` (``task_always_eager`` holds) and a worker finds it
with ``app.autodiscover_tasks(["cachewire_celery"])``.
"""

from __future__ import annotations

from cachewire_celery.cached import CachedTask
from cachewire_celery.dispatcher import TASK_NAME, CeleryDispatcher
from cachewire_celery.tasks import RETRIES_LABEL, run_work

__all__ = ["RETRIES_LABEL", "TASK_NAME", "CachedTask", "CeleryDispatcher", "run_work"]
