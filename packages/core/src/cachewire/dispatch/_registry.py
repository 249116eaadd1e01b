"""Dispatcher names: registered classes plus plugins found through entry points."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from cachewire._settings import Settings, register_validator
from cachewire.dispatch._base import Dispatcher
from cachewire.errors import ConfigurationError, DispatcherUnavailableError

__all__ = [
    "ENTRY_POINT_GROUP",
    "get_dispatcher",
    "register_dispatcher",
    "registered_dispatcher_names",
]

ENTRY_POINT_GROUP = "cachewire.dispatchers"

_lock = threading.Lock()
_classes: dict[str, type[Dispatcher]] = {}
_instances: dict[tuple[Any, ...], Dispatcher] = {}


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
    return sorted(set(_classes) | set(_entry_points()))


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


def dispatcher_class(spec: str | type[Dispatcher]) -> type[Dispatcher]:
    """The class for a registered name (loading a plugin if needed) or the class itself."""
    if isinstance(spec, type) and issubclass(spec, Dispatcher):
        return spec
    if isinstance(spec, str):
        cls = _classes.get(spec) or _load_plugin(spec)
        if cls is not None:
            return cls
    raise ConfigurationError(
        f"unknown dispatcher {spec!r}; known: {', '.join(registered_dispatcher_names())}"
    )


def get_dispatcher(
    spec: str | type[Dispatcher], config: Mapping[str, Any] | None = None
) -> Dispatcher:
    """A dispatcher instance for a name or subclass, built once per distinct config."""
    cls = dispatcher_class(spec)
    config = dict(config or {})
    key = (cls, tuple(sorted((k, repr(v)) for k, v in config.items())))
    with _lock:
        instance = _instances.get(key)
    if instance is None:
        instance = cls(**config)
        with _lock:
            instance = _instances.setdefault(key, instance)
    return instance


@register_validator
def _check_settings(settings: Settings, changed: frozenset[str]) -> None:
    """`configure(default_dispatcher=...)` must name a dispatcher that exists."""
    if "default_dispatcher" not in changed:
        return
    spec: Any = settings.default_dispatcher
    if isinstance(spec, type) and issubclass(spec, Dispatcher):
        return
    known = registered_dispatcher_names()
    if isinstance(spec, str) and (spec in known or spec in _subclass_names()):
        return
    raise ConfigurationError(
        f"configure(default_dispatcher={spec!r}) names no registered dispatcher; known: "
        f"{', '.join(known)}"
    )


def _subclass_names() -> set[str]:
    # Tasks still accept a defined but unregistered subclass by its name; until the single
    # resolver lands, the settings check accepts those too.
    names: set[str] = set()
    pending = list(Dispatcher.__subclasses__())
    while pending:
        cls = pending.pop()
        names.add(cls.name)
        pending.extend(cls.__subclasses__())
    return names
