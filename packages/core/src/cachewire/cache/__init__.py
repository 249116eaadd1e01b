"""Read side: stampede-safe cache adapters and cached functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cachewire.cache._base import MISSING, BaseCacheAdapter, SyncCacheAdapter, validate_ttl
from cachewire.cache._stats import CacheStats

if TYPE_CHECKING:
    from cachewire.cache._redis import RedisCacheAdapter

__all__ = [
    "MISSING",
    "BaseCacheAdapter",
    "CacheStats",
    "RedisCacheAdapter",
    "SyncCacheAdapter",
    "validate_ttl",
]


def __getattr__(name: str) -> Any:
    # The Redis adapter imports redis-py; load it only when asked for so `import cachewire`
    # stays free of optional dependencies.
    if name == "RedisCacheAdapter":
        from cachewire.cache._redis import RedisCacheAdapter

        return RedisCacheAdapter
    raise AttributeError(f"module 'cachewire.cache' has no attribute {name!r}")
