"""cachewire: keep cached data correct when the data behind it changes."""

from __future__ import annotations

from cachewire import errors
from cachewire._settings import Settings, configure, get_settings
from cachewire.cache import (
    MISSING,
    BaseCacheAdapter,
    CachedFunction,
    CacheStats,
    InMemoryCacheAdapter,
    SyncCacheAdapter,
    cached,
)
from cachewire.dispatch import (
    Dispatcher,
    arun_rules,
    get_dispatcher,
    register_dispatcher,
    registered_dispatcher_names,
    run_rules,
)
from cachewire.rules import InvalidationRule, Rule, changed, collect
from cachewire.tasks import (
    CacheMiddleware,
    Middleware,
    SubmitResult,
    Task,
    TaskContext,
    TaskMessage,
    TaskRegistry,
    arun_task,
    run_task,
    task,
)

__version__ = "0.1.0"

__all__ = [
    "MISSING",
    "BaseCacheAdapter",
    "CacheMiddleware",
    "CacheStats",
    "CachedFunction",
    "Dispatcher",
    "InMemoryCacheAdapter",
    "InvalidationRule",
    "Middleware",
    "Rule",
    "Settings",
    "SubmitResult",
    "SyncCacheAdapter",
    "Task",
    "TaskContext",
    "TaskMessage",
    "TaskRegistry",
    "__version__",
    "arun_rules",
    "arun_task",
    "cached",
    "changed",
    "collect",
    "configure",
    "errors",
    "get_dispatcher",
    "get_settings",
    "register_dispatcher",
    "registered_dispatcher_names",
    "run_rules",
    "run_task",
    "task",
]
