"""The cache adapter contract shared by every backend."""

from __future__ import annotations

import abc
import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, TypeVar

from cachewire.errors import ConfigurationError

__all__ = [
    "MAX_TTL_SECONDS",
    "MISSING",
    "BaseCacheAdapter",
    "Creator",
    "SyncCacheAdapter",
    "invalidations_are_strict",
    "strict_invalidations",
    "validate_key",
    "validate_ttl",
]

_strict: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "cachewire_strict_invalidations", default=False
)


@contextlib.contextmanager
def strict_invalidations() -> Iterator[None]:
    """Inside the block, an invalidation that cannot reach its backend raises
    `CacheBackendError` even where the adapter fails open (rule workers run in such a block, so
    the rules' error policy sees the failure instead of a silent fail-open)."""
    token = _strict.set(True)
    try:
        yield
    finally:
        _strict.reset(token)


def invalidations_are_strict() -> bool:
    """Whether the caller is inside `strict_invalidations`."""
    return _strict.get()


T = TypeVar("T")

#: A creator returns the value, or an awaitable of it (an async creator).
Creator = Callable[[], Any]


class _Missing:
    """Sentinel type for "no value" (distinct from a cached ``None``)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


#: The longest TTL any adapter accepts (100 years): Redis keeps expiries in milliseconds and the
#: lease scripts do their arithmetic in doubles, so far larger values would not be stored as given.
MAX_TTL_SECONDS: Final = 3_155_760_000


def validate_ttl(ttl_seconds: float | None, *, name: str = "ttl_seconds") -> float | None:
    """Check a TTL: seconds; ``None`` never expires, ``0`` is not stored.

    Negative, NaN, infinite and values above `MAX_TTL_SECONDS` are a `ConfigurationError`.
    """
    if ttl_seconds is None:
        return None
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds or None, got {ttl_seconds!r}")
    if math.isnan(ttl_seconds) or ttl_seconds < 0:
        raise ConfigurationError(
            f"{name} must be >= 0 (0 means do not store, None means no expiry), got {ttl_seconds!r}"
        )
    if ttl_seconds > MAX_TTL_SECONDS:
        raise ConfigurationError(
            f"{name} must be at most {MAX_TTL_SECONDS} seconds (100 years, what every adapter "
            f"can store); use None for no expiry, got {ttl_seconds!r}"
        )
    return float(ttl_seconds)


def validate_key(key: object) -> str:
    """Check a cache key: every adapter takes ``str`` keys that encode to UTF-8, and only those.

    Anything else (bytes, numbers, tuples, a string with a lone surrogate) is a
    `ConfigurationError`, on every adapter alike; build keys with `encode_key` for other values.
    """
    if not isinstance(key, str):
        raise ConfigurationError(
            f"cache keys must be str, got {type(key).__name__} {_short(key)}; build one with "
            "cachewire.cache.encode_key(...) or str()"
        )
    try:
        key.encode()
    except UnicodeEncodeError:
        raise ConfigurationError(
            f"cache key {_short(key)} is not valid UTF-8 (it holds a lone surrogate)"
        ) from None
    return key


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class SyncCacheAdapter(abc.ABC):
    """The blocking twin of a cache adapter, for code without an event loop.

    It shares the store, the statistics and the single-flight state of its async adapter.
    """

    def __init__(self, adapter: BaseCacheAdapter) -> None:
        self._adapter = adapter

    @abc.abstractmethod
    def get_or_create(
        self,
        key: str,
        creator: Callable[[], T],
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
        stale_ttl: float | None = None,
    ) -> T: ...

    @abc.abstractmethod
    def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any: ...

    @abc.abstractmethod
    def set(
        self,
        key: str,
        value: Any,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
    ) -> None: ...

    @abc.abstractmethod
    def invalidate(self, key: str) -> bool: ...

    @abc.abstractmethod
    def invalidate_tags(self, tags: Sequence[str]) -> None: ...

    @abc.abstractmethod
    def clear(self) -> None: ...

    def get_stats(self) -> dict[str, Any]:
        """The statistics of the adapter this twin belongs to."""
        return self._adapter.get_stats()


class BaseCacheAdapter(abc.ABC):
    """Async cache adapter with stampede-safe read-through.

    TTLs are float seconds; ``None`` never expires; ``0`` computes without storing; negative is a
    `ConfigurationError`. A cached ``None`` is a hit. ``tags`` name groups of entries (for example
    a cached function's partition) that `invalidate_tags` makes stale in O(1) by bumping a version.
    """

    @abc.abstractmethod
    async def get_or_create(
        self,
        key: str,
        creator: Creator,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
        stale_ttl: float | None = None,
    ) -> Any:
        """Return the cached value, or compute it once for every concurrent caller and store it."""

    @abc.abstractmethod
    async def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        """Return the cached value, or ``default`` when it is missing, expired or stale by tag."""

    @abc.abstractmethod
    async def set(
        self,
        key: str,
        value: Any,
        ttl_seconds: float | _Missing | None = MISSING,
        *,
        tags: Sequence[str] = (),
    ) -> None:
        """Store a value; raises `SerializationError` if it cannot be stored faithfully."""

    @abc.abstractmethod
    async def invalidate(self, key: str) -> bool:
        """Drop one entry; True if a live (unexpired) entry existed.

        A computation or read in flight is detached: it will not write back, and callers arriving
        after this returns start afresh. Adapters with a fail-open mode also take ``strict=True``
        (keyword): then a backend failure raises `CacheBackendError` even when failing open, so
        an invalidation rule's error policy sees it.
        """

    @abc.abstractmethod
    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        """Make every entry stored under any of ``tags`` stale, in O(1) per tag.

        Work in flight under those tags is detached as by `invalidate`; ``strict`` likewise.
        """

    @abc.abstractmethod
    async def clear(self) -> None:
        """Drop every entry of this adapter. Computations in flight will not write back."""

    @abc.abstractmethod
    def get_stats(self) -> dict[str, Any]:
        """Counters: at least hits, misses, hit_rate, size and keys (a bounded list)."""

    @property
    @abc.abstractmethod
    def sync(self) -> SyncCacheAdapter:
        """The blocking twin sharing this adapter's store."""
