"""Read side: stampede-safe cache adapters and cached functions.

Besides the adapters, the pieces every stampede-safe adapter shares are public here for adapters
built outside the core (the Django cache's is one): `check_reentry`, `CreatorRun`,
`call_creator`, `FlightTable`, `refresh_in_background`, `StepRun`, `backoff`, XFetch
(`is_due_early`) and TTL jitter (`jittered`, `check_refresh_options`), and `validate_key`.
"""

from __future__ import annotations

from typing import Any

from cachewire.cache._base import (
    MISSING,
    BaseCacheAdapter,
    SyncCacheAdapter,
    strict_invalidations,
    validate_key,
    validate_ttl,
)
from cachewire.cache._cached import CachedFunction, cached, get_cached_function
from cachewire.cache._codec import Codec, JsonCodec, PickleCodec
from cachewire.cache._flight import (
    CreatorRun,
    FlightTable,
    StepRun,
    Steps,
    backoff,
    call_creator,
    check_reentry,
    check_refresh_options,
    is_due_early,
    jittered,
    refresh_in_background,
)
from cachewire.cache._keys import encode_key
from cachewire.cache._memory import InMemoryCacheAdapter
from cachewire.cache._stats import CacheStats

__all__ = [
    "MISSING",
    "BaseCacheAdapter",
    "CacheStats",
    "CachedFunction",
    "Codec",
    "CreatorRun",
    "FlightTable",
    "InMemoryCacheAdapter",
    "JsonCodec",
    "PickleCodec",
    "RedisCacheAdapter",
    "StepRun",
    "Steps",
    "SyncCacheAdapter",
    "backoff",
    "cached",
    "call_creator",
    "check_reentry",
    "check_refresh_options",
    "encode_key",
    "get_cached_function",
    "is_due_early",
    "jittered",
    "refresh_in_background",
    "strict_invalidations",
    "validate_key",
    "validate_ttl",
]


def __getattr__(name: str) -> Any:
    # The Redis adapter imports redis-py; load it only when asked for so `import cachewire`
    # stays free of optional dependencies.
    if name == "RedisCacheAdapter":
        import importlib

        return importlib.import_module("cachewire.cache._redis").RedisCacheAdapter
    raise AttributeError(f"module 'cachewire.cache' has no attribute {name!r}")
