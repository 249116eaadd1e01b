"""Tasks: submit functions to a dispatcher with per-call options, duplicate policies and
middlewares; workers run them by registered name only."""

from __future__ import annotations

from cachewire.tasks._context import SubmitResult, TaskContext, reset_task_stats, task_stats
from cachewire.tasks._guard import Guard, LocalGuard, RedisGuard
from cachewire.tasks._message import DUPLICATE_POLICIES, TaskMessage
from cachewire.tasks._middleware import CacheMiddleware, Middleware
from cachewire.tasks._registry import TaskRegistry, default_registry
from cachewire.tasks._runner import arun_task, run_task
from cachewire.tasks._task import OPTION_NAMES, Task, task

__all__ = [
    "DUPLICATE_POLICIES",
    "OPTION_NAMES",
    "CacheMiddleware",
    "Guard",
    "LocalGuard",
    "Middleware",
    "RedisGuard",
    "SubmitResult",
    "Task",
    "TaskContext",
    "TaskMessage",
    "TaskRegistry",
    "arun_task",
    "default_registry",
    "reset_task_stats",
    "run_task",
    "task",
    "task_stats",
]
