"""cachewire: keep cached data correct when the data behind it changes."""

from __future__ import annotations

from cachewire import errors
from cachewire.cache import MISSING, BaseCacheAdapter, CacheStats, SyncCacheAdapter

__version__ = "0.1.0"

__all__ = [
    "MISSING",
    "BaseCacheAdapter",
    "CacheStats",
    "SyncCacheAdapter",
    "__version__",
    "errors",
]
