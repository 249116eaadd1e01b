"""Django integration of cachewire: model changes become cache invalidations at commit.

Add ``"cachewire_django"`` to ``INSTALLED_APPS``, configure ``CACHEWIRE`` and put rules in each
app's ``cachewire`` module.
"""

from __future__ import annotations

from typing import Any

from cachewire_django.changes import changed, track

__all__ = ["DjangoCacheAdapter", "cache_view", "changed", "rewire", "track"]


def __getattr__(name: str) -> Any:
    # Imported on demand: the cache adapter and views need Django's settings to be ready.
    if name == "DjangoCacheAdapter":
        from cachewire_django.cache import DjangoCacheAdapter

        return DjangoCacheAdapter
    if name == "cache_view":
        from cachewire_django.views import cache_view

        return cache_view
    if name == "rewire":
        from cachewire_django.wiring import rewire

        return rewire
    raise AttributeError(f"module 'cachewire_django' has no attribute {name!r}")
