"""Read side: stampede-safe cache adapters and cached functions."""

from __future__ import annotations

from typing import Any

from cachewire.cache._base import (
    MISSING,
    BaseCacheAdapter,
    SyncCacheAdapter,
    strict_invalidations,
    validate_ttl,
)
from cachewire.cache._cached import CachedFunction, cached, get_cached_function
from cachewire.cache._codec import Codec, JsonCodec, PickleCodec
from cachewire.cache._keys import encode_key
from cachewire.cache._memory import InMemoryCacheAdapter
from cachewire.cache._stats import CacheStats

__all__ = [
    "MISSING",
    "BaseCacheAdapter",
    "CacheStats",
    "CachedFunction",
    "Codec",
    "InMemoryCacheAdapter",
    "JsonCodec",
    "PickleCodec",
    "RedisCacheAdapter",
    "SyncCacheAdapter",
    "cached",
    "encode_key",
    "get_cached_function",
    "strict_invalidations",
    "validate_ttl",
]


def __getattr__(name: str) -> Any:
    # The Redis adapter imports redis-py; load it only when asked for so `import cachewire`
    # stays free of optional dependencies.
    if name == "RedisCacheAdapter":
        import importlib

        return importlib.import_module("cachewire.cache._redis").RedisCacheAdapter
    raise AttributeError(f"module 'cachewire.cache' has no attribute {name!r}")
