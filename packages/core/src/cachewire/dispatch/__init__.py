"""Dispatch: the `Dispatcher` protocol, its options and context, the registry and the one error
policy. The dispatchers themselves live in `cachewire.dispatchers` and in adapter packages."""

from __future__ import annotations

from cachewire.dispatch._base import FALLBACKS, DispatchContext, Dispatcher, Option, RuleKwargs
from cachewire.dispatch._policy import resolve_raise_exception
from cachewire.dispatch._registry import (
    ENTRY_POINT_GROUP,
    dispatcher_class,
    get_dispatcher,
    register_dispatcher,
    registered_dispatcher_names,
    reset_dispatchers,
    resolve_dispatcher,
)
from cachewire.dispatch._stats import DispatchStats, dispatch_stats

__all__ = [
    "ENTRY_POINT_GROUP",
    "FALLBACKS",
    "DispatchContext",
    "DispatchStats",
    "Dispatcher",
    "Option",
    "RuleKwargs",
    "dispatch_stats",
    "dispatcher_class",
    "get_dispatcher",
    "register_dispatcher",
    "registered_dispatcher_names",
    "reset_dispatchers",
    "resolve_dispatcher",
    "resolve_raise_exception",
]
