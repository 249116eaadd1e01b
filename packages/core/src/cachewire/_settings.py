"""Process-wide settings: `configure()` in plain Python; Django feeds ``CACHEWIRE`` in."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from cachewire.errors import ConfigurationError

__all__ = ["Settings", "add_settings_check", "configure", "get_settings", "reset_settings"]

_UNSET: Any = object()

#: Task options that ``task_defaults`` may set, with their built-in defaults.
TASK_OPTION_DEFAULTS: Mapping[str, Any] = {
    "queue": None,
    "bind": False,
    "on_duplicate": "parallel",
    "timeout": None,
    "labels": {},
}


@attrs.frozen
class Settings:
    """A snapshot of cachewire's settings; replace it with `configure`, never mutate it."""

    default_dispatcher: str = "inline"
    dispatcher_raise_exception: bool = False
    #: Per-dispatcher blocks, keyed by dispatcher name: ``{"threadpool": {"MAX_WORKERS": 8}}``.
    dispatcher_settings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    #: Cache adapter used where one is needed and none is given (tasks' CacheMiddleware, ...).
    default_cache: Any = None
    #: Where `on_duplicate` state lives: None = this process; a Redis cache adapter = the cluster.
    task_guard: Any = None
    #: Defaults for task options (queue, bind, on_duplicate, timeout, labels) below `@task`'s.
    task_defaults: Mapping[str, Any] = attrs.field(factory=dict)

    def dispatcher_block(self, name: str) -> Mapping[str, Any]:
        """The settings block of one dispatcher (empty when absent)."""
        return self.dispatcher_settings.get(name, {})


_lock = threading.Lock()
_current = Settings()
# Checks that upper layers (the dispatcher registry, ...) add, run on every `configure`.
_checks: list[Callable[[Settings], None]] = []


def add_settings_check(check: Callable[[Settings], None]) -> None:
    """Run ``check(new_settings)`` on every `configure`; it raises `ConfigurationError` to refuse
    them (the settings in force stay as they were)."""
    _checks.append(check)


def get_settings() -> Settings:
    """The settings in force."""
    return _current


def configure(
    *,
    default_dispatcher: str = _UNSET,
    dispatcher_raise_exception: bool = _UNSET,
    dispatcher_settings: Mapping[str, Mapping[str, Any]] = _UNSET,
    default_cache: Any = _UNSET,
    task_guard: Any = _UNSET,
    task_defaults: Mapping[str, Any] = _UNSET,
) -> Settings:
    """Change some settings, keeping the others, and return the new snapshot."""
    global _current
    changes = {
        name: value
        for name, value in {
            "default_dispatcher": default_dispatcher,
            "dispatcher_raise_exception": dispatcher_raise_exception,
            "dispatcher_settings": dispatcher_settings,
            "default_cache": default_cache,
            "task_guard": task_guard,
            "task_defaults": task_defaults,
        }.items()
        if value is not _UNSET
    }
    unknown_defaults = sorted(set(changes.get("task_defaults", {})) - set(TASK_OPTION_DEFAULTS))
    if unknown_defaults:
        raise ConfigurationError(
            f"configure(task_defaults=...) has unknown option(s) {unknown_defaults}; valid ones "
            f"are {sorted(TASK_OPTION_DEFAULTS)} (set the dispatcher with default_dispatcher)"
        )
    with _lock:
        candidate = attrs.evolve(_current, **changes)
        for check in _checks:
            check(candidate)
        _current = candidate
        return _current


def reset_settings() -> Settings:
    """Back to the defaults (for tests)."""
    global _current
    with _lock:
        _current = Settings()
        return _current
