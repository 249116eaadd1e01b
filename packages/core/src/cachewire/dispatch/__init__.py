"""Dispatch: where rule work and tasks run."""

from __future__ import annotations

from cachewire.dispatch._base import Dispatcher, RuleKwargs
from cachewire.dispatch._builtin import AsyncIODispatcher, InlineDispatcher, ThreadPoolDispatcher
from cachewire.dispatch._policy import resolve_raise_exception
from cachewire.dispatch._registry import (
    ENTRY_POINT_GROUP,
    dispatcher_class,
    get_dispatcher,
    register_dispatcher,
    registered_dispatcher_names,
)
from cachewire.dispatch._stats import DispatchStats, dispatch_stats
from cachewire.dispatch._worker import arun_rules, run_rules

__all__ = [
    "ENTRY_POINT_GROUP",
    "AsyncIODispatcher",
    "DispatchStats",
    "Dispatcher",
    "InlineDispatcher",
    "RuleKwargs",
    "ThreadPoolDispatcher",
    "arun_rules",
    "dispatch_stats",
    "dispatcher_class",
    "get_dispatcher",
    "register_dispatcher",
    "registered_dispatcher_names",
    "resolve_raise_exception",
    "run_rules",
]
