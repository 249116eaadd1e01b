"""Process-wide settings: `configure()` in plain Python; Django feeds ``CACHEWIRE`` in."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["Settings", "configure", "get_settings", "register_validator", "reset_settings"]

_UNSET: Any = object()


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

#: ``validator(candidate, changed_names)``: raises `ConfigurationError` to refuse a `configure`.
SettingsValidator = Callable[[Settings, frozenset[str]], None]
_validators: list[SettingsValidator] = []


def register_validator(validator: SettingsValidator) -> SettingsValidator:
    """Have `configure` call ``validator`` before new settings take effect.

    Upper layers (the dispatcher registry, ...) install their checks here, so this module needs
    to import none of them. Registering the same function twice keeps one.
    """
    with _lock:
        if validator not in _validators:
            _validators.append(validator)
    return validator


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
    """Change some settings, keeping the others, and return the new snapshot.

    Raises `ConfigurationError` (and changes nothing) when a value is wrong, for example a
    ``default_dispatcher`` that names no registered dispatcher.
    """
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
    with _lock:
        candidate = attrs.evolve(_current, **changes)
        validators = list(_validators)
    names = frozenset(changes)
    for validator in validators:
        validator(candidate, names)
    with _lock:
        _current = attrs.evolve(_current, **changes)
        return _current


def reset_settings() -> Settings:
    """Back to the defaults (for tests)."""
    global _current
    with _lock:
        _current = Settings()
        return _current
