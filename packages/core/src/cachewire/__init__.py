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
    DispatchContext,
    Dispatcher,
    Option,
    get_dispatcher,
    register_dispatcher,
    registered_dispatcher_names,
    resolve_dispatcher,
)
from cachewire.retry import RetryPolicy
from cachewire.rules import (
    ChangeBatch,
    InvalidationRule,
    Rule,
    arun_rules,
    changed,
    collect,
    run_rules,
)
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
from cachewire.worker import arun_work, run_work

__version__ = "0.1.0"

__all__ = [
    "MISSING",
    "BaseCacheAdapter",
    "CacheMiddleware",
    "CacheStats",
    "CachedFunction",
    "ChangeBatch",
    "DispatchContext",
    "Dispatcher",
    "InMemoryCacheAdapter",
    "InvalidationRule",
    "Middleware",
    "Option",
    "RetryPolicy",
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
    "arun_work",
    "cached",
    "changed",
    "collect",
    "configure",
    "errors",
    "get_dispatcher",
    "get_settings",
    "register_dispatcher",
    "registered_dispatcher_names",
    "resolve_dispatcher",
    "run_rules",
    "run_task",
    "run_work",
    "task",
]
