"""cachewire for taskiq: `CacheMiddleware` for any taskiq broker, and the ``taskiq`` dispatcher."""

from __future__ import annotations

from cachewire_taskiq._dispatcher import DEFAULT_TASK_NAME, TaskiqDispatcher, register_worker_task
from cachewire_taskiq._middleware import CacheMiddleware

__all__ = ["DEFAULT_TASK_NAME", "CacheMiddleware", "TaskiqDispatcher", "register_worker_task"]
