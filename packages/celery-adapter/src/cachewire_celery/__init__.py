"""cachewire on Celery: the ``celery`` dispatcher, its worker task and a cached task base."""

from __future__ import annotations

from cachewire_celery.cached import CachedTask
from cachewire_celery.dispatcher import TASK_NAME, CeleryDispatcher

__all__ = ["TASK_NAME", "CachedTask", "CeleryDispatcher"]
