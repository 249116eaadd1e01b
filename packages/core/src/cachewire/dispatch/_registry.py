"""Dispatcher names and the one resolver: built-ins, registered classes and entry-point plugins."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from cachewire._settings import Settings, add_settings_check, get_settings
from cachewire.dispatch._base import Dispatcher
from cachewire.errors import ConfigurationError, DispatcherUnavailableError

__all__ = [
    "ENTRY_POINT_GROUP",
    "dispatcher_class",
    "get_dispatcher",
    "register_dispatcher",
    "registered_dispatcher_names",
    "reset_dispatchers",
    "resolve_dispatcher",
]

ENTRY_POINT_GROUP = "cachewire.dispatchers"

# The dispatchers that ship with the core live in an upper layer and are imported on first use.
_BUILTIN = {
    "inline": "cachewire.dispatchers:InlineDispatcher",
    "threadpool": "cachewire.dispatchers:ThreadPoolDispatcher",
    "asyncio": "cachewire.dispatchers:AsyncIODispatcher",
}

_lock = threading.Lock()
_classes: dict[str, type[Dispatcher]] = {}
# (class, config) -> (the settings it was built under, the instance)
_instances: dict[tuple[Any, ...], tuple[Settings, Dispatcher]] = {}


def register_dispatcher(cls: type[Dispatcher]) -> type[Dispatcher]:
    """Class decorator: make ``cls`` available to rules and tasks under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Dispatcher)):
        raise ConfigurationError(f"register_dispatcher needs a Dispatcher subclass, got {cls!r}")
    if not cls.name:
        raise ConfigurationError(f"{cls.__qualname__} needs a non-empty class attribute `name`")
    with _lock:
        existing = _classes.get(cls.name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ConfigurationError(
                f"dispatcher name {cls.name!r} is already taken by {existing.__qualname__}"
            )
        _classes[cls.name] = cls
    return cls


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def registered_dispatcher_names() -> list[str]:
    """Sorted names of every dispatcher, including plugins not loaded yet."""
    return sorted(set(_BUILTIN) | set(_classes) | set(_entry_points()))


def _load_builtin(name: str) -> type[Dispatcher] | None:
    target = _BUILTIN.get(name)
    if target is None:
        return None
    module, _, attribute = target.partition(":")
    cls: type[Dispatcher] = getattr(importlib.import_module(module), attribute)
    with _lock:
        _classes.setdefault(name, cls)
    return cls


def _load_plugin(name: str) -> type[Dispatcher] | None:
    entry = _entry_points().get(name)
    if entry is None:
        return None
    dist = entry.dist.name if entry.dist is not None else "an unknown distribution"
    try:
        cls = entry.load()
    except ModuleNotFoundError as exc:
        own = entry.value.split(":")[0].split(".")[0]
        if exc.name and exc.name.split(".")[0] != own:
            raise DispatcherUnavailableError(
                f"the {name!r} dispatcher from {dist} needs {exc.name!r}, which is not installed;"
                f" install it with `pip install {dist}` and its framework"
            ) from exc
        raise ConfigurationError(
            f"the {name!r} dispatcher plugin of {dist} failed to load: {exc}"
        ) from exc
    except Exception as exc:
        raise ConfigurationError(
            f"the {name!r} dispatcher plugin of {dist} failed to load: {exc!r}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Dispatcher)):
        raise ConfigurationError(f"entry point {name!r} of {dist} is not a Dispatcher subclass")
    with _lock:
        _classes.setdefault(name, cls)
    return cls


def dispatcher_class(spec: str | type[Dispatcher] | Dispatcher) -> type[Dispatcher]:
    """The class for a registered name (loading a built-in or plugin if needed), a class, or an
    instance's class. `ConfigurationError` lists the known names when ``spec`` is unknown."""
    if isinstance(spec, Dispatcher):
        return type(spec)
    if isinstance(spec, type) and issubclass(spec, Dispatcher):
        return spec
    if isinstance(spec, str):
        cls = _classes.get(spec) or _load_builtin(spec) or _load_plugin(spec)
        if cls is not None:
            return cls
        raise ConfigurationError(
            f"unknown dispatcher {spec!r}; known: {', '.join(registered_dispatcher_names())} "
            f"(register a class with @register_dispatcher or an entry point in "
            f"{ENTRY_POINT_GROUP!r})"
        )
    raise ConfigurationError(
        f"dispatcher={spec!r} is not a dispatcher; pass a registered name, a Dispatcher subclass "
        f"or an instance"
    )


def resolve_dispatcher(
    spec: str | type[Dispatcher] | Dispatcher, config: Mapping[str, Any] | None = None
) -> Dispatcher:
    """The dispatcher for a name, class or instance, built once per class and config and built
    again when the settings change. Used by rules and tasks alike."""
    if isinstance(spec, Dispatcher):
        return spec
    cls = dispatcher_class(spec)
    config = dict(config or {})
    key = (cls, tuple(sorted((k, repr(v)) for k, v in config.items())))
    settings = get_settings()
    with _lock:
        known = _instances.get(key)
    if known is not None and known[0] is settings:
        return known[1]
    instance = cls(**config)
    with _lock:
        known = _instances.get(key)
        if known is not None and known[0] is settings:
            return known[1]
        _instances[key] = (settings, instance)
    return instance


#: The earlier name of `resolve_dispatcher`.
get_dispatcher = resolve_dispatcher


def reset_dispatchers() -> None:
    """Forget built instances (tests); registered classes stay."""
    with _lock:
        _instances.clear()


def _check_settings(settings: Settings) -> None:
    """Validate dispatcher names and blocks when settings are configured."""
    if settings.default_dispatcher is not None:
        dispatcher_class(settings.default_dispatcher)
    for name, block in settings.dispatcher_settings.items():
        if not isinstance(block, Mapping):
            raise ConfigurationError(
                f"dispatcher_settings[{name!r}] must be a mapping of UPPER-CASE options"
            )
        try:
            cls = dispatcher_class(name)
        except DispatcherUnavailableError:
            continue  # the framework is missing here; the block is checked where it is used
        cls.check_config(block, where=f"dispatcher_settings[{name!r}]")


add_settings_check(_check_settings)
