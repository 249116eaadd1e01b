"""The ``CACHEWIRE`` Django setting, fed into cachewire's settings at startup and on change."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs
from django.conf import settings as django_settings

import cachewire
from cachewire.errors import ConfigurationError

__all__ = ["DEFAULTS", "KNOWN_KEYS", "DjangoSettings", "apply_settings", "django_settings_block"]

#: Every key ``CACHEWIRE`` may hold, with its default.
DEFAULTS: Mapping[str, Any] = {
    "DEFAULT_DISPATCHER": cachewire.Settings().default_dispatcher,
    "DISPATCHER_RAISE_EXCEPTION": False,
    "DISPATCHER_SETTINGS": {},
    # Alias of a Django cache that cachewire uses where no cache is given (``@cached()`` with no
    # cache, tasks' CacheMiddleware). None keeps cachewire's in-memory default.
    "DEFAULT_CACHE": None,
    # Fixture loading (``loaddata``) saves with raw=True; those saves invalidate nothing.
    "SKIP_RAW": True,
    # Modules imported when Django starts, besides each app's ``cachewire`` module, so a worker
    # knows every cached function and rule a producer may send it.
    "MODULES": (),
    "TASK_DEFAULTS": {},
}
KNOWN_KEYS = frozenset(DEFAULTS)
logger = logging.getLogger("cachewire.django")


@attrs.frozen
class DjangoSettings:
    """The Django-only part of ``CACHEWIRE`` (the rest lives in `cachewire.get_settings()`)."""

    skip_raw: bool = True
    default_cache: str | None = None
    modules: tuple[str, ...] = ()


_current = DjangoSettings()


def django_settings_block() -> Mapping[str, Any]:
    """``settings.CACHEWIRE`` as written (an empty mapping when absent or not a mapping)."""
    block = getattr(django_settings, "CACHEWIRE", None)
    return block if isinstance(block, Mapping) else {}


def current() -> DjangoSettings:
    """The Django-only settings in force."""
    return _current


def apply_settings() -> None:
    """Read ``settings.CACHEWIRE`` and configure cachewire with it (unknown keys are left to the
    system checks, which report them as ``cachewire.E006``)."""
    global _current
    block = django_settings_block()
    value = {key: block.get(key, default) for key, default in DEFAULTS.items()}
    default_cache = None
    if value["DEFAULT_CACHE"]:
        from cachewire_django.cache import DjangoCacheAdapter

        default_cache = DjangoCacheAdapter(alias=str(value["DEFAULT_CACHE"]))
    wanted = {
        "default_dispatcher": value["DEFAULT_DISPATCHER"],
        "dispatcher_raise_exception": bool(value["DISPATCHER_RAISE_EXCEPTION"]),
        "dispatcher_settings": value["DISPATCHER_SETTINGS"],
        "default_cache": default_cache,
        "task_defaults": value["TASK_DEFAULTS"],
    }
    for name, setting in wanted.items():
        try:
            cachewire.configure(**{name: setting})
        except (ConfigurationError, TypeError, ValueError) as exc:
            # Django must start so that `manage.py check` can report it (cachewire.E00x).
            logger.error("CACHEWIRE: %s; keeping the default", exc)
            cachewire.configure(**{name: getattr(cachewire.Settings(), name)})
    _current = DjangoSettings(
        skip_raw=bool(value["SKIP_RAW"]),
        default_cache=value["DEFAULT_CACHE"],
        modules=tuple(value["MODULES"] or ()),
    )


def on_setting_changed(*, setting: str, **_: Any) -> None:
    """`setting_changed` receiver: ``override_settings(CACHEWIRE=...)`` takes effect at once."""
    if setting == "CACHEWIRE":
        apply_settings()
